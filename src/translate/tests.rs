//! Table tests of [`translate`](super::translate) on whole pods: quantities, requests, ids,
//! grace periods, hostile values and the edge cases around them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use slurm_client::{Exclusivity, TimeLimit};

use super::*;

const P: &str = "sunk.coreweave.com/";

/// Resource or annotation name and value pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn container(requests: &[(&str, &str)]) -> Container {
    let list = requests
        .iter()
        .map(|(k, v)| (k.to_string(), KubeQuantity(v.to_string())));
    Container {
        name: "main".into(),
        resources: Some(ResourceRequirements {
            requests: Some(list.collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A schedulable pod: 1 CPU, 1Gi, grace 3 s, in `default`, with these annotations
/// (names without the prefix).
fn mk_pod(annotations: &[(&str, &str)]) -> Pod {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("{P}{k}"), v.to_string()))
        .collect();
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("sandbox".into()),
            namespace: Some("default".into()),
            uid: Some("7c3e-11".into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some(DEFAULT_SCHEDULER_NAME.into()),
            termination_grace_period_seconds: Some(3),
            containers: vec![container(&[("cpu", "1"), ("memory", "1Gi")])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_requests(mut pod: Pod, requests: &[(&str, &str)]) -> Pod {
    pod.spec.as_mut().unwrap().containers = vec![container(requests)];
    pod
}

fn job(pod: &Pod, ctx: &TranslateContext) -> PlaceholderJob {
    let t = translate(pod, ctx);
    assert!(t.rejections.is_empty(), "{:#?}", t.rejections);
    t.job.unwrap()
}

#[test]
fn a_plain_pod_becomes_a_job() {
    let got = job(&mk_pod(&[]), &TranslateContext::default());
    let want = PlaceholderJob {
        name: "default/sandbox".into(),
        comment: "slurm-pod-scheduler/v1 scheduler=slurm-pod-scheduler uid=7c3e-11".into(),
        cpus_per_task: 1,
        memory_per_node_mb: 1024,
        gres: None,
        partition: None,
        constraint: None,
        account: None,
        qos: None,
        user_id: None,
        group_id: None,
        exclusive: None,
        time_limit: None,
        reservation: None,
        excluded_nodes: vec![],
    };
    assert_eq!(got, want);
    assert!(slurm_client::JobMarker::is_ours(
        &got.comment,
        DEFAULT_SCHEDULER_NAME
    ));
}

#[test]
fn quantities_become_cpus_and_mib() {
    // Quantities, through the whole translation.
    let table = [
        ("100m", "123Mi", 1, 123),
        ("1500m", "129M", 2, 124),
        ("0.5", "129e6", 1, 124),
        ("2", "1Ki", 2, 1),
        ("2", "1.5Gi", 2, 1536),
        ("2", "1e3", 2, 1),
    ];
    for (cpu, memory, want_cpus, want_mib) in table {
        let pod = with_requests(mk_pod(&[]), &[("cpu", cpu), ("memory", memory)]);
        let got = job(&pod, &TranslateContext::default());
        assert_eq!(
            (got.cpus_per_task, got.memory_per_node_mb),
            (want_cpus, want_mib),
            "{cpu} {memory}"
        );
    }
}

#[test]
fn init_containers_sidecars_and_overhead() {
    // Init containers and sidecars.
    let mut init = mk_pod(&[]);
    init.spec.as_mut().unwrap().init_containers = Some(vec![container(&[("cpu", "4")])]);
    let mut sidecar = mk_pod(&[]);
    let mut side = container(&[("cpu", "1")]);
    side.restart_policy = Some("Always".into());
    sidecar.spec.as_mut().unwrap().init_containers = Some(vec![side]);
    let mut overhead = mk_pod(&[]);
    overhead.spec.as_mut().unwrap().overhead = Some(
        [("cpu", "250m"), ("memory", "64Mi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), KubeQuantity(v.to_string())))
            .collect(),
    );
    let table = [
        ("init", init, 1 + 3, 1024),
        ("sidecar", sidecar, 2, 1024),
        ("overhead", overhead, 2, 1088),
    ];
    for (case, pod, cpus, mib) in table {
        let got = job(&pod, &TranslateContext::default());
        assert_eq!(
            (got.cpus_per_task, got.memory_per_node_mb),
            (cpus, mib),
            "{case}"
        );
    }
}

#[test]
fn missing_or_zero_requests_are_rejected() {
    // A missing request.
    let table: [(Pairs, &[&str]); 5] = [
        (
            &[("cpu", "1")],
            &["requests no memory", "resources.requests.memory"],
        ),
        (
            &[("memory", "1Gi")],
            &["requests no CPU", "resources.requests.cpu"],
        ),
        (
            &[("cpu", "0"), ("memory", "1Gi")],
            &["CPU request adds up to zero"],
        ),
        (
            &[("cpu", "1"), ("memory", "0Mi")],
            &["memory request adds up to zero"],
        ),
        (&[], &["requests no CPU", "requests no memory"]),
    ];
    for (requests, parts) in table {
        let t = translate(
            &with_requests(mk_pod(&[]), requests),
            &TranslateContext::default(),
        );
        assert!(t.job.is_none());
        let all: String = t.rejections.iter().map(|r| r.message.clone()).collect();
        for r in &t.rejections {
            assert_eq!(
                (r.reason, r.cause),
                (Reason::InvalidPod, Cause::MissingRequest)
            );
            assert!(r.message.starts_with(rejection::CPU_AND_MEMORY_REQUIRED));
        }
        for part in parts {
            assert!(all.contains(part), "{part:?} not in {all}");
        }
    }
}

#[test]
fn overhead_alone_is_not_a_request() {
    let mut pod = with_requests(mk_pod(&[]), &[("memory", "1Gi")]);
    pod.spec.as_mut().unwrap().overhead = Some(
        [("cpu".to_string(), KubeQuantity("250m".into()))]
            .into_iter()
            .collect(),
    );
    let t = translate(&pod, &TranslateContext::default());
    assert_eq!(t.rejections.len(), 1);
    assert_eq!(t.rejections[0].cause, Cause::MissingRequest);
}

#[test]
fn username_as_uid_is_rejected() {
    // A user name as user-id.
    let t = translate(
        &mk_pod(&[("user-id", "alice")]),
        &TranslateContext::default(),
    );
    assert!(t.job.is_none());
    assert_eq!(t.rejections.len(), 1);
    let r = &t.rejections[0];
    assert_eq!((r.reason, r.cause), (Reason::InvalidPod, Cause::NameAsId));
    assert!(r.message.contains("sunk.coreweave.com/user-id"));
    assert!(r.message.contains("numeric UID is required") && r.message.contains("id -u alice"));
}

#[test]
fn grace_period_must_fit_inside_kill_wait() {
    // The default grace period and the boundary around it.
    let secs = std::time::Duration::from_secs;
    let table = [
        (None, 30, 5, false),
        (Some(30), 30, 5, false),
        (Some(25), 30, 5, false),
        (Some(24), 30, 5, true),
        (Some(0), 30, 5, true),
        (Some(3), 10, 5, true),
        (Some(5), 10, 5, false),
        (Some(4), 10, 5, true),
        (None, 60, 5, true),
        (Some(0), 5, 5, false),
    ];
    for (grace, kill_wait, offset, ok) in table {
        let mut pod = mk_pod(&[]);
        pod.spec.as_mut().unwrap().termination_grace_period_seconds = grace;
        let ctx = TranslateContext {
            kill_wait: secs(kill_wait),
            termination_offset: secs(offset),
            ..Default::default()
        };
        let t = translate(&pod, &ctx);
        assert_eq!(
            t.is_schedulable(),
            ok,
            "grace {grace:?} killwait {kill_wait} offset {offset}"
        );
        if !ok {
            assert_eq!(t.rejections[0].cause, Cause::GracePeriodTooLong);
        }
    }

    let mut pod = mk_pod(&[]);
    pod.spec.as_mut().unwrap().termination_grace_period_seconds = None;
    let t = translate(&pod, &TranslateContext::default());
    let message = &t.rejections[0].message;
    assert!(message.starts_with(rejection::GRACE_PERIOD_TOO_LONG));
    for part in [
        "is 30 s",
        "below 25 s",
        "terminationGracePeriodSeconds to 24 or less",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[test]
fn hostile_annotation_values_never_reach_the_job() {
    // Hostile values: refused, or passed verbatim where Slurm accepts them.
    let long = "p".repeat(10_000);
    let table: Vec<(&str, &str, Option<&str>)> = vec![
        ("partition", "batch\nAccount=root", None),
        ("account", "research\"}, \"script\": \"reboot", None),
        ("qos", "$(reboot)", None),
        ("constraint", "intel&`reboot`", None),
        ("reservation", &long, None),
        ("time-limit", "1:00\r", None),
        ("constraint", "intel&(ib|roce)", Some("intel&(ib|roce)")),
        ("partition", "batch,hpc-prod", Some("batch,hpc-prod")),
    ];
    for (name, value, passed) in table {
        let t = translate(&mk_pod(&[(name, value)]), &TranslateContext::default());
        match passed {
            Some(verbatim) => {
                let job = t.job.expect(name);
                let got = job.constraint.or(job.partition);
                assert_eq!(got.as_deref(), Some(verbatim));
            }
            None => {
                assert!(t.job.is_none(), "{name}={value:?} was accepted");
                let r = &t.rejections[0];
                assert_eq!(r.cause, Cause::InvalidAnnotation);
                assert!(r.message.contains(&format!("{P}{name}")));
                assert!(!r.message.contains('\n') && !r.message.contains('\r'));
                assert!(r.message.len() < 600);
            }
        }
    }
}

#[test]
fn every_annotation_reaches_the_job() {
    let pod = mk_pod(&[
        ("partition", "hpc-prod"),
        ("constraint", "intel"),
        ("account", "research"),
        ("qos", "high"),
        ("user-id", "7001"),
        ("exclusive", "user"),
        ("time-limit", "1:30:00"),
        ("reservation", "maint"),
    ]);
    let got = job(&pod, &TranslateContext::default());
    assert_eq!(got.partition.as_deref(), Some("hpc-prod"));
    assert_eq!(got.constraint.as_deref(), Some("intel"));
    assert_eq!(got.account.as_deref(), Some("research"));
    assert_eq!(got.qos.as_deref(), Some("high"));
    assert_eq!((got.user_id, got.group_id), (Some(7001), Some(7001)));
    assert_eq!(got.exclusive, Some(Exclusivity::User));
    assert_eq!(got.time_limit, Some(TimeLimit::Minutes(90)));
    assert_eq!(got.reservation.as_deref(), Some("maint"));

    let got = job(
        &mk_pod(&[("user-id", "7001"), ("group-id", "100")]),
        &TranslateContext::default(),
    );
    assert_eq!((got.user_id, got.group_id), (Some(7001), Some(100)));
    let got = job(
        &mk_pod(&[("group-id", "100")]),
        &TranslateContext::default(),
    );
    assert_eq!((got.user_id, got.group_id), (None, Some(100)));
}

#[test]
fn gpus_become_gres_and_whole_node_exclusivity() {
    let ctx = TranslateContext::default();
    let table: [(Pairs, Pairs, Option<&str>, Option<Exclusivity>); 6] = [
        (
            &[("nvidia.com/gpu", "2")],
            &[],
            Some("gpu:2"),
            Some(Exclusivity::None),
        ),
        (
            &[("amd.com/gpu", "1")],
            &[("exclusive", "ok")],
            Some("gpu:1"),
            Some(Exclusivity::Ok),
        ),
        (
            &[("nvidia.com/gpu", "1")],
            &[("exclusive", "user")],
            Some("gpu:1"),
            Some(Exclusivity::User),
        ),
        (
            &[("nvidia.com/gpu", "1"), ("amd.com/gpu", "1")],
            &[],
            Some("gpu:2"),
            Some(Exclusivity::None),
        ),
        (&[("nvidia.com/gpu", "0")], &[], None, None),
        (&[("example.com/fpga", "1")], &[], None, None),
    ];
    for (devices, annotations, gres, exclusive) in table {
        let mut requests = vec![("cpu", "1"), ("memory", "1Gi")];
        requests.extend_from_slice(devices);
        let got = job(&with_requests(mk_pod(annotations), &requests), &ctx);
        assert_eq!(
            (got.gres.as_deref(), got.exclusive),
            (gres, exclusive),
            "{devices:?}"
        );
    }

    let ctx = TranslateContext {
        device_map: [("example.com/fpga".to_string(), "fpga".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let pod = with_requests(
        mk_pod(&[]),
        &[("cpu", "1"), ("memory", "1Gi"), ("example.com/fpga", "3")],
    );
    assert_eq!(job(&pod, &ctx).gres.as_deref(), Some("fpga:3"));

    let pod = with_requests(
        mk_pod(&[]),
        &[("cpu", "1"), ("memory", "1Gi"), ("nvidia.com/gpu", "500m")],
    );
    let t = translate(&pod, &TranslateContext::default());
    assert_eq!(t.rejections[0].cause, Cause::FractionalDevices);
}

#[test]
fn namespace_policy_pins_and_restricts() {
    let mut research = NamespacePolicy {
        allowed_uids: Some(IdRanges::parse(&["7000-7999"]).unwrap()),
        ..Default::default()
    };
    research
        .pinned
        .insert(AnnotationKey::Account, "research".into());
    research
        .pinned
        .insert(AnnotationKey::Partition, "batch".into());
    let ops = NamespacePolicy {
        allow_root: true,
        ..Default::default()
    };
    let mut policies = Policies::default();
    policies.namespaces.insert("default".into(), research);
    policies.namespaces.insert("ops".into(), ops);
    let ctx = TranslateContext {
        policies,
        ..Default::default()
    };

    let in_ns = |ns: &str, annotations: &[(&str, &str)]| {
        let mut pod = mk_pod(annotations);
        pod.metadata.namespace = Some(ns.into());
        translate(&pod, &ctx)
    };
    let causes = |t: &Translation| t.rejections.iter().map(|r| r.cause).collect::<Vec<_>>();

    let t = in_ns("default", &[]);
    let job = t.job.unwrap();
    assert_eq!(
        (job.account.as_deref(), job.partition.as_deref()),
        (Some("research"), Some("batch"))
    );
    assert!(in_ns("default", &[("account", "research")]).is_schedulable());

    let t = in_ns(
        "default",
        &[("account", "ops\"; reboot"), ("partition", "gpu")],
    );
    assert_eq!(
        causes(&t),
        vec![Cause::PinnedAnnotation, Cause::PinnedAnnotation]
    );
    assert!(t
        .rejections
        .iter()
        .all(|r| r.reason == Reason::AnnotationConflict));
    assert!(t.rejections[1]
        .message
        .contains("pinned it to \"research\" in namespace default"));

    assert!(in_ns("default", &[("user-id", "7001")]).is_schedulable());
    let t = in_ns("default", &[("user-id", "8001")]);
    assert_eq!(causes(&t), vec![Cause::IdNotAllowed]);
    assert!(t.rejections[0].message.contains("allowed: 7000-7999"));
    assert_eq!(
        causes(&in_ns("default", &[("user-id", "0")])),
        vec![Cause::IdNotAllowed]
    );
    assert_eq!(
        causes(&in_ns("elsewhere", &[("user-id", "0")])),
        vec![Cause::IdNotAllowed]
    );
    assert_eq!(
        causes(&in_ns("elsewhere", &[("group-id", "0")])),
        vec![Cause::IdNotAllowed]
    );
    assert!(in_ns("ops", &[("user-id", "0")]).is_schedulable());
    assert!(in_ns("elsewhere", &[("user-id", "8001")]).is_schedulable());
}

#[test]
fn a_group_defaulted_from_the_user_obeys_the_gid_policy() {
    let policy = NamespacePolicy {
        allowed_gids: Some(IdRanges::parse(&["100"]).unwrap()),
        ..Default::default()
    };
    let mut policies = Policies::default();
    policies.namespaces.insert("default".into(), policy);
    let ctx = TranslateContext {
        policies,
        ..Default::default()
    };

    let t = translate(&mk_pod(&[("user-id", "7001")]), &ctx);
    assert_eq!(t.rejections.len(), 1, "{:#?}", t.rejections);
    assert_eq!(t.rejections[0].cause, Cause::IdNotAllowed);
    assert!(t.rejections[0]
        .message
        .contains("group-id (defaulted from user-id) is 7001"));

    let job = job(&mk_pod(&[("user-id", "7001"), ("group-id", "100")]), &ctx);
    assert_eq!((job.user_id, job.group_id), (Some(7001), Some(100)));
}

#[test]
fn all_rejections_are_reported_at_once() {
    let mut pod = with_requests(
        mk_pod(&[("user-id", "alice"), ("exclusive", "yes")]),
        &[("cpu", "1")],
    );
    pod.spec.as_mut().unwrap().termination_grace_period_seconds = None;
    let t = translate(&pod, &TranslateContext::default());
    let causes: Vec<_> = t.rejections.iter().map(|r| r.cause).collect();
    assert_eq!(
        causes,
        vec![
            Cause::NameAsId,
            Cause::InvalidAnnotation,
            Cause::MissingRequest,
            Cause::GracePeriodTooLong
        ]
    );
}

#[test]
fn too_many_cpus_are_refused() {
    let pod = with_requests(mk_pod(&[]), &[("cpu", "70k"), ("memory", "1Gi")]);
    let t = translate(&pod, &TranslateContext::default());
    assert_eq!(t.rejections[0].cause, Cause::RequestTooLarge);
    assert!(t.rejections[0].message.contains("70000 CPUs"));
}

#[test]
fn unknown_keys_warn_but_schedule() {
    let t = translate(
        &mk_pod(&[("partiton", "gpu")]),
        &TranslateContext::default(),
    );
    assert!(t.is_schedulable());
    assert_eq!(t.warnings.len(), 1);
    assert!(t.warnings[0]
        .message
        .contains("did you mean sunk.coreweave.com/partition?"));
}

#[test]
fn another_prefix_is_honoured() {
    let mut pod = mk_pod(&[]);
    pod.metadata.annotations = Some(
        [("example.org/partition".to_string(), "gpu".to_string())]
            .into_iter()
            .collect(),
    );
    let ctx = TranslateContext {
        annotation_prefix: "example.org/".into(),
        ..Default::default()
    };
    assert_eq!(job(&pod, &ctx).partition.as_deref(), Some("gpu"));
    assert_eq!(job(&pod, &TranslateContext::default()).partition, None);
}

#[test]
fn fingerprint_follows_placement_inputs_only() {
    let base = mk_pod(&[("partition", "batch")]);
    let same = placement_fingerprint(&base, P);
    assert_eq!(placement_fingerprint(&base.clone(), P), same);

    let mut status_only = base.clone();
    status_only.status = Some(Default::default());
    status_only.metadata.labels = Some([("a".to_string(), "b".to_string())].into_iter().collect());
    assert_eq!(placement_fingerprint(&status_only, P), same);

    // The job id the scheduler writes at binding is not a placement input.
    let bound = mk_pod(&[("partition", "batch"), ("job-id", "42")]);
    assert_eq!(placement_fingerprint(&bound, P), same);

    let changed = [
        mk_pod(&[("partition", "gpu")]),
        with_requests(base.clone(), &[("cpu", "2"), ("memory", "1Gi")]),
        {
            let mut p = base.clone();
            p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(4);
            p
        },
    ];
    for pod in changed {
        assert_ne!(placement_fingerprint(&pod, P), same);
    }
}

#[test]
fn a_bad_quantity_does_not_hide_a_missing_request() {
    let pod = with_requests(mk_pod(&[]), &[("cpu", "2 cores")]);
    let t = translate(&pod, &TranslateContext::default());
    let causes: Vec<_> = t.rejections.iter().map(|r| r.cause).collect();
    assert_eq!(causes, vec![Cause::InvalidQuantity, Cause::MissingRequest]);
    assert!(t.rejections[1].message.contains("requests no memory"));
    assert!(t.job.is_none());
}
