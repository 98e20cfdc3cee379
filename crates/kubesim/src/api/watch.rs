//! Watch streams: newline-separated JSON events over a 200 response, closed at
//! `timeoutSeconds`. Like kube-apiserver's watch cache, a selector watch turns an object
//! that stops matching into DELETED (old object, new version) and one that starts
//! matching into ADDED; bookmarks come when asked for, shortly before the deadline and
//! once a minute; a version older than the history gives an `Expired` ERROR event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_stream::wrappers::ReceiverStream;

use super::objects::{parse_rv, prefix, Filter};
use super::{table, ApiRequest, AppState};
use crate::error::{ApiError, ApiResult};
use crate::resource::Resource;
use crate::store::{event_line, EventType, StoredEvent, TooOld, WatchFrom};

/// Default watch duration when the client sets no timeout (kube-apiserver picks 30-60
/// minutes at random; the midpoint is as good for a test double).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// Interval of the periodic bookmark.
const BOOKMARK_PERIOD: Duration = Duration::from_secs(60);

struct Watcher {
    state: AppState,
    resource: Resource,
    prefix: String,
    name: Option<String>,
    filter: Filter,
    table_format: bool,
    bookmarks: bool,
    sent_rv: u64,
}

pub(crate) fn serve(req: ApiRequest<'_>) -> ApiResult<Response> {
    let rv = parse_rv(req.query.get("resourceVersion"))?;
    if req.query.flag("sendInitialEvents") {
        return Err(ApiError::list_options_invalid(
            "sendInitialEvents",
            "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature \
             gate is enabled",
        ));
    }
    let filter = Filter::from_request(&req)?;
    let timeout = req
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let from = match rv {
        None | Some(0) => WatchFrom::Now,
        Some(v) => WatchFrom::Version(v),
    };
    let watcher = Watcher {
        state: req.state.clone(),
        resource: req.target.resource,
        prefix: prefix(&req),
        name: req.target.name.clone(),
        filter,
        table_format: req.wants_table(),
        bookmarks: req.query.flag("allowWatchBookmarks"),
        sent_rv: rv.unwrap_or(0),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    tokio::spawn(watcher.run(from, timeout, tx));
    let body = Body::from_stream(ReceiverStream::new(rx));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

impl Watcher {
    async fn run(
        mut self,
        from: WatchFrom,
        timeout: Duration,
        tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    ) {
        let started = Instant::now();
        let deadline = started + timeout;
        let table = self.resource.table();
        let store = self.state.store.clone();
        let mut shutdown = self.state.shutdown.clone();
        let mut epoch = self.state.watch_epoch.clone();
        epoch.borrow_and_update();

        let start = match store.watch(table, from) {
            Ok(start) => start,
            Err(too_old) => {
                let _ = tx.send(Ok(error_line(&too_old))).await;
                return;
            }
        };
        let mut cursor = start.cursor;
        let mut changes = start.changes;
        if self.sent_rv == 0 {
            self.sent_rv = start.initial.iter().map(|e| e.rv).max().unwrap_or(0);
        }
        if !self.send_all(&start.initial, &tx).await {
            return;
        }

        let mut bookmark_times = bookmark_schedule(started, timeout);
        loop {
            let next_bookmark = bookmark_times.first().copied().filter(|_| self.bookmarks);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    match store.events_after(table, cursor) {
                        Ok(events) => {
                            if let Some(last) = events.last() {
                                cursor = last.rv;
                            }
                            if !self.send_all(&events, &tx).await {
                                return;
                            }
                        }
                        Err(too_old) => {
                            tracing::info!(resource = self.resource.plural(), cursor, "watcher fell behind the history");
                            let _ = tx.send(Ok(error_line(&too_old))).await;
                            return;
                        }
                    }
                }
                _ = sleep_until(next_bookmark.unwrap_or(deadline)), if next_bookmark.is_some() => {
                    bookmark_times.remove(0);
                    let rv = store.latest_rv(table).max(self.sent_rv);
                    if tx.send(Ok(self.bookmark(rv))).await.is_err() {
                        return;
                    }
                }
                _ = sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = epoch.changed() => return,
            }
        }
    }

    async fn send_all(
        &mut self,
        events: &[Arc<StoredEvent>],
        tx: &mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    ) -> bool {
        for event in events {
            if let Some(line) = self.line_for(event) {
                self.sent_rv = self.sent_rv.max(event.rv);
                if tx.send(Ok(line)).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    fn in_scope(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        if self.name.as_deref().is_some_and(|n| n != name) {
            return false;
        }
        if self.prefix.is_empty() {
            return true;
        }
        meta["namespace"]
            .as_str()
            .is_some_and(|ns| self.prefix.strip_suffix('/') == Some(ns))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.in_scope(obj) && self.filter.matches(obj)
    }

    /// The line this watcher sends for an event, if any.
    fn line_for(&self, event: &StoredEvent) -> Option<Bytes> {
        let now = self.matches(&event.object);
        let before = event.previous.as_ref().map(|p| self.matches(p));
        let plain = self.filter.is_empty() && self.name.is_none();
        match (event.kind, before, now) {
            (EventType::Deleted, _, true) | (EventType::Added, _, true) => {
                Some(self.render(event, event.kind, None))
            }
            (EventType::Modified, Some(true) | None, true) => {
                Some(self.render(event, EventType::Modified, None))
            }
            (EventType::Modified, Some(false), true) => {
                Some(self.render(event, EventType::Added, None))
            }
            (EventType::Modified, Some(true), false) if !plain => {
                // Stopped matching: DELETED with the last matching state, at the new version.
                let mut old = event.previous.as_deref().cloned().unwrap_or(Value::Null);
                old["metadata"]["resourceVersion"] = json!(event.rv.to_string());
                Some(self.render(event, EventType::Deleted, Some(old)))
            }
            _ => None,
        }
    }

    fn render(&self, event: &StoredEvent, kind: EventType, replaced: Option<Value>) -> Bytes {
        let object = replaced.as_ref().unwrap_or(&event.object);
        if self.table_format {
            let t = table::table(self.resource, &[Arc::new(object.clone())], event.rv, true);
            return event_line(kind.as_str(), &t);
        }
        if self.resource == Resource::Events {
            return event_line(kind.as_str(), &crate::events::to_events_v1(object));
        }
        if replaced.is_none() && kind == event.kind {
            return event.line();
        }
        event_line(kind.as_str(), object)
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let mut object = json!({"kind": self.resource.kind(), "apiVersion": self.resource.api_version(),
                                "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null}});
        if self.resource == Resource::Pods {
            object["spec"] = json!({"containers": null});
            object["status"] = json!({});
        }
        event_line("BOOKMARK", &object)
    }
}

/// When bookmarks go out: once a minute, and twice just before the deadline, matching
/// the rhythm measured on kube-apiserver 1.28.
fn bookmark_schedule(started: Instant, timeout: Duration) -> Vec<Instant> {
    let mut times = Vec::new();
    let mut t = BOOKMARK_PERIOD - Duration::from_millis(600);
    let late = timeout.saturating_sub(Duration::from_millis(2600));
    while t < late {
        times.push(started + t);
        t += BOOKMARK_PERIOD;
    }
    if timeout > Duration::from_secs(3) {
        times.push(started + late);
        times.push(started + timeout.saturating_sub(Duration::from_millis(1500)));
    }
    times
}

fn error_line(too_old: &TooOld) -> Bytes {
    event_line("ERROR", &too_old.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(timeout: u64) -> Vec<u128> {
        let start = Instant::now();
        bookmark_schedule(start, Duration::from_secs(timeout))
            .into_iter()
            .map(|t| (t - start).as_millis())
            .collect()
    }

    #[test]
    fn bookmarks_follow_the_measured_rhythm() {
        // Measured on kube-apiserver 1.28: 10 s -> 7.4 s, 8.6 s; 20 s -> 17.3 s, 18.4 s;
        // 75 s -> 59.4 s, 72.8 s, 73.9 s.
        assert_eq!(offsets(10), [7400, 8500]);
        assert_eq!(offsets(20), [17400, 18500]);
        assert_eq!(offsets(75), [59400, 72400, 73500]);
        assert!(offsets(2).is_empty(), "no bookmark in a very short watch");
    }
}
