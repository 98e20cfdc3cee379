//! What the scheduler asks of Slurm: ping, submit (idempotent across lost answers), get a
//! job, the delta poll, our jobs, job states, cancel, nodes.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use tracing::{debug, info, warn};

use super::{Answer, Call, SlurmClient};
use crate::adapter::{decode_errors, decode_kill_codes, submit_body, Adapter, SubmitOptions};
use crate::error::{classify_rejection, Asked, Error, Result};
use crate::job::PlaceholderJob;
use crate::marker::JobMarker;
use crate::types::{BaseState, JobDetails, JobId, JobState, JobStatus, NodeInfo, PingStatus};

/// How to end a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelSignal {
    /// Slurm's ordinary cancel: SIGTERM now, SIGKILL after KillWait. The placeholder
    /// ignores SIGTERM, so the allocation is held through the window.
    Term,
    /// SIGKILL at once: frees the allocation immediately (the pod is already gone).
    Kill,
}

/// What slurmrestd said to a cancel. Neither proves that the job is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The cancel was accepted.
    Accepted,
    /// Slurm said the job is unknown or already ending.
    AlreadyDoneOrUnknown,
}

/// A complete, successful, unfiltered job list, reduced to our jobs.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// Our jobs (comment marker naming our scheduler), any state.
    pub jobs: Vec<JobStatus>,
    /// Every job in the answer, ours or not.
    pub total_jobs: usize,
    /// Our clock just before the request: a job submitted earlier and missing from the
    /// list is gone ("unknown is not gone").
    pub requested_at: SystemTime,
}

/// Where the delta poll left off.
#[derive(Debug, Clone, Default)]
pub struct PollCursor {
    since: Option<u64>,
}

impl PollCursor {
    /// Forgets the position: the next poll takes a full list (after an outage, or to
    /// resolve tracked jobs whose end may have been purged).
    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// The result of one delta poll.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Nothing changed since the last poll.
    Unchanged,
    /// Something changed: the full list of our jobs.
    Changed(JobSnapshot),
}

impl SlurmClient {
    /// Whether slurmctld answers slurmrestd and the token is accepted. On 24.11 a rejected
    /// token shows as `DOWN`; the token is then re-read and, if it changed, pinged again.
    pub async fn ping(&self) -> Result<PingStatus> {
        self.with_adapter(|a| async move {
            let status = self.ping_once(a).await?;
            if status == PingStatus::Down && self.token.reload()? {
                self.observer.token_reload();
                info!("slurmrestd ping DOWN; the token file changed, pinging again");
                return self.ping_once(a).await;
            }
            Ok(status)
        })
        .await
    }

    async fn ping_once(&self, a: Adapter) -> Result<PingStatus> {
        let ans = self
            .send(a, "ping", Method::GET, &a.path("ping/"), true)
            .await?;
        if ans.status != StatusCode::OK {
            return Err(slurm_error("ping", &ans));
        }
        a.decode_ping(&ans.body)
    }

    /// Submits the placeholder job and returns its id. When the answer is lost (timeout,
    /// reset connection), looks for a live job with the same name and marker before
    /// submitting again, so one pod never gets two jobs.
    pub async fn submit(&self, job: &PlaceholderJob, opts: &SubmitOptions) -> Result<JobId> {
        let marker = JobMarker::parse(&job.comment).ok_or_else(|| {
            Error::Unsupported(format!("job `{}` has no valid comment marker", job.name))
        })?;
        let mut attempt = 0;
        loop {
            match self.with_adapter(|a| self.submit_once(a, job, opts)).await {
                Err(e @ Error::Unknown { .. }) if attempt < self.cfg.retries => {
                    warn!(job = %job.name, error = %e, "submit answer lost; looking the job up");
                    // The lookup must be a complete list: a failure here is unknown too.
                    if let Some(found) = self.find_job(&job.name, &marker).await? {
                        info!(job = %job.name, job_id = found.job_id, "found the job of the lost submit");
                        return Ok(found.job_id);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn submit_once(
        &self,
        a: Adapter,
        job: &PlaceholderJob,
        opts: &SubmitOptions,
    ) -> Result<JobId> {
        let body = submit_body(a.version, job, opts)?;
        let path = a.path("job/submit");
        // Not retried here: a lost answer is resolved by `submit`'s lookup.
        let call = Call {
            endpoint: "job/submit",
            method: Method::POST,
            path: &path,
            body: Some(&body),
            user: opts.run_as_user.as_deref(),
        };
        let ans = self.send_call(a, &call, false).await?;
        // A 200 may carry errors next to a job id (a held job): the id means accepted.
        if let Ok(Some(id)) = a.decode_submit(&ans.body) {
            if ans.status.is_success() {
                debug!(job = %job.name, job_id = id, "submitted");
                return Ok(id);
            }
        }
        let errors = decode_errors(&ans.body);
        let Some(first) = errors.iter().find(|e| e.number.is_some_and(|n| n != 0)) else {
            return Err(slurm_error("job/submit", &ans));
        };
        let asked = Asked {
            partition: job.partition.as_deref(),
            constraint: job.constraint.as_deref(),
            account: job.account.as_deref(),
            qos: job.qos.as_deref(),
            gres: job.gres.as_deref(),
            reservation: job.reservation.as_deref(),
            cpus: job.cpus_per_task,
            memory_mb: job.memory_per_node_mb,
        };
        Err(Error::Rejected {
            name: job.name.clone(),
            rejection: classify_rejection(first, &asked),
        })
    }

    /// One job with everything it asked for. [`Error::JobNotFound`] when Slurm answers
    /// "invalid job id" (22.05: 500 with error 2017; 24.11: 404): the only answer to a
    /// lookup that proves a job gone.
    pub async fn get_job(&self, id: JobId) -> Result<JobDetails> {
        self.with_adapter(|a| async move {
            let path = a.path(&format!("job/{id}"));
            let ans = self.send(a, "job/{id}", Method::GET, &path, true).await?;
            if has_error(&ans, 2017) {
                return Err(Error::JobNotFound(id));
            }
            if ans.status != StatusCode::OK {
                return Err(slurm_error("job/{id}", &ans));
            }
            a.decode_job_details("job/{id}", &ans.body)?
                .into_iter()
                .find(|j| j.status.job_id == id)
                .ok_or(Error::JobNotFound(id))
        })
        .await
    }

    /// All of our jobs, from one complete job list.
    pub async fn list_our_jobs(&self) -> Result<JobSnapshot> {
        self.with_adapter(|a| async move {
            let requested_at = SystemTime::now();
            let ans = self
                .send(a, "jobs", Method::GET, &a.path("jobs/"), true)
                .await?;
            self.snapshot(a, &ans, requested_at).map(|(s, _)| s)
        })
        .await
    }

    /// Our live job (pending, running or suspended, not completing) with this name and
    /// marker, from one complete job list.
    pub async fn find_job(&self, name: &str, marker: &JobMarker) -> Result<Option<JobStatus>> {
        let snap = self.list_our_jobs().await?;
        Ok(snap.jobs.into_iter().find(|j| {
            j.name == name
                && j.marker.as_ref() == Some(marker)
                && matches!(
                    j.state.base,
                    BaseState::Pending | BaseState::Running | BaseState::Suspended
                )
                && !j.state.has_flag("COMPLETING")
        }))
    }

    /// The delta poll: one request per call whatever the number of jobs. Slurm answers
    /// `update_time` with no jobs when nothing changed and with all jobs when anything
    /// did, so a change yields a complete list of our jobs.
    pub async fn poll(&self, cursor: &mut PollCursor) -> Result<PollOutcome> {
        self.with_adapter(|a| {
            let since = cursor.since;
            async move {
                let requested_at = SystemTime::now();
                let path = match since {
                    // Minus one: a change within the same second as the last answer would
                    // otherwise be missed; duplicates are harmless.
                    Some(t) => {
                        let q = a.update_time_query(t - 1, epoch(requested_at));
                        a.path(&format!("jobs/?update_time={q}"))
                    }
                    None => a.path("jobs/"),
                };
                let ans = self.send(a, "jobs", Method::GET, &path, true).await?;
                if since.is_some() && a.unchanged_is_304() && ans.status == StatusCode::NOT_MODIFIED
                {
                    return Ok((PollOutcome::Unchanged, since));
                }
                let (snap, last_update) = self.snapshot(a, &ans, requested_at)?;
                // An unchanged answer is 200, no jobs, last_update 0, which must never become
                // the next update_time.
                if since.is_some() && snap.total_jobs == 0 && last_update.is_none() {
                    return Ok((PollOutcome::Unchanged, since));
                }
                let next = last_update.unwrap_or_else(|| epoch(requested_at));
                Ok((PollOutcome::Changed(snap), Some(next)))
            }
        })
        .await
        .map(|(outcome, next)| {
            cursor.since = next;
            outcome
        })
    }

    fn snapshot(
        &self,
        a: Adapter,
        ans: &Answer,
        requested_at: SystemTime,
    ) -> Result<(JobSnapshot, Option<u64>)> {
        if ans.status != StatusCode::OK {
            return Err(slurm_error("jobs", ans));
        }
        let list = a.decode_job_list("jobs", &ans.body)?;
        let total_jobs = list.jobs.len();
        let jobs = list
            .jobs
            .into_iter()
            .filter(|j| {
                j.marker
                    .as_ref()
                    .is_some_and(|m| m.scheduler == self.scheduler)
            })
            .collect();
        Ok((
            JobSnapshot {
                jobs,
                total_jobs,
                requested_at,
            },
            list.last_update,
        ))
    }

    /// States of the listed jobs in one request (v0.0.40+; `Unsupported` on v0.0.38, where
    /// [`SlurmClient::poll`] serves). Jobs Slurm no longer knows are simply absent, which
    /// does not prove them gone.
    pub async fn job_states(&self, ids: &[JobId]) -> Result<Vec<(JobId, JobState)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with_adapter(|a| async move {
            if !a.has_state_endpoint() {
                return Err(Error::Unsupported(format!(
                    "REST API {} has no jobs/state endpoint",
                    a.version
                )));
            }
            // Repeated `job_id` parameters: 24.11 refuses a comma list (400 or 422).
            let query: Vec<String> = ids.iter().map(|id| format!("job_id={id}")).collect();
            let path = a.path(&format!("jobs/state/?{}", query.join("&")));
            let ans = self.send(a, "jobs/state", Method::GET, &path, true).await?;
            if ans.status != StatusCode::OK {
                return Err(slurm_error("jobs/state", &ans));
            }
            a.decode_states(&ans.body)
        })
        .await
    }

    /// Cancels a job. Retried on transport failures (cancelling twice is harmless).
    pub async fn cancel(&self, id: JobId, signal: CancelSignal) -> Result<CancelOutcome> {
        self.with_adapter(|a| async move {
            let path = match signal {
                CancelSignal::Term => a.path(&format!("job/{id}")),
                CancelSignal::Kill => a.path(&format!("job/{id}?signal=KILL")),
            };
            let ans = self
                .send(a, "job/{id}", Method::DELETE, &path, true)
                .await?;
            // "Invalid job id" (2017) and "already completing or completed" (2021): 22.05
            // answers them as a 500, v0.0.42 inside a 200's `status`.
            let codes = decode_kill_codes(&ans.body);
            let gone = [2017, 2021]
                .iter()
                .any(|n| has_error(&ans, *n) || codes.contains(n));
            if gone {
                return Ok(CancelOutcome::AlreadyDoneOrUnknown);
            }
            if ans.status != StatusCode::OK {
                return Err(slurm_error("job/{id}", &ans));
            }
            info!(job_id = id, ?signal, "job cancelled");
            Ok(CancelOutcome::Accepted)
        })
        .await
    }

    /// Every Slurm node.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.with_adapter(|a| async move {
            let ans = self
                .send(a, "nodes", Method::GET, &a.path("nodes/"), true)
                .await?;
            if ans.status != StatusCode::OK {
                return Err(slurm_error("nodes", &ans));
            }
            a.decode_nodes(&ans.body)
        })
        .await
    }
}

fn has_error(ans: &Answer, number: i64) -> bool {
    decode_errors(&ans.body)
        .iter()
        .any(|e| e.number == Some(number))
}

fn slurm_error(endpoint: &str, ans: &Answer) -> Error {
    Error::Slurm {
        endpoint: endpoint.to_string(),
        status: ans.status.as_u16(),
        errors: decode_errors(&ans.body),
        body: String::from_utf8_lossy(&ans.body)
            .chars()
            .take(500)
            .collect(),
    }
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
