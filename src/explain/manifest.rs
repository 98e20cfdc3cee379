//! Reading manifests: multi-document YAML (or JSON) holding Pods, workloads with a pod
//! template (Deployment, StatefulSet, ReplicaSet, DaemonSet, Job, CronJob) and `List`s of
//! them, turned into the pods the API server would create. Pure: text in, pods out.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A manifest that cannot be read, with the 1-based line where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ManifestError {
    pub line: usize,
    pub message: String,
}

/// One pod to explain: a Pod, or the pod template of a workload under the workload's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pod: Pod,
}

/// An object that holds no pod (a Service, a ConfigMap...), skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: String,
    pub name: String,
    pub line: usize,
}

/// What a manifest holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub subjects: Vec<Subject>,
    pub skipped: Vec<Skipped>,
}

/// Reads every document of `text`.
pub fn read(text: &str) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::default();
    for (first_line, document) in documents(text) {
        let value: serde_yaml::Value =
            serde_yaml::from_str(&document).map_err(located(first_line, first_line))?;
        if value.is_null() {
            continue;
        }
        // Messages about the whole object point at its first line of content.
        let content_line = document
            .lines()
            .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map_or(first_line, |offset| first_line + offset);
        let source = Source {
            text: &document,
            first_line,
        };
        read_object(&value, Some(source), content_line, &mut manifest)?;
    }
    Ok(manifest)
}

/// Splits on `---` lines, giving each document with its first line number.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (index, line) in text.lines().enumerate() {
        let separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if separator {
            documents.push((first_line, std::mem::take(&mut current)));
            // What follows the marker (`--- {kind: Pod}`) is the new document's first line.
            let rest = &line[3..];
            if rest.trim().is_empty() {
                first_line = index + 2;
            } else {
                first_line = index + 1;
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((first_line, current));
    documents
}

/// A document's text and the line of the file it starts on.
#[derive(Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    first_line: usize,
}

/// Turns a serde_yaml error about a document starting at `first_line` into one whose line
/// numbers are those of the whole file; `fallback_line` when the error has no location.
fn located(first_line: usize, fallback_line: usize) -> impl Fn(serde_yaml::Error) -> ManifestError {
    move |e| {
        let mut message = e.to_string();
        let line = match e.location() {
            Some(location) => {
                let suffix = format!(" at line {} column {}", location.line(), location.column());
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_string();
                }
                first_line - 1 + location.line()
            }
            None => fallback_line,
        };
        ManifestError {
            line,
            message: shift_lines(&message, first_line - 1),
        }
    }
}

/// Adds `offset` to every "line N" in a message ("while scanning ... at line 3 column 5").
fn shift_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Reads one object; `source` is its text when it is a whole document (for line numbers).
fn read_object(
    value: &serde_yaml::Value,
    source: Option<Source>,
    line: usize,
    manifest: &mut Manifest,
) -> Result<(), ManifestError> {
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let Some(kind) = text("kind") else {
        return Err(ManifestError {
            line,
            message: "this document has no kind: is it a Kubernetes object?".to_string(),
        });
    };
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str());
    let namespace = namespace.unwrap_or("default").to_string();
    let name = name.to_string();

    let subject = |pod: Pod| Subject {
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        pod,
    };
    let template = |t: Option<PodTemplateSpec>| -> Result<Pod, ManifestError> {
        let t = t.ok_or_else(|| ManifestError {
            line,
            message: format!("this {kind} has no pod template"),
        })?;
        Ok(Pod {
            metadata: t.metadata.unwrap_or_default(),
            spec: t.spec,
            status: None,
        })
    };

    let pod = match kind.as_str() {
        "Pod" => parse::<Pod>(value, source, line)?,
        "Deployment" => template(
            parse::<Deployment>(value, source, line)?
                .spec
                .map(|s| s.template),
        )?,
        "StatefulSet" => template(
            parse::<StatefulSet>(value, source, line)?
                .spec
                .map(|s| s.template),
        )?,
        "ReplicaSet" => template(
            parse::<ReplicaSet>(value, source, line)?
                .spec
                .and_then(|s| s.template),
        )?,
        "DaemonSet" => template(
            parse::<DaemonSet>(value, source, line)?
                .spec
                .map(|s| s.template),
        )?,
        "Job" => template(parse::<Job>(value, source, line)?.spec.map(|s| s.template))?,
        "CronJob" => {
            let cron = parse::<CronJob>(value, source, line)?;
            template(
                cron.spec
                    .and_then(|s| s.job_template.spec)
                    .map(|s| s.template),
            )?
        }
        kind if kind.ends_with("List") => {
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for item in &items {
                read_object(item, None, line, manifest)?;
            }
            return Ok(());
        }
        _ => {
            manifest.skipped.push(Skipped { kind, name, line });
            return Ok(());
        }
    };
    let mut pod = pod;
    // The pod a workload creates lives in the workload's namespace, whatever its template says.
    pod.metadata.namespace = Some(namespace.clone());
    if pod.metadata.name.is_none() {
        pod.metadata.name = Some(name.clone());
    }
    manifest.subjects.push(subject(pod));
    Ok(())
}

/// Parses an object into its type, from the document text when there is one (for exact line
/// numbers), else from the value (items of a List).
fn parse<T: DeserializeOwned>(
    value: &serde_yaml::Value,
    source: Option<Source>,
    line: usize,
) -> Result<T, ManifestError> {
    match source {
        Some(s) => serde_yaml::from_str(s.text).map_err(located(s.first_line, line)),
        None => serde_yaml::from_value(value.clone()).map_err(located(1, line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOADS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: lone, namespace: team}
spec:
  containers: [{name: c}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {a: b}}
    spec:
      containers: [{name: c}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ops}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c}]
          restartPolicy: Never
---
apiVersion: v1
kind: Service
metadata: {name: web}
---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    selector: {matchLabels: {app: db}}
    serviceName: db
    template:
      spec:
        containers: [{name: c}]
"#;

    #[test]
    fn reads_pods_and_pod_templates() {
        let manifest = read(WORKLOADS).unwrap();
        let got: Vec<_> = manifest
            .subjects
            .iter()
            .map(|s| (s.kind.as_str(), s.namespace.as_str(), s.name.as_str()))
            .collect();
        let want = vec![
            ("Pod", "team", "lone"),
            ("Deployment", "default", "web"),
            ("CronJob", "ops", "nightly"),
            ("StatefulSet", "default", "db"),
        ];
        assert_eq!(got, want);
        let web = &manifest.subjects[1].pod;
        assert_eq!(web.metadata.annotations.as_ref().unwrap()["a"], "b");
        assert_eq!(web.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            manifest.skipped,
            vec![Skipped {
                kind: "Service".into(),
                name: "web".into(),
                line: 30
            }]
        );
    }

    #[test]
    fn errors_give_the_line_in_the_whole_file() {
        let table = [
            ("kind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c}]\n---\nkind: Pod\nspec:\n  containers:\n  - image: [x]\n", 9, "invalid type"),
            ("a: [1, 2\n", 2, ""),
            ("---\n---\nkind: Pod\nspec: {containers: 3}\n", 4, "invalid type"),
            ("apiVersion: v2\nkind: Pod\nspec: {containers: []}\n", 1, "v2"),
            ("metadata: {name: x}\n", 1, "no kind"),
            ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n", 1, "no pod template"),
        ];
        for (text, line, part) in table {
            let err = read(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(part), "{text:?}: {err}");
        }
    }

    #[test]
    fn every_line_number_in_a_message_is_shifted() {
        let table = [
            (
                "found x at line 3 column 5, while scanning at line 2 column 1",
                10,
                "found x at line 13 column 5, while scanning at line 12 column 1",
            ),
            ("no line here", 10, "no line here"),
            ("line", 1, "line"),
        ];
        for (message, offset, want) in table {
            assert_eq!(shift_lines(message, offset), want);
        }
    }

    #[test]
    fn json_is_yaml_too() {
        let text = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c"}]}}"#;
        assert_eq!(read(text).unwrap().subjects[0].name, "j");
    }
}
