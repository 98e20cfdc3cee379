//! The request log: every request the server answered, with its verb, resource,
//! subresource, user agent, time and status, for tests that check what a client did
//! (for example that it only used the verbs its RBAC role grants).

use std::sync::Mutex;
use std::time::SystemTime;

use crate::request::RequestInfo;

/// One answered request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// What it addressed.
    pub info: RequestInfo,
    /// Its `User-Agent` header.
    pub user_agent: String,
    /// HTTP status of the answer (200 for watches that streamed).
    pub status: u16,
}

/// Bounded in-memory request log.
pub struct Recorder {
    records: Mutex<Vec<RequestRecord>>,
    limit: usize,
}

impl Recorder {
    /// A log that keeps the latest `limit` requests.
    pub fn new(limit: usize) -> Recorder {
        Recorder {
            records: Mutex::new(Vec::new()),
            limit,
        }
    }

    /// Append a record, dropping the oldest half when full (amortized O(1)).
    pub fn record(&self, record: RequestRecord) {
        if self.limit == 0 {
            return;
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= self.limit {
            let drop = records.len() / 2 + 1;
            records.drain(..drop);
        }
        records.push(record);
    }

    /// A copy of the log.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Empty the log.
    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
