//! The defaults the API server applies to a pod before any scheduler sees it, applied to
//! pods read from manifests so that `explain` decides exactly as the running scheduler will.

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};

use crate::translate::DEFAULT_GRACE_PERIOD_SECONDS;

/// The scheduler of pods that name none.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Fills what the API server fills: requests from limits (per container and at pod level),
/// the 30 s grace period, the default scheduler name.
pub fn apply(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        if let Some(resources) = container.resources.as_mut() {
            requests_from_limits(resources);
        }
    }
    if let Some(resources) = spec.resources.as_mut() {
        requests_from_limits(resources);
    }
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    spec.scheduler_name
        .get_or_insert_with(|| DEFAULT_SCHEDULER.to_string());
}

/// A limit without a request becomes the request too.
fn requests_from_limits(resources: &mut ResourceRequirements) {
    let Some(limits) = &resources.limits else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(Default::default);
    for (name, value) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    }

    #[test]
    fn limits_fill_missing_requests_only() {
        let table = [
            (
                list(&[("cpu", "2"), ("memory", "1Gi")]),
                None,
                list(&[("cpu", "2"), ("memory", "1Gi")]),
            ),
            (
                list(&[("cpu", "2"), ("memory", "1Gi")]),
                list(&[("cpu", "1")]),
                list(&[("cpu", "1"), ("memory", "1Gi")]),
            ),
            (None, list(&[("cpu", "1")]), list(&[("cpu", "1")])),
        ];
        for (limits, requests, want) in table {
            let container = Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    limits,
                    requests,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut pod = Pod {
                spec: Some(PodSpec {
                    containers: vec![container.clone()],
                    init_containers: Some(vec![container]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            apply(&mut pod);
            let spec = pod.spec.unwrap();
            assert_eq!(
                spec.containers[0].resources.as_ref().unwrap().requests,
                want
            );
            assert_eq!(
                spec.init_containers.unwrap()[0]
                    .resources
                    .as_ref()
                    .unwrap()
                    .requests,
                want
            );
        }
    }

    #[test]
    fn grace_period_and_scheduler_name_are_defaulted_when_unset() {
        let mut pod = Pod {
            spec: Some(Default::default()),
            ..Default::default()
        };
        apply(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));

        let mut pod = Pod {
            spec: Some(PodSpec {
                termination_grace_period_seconds: Some(3),
                scheduler_name: Some("slurm-pod-scheduler".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        apply(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(3));
        assert_eq!(spec.scheduler_name.as_deref(), Some("slurm-pod-scheduler"));
    }
}
