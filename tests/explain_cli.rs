//! Runs the built `slurm-pod-scheduler explain` binary on the shipped examples and on bad
//! input, as a user would, and checks its output and exit status.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples")
}

/// Runs the binary with `args` and `stdin`, without inheriting any `SPS_*` variable.
fn explain(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"));
    command.arg("explain").args(args).current_dir(examples());
    for (key, _) in std::env::vars() {
        if key.starts_with("SPS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The single pod of a one-pod manifest, as JSON.
fn only_pod(file: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["-f", file, "-o", "json"];
    args.extend_from_slice(extra);
    let output = explain(&args, "", &[]);
    let json = json_of(&output);
    let pods = json["pods"].as_array().expect("pods is an array");
    assert_eq!(pods.len(), 1, "{json}");
    (output.status.code().unwrap(), pods[0].clone())
}

#[test]
fn examples_meant_to_run_are_schedulable_under_the_test_kill_wait() {
    // (file, kind, name, job fields that must hold)
    let table: Vec<(&str, &str, &str, Value)> = vec![
        (
            "sandbox-pod.yaml",
            "Pod",
            "sandbox",
            serde_json::json!({"name": "default/sandbox", "cpus_per_task": 1, "memory_per_node_mb": 256}),
        ),
        (
            "job.yaml",
            "Job",
            "preprocess",
            serde_json::json!({"cpus_per_task": 1, "memory_per_node_mb": 512}),
        ),
        (
            "deployment.yaml",
            "Deployment",
            "data-loader",
            serde_json::json!({"name": "default/data-loader", "cpus_per_task": 2, "memory_per_node_mb": 1024, "account": "research"}),
        ),
        (
            "partition-pod.yaml",
            "Pod",
            "in-hpc-prod",
            serde_json::json!({"partition": "hpc-prod"}),
        ),
        (
            "constraint-pod.yaml",
            "Pod",
            "on-intel",
            serde_json::json!({"constraint": "intel"}),
        ),
        (
            "exclusive-pod.yaml",
            "Pod",
            "whole-node",
            serde_json::json!({"exclusive": "none"}),
        ),
        (
            "user-id-pod.yaml",
            "Pod",
            "as-testuser",
            serde_json::json!({"user_id": 7001, "group_id": 7001}),
        ),
        (
            "account-qos-pod.yaml",
            "Pod",
            "accounted",
            serde_json::json!({"account": "research", "qos": "high", "time_limit_minutes": 60}),
        ),
        (
            "gpu-pod.yaml",
            "Pod",
            "gpu-notebook",
            serde_json::json!({"gres": "gpu:1", "exclusive": "none", "partition": "gpu"}),
        ),
    ];
    for (file, kind, name, fields) in table {
        for kill_wait in [&["--slurm-kill-wait", "10s"][..], &[]] {
            let (code, pod) = only_pod(file, kill_wait);
            assert_eq!(code, 0, "{file}: {pod}");
            assert_eq!(
                (pod["kind"].as_str(), pod["name"].as_str()),
                (Some(kind), Some(name))
            );
            assert_eq!(pod["namespace"], "default");
            assert_eq!(pod["schedulable"], true, "{file}: {pod}");
            assert_eq!(pod["rejections"], serde_json::json!([]));
            for (key, want) in fields.as_object().unwrap() {
                assert_eq!(&pod["job"][key], want, "{file}: job.{key} in {pod}");
            }
            let comment = pod["job"]["comment"].as_str().unwrap();
            assert!(
                comment.starts_with("slurm-pod-scheduler/v1 scheduler=slurm-pod-scheduler uid=")
            );
        }
    }
}

#[test]
fn the_job_object_has_every_field_with_nulls_for_absent_values() {
    let (_, pod) = only_pod("sandbox-pod.yaml", &[]);
    let mut keys: Vec<_> = pod["job"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    let mut want = vec![
        "name",
        "comment",
        "cpus_per_task",
        "memory_per_node_mb",
        "gres",
        "partition",
        "constraint",
        "account",
        "qos",
        "user_id",
        "group_id",
        "exclusive",
        "time_limit_minutes",
        "reservation",
    ];
    want.sort();
    assert_eq!(keys, want);
    for key in [
        "gres",
        "partition",
        "user_id",
        "exclusive",
        "time_limit_minutes",
    ] {
        assert_eq!(pod["job"][key], Value::Null, "{key}");
    }
    let mut top: Vec<_> = pod.as_object().unwrap().keys().cloned().collect();
    top.sort();
    assert_eq!(
        top,
        [
            "job",
            "kind",
            "name",
            "namespace",
            "rejections",
            "schedulable",
            "warnings"
        ]
    );
}

#[test]
fn the_default_grace_period_is_rejected_with_numbers_and_fix() {
    // The default grace period, with the default KillWait and with the test clusters' 10 s.
    let table = [
        (&[][..], "is 30 s", "below 25 s", "24 or less"),
        (
            &["--slurm-kill-wait", "10s"][..],
            "is 30 s",
            "below 5 s",
            "4 or less",
        ),
    ];
    for (flags, value, limit, fix) in table {
        let (code, pod) = only_pod("rejected-default-grace-pod.yaml", flags);
        assert_eq!(code, 2);
        assert_eq!(pod["schedulable"], false);
        assert_eq!(pod["job"], Value::Null);
        let rejection = &pod["rejections"][0];
        assert_eq!(rejection["reason"], "InvalidPod");
        let message = rejection["message"].as_str().unwrap();
        for part in [value, limit, fix, "terminationGracePeriodSeconds"] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }
}

#[test]
fn a_username_as_user_id_is_rejected_with_how_to_find_the_uid() {
    // A user name as user-id.
    let (code, pod) = only_pod("rejected-username-pod.yaml", &[]);
    assert_eq!(code, 2);
    let message = pod["rejections"][0]["message"].as_str().unwrap();
    assert!(message.contains("numeric UID is required"), "{message}");
    assert!(message.contains("id -u testuser"), "{message}");
}

#[test]
fn the_table_lists_every_pod_and_a_summary() {
    let output = explain(
        &[
            "-f",
            "sandbox-pod.yaml",
            "-f",
            "rejected-username-pod.yaml",
            "-f",
            "gpu-pod.yaml",
        ],
        "",
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("Pod default/sandbox: schedulable\n"),
        "{text}"
    );
    assert!(
        text.contains("Pod default/username-as-uid: REJECTED\n  InvalidPod: "),
        "{text}"
    );
    assert!(text.contains("  gres             gpu:1\n"), "{text}");
    assert!(
        text.ends_with("3 pods: 2 schedulable, 1 rejected, 0 not ours\n"),
        "{text}"
    );
}

const MIXED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: v1
kind: Pod
metadata:
  name: theirs
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: ours
  namespace: research
  annotations:
    sunk.coreweave.com/account: ops
    sunk.coreweave.com/partiton: gpu
spec:
  schedulerName: slurm-pod-scheduler
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: busybox
    resources:
      limits: {cpu: 1500m, memory: 129M}
"#;

#[test]
fn stdin_defaults_policy_and_pods_of_other_schedulers() {
    // Without a config: ours is schedulable (requests from limits), theirs is not ours.
    let output = explain(&["-f", "-", "-o", "json"], MIXED, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("<stdin>:2: skipped ConfigMap \"settings\""),
        "{}",
        stderr(&output)
    );
    let json = json_of(&output);
    let pods = json["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0]["name"], "theirs");
    assert_eq!(pods[0]["schedulable"], false);
    assert!(pods[0]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("default-scheduler"));
    let ours = &pods[1];
    assert_eq!(
        (
            ours["job"]["cpus_per_task"].as_u64(),
            ours["job"]["memory_per_node_mb"].as_u64()
        ),
        (Some(2), Some(124))
    );
    assert_eq!(ours["job"]["name"], "research/ours");
    assert!(ours["warnings"][0]
        .as_str()
        .unwrap()
        .contains("did you mean sunk.coreweave.com/partition?"));

    // With the example config, namespace research pins account research.
    let output = explain(
        &["-f", "-", "-o", "json", "--config", "config/scheduler.yaml"],
        MIXED,
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let json = json_of(&output);
    let rejection = &json["pods"][1]["rejections"][0];
    assert_eq!(rejection["reason"], "AnnotationConflict");
    assert!(rejection["message"]
        .as_str()
        .unwrap()
        .contains("pinned it to \"research\""));
}

#[test]
fn environment_variables_set_the_flags() {
    let output = explain(
        &["-f", "sandbox-pod.yaml", "-o", "json"],
        "",
        &[("SPS_SLURM_KILL_WAIT", "7s")],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = json_of(&output)["pods"][0]["rejections"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("below 2 s (KillWait 7 s minus offset 5 s)"),
        "{message}"
    );

    let output = explain(
        &["-f", "sandbox-pod.yaml"],
        "",
        &[("SPS_SCHEDULER_NAME", "other")],
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("not ours"));
}

#[test]
fn manifests_without_pods_are_fine() {
    let output = explain(
        &["-f", "-", "-o", "json"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        &[],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output), serde_json::json!({"pods": []}));
    let output = explain(&["-f", "-", "-o", "json"], "", &[]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn unreadable_input_exits_1_naming_file_and_line() {
    let table: [(&[&str], &str, &str); 7] = [
        (
            &["-f", "no-such-file.yaml"],
            "",
            "cannot read no-such-file.yaml",
        ),
        (
            // Endless input: refused after a bounded read, not read until memory runs out.
            &["-f", "/dev/zero"],
            "",
            "/dev/zero is larger than 64 MiB: is this a manifest?",
        ),
        (
            &["-f", "-"],
            "kind: Pod\nspec:\n  containers: [\n",
            "<stdin>:",
        ),
        (
            &["-f", "-"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: 7\n",
            "<stdin>:5: spec.containers: invalid type",
        ),
        (
            &["-f", "-"],
            "metadata: {name: x}\n",
            "<stdin>:1: this document has no kind",
        ),
        (
            &["-f", "sandbox-pod.yaml", "--config", "no-such-config.yaml"],
            "",
            "no-such-config.yaml",
        ),
        (
            &["-f", "sandbox-pod.yaml", "--slurm-kill-wait", "5s"],
            "",
            "termination-offset",
        ),
    ];
    for (args, stdin, part) in table {
        let output = explain(args, stdin, &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(
            stderr(&output).contains(part),
            "{part:?} not in {}",
            stderr(&output)
        );
    }
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let output = explain(&[], "", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--filename"));
    let output = explain(&["-f", "sandbox-pod.yaml", "-o", "yaml"], "", &[]);
    assert_eq!(output.status.code(), Some(1));
    let output = explain(&["--help"], "", &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--slurm-kill-wait",
        "SPS_SLURM_KILL_WAIT",
        "--termination-offset",
        "--config",
        "--scheduler-name",
    ] {
        assert!(help.contains(flag), "{flag} not in {help}");
    }
}

#[test]
fn json_keys_come_in_the_documented_order() {
    let output = explain(&["-f", "account-qos-pod.yaml", "-o", "json"], "", &[]);
    let text = String::from_utf8(output.stdout).unwrap();
    let order = [
        "\"pods\"",
        "\"kind\"",
        "\"namespace\"",
        "\"name\"",
        "\"schedulable\"",
        "\"job\"",
        "\"comment\"",
        "\"cpus_per_task\"",
        "\"memory_per_node_mb\"",
        "\"gres\"",
        "\"partition\"",
        "\"constraint\"",
        "\"account\"",
        "\"qos\"",
        "\"user_id\"",
        "\"group_id\"",
        "\"exclusive\"",
        "\"time_limit_minutes\"",
        "\"reservation\"",
        "\"rejections\"",
        "\"warnings\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).expect(k)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn a_directory_is_every_manifest_in_it() {
    let output = explain(
        &["-f", ".", "-o", "json"],
        "",
        &[("SPS_SLURM_KILL_WAIT", "10s")],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let json = json_of(&output);
    let verdicts: Vec<(String, bool)> = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["schedulable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(verdicts.len(), 11, "{verdicts:?}");
    let rejected: Vec<_> = verdicts
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(rejected, ["default-grace", "username-as-uid"]);
}

#[test]
fn hostile_values_are_refused_and_the_json_stays_whole() {
    // Hostile values through the binary: newline, quotes, $(...), 10 000 characters.
    let long = "x".repeat(10_000);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostile
  annotations:
    sunk.coreweave.com/partition: "batch\nhpc-prod"
    sunk.coreweave.com/account: "ops\"; scancel -u root; echo \""
    sunk.coreweave.com/qos: "$(reboot)"
    sunk.coreweave.com/reservation: "{long}"
spec:
  schedulerName: slurm-pod-scheduler
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    resources: {{requests: {{cpu: 1, memory: 1Gi}}}}
"#
    );
    let output = explain(&["-f", "-", "-o", "json"], &manifest, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let json = json_of(&output);
    let pod = &json["pods"][0];
    assert_eq!(pod["job"], Value::Null);
    let rejections = pod["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 4, "{rejections:#?}");
    for r in rejections {
        let message = r["message"].as_str().unwrap();
        assert_eq!(r["reason"], "InvalidPod");
        assert!(!message.contains('\n') && message.len() < 600, "{message}");
    }
    assert!(
        output.stdout.len() < 5_000,
        "the 10 000 characters were echoed"
    );
}

#[test]
fn request_output_prints_the_exact_submit_body_per_version() {
    let gpu = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/gpu-pod.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .args([
            "explain",
            "-f",
            gpu,
            "-o",
            "request",
            "--slurm-api-version",
            "v0.0.42",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON body");
    assert_eq!(body["job"]["name"], "default/gpu-notebook");
    assert_eq!(body["job"]["tres_per_node"], "gres/gpu:1");
    assert!(
        body["job"]["environment"].is_array(),
        "v0.0.42 takes a list"
    );

    let old = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .args([
            "explain",
            "-f",
            gpu,
            "-o",
            "request",
            "--slurm-api-version",
            "v0.0.38",
        ])
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&old.stdout).expect("one JSON body");
    assert_eq!(body["job"]["gres"], "gpu:1");
    assert!(
        body["job"]["environment"].is_object(),
        "v0.0.38 takes a map"
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .args(["explain", "-f", gpu, "-o", "request"])
        .env_remove("SPS_SLURM_API_VERSION")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("slurm-api-version"));
}
