//! REST API v0.0.40, v0.0.41 and v0.0.42 (Slurm 23.11 to 25.11): environment as a list,
//! the script inside the job, `{set, infinite, number}` numbers, `shared` flags, GRES as a
//! TRES, string user and group ids (numeric only: a group *name* crashes 24.11), and
//! `excluded_nodes`. The three versions take the same body; they differ in the
//! `update_time` format only.

use serde_json::{json, Map, Value};

use super::{bare_gres, SubmitOptions, PLACEHOLDER_SCRIPT};
use crate::error::Result;
use crate::job::{Exclusivity, PlaceholderJob, TimeLimit};
use crate::version::ApiVersion;

pub(super) fn submit_body(
    _version: ApiVersion,
    job: &PlaceholderJob,
    _opts: &SubmitOptions,
) -> Result<Value> {
    let mut j = Map::new();
    j.insert("name".into(), json!(job.name));
    j.insert("comment".into(), json!(job.comment));
    j.insert("tasks".into(), json!(1));
    j.insert("minimum_nodes".into(), json!(1));
    j.insert("maximum_nodes".into(), json!(1));
    j.insert("cpus_per_task".into(), json!(job.cpus_per_task));
    j.insert(
        "memory_per_node".into(),
        json!({"set": true, "number": job.memory_per_node_mb}),
    );
    if let Some(g) = &job.gres {
        j.insert(
            "tres_per_node".into(),
            json!(format!("gres/{}", bare_gres(g))),
        );
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
    // Ids travel as numeric strings, the type the schema declares; group_id defaults to
    // user_id because without it Slurm uses the token user's group, not the user's.
    if let Some(uid) = job.user_id {
        j.insert("user_id".into(), json!(uid.to_string()));
        j.insert(
            "group_id".into(),
            json!(job.group_id.unwrap_or(uid).to_string()),
        );
    } else if let Some(gid) = job.group_id {
        j.insert("group_id".into(), json!(gid.to_string()));
    }
    match job.exclusive {
        Some(Exclusivity::None) => {
            j.insert("shared".into(), json!(["none"]));
        }
        Some(Exclusivity::User) => {
            j.insert("shared".into(), json!(["user"]));
        }
        Some(Exclusivity::Ok) | None => {}
    }
    match job.time_limit {
        Some(TimeLimit::Minutes(m)) => {
            j.insert("time_limit".into(), json!({"set": true, "number": m}));
        }
        Some(TimeLimit::Infinite) => {
            j.insert("time_limit".into(), json!({"set": true, "infinite": true}));
        }
        None => {}
    }
    if !job.excluded_nodes.is_empty() {
        j.insert("excluded_nodes".into(), json!(job.excluded_nodes));
    }
    j.insert("requeue".into(), json!(false));
    j.insert("current_working_directory".into(), json!("/tmp"));
    j.insert("standard_input".into(), json!("/dev/null"));
    j.insert("standard_output".into(), json!("/dev/null"));
    j.insert("standard_error".into(), json!("/dev/null"));
    j.insert("environment".into(), json!(["PATH=/bin:/usr/bin"]));
    j.insert("script".into(), json!(PLACEHOLDER_SCRIPT));

    Ok(json!({"job": Value::Object(j)}))
}

/// Seconds of slack for clock skew between this host and slurmctld: asking for a little
/// more than needed only makes a changed answer come a bit more often.
const SKEW_MARGIN_SECS: u64 = 2;

/// `now-<N>seconds` for an epoch: v0.0.40 and v0.0.41 refuse epochs and read absolute time
/// strings in slurmctld's local time zone, which we do not know (a US-zone slurmctld would
/// read a UTC string as hours in the future and report "no changes" for ever). A time
/// relative to slurmctld's own `now` avoids the zone; the margin covers clock skew.
pub(super) fn relative_time(epoch: u64, now: u64) -> String {
    format!(
        "now-{}seconds",
        now.saturating_sub(epoch) + SKEW_MARGIN_SECS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_cover_the_gap_and_skew() {
        assert_eq!(relative_time(1_000, 1_010), "now-12seconds");
        assert_eq!(relative_time(1_010, 1_010), "now-2seconds");
        // Our clock behind slurmctld's: never a time in the future.
        assert_eq!(relative_time(1_020, 1_010), "now-2seconds");
    }
}
