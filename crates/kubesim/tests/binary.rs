//! The `kubesim` binary: it listens where asked, writes a kubeconfig that kube-rs
//! accepts, and serves through it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn the_binary_writes_a_working_kubeconfig() {
    let dir = std::env::temp_dir().join(format!("kubesim-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let written = tokio::time::timeout(Duration::from_secs(30), async {
        while !kubeconfig.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(written.is_ok(), "kubeconfig written");

    let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let server = &config.clusters[0].cluster.as_ref().unwrap().server;
    assert!(
        server.as_deref().unwrap().starts_with("http://127.0.0.1:"),
        "{server:?}"
    );
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
