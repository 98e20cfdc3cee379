//! Tests of the configuration schema: durations, a full file, and errors naming the key.

use super::*;

#[test]
fn durations() {
    let ms = Duration::from_millis;
    let table = [
        ("30s", Some(ms(30_000))),
        ("500ms", Some(ms(500))),
        ("1m30s", Some(ms(90_000))),
        ("1.5s", Some(ms(1500))),
        ("2h", Some(ms(7_200_000))),
        ("0", Some(Duration::ZERO)),
        ("0s", Some(Duration::ZERO)),
        ("250us", Some(Duration::from_micros(250))),
        ("", None),
        ("30", Some(ms(30_000))),
        ("s", None),
        ("-1s", None),
        ("1.2.3s", None),
        ("10 s", None),
        ("1d", None),
        ("99999999999999999h", None),
    ];
    for (input, want) in table {
        assert_eq!(parse_duration(input).ok(), want, "{input:?}");
    }
}

const FULL: &str = r#"
scheduler-name: slurm-pod-scheduler
namespaces: [default, research]
slurm-url: http://127.0.0.1:6820
slurm-token-file: /var/run/secrets/slurm/jwt
slurm-user: root
slurm-api-version: v0.0.40
slurm-kill-wait: 10s
termination-offset: 2
poll-interval: 500ms
node-mapping: label=slurm.node
annotation-prefix: sunk.coreweave.com/
placeholder: script
leader-elect: true
lease-namespace: kube-system
kube-api-qps: 50
kube-api-burst: 100
listen: 0.0.0.0:10259
log-format: json
device-resources:
  nvidia.com/gpu: gpu
slurm-user-names:
  7001: testuser
namespace-policy:
  research:
    pinned-annotations:
      account: research
      partition: batch
    allowed-uids: [7001, "7100-7199"]
  "*":
    allow-root: false
"#;

#[test]
fn a_full_file_parses() {
    let config = FileConfig::parse(FULL, "test").unwrap();
    assert_eq!(config.slurm_kill_wait(), Some(Duration::from_secs(10)));
    assert_eq!(config.slurm_user_names.as_ref().unwrap()[&7001], "testuser");
    let policies = config.policies().unwrap();
    let research = policies.for_namespace("research").unwrap();
    assert_eq!(research.pinned[&AnnotationKey::Account], "research");
    assert_eq!(
        research.allowed_uids.as_ref().unwrap().to_string(),
        "7001, 7100-7199"
    );
    assert!(policies.for_namespace("other").is_some());

    let ctx = translate_context(&config, &TranslateOverrides::default()).unwrap();
    assert_eq!(
        (ctx.kill_wait.as_secs(), ctx.termination_offset.as_secs()),
        (10, 2)
    );
    let overrides = TranslateOverrides {
        slurm_kill_wait: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let ctx = translate_context(&config, &overrides).unwrap();
    assert_eq!(ctx.kill_wait.as_secs(), 60);
}

#[test]
fn empty_file_is_the_defaults() {
    let config = FileConfig::parse("", "empty").unwrap();
    let ctx = translate_context(&config, &TranslateOverrides::default()).unwrap();
    assert_eq!(ctx, TranslateContext::default());
}

#[test]
fn invalid_configuration_names_the_key() {
    let table = [
        ("slurm-kil-wait: 30s", "slurm-kil-wait"),
        ("slurm-kill-wait: thirty", "slurm-kill-wait"),
        ("slurm-kill-wait: -3", "slurm-kill-wait"),
        (
            "slurm-kill-wait: 5s\ntermination-offset: 5s",
            "termination-offset",
        ),
        ("annotation-prefix: sunk", "annotation-prefix"),
        ("scheduler-name: My_Scheduler", "scheduler-name"),
        ("node-mapping: hostname", "node-mapping"),
        ("placeholder: none", "placeholder"),
        ("log-format: xml", "log-format"),
        ("listen: everywhere", "listen"),
        ("slurm-api-version: 24.11", "slurm-api-version"),
        ("kube-api-qps: 0", "kube-api-qps"),
        ("poll-interval: 0s", "poll-interval"),
        ("device-resources: {gpu: gpu}", "device-resources.gpu"),
        (
            "namespace-policy: {a: {pinned-annotations: {acount: x}}}",
            "namespace-policy.a.pinned-annotations.acount",
        ),
        (
            "namespace-policy: {a: {pinned-annotations: {user-id: alice}}}",
            "namespace-policy.a.pinned-annotations.user-id",
        ),
        (
            "namespace-policy: {a: {allowed-uids: [bob]}}",
            "namespace-policy.a.allowed-uids",
        ),
        ("namespace-policy: {a: {allow-roots: true}}", "allow-roots"),
    ];
    for (text, key) in table {
        let message = FileConfig::parse(text, "test.yaml")
            .unwrap_err()
            .to_string();
        assert!(message.contains(key), "{text:?}: {message}");
    }
}

#[test]
fn overrides_are_checked_too() {
    let overrides = TranslateOverrides {
        termination_offset: Some(Duration::from_secs(40)),
        ..Default::default()
    };
    let err = translate_context(&FileConfig::default(), &overrides).unwrap_err();
    assert!(err.to_string().contains("termination-offset"), "{err}");
}
