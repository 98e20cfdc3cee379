//! kubectl against kubesim: `create -f`, `get` (tables), `get -w`, `create --raw` for a
//! binding, `describe pod` with its events, and `delete` (graceful, forced, and waiting
//! for an immediate one). Every test skips with a message when kubectl is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// kubectl's location, if installed.
fn kubectl() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin/kubectl")])
        .find(|p| p.is_file())
}

/// A kubesim with a kubeconfig file and a private kubectl cache.
struct Cluster {
    server: kubesim::ServerHandle,
    dir: PathBuf,
    kubectl: PathBuf,
}

impl Cluster {
    async fn start(test: &str) -> Option<Cluster> {
        let Some(kubectl) = kubectl() else {
            eprintln!("skipped: kubectl is not installed (needed by this test)");
            return None;
        };
        let server = kubesim::Server::start(kubesim::Config::default())
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("kubesim-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        server.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Some(Cluster {
            server,
            dir,
            kubectl,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Run kubectl to completion; panics with its output when it fails.
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    async fn finish(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  schedulerName: slurm-pod-scheduler
  containers:
  - name: main
    image: registry.k8s.io/pause:3.9
    resources:
      requests: {cpu: 500m, memory: 64Mi}
";

#[tokio::test]
async fn kubectl_creates_gets_binds_describes_and_deletes() {
    let Some(c) = Cluster::start("main").await else {
        return;
    };
    let manifest = c.write("pod.yaml", &POD.replace("NAME", "demo"));
    let out = c.run(&["create", "-f", path_str(&manifest)]).await;
    assert_eq!(out.trim(), "pod/demo created");

    let table = c.run(&["get", "pods"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("demo"), "{table}");
    assert!(table.contains("Pending"), "{table}");

    let pod: Value =
        serde_json::from_str(&c.run(&["get", "pod", "demo", "-o", "json"]).await).unwrap();
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["spec"]["schedulerName"], "slurm-pod-scheduler");

    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "demo", "annotations": {"sunk.coreweave.com/job-id": "4711"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let file = c.write("binding.json", &binding.to_string());
    let status: Value = serde_json::from_str(
        &c.run(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/demo/binding",
            "-f",
            path_str(&file),
        ])
        .await,
    )
    .unwrap();
    assert_eq!(
        (status["status"].as_str(), status["code"].as_u64()),
        (Some("Success"), Some(201))
    );
    let wide = c.run(&["get", "pod", "demo", "-o", "wide"]).await;
    assert!(wide.contains("node-1"), "{wide}");

    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "demo.scheduled"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "slurm-pod-scheduler", "reportingInstance": "r0", "action": "Binding",
        "reason": "Scheduled", "type": "Normal", "note": "Bound to node-1 (Slurm job 4711)",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "demo", "uid": uid}});
    let file = c.write("event.json", &event.to_string());
    c.run(&[
        "create",
        "--raw",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "-f",
        path_str(&file),
    ])
    .await;
    let described = c.run(&["describe", "pod", "demo"]).await;
    assert!(described.contains("Node:         node-1"), "{described}");
    assert!(
        described.contains("sunk.coreweave.com/job-id: 4711"),
        "{described}"
    );
    let events = described
        .split("Events:")
        .nth(1)
        .expect("an Events section");
    assert!(
        events.contains("Scheduled") && events.contains("Bound to node-1 (Slurm job 4711)"),
        "{described}"
    );

    // Bound: a graceful delete leaves it Terminating until a forced one.
    assert_eq!(
        c.run(&["delete", "pod", "demo", "--wait=false"])
            .await
            .trim(),
        "pod \"demo\" deleted"
    );
    assert!(c.run(&["get", "pod", "demo"]).await.contains("Terminating"));
    c.run(&["delete", "pod", "demo", "--grace-period=0", "--force"])
        .await;
    let after = c.command(&["get", "pod", "demo"]).output().await.unwrap();
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("pods \"demo\" not found"));

    // Unbound: kubectl waits for the deletion it watches for, and it comes at once.
    let manifest = c.write("pod2.yaml", &POD.replace("NAME", "unbound"));
    c.run(&["create", "-f", path_str(&manifest)]).await;
    assert_eq!(
        c.run(&["delete", "pod", "unbound"]).await.trim(),
        "pod \"unbound\" deleted"
    );
    c.finish().await;
}

#[tokio::test]
async fn kubectl_get_watch_prints_changes_as_they_happen() {
    let Some(c) = Cluster::start("watch").await else {
        return;
    };
    let manifest = c.write("first.yaml", &POD.replace("NAME", "first"));
    c.run(&["create", "-f", path_str(&manifest)]).await;
    let mut watch = c
        .command(&["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = watch.stdout.take().unwrap();

    // Wait until the initial table is out, then change things.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.contains("first") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "kubectl get -w ended early");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("initial rows printed");
    let manifest = c.write("second.yaml", &POD.replace("NAME", "second"));
    c.run(&["create", "-f", path_str(&manifest)]).await;
    c.run(&["delete", "pod", "first", "--wait=false"]).await;

    tokio::time::timeout(Duration::from_secs(30), async {
        while !(seen.contains("second")
            && seen.lines().filter(|l| l.starts_with("first")).count() >= 2)
        {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "kubectl get -w ended early:\n{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("changes not printed:\n{seen}"));
    watch.kill().await.unwrap();
    assert!(seen.lines().next().unwrap().starts_with("NAME"), "{seen}");
    c.finish().await;
}
