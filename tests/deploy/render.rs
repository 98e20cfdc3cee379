//! Renders `deploy/` with `kubectl kustomize` and splits the output into JSON objects.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl`, or `None` after saying the test is skipped.
pub fn kubectl(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "kubectl".into());
    match Command::new(&path).args(["version", "--client"]).output() {
        Ok(out) if out.status.success() => Some(path),
        _ => {
            eprintln!("SKIPPED {test}: kubectl not found (set KUBECTL or install kubectl)");
            None
        }
    }
}

/// Every object `kubectl kustomize DIR` prints.
pub fn kustomize(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The base as shipped.
pub fn base(kubectl: &Path) -> Vec<Value> {
    kustomize(kubectl, &repo().join("deploy"))
}

/// The one object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered kustomization"))
}
