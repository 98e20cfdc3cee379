//! Shared harness of the conformance suite: where the API server comes from (a fresh
//! in-process kubesim, or the real cluster named by `KUBESIM_REAL_KUBECONFIG`), raw
//! requests through `kube::Client`, and comparison with the kube-apiserver 1.28.7
//! recordings kept in `tests/fixtures/`.
//!
//! Recorded values that differ from run to run (uids, resourceVersions, timestamps,
//! continue tokens, managedFields) are replaced by placeholders on both sides before
//! comparing; relations between them are asserted by the tests themselves.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use http::{Method, Request};

mod mapping;
pub use mapping::Mapping;
use serde_json::{json, Value};

/// Environment variable naming a real cluster's kubeconfig.
pub const REAL_KUBECONFIG: &str = "KUBESIM_REAL_KUBECONFIG";

/// One recorded request/response pair.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub step: String,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub request_body: Value,
    pub status: u16,
    pub response_headers: Value,
    pub response_body: Value,
}

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The recorded exchange of a step.
pub fn exchange(step: &str) -> Exchange {
    static ALL: OnceLock<HashMap<String, Value>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        load("exchanges-1.28.7.jsonl")
            .into_iter()
            .map(|v| (v["step"].as_str().unwrap_or_default().to_string(), v))
            .collect()
    });
    let v = all
        .get(step)
        .unwrap_or_else(|| panic!("no recorded step {step}"));
    let header = |name: &str| v["request_headers"][name].as_str().map(str::to_string);
    Exchange {
        step: step.to_string(),
        method: v["method"].as_str().unwrap_or_default().to_string(),
        path: v["path"].as_str().unwrap_or_default().to_string(),
        content_type: header("Content-Type"),
        accept: header("Accept"),
        request_body: v["request_body"].clone(),
        status: v["status"].as_u64().unwrap_or_default() as u16,
        response_headers: v["response_headers"].clone(),
        response_body: v["response_body"].clone(),
    }
}

/// The recorded watch stream of a step.
pub fn watch_recording(step: &str) -> Value {
    load("watch-1.28.7.jsonl")
        .into_iter()
        .find(|v| v["step"] == step)
        .unwrap_or_else(|| panic!("no recorded watch {step}"))
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// The API server under test.
pub struct Env {
    pub client: kube::Client,
    /// Namespace standing for the recordings' `rec`.
    pub ns: String,
    server: Option<kubesim::ServerHandle>,
    /// Recorded run-specific values and their counterparts in this run.
    map: Mutex<Mapping>,
}

impl Env {
    /// A fresh kubesim, or the real cluster when `KUBESIM_REAL_KUBECONFIG` is set.
    pub async fn start() -> Env {
        Env::start_with(kubesim::Config::default()).await
    }

    /// Like [`Env::start`], with a kubesim configuration.
    pub async fn start_with(config: kubesim::Config) -> Env {
        if let Ok(path) = std::env::var(REAL_KUBECONFIG) {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&path).expect("reading kubeconfig");
            let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .expect("kubeconfig usable");
            config.default_retry = false;
            let client = kube::Client::try_from(config).expect("client");
            let ns = format!("rec-{}", kubesim::meta::name_suffix());
            return Env {
                client,
                ns,
                server: None,
                map: Mutex::default(),
            };
        }
        let server = kubesim::Server::start(config)
            .await
            .expect("kubesim starts");
        let mut config = server
            .kube_config()
            .await
            .expect("client config for kubesim");
        // The suite looks at every answer as sent, 429/503/504 included: no retries.
        config.default_retry = false;
        let client = kube::Client::try_from(config).expect("client for kubesim");
        Env {
            client,
            ns: "rec".into(),
            server: Some(server),
            map: Mutex::default(),
        }
    }

    /// Whether this runs against a real cluster.
    pub fn is_real(&self) -> bool {
        self.server.is_none()
    }

    /// The kubesim handle (None on a real cluster).
    pub fn server(&self) -> Option<&kubesim::ServerHandle> {
        self.server.as_ref()
    }

    /// Replace the recordings' namespace by this run's.
    pub fn localize_path(&self, path: &str) -> String {
        let p = path.replace("/namespaces/rec/", &format!("/namespaces/{}/", self.ns));
        match p.strip_suffix("/namespaces/rec") {
            Some(prefix) => format!("{prefix}/namespaces/{}", self.ns),
            None => p,
        }
    }

    fn localize_body(&self, body: &Value) -> Value {
        let mut body = body.clone();
        localize(&mut body, &self.ns);
        if body["kind"] == "Namespace" && body["metadata"]["name"] == "rec" {
            body["metadata"]["name"] = json!(self.ns);
        }
        body
    }

    /// Send a request through `kube::Client` and read the whole answer.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: Option<&str>,
        accept: Option<&str>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        builder = builder.header(http::header::ACCEPT, accept.unwrap_or("application/json"));
        let bytes = match body {
            Some(Value::Null) | None => Vec::new(),
            Some(b) => serde_json::to_vec(b).expect("body serializes"),
        };
        let request = builder
            .body(kube::client::Body::from(bytes))
            .expect("request");
        let response = self
            .client
            .send(request)
            .await
            .expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .expect("body reads");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Send a recorded request (in this run's namespace, with this run's uids,
    /// resourceVersions and continue tokens) and return the answer and the recording,
    /// without comparing.
    pub async fn send_recorded(&self, step: &str) -> (Reply, Exchange) {
        let ex = exchange(step);
        let mut body = self.localize_body(&ex.request_body);
        let path = {
            let map = self.map.lock().unwrap();
            map.translate(&mut body);
            map.translate_path(&self.localize_path(&ex.path))
        };
        let reply = self
            .raw(
                &ex.method,
                &path,
                Some(&body),
                ex.content_type.as_deref(),
                ex.accept.as_deref(),
            )
            .await;
        {
            let mut map = self.map.lock().unwrap();
            let kind = ex.response_body["kind"].as_str().unwrap_or_default();
            if kind.ends_with("List") || kind == "Table" {
                // A list's version is the store's current one, which on a real server
                // also moves with background writes (its own leases): learned for
                // later requests, but not held to a one-to-one relation.
                let (r, a) = (&ex.response_body["metadata"], &reply.body["metadata"]);
                if let (Some(r), Some(a)) =
                    (r["resourceVersion"].as_str(), a["resourceVersion"].as_str())
                {
                    map.learn_loose("rv", r, a);
                }
                map.walk(&ex.response_body["items"], &reply.body["items"], step);
                map.walk(&ex.response_body["rows"], &reply.body["rows"], step);
                if let (Some(r), Some(a)) = (r["continue"].as_str(), a["continue"].as_str()) {
                    map.learn_loose("continue", r, a);
                }
            } else {
                map.walk(&ex.response_body, &reply.body, step);
            }
        }
        (reply, ex)
    }

    /// Send a recorded request and assert the status, the body and the version
    /// relations match the recording.
    pub async fn replay(&self, step: &str) -> Reply {
        let (reply, ex) = self.send_recorded(step).await;
        assert_eq!(
            reply.status, ex.status,
            "{step}: status (body {})",
            reply.body
        );
        assert_same(&reply.body, &ex.response_body, &self.ns, step);
        let conflicts = std::mem::take(&mut self.map.lock().unwrap().conflicts);
        assert!(
            conflicts.is_empty(),
            "version relations differ from the recording:\n{}",
            conflicts.join("\n")
        );
        reply
    }

    /// This run's value for a recorded resourceVersion, uid or continue token.
    pub fn mapped(&self, kind: &str, recorded: &str) -> Option<String> {
        self.map.lock().unwrap().get(kind, recorded).cloned()
    }

    /// Replay steps in order.
    pub async fn replay_all(&self, steps: &[&str]) {
        for step in steps {
            self.replay(step).await;
        }
    }

    /// Clean up: delete what a real-cluster run created, stop kubesim.
    pub async fn finish(self) {
        match self.server {
            Some(server) => server.shutdown().await,
            None => {
                let path = format!("/api/v1/namespaces/{}", self.ns);
                let _ = self.raw("DELETE", &path, None, None, None).await;
                for node in ["rec-node-1", "rec-node-2"] {
                    let _ = self
                        .raw("DELETE", &format!("/api/v1/nodes/{node}"), None, None, None)
                        .await;
                }
            }
        }
    }
}

fn localize(v: &mut Value, ns: &str) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "namespace" && *val == "rec" {
                    *val = json!(ns);
                } else {
                    localize(val, ns);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| localize(i, ns)),
        _ => {}
    }
}

/// Keys whose values are specific to a run.
const RUN_SPECIFIC: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "lastTransitionTime",
    "continue",
    "time",
];

/// Replace run-specific values by placeholders.
pub fn normalize(v: &Value, ns: &str) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let is_namespace = map.get("kind") == Some(&json!("Namespace"));
            for (k, val) in map {
                if k == "managedFields" {
                    continue;
                }
                let new = if RUN_SPECIFIC.contains(&k.as_str()) && !val.is_null() {
                    json!(format!("<{k}>"))
                } else if k == "namespace" && val.is_string() {
                    json!("<ns>")
                } else if k == "message" || k == "note" {
                    json!(normalize_text(val.as_str().unwrap_or_default(), ns))
                } else {
                    normalize(val, ns)
                };
                out.insert(k.clone(), new);
            }
            if map.get("generateName").is_some() && out.contains_key("name") {
                out.insert("name".into(), json!("<generated>"));
            }
            if is_namespace {
                out["metadata"]["name"] = json!("<ns>");
                if out["metadata"]["labels"]
                    .get("kubernetes.io/metadata.name")
                    .is_some()
                {
                    out["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!("<ns>");
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| normalize(i, ns)).collect()),
        other => other.clone(),
    }
}

/// End of the sentence that precedes the Go struct diff of a forbidden pod update;
/// kubesim names the changed fields instead of printing Go's diff, so only the
/// sentence is compared.
const POD_UPDATE_SENTENCE_END: &str = "if it was previously negative)";

/// Messages: uuids and numbers (resourceVersions) become placeholders.
pub fn normalize_text(s: &str, ns: &str) -> String {
    let mut s = s.replace(&format!("/{ns}/"), "/<ns>/");
    if let Some(i) = s.find(POD_UPDATE_SENTENCE_END) {
        s.truncate(i + POD_UPDATE_SENTENCE_END.len());
    }
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_uuid_at(&chars, i) {
            out.push_str("<uuid>");
            i += 36;
        } else if chars[i].is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push('#');
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_uuid_at(c: &[char], i: usize) -> bool {
    if i + 36 > c.len() {
        return false;
    }
    (0..36).all(|k| match k {
        8 | 13 | 18 | 23 => c[i + k] == '-',
        _ => c[i + k].is_ascii_hexdigit(),
    })
}

/// Assert two bodies are equal once run-specific values are replaced.
pub fn assert_same(actual: &Value, recorded: &Value, ns: &str, context: &str) {
    let a = normalize(actual, ns);
    let r = normalize(recorded, "rec");
    if a != r {
        let mut diffs = Vec::new();
        diff(&a, &r, "", &mut diffs);
        panic!(
            "{context}: differs from the recording:\n  {}",
            diffs.join("\n  ")
        );
    }
}

fn diff(a: &Value, r: &Value, path: &str, out: &mut Vec<String>) {
    match (a, r) {
        (Value::Object(am), Value::Object(rm)) => {
            for (k, rv) in rm {
                match am.get(k) {
                    Some(av) => diff(av, rv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing (recorded {rv})")),
                }
            }
            for (k, av) in am {
                if !rm.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(aa), Value::Array(ra)) if aa.len() == ra.len() => {
            for (i, (av, rv)) in aa.iter().zip(ra).enumerate() {
                diff(av, rv, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != r => out.push(format!("{path}: got {a}, recorded {r}")),
        _ => {}
    }
}

/// resourceVersion of an object or list as a number.
pub fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The setup most scenarios share: namespace and the two nodes.
pub const SETUP: &[&str] = &["namespaces/create", "nodes/create", "nodes/create-second"];

/// What a watch stream delivered: each event with its arrival time after the request,
/// and when the server closed the stream.
#[derive(Debug, Clone)]
pub struct Stream {
    pub events: Vec<(std::time::Duration, Value)>,
    pub closed_after: std::time::Duration,
}

impl Stream {
    /// The events that are not bookmarks.
    pub fn changes(&self) -> Vec<&Value> {
        self.events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e["type"] != "BOOKMARK")
            .collect()
    }

    /// Arrival times of the bookmarks.
    pub fn bookmarks(&self) -> Vec<(std::time::Duration, &Value)> {
        self.events
            .iter()
            .filter(|(_, e)| e["type"] == "BOOKMARK")
            .map(|(t, e)| (*t, e))
            .collect()
    }
}

impl Env {
    /// Open a watch (a path with `watch=1`) and read it in the background until the
    /// server closes it.
    pub fn open_watch(&self, path: &str) -> tokio::task::JoinHandle<Stream> {
        let client = self.client.clone();
        let path = self
            .map
            .lock()
            .unwrap()
            .translate_path(&self.localize_path(path));
        tokio::spawn(async move {
            use futures::{AsyncBufReadExt, TryStreamExt};
            let started = std::time::Instant::now();
            let request = Request::get(&path).body(Vec::new()).expect("request");
            let reader = client.request_stream(request).await.expect("watch opens");
            let mut lines = reader.lines();
            let mut events = Vec::new();
            while let Some(line) = lines.try_next().await.expect("stream reads") {
                if line.trim().is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&line).expect("events are JSON");
                events.push((started.elapsed(), event));
            }
            Stream {
                events,
                closed_after: started.elapsed(),
            }
        })
    }

    /// Compare the events of a stream with a recorded watch, learning the version
    /// relations the events show.
    pub fn assert_stream_matches(&self, stream: &Stream, recorded: &Value, context: &str) {
        let recorded_events: Vec<&Value> = recorded["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| &e["event"])
            .collect();
        let got: Vec<String> = stream
            .events
            .iter()
            .map(|(_, e)| format!("{} {}", e["type"], e["object"]["metadata"]["name"]))
            .collect();
        let want: Vec<String> = recorded_events
            .iter()
            .map(|e| format!("{} {}", e["type"], e["object"]["metadata"]["name"]))
            .collect();
        assert_eq!(got, want, "{context}: event sequence");
        let mut map = self.map.lock().unwrap();
        for ((_, got), want) in stream.events.iter().zip(&recorded_events) {
            assert_same(got, want, &self.ns, context);
            map.walk(want, got, context);
        }
        assert!(
            map.conflicts.is_empty(),
            "{context}: version relations differ:\n{}",
            map.conflicts.join("\n")
        );
    }
}

/// Steps replayed by dedicated tests instead (discovery, tables, history expiry, feature
/// gates, the final state dump of the whole recorded run).
pub fn replayable(step: &str) -> bool {
    !(step.starts_with("discovery/")
        || step.starts_with("churn/")
        || step.starts_with("expired/")
        || step.starts_with("final/")
        || step.starts_with("sidecar-gate-on/")
        || step.contains("as-table"))
}

pub fn recorded_steps() -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/exchanges-1.28.7.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_str().map(str::to_string))
        .collect()
}

impl Env {
    /// Replay every replayable step up to `last` (a step name, or the last step of a
    /// section when it ends with `/`).
    pub async fn replay_through(&self, last: &str) {
        let steps = recorded_steps();
        let end = if last.ends_with('/') {
            steps.iter().rposition(|s| s.starts_with(last))
        } else {
            steps.iter().position(|s| s == last)
        }
        .expect("step exists");
        for step in steps[..=end].iter().filter(|s| replayable(s)) {
            self.replay(step).await;
        }
    }
}
