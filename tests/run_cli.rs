//! `slurm-pod-scheduler run` refuses bad configuration at start-up with the key named.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .arg("run")
        .args(args)
        .env_remove("SLURM_JWT")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("running the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let empty = std::env::temp_dir().join(format!("sps-empty-token-{}", std::process::id()));
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap().to_string();
    let token = std::env::temp_dir().join(format!("sps-good-token-{}", std::process::id()));
    std::fs::write(&token, "a.b.c\n").unwrap();
    let token = token.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "slurm-url"),
        (vec!["--slurm-url", "ftp://x"], "slurm-url"),
        (
            vec!["--slurm-url", "http://127.0.0.1:1"],
            "slurm-token-file",
        ),
        (
            vec![
                "--slurm-url",
                "http://127.0.0.1:1",
                "--slurm-token-file",
                "/nonexistent/t",
            ],
            "slurm-token-file",
        ),
        (
            vec![
                "--slurm-url",
                "http://127.0.0.1:1",
                "--slurm-token-file",
                &empty,
            ],
            "slurm-token-file",
        ),
        (
            vec![
                "--slurm-url",
                "http://127.0.0.1:1",
                "--slurm-token-file",
                &token,
                "--node-mapping",
                "nope",
            ],
            "node-mapping",
        ),
        (
            vec![
                "--slurm-url",
                "http://127.0.0.1:1",
                "--slurm-token-file",
                &token,
                "--poll-interval",
                "1ms",
            ],
            "poll-interval",
        ),
    ];
    for (args, key) in cases {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?} should name {key}: {stderr}");
    }
    let _ = std::fs::remove_file(&empty);
    let _ = std::fs::remove_file(&token);
}

#[test]
fn a_taken_listen_address_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let token = std::env::temp_dir().join(format!("sps-token-{}", std::process::id()));
    std::fs::write(&token, "a.b.c").unwrap();
    // A kubeconfig that parses; nothing is contacted before listening.
    let kc = std::env::temp_dir().join(format!("sps-kc-{}", std::process::id()));
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
         current-context: x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .args([
            "run",
            "--slurm-url",
            "http://127.0.0.1:1",
            "--listen",
            &addr,
        ])
        .arg("--slurm-token-file")
        .arg(&token)
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("--listen"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&token);
    let _ = std::fs::remove_file(&kc);
}
