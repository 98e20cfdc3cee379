//! REST API v0.0.38 (Slurm 22.05): environment as a map, the script beside the job,
//! plain numbers, `exclusive` as a string. No user/group ids, no excluded nodes (left out:
//! the caller checks allocations), and never a non-empty `argv` (it crashes slurmrestd 22.05).

use serde_json::{json, Map, Value};

use super::{bare_gres, SubmitOptions, PLACEHOLDER_SCRIPT};
use crate::error::{Error, Result};
use crate::job::{Exclusivity, PlaceholderJob, TimeLimit};

/// Slurm's INFINITE for 32-bit fields.
const INFINITE: u64 = u32::MAX as u64;

pub(super) fn submit_body(job: &PlaceholderJob, opts: &SubmitOptions) -> Result<Value> {
    if (job.user_id.is_some() || job.group_id.is_some()) && opts.run_as_user.is_none() {
        return Err(Error::Unsupported(format!(
            "job `{}` asks for a user or group id, but this cluster's Slurm (REST API v0.0.38, \
             Slurm 22.05) is too old to set them; ask the operator to map the UID to a user \
             name in the scheduler's configuration, or remove the annotation",
            job.name
        )));
    }
    if !job.excluded_nodes.is_empty() {
        // v0.0.38 has no `excluded_nodes` (and refuses `required_nodes`): the job goes out
        // without them and the caller cancels and retries an allocation on an excluded
        // node (`ApiVersion::can_exclude_nodes`).
        tracing::debug!(job = %job.name, excluded = ?job.excluded_nodes, "v0.0.38 cannot exclude nodes");
    }

    let mut j = Map::new();
    j.insert("name".into(), json!(job.name));
    j.insert("comment".into(), json!(job.comment));
    j.insert("tasks".into(), json!(1));
    j.insert("nodes".into(), json!(1));
    j.insert("cpus_per_task".into(), json!(job.cpus_per_task));
    j.insert("memory_per_node".into(), json!(job.memory_per_node_mb));
    if let Some(g) = &job.gres {
        j.insert("gres".into(), json!(bare_gres(g)));
    }
    for (key, value) in [
        ("partition", &job.partition),
        ("constraints", &job.constraint),
        ("account", &job.account),
        ("qos", &job.qos),
        ("reservation", &job.reservation),
    ] {
        if let Some(v) = value {
            j.insert(key.into(), json!(v));
        }
    }
    match job.exclusive {
        // The schema lists `true`, but 22.05 answers "Invalid exclusive specification" to
        // it; `exclusive` is what its parser takes for a whole node.
        Some(Exclusivity::None) => {
            j.insert("exclusive".into(), json!("exclusive"));
        }
        Some(Exclusivity::User) => {
            j.insert("exclusive".into(), json!("user"));
        }
        Some(Exclusivity::Ok) | None => {}
    }
    match job.time_limit {
        Some(TimeLimit::Minutes(m)) => {
            j.insert("time_limit".into(), json!(m));
        }
        Some(TimeLimit::Infinite) => {
            j.insert("time_limit".into(), json!(INFINITE));
        }
        None => {}
    }
    j.insert("requeue".into(), json!(false));
    j.insert("current_working_directory".into(), json!("/tmp"));
    j.insert("standard_input".into(), json!("/dev/null"));
    j.insert("standard_output".into(), json!("/dev/null"));
    j.insert("standard_error".into(), json!("/dev/null"));
    j.insert("environment".into(), json!({"PATH": "/bin:/usr/bin"}));

    Ok(json!({"job": Value::Object(j), "script": PLACEHOLDER_SCRIPT}))
}
