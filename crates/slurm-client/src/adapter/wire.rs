//! Serde shapes of slurmrestd answers, shared by the adapters. They name only the fields
//! the client reads, so decoding a large job list skips everything else; each field accepts
//! both the v0.0.38 shape (plain numbers, strings) and the v0.0.40+ shape (`{set, infinite,
//! number}` objects, lists), so the adapters differ only where the API really does.

use serde::Deserialize;

use crate::error::SlurmError;
use crate::job::{Exclusivity, TimeLimit};
use crate::types::{JobState, NodeInfo};

/// A number that may be plain or v0.0.40+'s `{set, infinite, number}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(crate) enum NoVal {
    Plain(i64),
    Struct {
        #[serde(default)]
        set: bool,
        #[serde(default)]
        infinite: bool,
        #[serde(default)]
        number: i64,
    },
}

impl NoVal {
    /// The value when set and finite.
    pub fn get(self) -> Option<u64> {
        match self {
            NoVal::Plain(n) => u64::try_from(n).ok(),
            NoVal::Struct {
                set: true,
                infinite: false,
                number,
            } => u64::try_from(number).ok(),
            NoVal::Struct { .. } => None,
        }
    }

    pub fn is_infinite(self) -> bool {
        matches!(self, NoVal::Struct { infinite: true, .. })
    }
}

/// A field that is a string in v0.0.38 and a list of strings in v0.0.40+.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StrOrList {
    One(String),
    List(Vec<String>),
}

impl StrOrList {
    pub fn items(&self) -> Vec<&str> {
        match self {
            StrOrList::One(s) if s.is_empty() => Vec::new(),
            StrOrList::One(s) => s.split(',').map(str::trim).collect(),
            StrOrList::List(l) => l.iter().map(String::as_str).collect(),
        }
    }

    pub fn joined(&self) -> String {
        self.items().join(",")
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    error_number: Option<i64>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl From<WireError> for SlurmError {
    fn from(w: WireError) -> Self {
        SlurmError {
            number: w.error_number.or(w.error_code),
            error: w.error.unwrap_or_default(),
            description: w.description.unwrap_or_default(),
        }
    }
}

/// Only the `errors` of any answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorsOnly {
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// A cancel's answer: v0.0.42 reports per-job results in `status` (a 200 even for an
/// unknown job); earlier versions leave it out.
#[derive(Debug, Deserialize)]
pub(crate) struct KillAnswer {
    #[serde(default)]
    pub status: Option<Vec<KillStatus>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KillStatus {
    #[serde(default)]
    pub error: Option<KillError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KillError {
    #[serde(default)]
    pub code: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SubmitAnswer {
    #[serde(default)]
    pub job_id: Option<u32>,
}

/// The poll's view of one job: only what the scheduler acts on.
#[derive(Debug, Deserialize)]
pub(crate) struct WireJobStatus {
    pub job_id: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    pub job_state: StrOrList,
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub nodes: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobStatusList {
    #[serde(default)]
    pub jobs: Vec<WireJobStatus>,
    #[serde(default)]
    pub last_update: Option<NoVal>,
}

/// One job with everything the placeholder job asked for.
#[derive(Debug, Deserialize)]
pub(crate) struct WireJob {
    pub job_id: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    pub job_state: StrOrList,
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub nodes: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub features: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    #[serde(default)]
    pub resv_name: Option<String>,
    #[serde(default)]
    pub cpus: Option<NoVal>,
    #[serde(default)]
    pub memory_per_node: Option<NoVal>,
    #[serde(default)]
    pub tres_per_node: Option<String>,
    #[serde(default)]
    pub tres_alloc_str: Option<String>,
    #[serde(default)]
    pub gres_detail: Option<Vec<String>>,
    #[serde(default)]
    pub excluded_nodes: Option<StrOrList>,
    #[serde(default)]
    pub time_limit: Option<NoVal>,
    #[serde(default)]
    pub shared: Option<StrOrList>,
    #[serde(default)]
    pub exclusive: Option<StrOrList>,
    #[serde(default)]
    pub user_id: Option<u32>,
    #[serde(default)]
    pub group_id: Option<u32>,
    #[serde(default)]
    pub requeue: Option<bool>,
    #[serde(default)]
    pub submit_time: Option<NoVal>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobList {
    #[serde(default)]
    pub jobs: Vec<WireJob>,
}

impl WireJob {
    pub fn time_limit(&self) -> Option<TimeLimit> {
        // v0.0.38 reports an unlimited job as null; v0.0.40+ as `infinite: true`.
        match self.time_limit? {
            t if t.is_infinite() => Some(TimeLimit::Infinite),
            t => t.get().map(|m| {
                if m >= u64::from(u32::MAX) {
                    TimeLimit::Infinite
                } else {
                    TimeLimit::Minutes(m as u32)
                }
            }),
        }
    }

    /// Slurm reports sharing twice: `exclusive` (`true`/`user`/`mcs`) and, from v0.0.40,
    /// `shared` (`none`/`user`/`oversubscribe`); 22.05 puts `user` in `shared` only.
    pub fn exclusivity(&self) -> Option<Exclusivity> {
        let ex: Vec<&str> = self
            .exclusive
            .as_ref()
            .map(|e| e.items())
            .unwrap_or_default();
        let sh: Vec<&str> = self.shared.as_ref().map(|s| s.items()).unwrap_or_default();
        if ex.contains(&"true") || ex.contains(&"exclusive") || sh.contains(&"none") {
            Some(Exclusivity::None)
        } else if ex.contains(&"user") || sh.contains(&"user") {
            Some(Exclusivity::User)
        } else if sh.contains(&"oversubscribe") || sh.contains(&"ok") {
            Some(Exclusivity::Ok)
        } else {
            None
        }
    }
}

/// `jobs/state` (v0.0.40+).
#[derive(Debug, Deserialize)]
pub(crate) struct StateList {
    #[serde(default)]
    pub jobs: Vec<WireJobState>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireJobState {
    /// A string in 24.11 (`"13"`), tolerated as a number too.
    pub job_id: IdOrString,
    pub state: StrOrList,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum IdOrString {
    Id(u32),
    Str(String),
}

impl IdOrString {
    pub fn id(&self) -> Option<u32> {
        match self {
            IdOrString::Id(n) => Some(*n),
            IdOrString::Str(s) => s.parse().ok(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NodeList {
    #[serde(default)]
    pub nodes: Vec<WireNode>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireNode {
    pub name: String,
    #[serde(default)]
    pub state: Option<StrOrList>,
    #[serde(default)]
    pub state_flags: Option<Vec<String>>,
    #[serde(default)]
    pub active_features: Option<StrOrList>,
    #[serde(default)]
    pub features: Option<StrOrList>,
    #[serde(default)]
    pub partitions: Option<Vec<String>>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub real_memory: Option<u64>,
    #[serde(default)]
    pub gres: Option<String>,
}

impl From<WireNode> for NodeInfo {
    fn from(n: WireNode) -> Self {
        let mut state: Vec<String> = n
            .state
            .as_ref()
            .map(|s| s.items().iter().map(|x| x.to_ascii_uppercase()).collect())
            .unwrap_or_default();
        state.extend(n.state_flags.unwrap_or_default());
        let features = n.active_features.or(n.features);
        NodeInfo {
            name: n.name,
            state,
            features: features
                .map(|f| f.items().iter().map(|x| x.to_string()).collect())
                .unwrap_or_default(),
            partitions: n.partitions.unwrap_or_default(),
            cpus: n.cpus.unwrap_or_default(),
            real_memory_mb: n.real_memory.unwrap_or_default(),
            gres: n.gres.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PingAnswer {
    #[serde(default)]
    pub pings: Vec<WirePing>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WirePing {
    /// v0.0.38.
    #[serde(default)]
    pub ping: Option<String>,
    /// v0.0.40+.
    #[serde(default)]
    pub pinged: Option<String>,
}

/// A job state field in either shape.
pub(crate) fn job_state(s: &StrOrList) -> JobState {
    match s {
        StrOrList::One(one) => JobState::from_single(one),
        StrOrList::List(list) => JobState::from_list(list),
    }
}
