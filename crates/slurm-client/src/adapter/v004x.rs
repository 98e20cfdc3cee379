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

/// `2026-12-04T15%3A33%3A59` for an epoch, UTC (slurmctld's local time on the clusters
/// this runs against; see the crate README), already percent-encoded for a query string.
pub(super) fn slurm_time_string(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}%3A{:02}%3A{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_strings_match_slurm() {
        // 1796398439 is 2026-12-04T15:33:59 UTC (seen in a real slurmrestd warning).
        assert_eq!(slurm_time_string(1_796_398_439), "2026-12-04T15%3A33%3A59");
        assert_eq!(slurm_time_string(0), "1970-01-01T00%3A00%3A00");
        assert_eq!(slurm_time_string(951_782_400), "2000-02-29T00%3A00%3A00");
    }
}
