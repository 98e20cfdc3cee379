//! A pod's effective requests, computed as the Kubernetes scheduler does: app containers
//! plus sidecars (restartable init containers), or the largest ordinary init container plus
//! the sidecars started before it, whichever is larger; pod-level `spec.resources` replaces
//! that for CPU and memory; `spec.overhead` is added. Only requests count, never limits.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;

use super::quantity::Quantity;
use super::rejection::{self, Rejection};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";

/// One resource's effective request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// What the containers (or the pod-level resources) ask for, overhead excluded.
    pub requested: Quantity,
    /// Whether any container or the pod-level resources name the resource at all.
    pub named: bool,
    /// `spec.overhead` for the resource.
    pub overhead: Quantity,
    /// Whether some entry for the resource could not be read (already reported), so the
    /// sum is not to be judged.
    pub invalid: bool,
}

impl Request {
    pub fn total(&self) -> Quantity {
        self.requested.saturating_add(self.overhead)
    }
}

/// The effective requests the Slurm job must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveRequests {
    pub cpu: Request,
    pub memory: Request,
    /// Device (extended) resources by Kubernetes name, e.g. `nvidia.com/gpu`; only those
    /// asked for, containers only.
    pub devices: BTreeMap<String, Quantity>,
}

/// Computes the effective requests of `spec` for CPU, memory and the named device resources.
/// Every malformed or negative quantity is reported, with its field path, and counts as
/// absent in the sums (which are then marked `invalid`).
pub fn effective_requests<'a>(
    spec: &PodSpec,
    device_resources: impl IntoIterator<Item = &'a str>,
) -> (EffectiveRequests, Vec<Rejection>) {
    let mut problems = Problems::default();
    let mut wanted: Vec<&str> = vec![CPU, MEMORY];
    wanted.extend(device_resources);

    let app: Vec<_> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            container_requests(c, &format!("spec.containers[{i}]"), &wanted, &mut problems)
        })
        .collect();
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("spec.initContainers[{i}]");
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            (
                sidecar,
                container_requests(c, &path, &wanted, &mut problems),
            )
        })
        .collect();
    let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    let pod_level = parse_list(pod_level, "spec.resources.requests", &wanted, &mut problems);
    let overhead = parse_list(
        spec.overhead.as_ref(),
        "spec.overhead",
        &wanted,
        &mut problems,
    );

    let invalid = |name: &str| problems.names.contains(name);

    let formula = |name: &str| -> (Quantity, bool) {
        let named = app
            .iter()
            .chain(init.iter().map(|(_, r)| r))
            .any(|r| r.contains_key(name));
        let get = |r: &BTreeMap<String, Quantity>| r.get(name).copied().unwrap_or_default();

        let mut sum = app
            .iter()
            .map(get)
            .fold(Quantity::ZERO, Quantity::saturating_add);
        let mut sidecars = Quantity::ZERO;
        let mut largest_init = Quantity::ZERO;
        for (sidecar, requests) in &init {
            let own = get(requests);
            let during_init = if *sidecar {
                // A sidecar keeps running next to the app containers and later init ones.
                sum = sum.saturating_add(own);
                sidecars = sidecars.saturating_add(own);
                sidecars
            } else {
                own.saturating_add(sidecars)
            };
            largest_init = largest_init.max(during_init);
        }
        (sum.max(largest_init), named)
    };

    let resource = |name: &str| -> Request {
        let (mut requested, mut named) = formula(name);
        if let Some(value) = pod_level.get(name) {
            requested = *value;
            named = true;
        }
        Request {
            requested,
            named,
            overhead: overhead.get(name).copied().unwrap_or_default(),
            invalid: invalid(name),
        }
    };

    let devices = wanted[2..]
        .iter()
        .filter_map(|name| {
            let (value, named) = formula(name);
            named.then(|| (name.to_string(), value))
        })
        .collect();
    let requests = EffectiveRequests {
        cpu: resource(CPU),
        memory: resource(MEMORY),
        devices,
    };
    (requests, problems.rejections)
}

/// Entries that could not be read: what to tell the user, and which resources they name.
#[derive(Default)]
struct Problems {
    rejections: Vec<Rejection>,
    names: BTreeSet<String>,
}

impl Problems {
    fn add(&mut self, name: &str, rejection: Rejection) {
        self.rejections.push(rejection);
        self.names.insert(name.to_string());
    }
}

fn container_requests(
    container: &Container,
    path: &str,
    wanted: &[&str],
    problems: &mut Problems,
) -> BTreeMap<String, Quantity> {
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    parse_list(
        requests,
        &format!("{path}.resources.requests"),
        wanted,
        problems,
    )
}

/// Parses the wanted entries of a resource list; other entries are not ours to judge.
fn parse_list(
    list: Option<&BTreeMap<String, KubeQuantity>>,
    path: &str,
    wanted: &[&str],
    problems: &mut Problems,
) -> BTreeMap<String, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, value) in list.into_iter().flatten() {
        if !wanted.contains(&name.as_str()) {
            continue;
        }
        let field = format!("{path}.{name}");
        match Quantity::parse(&value.0) {
            Ok(q) if q.is_negative() => {
                problems.add(name, rejection::negative_quantity(&field, &value.0))
            }
            Ok(q) => {
                parsed.insert(name.clone(), q);
            }
            Err(e) => problems.add(name, rejection::invalid_quantity(&field, &e.to_string())),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    /// A container with `requests` given as `name=value` pairs.
    pub(crate) fn mk_container(requests: &[(&str, &str)], sidecar: bool) -> Container {
        let list = requests
            .iter()
            .map(|(k, v)| (k.to_string(), KubeQuantity(v.to_string())));
        Container {
            name: "c".into(),
            restart_policy: sidecar.then(|| "Always".to_string()),
            resources: Some(ResourceRequirements {
                requests: Some(list.collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, KubeQuantity> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), KubeQuantity(v.to_string())))
            .collect()
    }

    type Case<'a> = (
        &'a str,
        Vec<Container>,
        Vec<Container>,
        Option<Vec<(&'a str, &'a str)>>,
        Option<Vec<(&'a str, &'a str)>>,
        (&'a str, &'a str),
    );

    #[test]
    fn effective_cpu_and_memory() {
        let c = mk_container;
        let table: Vec<Case> = vec![
            // (case, app containers, init containers, pod-level, overhead, (cpu, memory) total)
            (
                "one container",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![],
                None,
                None,
                ("1", "1Gi"),
            ),
            (
                "app containers add up",
                vec![
                    c(&[("cpu", "500m"), ("memory", "1Gi")], false),
                    c(&[("cpu", "700m")], false),
                ],
                vec![],
                None,
                None,
                ("1.2", "1Gi"),
            ),
            (
                // Init containers and sidecars: init container 4 CPU, app 1 CPU -> 4.
                "largest init container wins",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![c(&[("cpu", "4"), ("memory", "100Mi")], false)],
                None,
                None,
                ("4", "1Gi"),
            ),
            (
                // Init containers and sidecars: sidecar 1 CPU with app 1 CPU -> 2.
                "sidecar adds to app",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![c(&[("cpu", "1"), ("memory", "64Mi")], true)],
                None,
                None,
                ("2", "1088Mi"),
            ),
            (
                "init after a sidecar runs beside it",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![c(&[("cpu", "1")], true), c(&[("cpu", "3")], false)],
                None,
                None,
                ("4", "1Gi"),
            ),
            (
                "init before a sidecar does not",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![c(&[("cpu", "3")], false), c(&[("cpu", "1")], true)],
                None,
                None,
                ("3", "1Gi"),
            ),
            (
                // Init containers and sidecars: overhead adds.
                "overhead adds",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![],
                None,
                Some(vec![("cpu", "250m"), ("memory", "120Mi")]),
                ("1.25", "1144Mi"),
            ),
            (
                "pod-level resources replace the containers, overhead still adds",
                vec![c(&[("cpu", "1"), ("memory", "1Gi")], false)],
                vec![c(&[("cpu", "8")], false)],
                Some(vec![("cpu", "2")]),
                Some(vec![("cpu", "100m")]),
                ("2.1", "1Gi"),
            ),
            (
                "limits-only resources are not read here",
                vec![c(&[], false)],
                vec![],
                None,
                None,
                ("0", "0"),
            ),
        ];
        for (case, app, init, pod_level, overhead, (cpu, memory)) in table {
            let spec = PodSpec {
                containers: app,
                init_containers: Some(init),
                resources: pod_level.map(|p| ResourceRequirements {
                    requests: Some(list(&p)),
                    ..Default::default()
                }),
                overhead: overhead.map(|o| list(&o)),
                ..Default::default()
            };
            let (got, problems) = effective_requests(&spec, []);
            assert!(problems.is_empty(), "{case}");
            assert_eq!(
                got.cpu.total(),
                Quantity::parse(cpu).unwrap(),
                "cpu: {case}"
            );
            assert_eq!(
                got.memory.total(),
                Quantity::parse(memory).unwrap(),
                "memory: {case}"
            );
        }
    }

    #[test]
    fn named_tells_absent_from_zero() {
        let spec = PodSpec {
            containers: vec![mk_container(&[("cpu", "0")], false)],
            ..Default::default()
        };
        let got = effective_requests(&spec, []).0;
        assert!(got.cpu.named && got.cpu.requested.is_zero());
        assert!(!got.memory.named);
    }

    #[test]
    fn devices_come_from_containers_only() {
        let spec = PodSpec {
            containers: vec![
                mk_container(&[("cpu", "1"), ("nvidia.com/gpu", "2")], false),
                mk_container(&[("nvidia.com/gpu", "1")], false),
            ],
            init_containers: Some(vec![mk_container(&[("nvidia.com/gpu", "4")], false)]),
            overhead: Some(list(&[("nvidia.com/gpu", "1")])),
            ..Default::default()
        };
        let got = effective_requests(&spec, ["nvidia.com/gpu", "amd.com/gpu"]).0;
        let want: BTreeMap<String, Quantity> =
            [("nvidia.com/gpu".to_string(), Quantity::from_units(4))]
                .into_iter()
                .collect();
        assert_eq!(got.devices, want);
    }

    #[test]
    fn every_bad_quantity_is_reported_with_its_field() {
        let spec = PodSpec {
            containers: vec![mk_container(&[("cpu", "lots"), ("memory", "-1Gi")], false)],
            init_containers: Some(vec![mk_container(&[("memory", "1 GB")], false)]),
            overhead: Some(list(&[("cpu", "x")])),
            ..Default::default()
        };
        let (got, problems) = effective_requests(&spec, []);
        assert!(got.cpu.invalid && got.memory.invalid);
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].starts_with("spec.containers[0].resources.requests.cpu: \"lots\""));
        assert!(messages[1].starts_with("spec.containers[0].resources.requests.memory is \"-1Gi\""));
        assert!(messages[2].starts_with("spec.initContainers[0].resources.requests.memory"));
        assert!(messages[3].starts_with("spec.overhead.cpu"));
    }
}
