//! The correspondence between a recording's run-specific values (uids,
//! resourceVersions, continue tokens) and this run's, used to send recorded requests
//! with this run's values and to check version relations.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Correspondence between the recording's run-specific values and this run's. A
/// resourceVersion must always map to the same one: the same writes must produce the
/// same version relations (a no-op keeps its version, every write takes a new one).
#[derive(Default)]
pub struct Mapping {
    values: HashMap<String, String>,
    reverse: HashMap<String, String>,
    pub conflicts: Vec<String>,
}

impl Mapping {
    pub(crate) fn learn(&mut self, kind: &str, recorded: &str, actual: &str, step: &str) {
        let rk = format!("{kind}:{recorded}");
        let ak = format!("{kind}:{actual}");
        if let Some(prev) = self.values.get(&rk) {
            if prev != actual {
                self.conflicts.push(format!(
                    "{step}: recorded {kind} {recorded} was {prev} before, now {actual}"
                ));
            }
            return;
        }
        if let Some(prev) = self.reverse.get(&ak) {
            if prev != recorded {
                self.conflicts.push(format!(
                    "{step}: {kind} {actual} stands for recorded {prev} and {recorded}"
                ));
            }
            return;
        }
        self.values.insert(rk, actual.to_string());
        self.reverse.insert(ak, recorded.to_string());
    }

    pub(crate) fn learn_loose(&mut self, kind: &str, recorded: &str, actual: &str) {
        self.values
            .entry(format!("{kind}:{recorded}"))
            .or_insert_with(|| actual.to_string());
    }

    pub(crate) fn get(&self, kind: &str, recorded: &str) -> Option<&String> {
        self.values.get(&format!("{kind}:{recorded}"))
    }

    /// Walk a recorded body and this run's answer side by side.
    pub(crate) fn walk(&mut self, recorded: &Value, actual: &Value, step: &str) {
        match (recorded, actual) {
            (Value::Object(r), Value::Object(a)) => {
                for (k, rv) in r {
                    let Some(av) = a.get(k) else { continue };
                    match (k.as_str(), rv.as_str(), av.as_str()) {
                        ("uid", Some(x), Some(y)) => self.learn("uid", x, y, step),
                        ("resourceVersion", Some(x), Some(y)) => self.learn("rv", x, y, step),
                        ("continue", Some(x), Some(y)) => self.learn("continue", x, y, step),
                        _ => self.walk(rv, av, step),
                    }
                }
            }
            (Value::Array(r), Value::Array(a)) if r.len() == a.len() => {
                for (x, y) in r.iter().zip(a) {
                    self.walk(x, y, step);
                }
            }
            _ => {}
        }
    }

    /// Rewrite recorded uids and resourceVersions in a request body to this run's.
    pub(crate) fn translate(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let kind = match k.as_str() {
                        "uid" => "uid",
                        "resourceVersion" => "rv",
                        _ => {
                            self.translate(val);
                            continue;
                        }
                    };
                    if let Some(new) = val.as_str().and_then(|s| self.get(kind, s)) {
                        *val = json!(new);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.translate(i)),
            _ => {}
        }
    }

    /// Rewrite `resourceVersion=` and `continue=` query values.
    pub(crate) fn translate_path(&self, path: &str) -> String {
        let Some((base, query)) = path.split_once('?') else {
            return path.to_string();
        };
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("resourceVersion", v)) => match self.get("rv", v) {
                    Some(n) => format!("resourceVersion={n}"),
                    None => kv.to_string(),
                },
                Some(("continue", v)) => match self.get("continue", v) {
                    Some(n) => format!("continue={n}"),
                    None => kv.to_string(),
                },
                _ => kv.to_string(),
            })
            .collect();
        format!("{base}?{}", parts.join("&"))
    }
}
