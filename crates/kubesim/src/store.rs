//! The in-memory object store: one table per stored kind, one global resourceVersion
//! counter shared by all of them (like etcd's revision), and a bounded history of watch
//! events per table for watches that start from a version.
//!
//! Objects are kept as `Arc<serde_json::Value>`: a list clones pointers, not objects, and
//! a watch event is serialized once however many watchers read it. Watchers do not get a
//! queue each; they keep a cursor into the table's history and are woken through a
//! `tokio::sync::watch` channel carrying the table's latest version. A watcher whose
//! cursor falls out of the history gets `410 Expired`, as from a real watch cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};
use crate::resource::Table;

/// Type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created (or synthetic initial state).
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The `type` string of the watch event.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, as kept in a table's history.
#[derive(Debug)]
pub struct StoredEvent {
    /// What happened.
    pub kind: EventType,
    /// resourceVersion of the change.
    pub rv: u64,
    /// The object after the change (for DELETED: the last state, carrying `rv`).
    pub object: Arc<Value>,
    /// The object before the change, for selector watches to see transitions.
    pub previous: Option<Arc<Value>>,
    /// The serialized `{"type","object"}` line, computed by the first watcher that needs it.
    line: OnceLock<Bytes>,
}

impl StoredEvent {
    fn new(kind: EventType, rv: u64, object: Arc<Value>, previous: Option<Arc<Value>>) -> Self {
        StoredEvent {
            kind,
            rv,
            object,
            previous,
            line: OnceLock::new(),
        }
    }

    /// A synthetic ADDED event for an object that exists when a watch starts.
    pub fn synthetic(object: Arc<Value>) -> Arc<StoredEvent> {
        let rv = resource_version(&object);
        Arc::new(StoredEvent::new(EventType::Added, rv, object, None))
    }

    /// The event as one newline-terminated JSON line, serialized at most once.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.kind.as_str(), &self.object))
            .clone()
    }
}

/// Serialize one watch event line.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut buf, object).expect("JSON values always serialize");
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// The resourceVersion stored in an object's metadata.
pub fn resource_version(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Storage key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// What a write decided to do with the object under its key.
#[derive(Debug)]
pub enum Outcome {
    /// Store a new object (ADDED).
    Create(Value),
    /// Replace the object (MODIFIED).
    Update(Value),
    /// Leave it as it is; answer with the current object and no new version.
    Unchanged,
    /// Remove it (DELETED).
    Delete,
    /// Remove the object, whose last state is this one (the update that removed its last
    /// finalizer): one DELETED event; the answer carries the version it had before.
    Finalize(Value),
    /// Store this last state (MODIFIED), then remove it (DELETED, next version), the two
    /// events kube-apiserver emits for an immediate pod deletion; the answer is the last
    /// state at the DELETED version.
    UpdateThenDelete(Value),
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object to answer with.
    pub object: Arc<Value>,
    /// Whether it was created.
    pub created: bool,
    /// Whether it no longer exists.
    pub deleted: bool,
}

/// Why a watch cannot continue from its version.
#[derive(Debug, Clone, Copy)]
pub struct TooOld {
    /// The table watched.
    pub table: Table,
    /// The version asked for.
    pub asked: u64,
    /// The oldest version the history can still serve from.
    pub oldest: u64,
}

impl TooOld {
    /// The Status kube-apiserver sends inside a 200 stream: from the watch cache, or for
    /// events (which 1.28 does not cache) from etcd.
    pub fn status(&self) -> Value {
        let message = if self.table == Table::Events {
            "The resourceVersion for the provided watch is too old.".to_string()
        } else {
            format!("too old resource version: {} ({})", self.asked, self.oldest)
        };
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410
        })
    }
}

struct TableData {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<StoredEvent>>,
    /// Every event with a version up to this one may be gone from `history`.
    evicted_upto: u64,
    /// Version of the newest event of this table.
    latest_rv: u64,
    notify: watch::Sender<u64>,
}

impl TableData {
    fn new() -> Self {
        TableData {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            evicted_upto: 0,
            latest_rv: 0,
            notify: watch::channel(0).0,
        }
    }

    fn oldest_servable(&self) -> u64 {
        self.history
            .front()
            .map(|e| e.rv - 1)
            .unwrap_or(self.evicted_upto)
            .max(self.evicted_upto)
    }
}

struct Inner {
    rv: u64,
    tables: HashMap<Table, TableData>,
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    /// Global resourceVersion the list was taken at.
    pub rv: u64,
    /// Version of the newest event of the table (what a watch cache reports).
    pub table_rv: u64,
    /// Matching objects, in key order.
    pub items: Vec<Arc<Value>>,
    /// Key of the last item returned, when more items remain.
    pub next_key: Option<String>,
    /// How many matching items remain after this page (counted only when asked; at least
    /// 1 when `next_key` is set).
    pub remaining: usize,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchFrom {
    /// Current state as synthetic ADDED events, then changes (`resourceVersion` 0 or unset).
    Now,
    /// Changes after this version.
    Version(u64),
}

/// A watch's starting point: the events to send first and the cursor to continue from.
pub struct WatchStart {
    /// Events to send before waiting.
    pub initial: Vec<Arc<StoredEvent>>,
    /// Version after which the next events come.
    pub cursor: u64,
    /// Wakes when the table changes.
    pub changes: watch::Receiver<u64>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
}

impl Store {
    /// An empty store keeping at most `history_limit` watch events per table.
    pub fn new(history_limit: usize) -> Store {
        let tables = Table::ALL.iter().map(|t| (*t, TableData::new())).collect();
        Store {
            inner: Mutex::new(Inner { rv: 1, tables }),
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write (each write is
        // applied after all checks), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Version of the newest event of a table (what bookmarks carry).
    pub fn latest_rv(&self, table: Table) -> u64 {
        self.lock().tables[&table].latest_rv
    }

    /// One object.
    pub fn get(&self, table: Table, key: &str) -> Option<Arc<Value>> {
        self.lock().tables[&table].objects.get(key).cloned()
    }

    /// List objects whose key starts with `prefix`, after `start` (exclusive), keeping
    /// those `filter` accepts, at most `limit` of them.
    pub fn list(
        &self,
        table: Table,
        prefix: &str,
        start: Option<&str>,
        limit: Option<usize>,
        count_remaining: bool,
        filter: impl Fn(&Value) -> bool,
    ) -> Page {
        let inner = self.lock();
        let data = &inner.tables[&table];
        let lower = match start {
            Some(s) => Bound::Excluded(s.to_string()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut items = Vec::new();
        let mut next_key = None;
        let mut remaining = 0;
        for (k, v) in data.objects.range((lower, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if next_key.is_some() && !count_remaining {
                // Counting the rest means walking (and filtering) every later object
                // under the store lock, for each page: only done when it is reported.
                break;
            }
            if !filter(v) {
                continue;
            }
            if next_key.is_some() {
                remaining += 1;
            } else if limit.is_some_and(|l| items.len() >= l) {
                next_key = Some(items_last_key(&items, prefix));
                remaining += 1;
            } else {
                items.push(v.clone());
            }
        }
        Page {
            rv: inner.rv,
            table_rv: data.latest_rv,
            items,
            next_key,
            remaining,
        }
    }

    /// Apply a write to the object under `key`. `decide` sees the current object and
    /// returns what to do; the store assigns resourceVersions and records watch events.
    pub fn write(
        &self,
        table: Table,
        key: &str,
        decide: impl FnOnce(Option<&Arc<Value>>) -> ApiResult<Outcome>,
    ) -> ApiResult<Written> {
        let mut inner = self.lock();
        let current = inner.tables[&table].objects.get(key).cloned();
        let outcome = decide(current.as_ref())?;
        let limit = self.history_limit;
        let Inner { rv, tables } = &mut *inner;
        let data = tables.get_mut(&table).expect("every table exists");
        let written = match outcome {
            Outcome::Unchanged => {
                let object = current.ok_or_else(|| ApiError::internal("no object to keep"))?;
                Written {
                    object,
                    created: false,
                    deleted: false,
                }
            }
            Outcome::Create(obj) | Outcome::Update(obj) => {
                *rv += 1;
                let obj = Arc::new(with_rv(obj, *rv));
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                data.objects.insert(key.to_string(), obj.clone());
                push(
                    data,
                    limit,
                    StoredEvent::new(kind, *rv, obj.clone(), current.clone()),
                );
                Written {
                    object: obj,
                    created: current.is_none(),
                    deleted: false,
                }
            }
            Outcome::Delete => {
                let old = current.ok_or_else(|| ApiError::internal("no object to delete"))?;
                *rv += 1;
                let last = Arc::new(with_rv((*old).clone(), *rv));
                data.objects.remove(key);
                push(
                    data,
                    limit,
                    StoredEvent::new(EventType::Deleted, *rv, last.clone(), Some(old)),
                );
                Written {
                    object: last,
                    created: false,
                    deleted: true,
                }
            }
            Outcome::Finalize(obj) => {
                let old = current.ok_or_else(|| ApiError::internal("no object to finalize"))?;
                let answer = Arc::new(with_rv(obj, resource_version(&old)));
                *rv += 1;
                let last = Arc::new(with_rv((*answer).clone(), *rv));
                data.objects.remove(key);
                push(
                    data,
                    limit,
                    StoredEvent::new(EventType::Deleted, *rv, last, Some(old)),
                );
                Written {
                    object: answer,
                    created: false,
                    deleted: true,
                }
            }
            Outcome::UpdateThenDelete(obj) => {
                *rv += 1;
                let modified = Arc::new(with_rv(obj, *rv));
                push(
                    data,
                    limit,
                    StoredEvent::new(EventType::Modified, *rv, modified.clone(), current.clone()),
                );
                *rv += 1;
                let last = Arc::new(with_rv((*modified).clone(), *rv));
                data.objects.remove(key);
                push(
                    data,
                    limit,
                    StoredEvent::new(EventType::Deleted, *rv, last.clone(), Some(modified)),
                );
                // The answer is the last state at the DELETED version, as kube-apiserver's.
                Written {
                    object: last,
                    created: false,
                    deleted: true,
                }
            }
        };
        let latest = data.latest_rv;
        data.notify
            .send_if_modified(|seen| std::mem::replace(seen, latest) != latest);
        Ok(written)
    }

    /// Start a watch on a table.
    pub fn watch(&self, table: Table, from: WatchFrom) -> Result<WatchStart, TooOld> {
        let inner = self.lock();
        let data = &inner.tables[&table];
        let changes = data.notify.subscribe();
        match from {
            WatchFrom::Now => Ok(WatchStart {
                initial: data
                    .objects
                    .values()
                    .cloned()
                    .map(StoredEvent::synthetic)
                    .collect(),
                cursor: inner.rv,
                changes,
            }),
            WatchFrom::Version(asked) => {
                if asked < data.evicted_upto {
                    return Err(TooOld {
                        table,
                        asked,
                        oldest: data.oldest_servable(),
                    });
                }
                let initial = events_after(data, asked);
                Ok(WatchStart {
                    initial,
                    cursor: asked.max(inner.rv),
                    changes,
                })
            }
        }
    }

    /// Events of a table after `cursor`, or `TooOld` when the history no longer has them
    /// all (the watcher fell behind).
    pub fn events_after(&self, table: Table, cursor: u64) -> Result<Vec<Arc<StoredEvent>>, TooOld> {
        let inner = self.lock();
        let data = &inner.tables[&table];
        if cursor < data.evicted_upto {
            return Err(TooOld {
                table,
                asked: cursor,
                oldest: data.oldest_servable(),
            });
        }
        Ok(events_after(data, cursor))
    }

    /// Forget the whole history of a table, as an etcd compaction plus a watch-cache
    /// restart would: every watch from an older version then gets `410 Expired`.
    pub fn compact(&self, table: Table) {
        let mut inner = self.lock();
        let rv = inner.rv;
        let data = inner.tables.get_mut(&table).expect("every table exists");
        data.history.clear();
        data.evicted_upto = rv;
    }

    /// The oldest version from which every later event of the table is still known.
    pub fn oldest_servable(&self, table: Table) -> u64 {
        self.lock().tables[&table].evicted_upto
    }

    /// Number of objects in a table.
    pub fn len(&self, table: Table) -> usize {
        self.lock().tables[&table].objects.len()
    }
}

fn items_last_key(items: &[Arc<Value>], prefix: &str) -> String {
    let last = items.last().expect("a page that stops early has items");
    let meta = &last["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let _ = prefix;
    key(meta["namespace"].as_str(), name)
}

fn events_after(data: &TableData, cursor: u64) -> Vec<Arc<StoredEvent>> {
    let start = data.history.partition_point(|e| e.rv <= cursor);
    data.history.range(start..).cloned().collect()
}

fn push(data: &mut TableData, limit: usize, event: StoredEvent) {
    data.latest_rv = event.rv;
    data.history.push_back(Arc::new(event));
    while data.history.len() > limit {
        if let Some(old) = data.history.pop_front() {
            data.evicted_upto = old.rv;
        }
    }
}

fn with_rv(mut obj: Value, rv: u64) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn every_write_takes_the_next_global_version() {
        let store = Store::new(100);
        let a = store
            .write(Table::Pods, "ns/a", |_| Ok(Outcome::Create(obj("a"))))
            .unwrap();
        let n = store
            .write(Table::Nodes, "n", |_| Ok(Outcome::Create(obj("n"))))
            .unwrap();
        assert_eq!(resource_version(&n.object), resource_version(&a.object) + 1);
        let d = store.write(Table::Pods, "ns/a", |_| {
            Ok(Outcome::UpdateThenDelete(obj("a")))
        });
        let d = d.unwrap();
        assert!(d.deleted);
        // The answer carries the DELETED version, one after the MODIFIED one.
        assert_eq!(resource_version(&d.object), resource_version(&n.object) + 2);
        let events = store.events_after(Table::Pods, 0).unwrap();
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.rv)).collect();
        let base = resource_version(&a.object);
        assert_eq!(
            kinds,
            vec![
                (EventType::Added, base),
                (EventType::Modified, base + 2),
                (EventType::Deleted, base + 3)
            ]
        );
    }

    #[test]
    fn history_overflow_makes_old_versions_too_old() {
        let store = Store::new(3);
        let first = store
            .write(Table::Pods, "ns/a", |_| Ok(Outcome::Create(obj("a"))))
            .unwrap();
        let first_rv = resource_version(&first.object);
        for _ in 0..5 {
            store
                .write(Table::Pods, "ns/a", |_| Ok(Outcome::Update(obj("a"))))
                .unwrap();
        }
        let err = store
            .watch(Table::Pods, WatchFrom::Version(first_rv))
            .err()
            .unwrap();
        assert_eq!(err.asked, first_rv);
        let recent = store.current_rv() - 2;
        let start = store
            .watch(Table::Pods, WatchFrom::Version(recent))
            .ok()
            .unwrap();
        assert_eq!(start.initial.len(), 2);
    }

    #[test]
    fn paging_returns_the_rest_after_the_last_key() {
        let store = Store::new(10);
        for n in ["a", "b", "c"] {
            store
                .write(Table::Pods, &key(Some("ns"), n), |_| {
                    Ok(Outcome::Create(obj(n)))
                })
                .unwrap();
        }
        let p1 = store.list(Table::Pods, "ns/", None, Some(1), true, |_| true);
        assert_eq!(p1.items.len(), 1);
        assert_eq!(p1.remaining, 2);
        let next = p1.next_key.unwrap();
        // Not counting the rest still says that there is more.
        let uncounted = store.list(Table::Pods, "ns/", None, Some(1), false, |_| true);
        assert_eq!(uncounted.next_key.as_deref(), Some(next.as_str()));
        let p2 = store.list(Table::Pods, "ns/", Some(&next), Some(5), true, |_| true);
        assert_eq!(p2.items.len(), 2);
        assert!(p2.next_key.is_none());
    }
}
