//! The binary the container image carries (`SPS_IMAGE_BINARY`, built by
//! `deploy/check-image-binary.sh` with the Dockerfile's command): it runs, knows every
//! variable the Deployment sets, explains the examples as the test build does, and needs
//! nothing from its base image beyond glibc 2.36 (Debian bookworm).

use std::path::PathBuf;
use std::process::{Command, Output};

use super::render::{base, find, kubectl, repo};

fn binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SPS_IMAGE_BINARY") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "SKIPPED {test}: SPS_IMAGE_BINARY is unset (run deploy/check-image-binary.sh)"
            );
            None
        }
    }
}

fn run(bin: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run the binary")
}

#[test]
fn image_binary_runs_and_knows_the_deployment_variables() {
    let Some(bin) = binary("image_binary_runs_and_knows_the_deployment_variables") else {
        return;
    };
    let help = run(&bin, &["--help"]);
    assert!(help.status.success());
    let run_help = run(&bin, &["run", "--help"]);
    assert!(run_help.status.success());
    let text = String::from_utf8_lossy(&run_help.stdout);
    if let Some(kubectl) = kubectl("image_binary_runs_and_knows_the_deployment_variables") {
        let objects = base(&kubectl);
        let d = find(&objects, "Deployment", "slurm-pod-scheduler");
        for env in d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
        {
            let name = env["name"].as_str().unwrap();
            if name.starts_with("SPS_") {
                assert!(
                    text.contains(&format!("env: {name}")),
                    "run does not read {name}"
                );
            }
        }
    }
}

#[test]
fn image_binary_explains_the_examples_like_the_test_build() {
    let Some(bin) = binary("image_binary_explains_the_examples_like_the_test_build") else {
        return;
    };
    let args = [
        "explain",
        "--config",
        "deploy/examples/config/scheduler.yaml",
        "-f",
        "deploy/examples/",
        "-o",
        "json",
    ];
    let image = run(&bin, &args);
    let test_build = run(
        PathBuf::from(env!("CARGO_BIN_EXE_slurm-pod-scheduler")).as_path(),
        &args,
    );
    // Two examples are refused on purpose: exit 2.
    assert_eq!(
        image.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&image.stderr)
    );
    assert_eq!(image.status.code(), test_build.status.code());
    assert_eq!(image.stdout, test_build.stdout);
    let verdicts: serde_json::Value = serde_json::from_slice(&image.stdout).unwrap();
    assert!(verdicts["pods"].as_array().unwrap().len() >= 10);
}

#[test]
fn image_binary_needs_only_bookworm_glibc() {
    let Some(bin) = binary("image_binary_needs_only_bookworm_glibc") else {
        return;
    };
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    let allowed = [
        "linux-vdso",
        "libgcc_s.so",
        "libm.so",
        "libc.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ];
    for line in libs.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            allowed
                .iter()
                .any(|a| line.starts_with(a) || line.contains(&format!("/{a}"))),
            "needs {line}"
        );
    }
    // The newest glibc symbol version the binary asks for must exist in bookworm (2.36).
    let objdump = Command::new("objdump").arg("-T").arg(&bin).output();
    let Ok(objdump) = objdump else {
        eprintln!("objdump missing: glibc symbol versions not checked");
        return;
    };
    let symbols = String::from_utf8_lossy(&objdump.stdout);
    let newest = symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|s| {
            let v: String = s
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .expect("glibc symbols");
    assert!(
        newest <= (2, 36),
        "needs glibc {}.{}, bookworm has 2.36",
        newest.0,
        newest.1
    );
    eprintln!("newest glibc symbol version: {}.{}", newest.0, newest.1);
}

/// The Dockerfile and the Deployment agree, and the script builds what the image builds.
#[test]
fn dockerfile_matches_the_deployment_and_the_check_script() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a run stage: {stages:?}");
    assert!(
        stages[1].contains("debian:bookworm-slim"),
        "a glibc run stage: {}",
        stages[1]
    );
    let build = "cargo build --release --locked -p slurm-pod-scheduler";
    assert!(dockerfile.contains(build));
    let script = std::fs::read_to_string(repo().join("deploy/check-image-binary.sh")).unwrap();
    assert!(
        script.contains(build),
        "the check script builds another binary"
    );
    let install = "install -D -s -m 0755";
    assert!(
        dockerfile.contains(install) && script.contains(install),
        "the image and the check script install (strip) the binary alike"
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    assert_ne!(uid, "0");

    let Some(kubectl) = kubectl("dockerfile_matches_the_deployment_and_the_check_script") else {
        return;
    };
    let objects = base(&kubectl);
    let d = find(&objects, "Deployment", "slurm-pod-scheduler");
    let psc = &d["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(psc["runAsUser"].to_string(), uid);
    assert_eq!(psc["runAsGroup"].to_string(), gid);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"][0], "run",
        "the entry point is the binary; args pick the command"
    );
}
