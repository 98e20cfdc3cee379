//! Leader election on a Lease named after the scheduler (never kube-scheduler's).
//!
//! Every replica runs this; only the holder acts. Expiry is judged on the local clock from
//! the moment this replica last saw the lease change, not from the holder's `renewTime`,
//! so clock skew between machines cannot hand the lease to two replicas.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name, or host name and process id).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// A leader that cannot renew for this long stops acting.
    pub renew_deadline: Duration,
    /// How often to renew or try to acquire.
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What this replica last observed of the lease.
struct Observed {
    holder: Option<String>,
    /// Local time the holder or renew time last changed.
    changed_at: Instant,
    renew_time: Option<MicroTime>,
}

/// Run the election forever, publishing `true` while this replica leads. Losing the lease
/// publishes `false` at once; callers stop acting as soon as they see it.
pub async fn run(client: Client, cfg: LeaseConfig, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match try_acquire_or_renew(&api, &cfg, &mut observed, now).await {
            Ok(true) => {
                if !*leading.borrow() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                }
                last_renewed = Some(now);
                leading.send_replace(true);
            }
            Ok(false) => {
                if *leading.borrow() {
                    warn!(lease = %cfg.name, "lost the lease to another replica");
                }
                last_renewed = None;
                leading.send_replace(false);
            }
            Err(e) => {
                // Keep leading only while the renew deadline allows.
                let expired =
                    last_renewed.is_none_or(|t| now.duration_since(t) > cfg.renew_deadline);
                if *leading.borrow() && expired {
                    warn!(lease = %cfg.name, error = %e, "could not renew the lease in time; stepping down");
                    leading.send_replace(false);
                    last_renewed = None;
                }
            }
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
    now: Instant,
) -> Result<bool, kube::Error> {
    let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let Some(current) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };

    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            changed_at: now,
            renew_time: spec.renew_time.clone(),
        });
    }
    let seen = observed.as_ref().map(|o| o.changed_at).unwrap_or(now);
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(cfg.duration);
    let ours = holder.as_deref() == Some(cfg.identity.as_str());
    let expired = now.duration_since(seen) > duration;
    if !ours && holder.is_some() && !expired {
        return Ok(false);
    }

    let mut next = current.clone();
    let mut new_spec = spec.clone();
    if !ours {
        new_spec.acquire_time = Some(stamp.clone());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.holder_identity = Some(cfg.identity.clone());
    new_spec.lease_duration_seconds = Some(cfg.duration.as_secs() as i32);
    new_spec.renew_time = Some(stamp);
    next.spec = Some(new_spec);
    // `replace` carries the resourceVersion read above: a concurrent writer makes it fail
    // with 409, and exactly one replica wins.
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(updated) => {
            *observed = Some(Observed {
                holder: Some(cfg.identity.clone()),
                changed_at: now,
                renew_time: updated.spec.and_then(|s| s.renew_time),
            });
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
