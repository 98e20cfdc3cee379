//! Version adapters: everything that differs between slurmrestd API versions (request
//! bodies, field shapes, the `update_time` format, which endpoints exist) is decided here,
//! so the client above speaks one version-neutral language.

mod v0038;
mod v004x;
pub(crate) mod wire;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod body_tests;

use serde_json::Value;

use crate::error::{Error, Result, SlurmError};
use crate::hostlist;
use crate::job::PlaceholderJob;
use crate::marker::JobMarker;
use crate::types::{JobDetails, JobId, JobState, JobStatus, NodeInfo, PingStatus};
use crate::version::ApiVersion;

/// The placeholder's batch script: POSIX sh, ignores SIGTERM so the allocation is held
/// through KillWait while the pod shuts down, and `exec`s so that a SIGKILL reaches the
/// only process at once (a child left behind would keep the job COMPLETING).
/// SIG_IGN survives `exec`, so `sleep` ignores SIGTERM too.
pub const PLACEHOLDER_SCRIPT: &str = "#!/bin/sh\n\
# slurm-pod-scheduler placeholder: holds this allocation while its pod runs.\n\
trap '' TERM\n\
exec sleep 2147483647\n";

/// Choices about a submit that are not part of the job itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Submit as this Slurm user through `X-SLURM-USER-NAME` (needs a root or SlurmUser
    /// token). On v0.0.38, which cannot carry `user_id`, this is how a pod's UID is honoured:
    /// the operator's config maps the UID to this name and the body then omits the ids.
    pub run_as_user: Option<String>,
}

/// The exact JSON body the client sends to `POST /slurm/{version}/job/submit` for `job`.
/// Pure: the `explain -o request` command prints it. Fails when the job cannot be
/// expressed in that version (user ids on v0.0.38 without a user mapping). Excluded nodes
/// are left out on v0.0.38, which cannot express them: check
/// [`ApiVersion::can_exclude_nodes`] and cancel an allocation on an excluded node.
pub fn submit_body(
    version: ApiVersion,
    job: &PlaceholderJob,
    opts: &SubmitOptions,
) -> Result<Value> {
    match version {
        ApiVersion::V0038 => v0038::submit_body(job, opts),
        ApiVersion::V0040 | ApiVersion::V0041 | ApiVersion::V0042 => {
            v004x::submit_body(version, job, opts)
        }
    }
}

/// Decodes a `GET /slurm/{version}/jobs` answer the way the poll does (only the fields it
/// needs): every job, ours or not. For tools and for measuring decode cost.
pub fn decode_job_list(version: ApiVersion, body: &[u8]) -> Result<Vec<JobStatus>> {
    Ok(Adapter::new(version).decode_job_list("jobs", body)?.jobs)
}

/// `gpu:2`, `gres/gpu:2` and `gres:gpu:2` all mean the same GRES; the adapters add the
/// prefix their version wants.
pub(crate) fn bare_gres(gres: &str) -> &str {
    gres.strip_prefix("gres/")
        .or_else(|| gres.strip_prefix("gres:"))
        .unwrap_or(gres)
}

/// One full job list as the poll sees it.
#[derive(Debug)]
pub(crate) struct DecodedList {
    pub jobs: Vec<JobStatus>,
    /// The answer's `last_update` (v0.0.40+); `None` on v0.0.38 or when unchanged (0).
    pub last_update: Option<u64>,
}

/// Per-version behaviour the client needs beyond the submit body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adapter {
    pub version: ApiVersion,
}

impl Adapter {
    pub fn new(version: ApiVersion) -> Self {
        Self { version }
    }

    pub fn path(&self, rest: &str) -> String {
        format!("/slurm/{}/{rest}", self.version)
    }

    /// The `update_time` query value: v0.0.38 and v0.0.42 take epoch seconds; v0.0.40 and
    /// v0.0.41 reject them (422) and get a time relative to slurmctld's `now`.
    pub fn update_time_query(&self, epoch: u64, now: u64) -> String {
        match self.version {
            ApiVersion::V0038 | ApiVersion::V0042 => epoch.to_string(),
            ApiVersion::V0040 | ApiVersion::V0041 => v004x::relative_time(epoch, now),
        }
    }

    /// Whether `jobs/state` exists (v0.0.40+).
    pub fn has_state_endpoint(&self) -> bool {
        self.version >= ApiVersion::V0040
    }

    /// Whether an answer to an unchanged `update_time` comes back as 304 (22.05) rather
    /// than 200 with no jobs.
    pub fn unchanged_is_304(&self) -> bool {
        self.version == ApiVersion::V0038
    }

    pub fn decode_submit(&self, body: &[u8]) -> Result<Option<JobId>> {
        let a: wire::SubmitAnswer = decode("job/submit", body)?;
        Ok(a.job_id)
    }

    pub fn decode_job_list(&self, endpoint: &str, body: &[u8]) -> Result<DecodedList> {
        let list: wire::JobStatusList = decode(endpoint, body)?;
        let mut jobs = Vec::with_capacity(list.jobs.len());
        for j in list.jobs {
            jobs.push(JobStatus {
                job_id: j.job_id,
                name: j.name.unwrap_or_default(),
                marker: j.comment.as_deref().and_then(JobMarker::parse),
                state: wire::job_state(&j.job_state),
                reason: reason(j.state_reason),
                nodes: expand_nodes(endpoint, j.nodes.as_deref())?,
            });
        }
        let last_update = list
            .last_update
            .and_then(wire::NoVal::get)
            .filter(|t| *t > 0);
        Ok(DecodedList { jobs, last_update })
    }

    pub fn decode_job_details(&self, endpoint: &str, body: &[u8]) -> Result<Vec<JobDetails>> {
        let list: wire::JobList = decode(endpoint, body)?;
        let mut out = Vec::with_capacity(list.jobs.len());
        for j in list.jobs {
            let time_limit = j.time_limit();
            let exclusivity = j.exclusivity();
            let comment = j.comment.unwrap_or_default();
            out.push(JobDetails {
                status: JobStatus {
                    job_id: j.job_id,
                    name: j.name.unwrap_or_default(),
                    marker: JobMarker::parse(&comment),
                    state: wire::job_state(&j.job_state),
                    reason: reason(j.state_reason),
                    nodes: expand_nodes(endpoint, j.nodes.as_deref())?,
                },
                comment,
                partition: j.partition.unwrap_or_default(),
                features: j.features.unwrap_or_default(),
                account: j.account.unwrap_or_default(),
                qos: j.qos.unwrap_or_default(),
                reservation: j.resv_name.unwrap_or_default(),
                cpus: j.cpus.and_then(wire::NoVal::get).map(|c| c as u32),
                memory_per_node_mb: j.memory_per_node.and_then(wire::NoVal::get),
                tres_per_node: j.tres_per_node.unwrap_or_default(),
                tres_alloc: j.tres_alloc_str.unwrap_or_default(),
                gres_allocated: j.gres_detail.unwrap_or_default(),
                excluded_nodes: match j.excluded_nodes {
                    Some(e) => expand_nodes(endpoint, Some(&e.joined()))?,
                    None => Vec::new(),
                },
                time_limit,
                exclusivity,
                user_id: j.user_id,
                group_id: j.group_id,
                requeue: j.requeue,
                submit_time: j.submit_time.and_then(wire::NoVal::get),
            });
        }
        Ok(out)
    }

    pub fn decode_states(&self, body: &[u8]) -> Result<Vec<(JobId, JobState)>> {
        let list: wire::StateList = decode("jobs/state", body)?;
        Ok(list
            .jobs
            .into_iter()
            .filter_map(|j| Some((j.job_id.id()?, wire::job_state(&j.state))))
            .collect())
    }

    pub fn decode_nodes(&self, body: &[u8]) -> Result<Vec<NodeInfo>> {
        let list: wire::NodeList = decode("nodes", body)?;
        Ok(list.nodes.into_iter().map(NodeInfo::from).collect())
    }

    pub fn decode_ping(&self, body: &[u8]) -> Result<PingStatus> {
        let a: wire::PingAnswer = decode("ping", body)?;
        let up = !a.pings.is_empty()
            && a.pings.iter().any(|p| {
                let s = p
                    .pinged
                    .as_deref()
                    .or(p.ping.as_deref())
                    .unwrap_or_default();
                s.eq_ignore_ascii_case("UP")
            });
        Ok(if up { PingStatus::Up } else { PingStatus::Down })
    }
}

/// Error numbers of a cancel's per-job `status` entries (v0.0.42); empty otherwise.
pub(crate) fn decode_kill_codes(body: &[u8]) -> Vec<i64> {
    serde_json::from_slice::<wire::KillAnswer>(body)
        .ok()
        .and_then(|a| a.status)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.error.and_then(|e| e.code))
        .filter(|c| *c != 0)
        .collect()
}

/// Slurm's errors in any answer body; empty when the body is not JSON.
pub(crate) fn decode_errors(body: &[u8]) -> Vec<SlurmError> {
    serde_json::from_slice::<wire::ErrorsOnly>(body)
        .map(|e| e.errors.into_iter().map(SlurmError::from).collect())
        .unwrap_or_default()
}

fn decode<'a, T: serde::Deserialize<'a>>(endpoint: &str, body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })
}

fn reason(r: Option<String>) -> Option<String> {
    r.filter(|r| !r.is_empty() && r != "None")
}

fn expand_nodes(endpoint: &str, nodes: Option<&str>) -> Result<Vec<String>> {
    hostlist::expand(nodes.unwrap_or_default()).map_err(|e| Error::Decode {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })
}
