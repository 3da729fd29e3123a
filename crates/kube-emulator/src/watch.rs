//! Watch streams, as kube-rs' watcher and kubectl use them: `resourceVersion` resume,
//! synthetic ADDED events for `resourceVersion` unset/`0`, streaming lists
//! (`sendInitialEvents=true`, ending with a bookmark annotated
//! `k8s.io/initial-events-end: "true"`), periodic BOOKMARKs, `timeoutSeconds`,
//! selectors, metadata-only output and 410 Expired as an in-stream ERROR event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::errors::ApiError;
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Body, Shared};
use crate::store::{Event, EventType, Store};

/// Parameters of one watch request.
pub(crate) struct WatchParams {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` for unset, `Some(0)` for "0".
    pub rv: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub meta_only: bool,
    /// Render objects as `meta.k8s.io/v1` `Table`s (kubectl get -w).
    pub table: bool,
}

impl WatchParams {
    fn matches(&self, ns: &str, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|n| !self.rt.namespaced || n == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    fn render(&self, obj: &Value) -> Value {
        self.shape(Store::render(&self.rt, obj))
    }

    /// A rendered object in the requested form (Table, metadata only or full).
    fn shape(&self, o: Value) -> Value {
        if self.table {
            crate::table::table(&self.rt, &[o], "")
        } else if self.meta_only {
            crate::server::to_partial(&o)
        } else {
            o
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (av, kind) = if self.meta_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            )
        } else {
            (self.rt.api_version(), self.rt.kind.clone())
        };
        json!({"type": "BOOKMARK", "object": {"apiVersion": av, "kind": kind, "metadata": md}})
    }

    /// Translate a stored event into what this watcher should see (if anything),
    /// turning selector transitions into ADDED/DELETED.
    fn translate(&self, ev: &Event) -> Option<Value> {
        if !self.rt.stored_as(&ev.group, &ev.plural) {
            return None;
        }
        let now = self.matches(&ev.namespace, &ev.object);
        let before = ev
            .old
            .as_ref()
            .is_some_and(|o| self.matches(&ev.namespace, o));
        let t = match ev.etype {
            EventType::Added if now => EventType::Added,
            EventType::Deleted if now => EventType::Deleted,
            EventType::Modified => match (before, now) {
                (true, true) => EventType::Modified,
                (false, true) => EventType::Added,
                (true, false) => EventType::Deleted,
                (false, false) => return None,
            },
            _ => return None,
        };
        Some(json!({"type": t.as_str(), "object": self.render(&ev.object)}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> hyper::Response<Body> {
    let s = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = hyper::Response::new(StreamBody::new(s).boxed_unsync());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// What a watch sends before live events.
enum Initial {
    /// Synthetic ADDED events for these objects (then, for a streaming list, the
    /// initial-events-end bookmark at this resourceVersion).
    Objects(Vec<Arc<Value>>, Option<u64>),
    /// Retained events after the requested resourceVersion.
    Replay(Vec<Arc<Event>>),
}

impl Initial {
    /// Send everything; `false` when the client went away.
    async fn send(self, p: &WatchParams, tx: &mpsc::Sender<Bytes>) -> bool {
        match self {
            Initial::Objects(objs, end) => {
                for o in objs {
                    let o = Store::render(&p.rt, &o);
                    let ns = crate::object::meta_str(&o, "namespace").unwrap_or("");
                    if p.matches(ns, &o) {
                        let ev = json!({"type": "ADDED", "object": p.shape(o)});
                        if tx.send(line(&ev)).await.is_err() {
                            return false;
                        }
                    }
                }
                match end {
                    Some(rv) => tx.send(line(&p.bookmark(rv, true))).await.is_ok(),
                    None => true,
                }
            }
            Initial::Replay(evs) => {
                for ev in evs {
                    if let Some(v) = p.translate(&ev) {
                        if tx.send(line(&v)).await.is_err() {
                            return false;
                        }
                    }
                }
                true
            }
        }
    }
}

/// Start a watch: returns the streaming response. Only pointers to the objects or
/// events to send first are taken while the store is locked; they are rendered and
/// sent by the watch's own task.
pub(crate) fn start(shared: Arc<Shared>, p: WatchParams) -> hyper::Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let sub: Result<(Initial, u64, broadcast::Receiver<Arc<Event>>), ApiError> = {
        let store = shared.lock_store();
        let cur = store.current_rv();
        let synthetic = p.send_initial_events || matches!(p.rv, None | Some(0));
        if synthetic {
            let objs = store.objects(&p.rt, p.namespace.as_deref());
            let end = p.send_initial_events.then_some(cur);
            Ok((Initial::Objects(objs, end), cur, store.subscribe()))
        } else {
            let from = p.rv.unwrap_or(0);
            let (group, plural) = p.rt.key();
            store
                .watch_from(&group, &plural, from)
                .map(|(evs, rx)| (Initial::Replay(evs), from.max(cur), rx))
        }
    };
    let (initial, mut last_rv, mut brx) = match sub {
        Ok(x) => x,
        Err(e) => {
            let ev = json!({"type": "ERROR", "object": e.to_status()});
            tokio::spawn(async move {
                let _ = tx.send(line(&ev)).await;
            });
            return stream_response(rx);
        }
    };
    let mut drop_rx = shared.drop_watches.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        if !initial.send(&p, &tx).await {
            return;
        }
        // A timeout too large for an Instant is no deadline (not a panic).
        let deadline = p
            .timeout
            .and_then(|t| tokio::time::Instant::now().checked_add(t));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                r = brx.recv() => match r {
                    Ok(ev) => {
                        last_rv = last_rv.max(ev.rv);
                        if let Some(v) = p.translate(&ev) {
                            if tx.send(line(&v)).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A lagging watcher is ended; the client resumes from its last RV.
                    Err(_) => return,
                },
                _ = tick.tick(), if p.bookmarks => {
                    if tx.send(line(&p.bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                _ = timeout => return,
                _ = drop_rx.changed() => return,
                _ = shutdown_rx.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    stream_response(rx)
}
