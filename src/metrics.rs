//! Prometheus metrics (`slurm_pod_scheduler_*`) and their registry.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointCode {
    pub endpoint: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequest {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the scheduler exports. Cheap to clone handles are shared with the tasks.
pub struct Metrics {
    registry: Registry,
    pub pods_scheduled: Family<ResultLabel, Counter>,
    pub scheduling_duration: Histogram,
    pub slurm_requests: Family<EndpointCode, Counter>,
    pub slurm_request_duration: Family<Endpoint, Histogram, fn() -> Histogram>,
    pub kube_requests: Family<KubeRequest, Counter>,
    pub tracked_pods: Family<StateLabel, Gauge>,
    pub jobs_cancelled: Family<ReasonLabel, Counter>,
    pub pods_deleted: Family<ReasonLabel, Counter>,
    pub killwait_overruns: Counter,
    pub slurm_token_reloads: Counter<u64, AtomicU64>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("slurm_pod_scheduler");
        let m = Self {
            pods_scheduled: Family::default(),
            scheduling_duration: latency_histogram(),
            slurm_requests: Family::default(),
            slurm_request_duration: Family::new_with_constructor(latency_histogram),
            kube_requests: Family::default(),
            tracked_pods: Family::default(),
            jobs_cancelled: Family::default(),
            pods_deleted: Family::default(),
            killwait_overruns: Counter::default(),
            slurm_token_reloads: Counter::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "pods_scheduled",
            "Pods handled, by result",
            m.pods_scheduled.clone(),
        );
        registry.register(
            "scheduling_duration_seconds",
            "Time from pod creation to binding",
            m.scheduling_duration.clone(),
        );
        registry.register(
            "slurm_requests",
            "Requests to slurmrestd",
            m.slurm_requests.clone(),
        );
        registry.register(
            "slurm_request_duration_seconds",
            "Duration of requests to slurmrestd",
            m.slurm_request_duration.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API",
            m.kube_requests.clone(),
        );
        registry.register(
            "tracked_pods",
            "Pods tracked, by lifecycle state",
            m.tracked_pods.clone(),
        );
        registry.register(
            "jobs_cancelled",
            "Slurm jobs cancelled, by reason",
            m.jobs_cancelled.clone(),
        );
        registry.register(
            "pods_deleted",
            "Pods deleted, by reason",
            m.pods_deleted.clone(),
        );
        registry.register(
            "killwait_overruns",
            "Pods force-deleted because they outlived Slurm's KillWait",
            m.killwait_overruns.clone(),
        );
        registry.register(
            "slurm_token_reloads",
            "Times the slurmrestd token was read again after a rejection or a change",
            m.slurm_token_reloads.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_design_names() {
        let m = Metrics::new();
        m.pods_scheduled
            .get_or_create(&ResultLabel {
                result: "bound".into(),
            })
            .inc();
        m.jobs_cancelled
            .get_or_create(&ReasonLabel {
                reason: "pod_ended".into(),
            })
            .inc();
        m.killwait_overruns.inc();
        m.leader.set(1);
        let text = m.render();
        for name in [
            "slurm_pod_scheduler_pods_scheduled_total{result=\"bound\"} 1",
            "slurm_pod_scheduler_jobs_cancelled_total{reason=\"pod_ended\"} 1",
            "slurm_pod_scheduler_killwait_overruns_total 1",
            "slurm_pod_scheduler_leader 1",
            "# TYPE slurm_pod_scheduler_scheduling_duration_seconds histogram",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
