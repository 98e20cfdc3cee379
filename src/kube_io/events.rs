//! Events on pods (events.k8s.io/v1), so `kubectl describe pod` tells the user why.
//!
//! The same reason and message for the same pod within [`REPEAT_WINDOW`] is sent once:
//! a pod waiting for hours must not produce an event per poll.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;

use super::writer::{PodRef, MANAGER};

const REPEAT_WINDOW: Duration = Duration::from_secs(600);
/// events.k8s.io caps `note` at 1 kB.
const NOTE_LIMIT: usize = 1024;

pub struct EventPublisher {
    client: Client,
    instance: String,
    recent: Mutex<HashMap<(String, &'static str, String), Instant>>,
}

impl EventPublisher {
    pub fn new(client: Client, instance: String) -> Self {
        Self {
            client,
            instance,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Publish unless the same event went out recently. Failures are returned for the
    /// caller to log and count; an event is never worth a retry loop.
    pub async fn publish(
        &self,
        pod: &PodRef,
        warning: bool,
        reason: &'static str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let key = (pod.uid.clone(), reason, note.to_string());
        {
            let now = Instant::now();
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < REPEAT_WINDOW)
            {
                return Ok(());
            }
            if recent.len() > 10_000 {
                recent.retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
            }
            recent.insert(key, now);
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(truncate(note, NOTE_LIMIT)),
            reporting_controller: Some(MANAGER.into()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        api.create(&PostParams::default(), &event).await.map(drop)
    }
}

fn truncate(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_keeps_utf8_whole() {
        assert_eq!(super::truncate("abc", 10), "abc");
        let long = "é".repeat(600);
        let t = super::truncate(&long, 1024);
        assert!(t.len() <= 1024 && t.ends_with("..."));
    }
}
