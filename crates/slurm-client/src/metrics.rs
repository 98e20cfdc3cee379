//! Request counters the scheduler exports as Prometheus metrics
//! (`slurm_requests_total{endpoint,code}`, `slurm_request_duration_seconds{endpoint}`,
//! `slurm_token_reloads_total`). The client reports to a [`SlurmObserver`];
//! [`RequestCounters`] is a ready-made one that keeps everything in memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Receives one call per HTTP request and per token reload.
pub trait SlurmObserver: Send + Sync {
    /// `endpoint` is a path template such as `jobs` or `job/{id}`; `code` the HTTP status,
    /// or `"error"` / `"timeout"` when no answer came.
    fn request(&self, endpoint: &'static str, code: &str, duration: Duration);
    /// The token was read again after a rejection.
    fn token_reload(&self);
    /// The token was rejected even after the reload.
    fn auth_failure(&self) {}
}

/// Upper bounds of the duration histogram, seconds.
pub const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Histogram of one endpoint's request durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationHistogram {
    /// Cumulative counts per [`DURATION_BUCKETS`] bound.
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

/// In-memory counters, safe to share between the client and a metrics endpoint.
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    durations: Mutex<BTreeMap<&'static str, DurationHistogram>>,
    token_reloads: AtomicU64,
    auth_failures: AtomicU64,
}

impl RequestCounters {
    /// Requests by (endpoint, code).
    pub fn requests(&self) -> BTreeMap<(&'static str, String), u64> {
        self.requests.lock().expect("counters poisoned").clone()
    }

    /// Total requests to one endpoint, any code.
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        let r = self.requests.lock().expect("counters poisoned");
        r.iter()
            .filter(|((e, _), _)| *e == endpoint)
            .map(|(_, n)| n)
            .sum()
    }

    /// Total requests, any endpoint.
    pub fn total_requests(&self) -> u64 {
        self.requests
            .lock()
            .expect("counters poisoned")
            .values()
            .sum()
    }

    pub fn durations(&self) -> BTreeMap<&'static str, DurationHistogram> {
        self.durations.lock().expect("counters poisoned").clone()
    }

    pub fn token_reloads(&self) -> u64 {
        self.token_reloads.load(Ordering::Relaxed)
    }

    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }
}

impl SlurmObserver for RequestCounters {
    fn request(&self, endpoint: &'static str, code: &str, duration: Duration) {
        *self
            .requests
            .lock()
            .expect("counters poisoned")
            .entry((endpoint, code.to_string()))
            .or_default() += 1;
        let secs = duration.as_secs_f64();
        let mut d = self.durations.lock().expect("counters poisoned");
        let h = d.entry(endpoint).or_default();
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum_seconds += secs;
    }

    fn token_reload(&self) {
        self.token_reloads.fetch_add(1, Ordering::Relaxed);
    }

    fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_code() {
        let c = RequestCounters::default();
        c.request("jobs", "200", Duration::from_millis(3));
        c.request("jobs", "200", Duration::from_millis(300));
        c.request("jobs", "timeout", Duration::from_secs(5));
        c.request("ping", "200", Duration::from_millis(1));
        assert_eq!(c.requests()[&("jobs", "200".to_string())], 2);
        assert_eq!(c.requests_to("jobs"), 3);
        assert_eq!(c.total_requests(), 4);
        let h = &c.durations()["jobs"];
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], 1); // 3 ms <= 5 ms
        assert_eq!(h.buckets[DURATION_BUCKETS.len() - 1], 3);
        c.token_reload();
        assert_eq!(c.token_reloads(), 1);
    }
}
