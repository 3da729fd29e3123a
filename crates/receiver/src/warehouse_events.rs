//! Kubernetes Events (`events.k8s.io/v1`) on refreshed Warehouses, sent off
//! the response path: the refresher hands them to a bounded channel and a
//! background task creates them. When the channel is full the Event is
//! dropped and counted (`warehouse_events_dropped`); a webhook answer never
//! waits for an Event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Reason of refresh Events.
pub const REASON: &str = "RefreshRequested";
/// Action of refresh Events.
pub const ACTION: &str = "Refresh";

/// One Event to create.
#[derive(Clone, Debug)]
pub struct RefreshEvent {
    /// The refreshed Warehouse.
    pub regarding: ObjectReference,
    /// The receiver that asked (its configured name).
    pub receiver: String,
    /// The pushed `repository:tag` (or `repository@digest`).
    pub artifact: String,
}

/// The sending side; never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<RefreshEvent>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Queues an Event, or drops and counts it if the queue is full.
    pub fn send(&self, event: RefreshEvent) {
        if self.tx.try_send(event).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}

/// The Event object for `event` (pure; `now` and `instance` injected).
pub fn build_event(event: &RefreshEvent, instance: &str, now: chrono::DateTime<Utc>) -> Event {
    let name = event.regarding.name.clone().unwrap_or_default();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let mut note = format!(
        "refresh requested by Harbor receiver {} for {}",
        event.receiver, event.artifact
    );
    // events.k8s.io/v1 limits the note to 1 kB.
    if note.len() > 1024 {
        let mut cut = 1021;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: event.regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now_as_timestamp(now))),
        action: Some(ACTION.into()),
        reason: Some(REASON.into()),
        note: Some(note),
        regarding: Some(event.regarding.clone()),
        reporting_controller: Some(crate::NAME.into()),
        reporting_instance: Some(instance.to_owned()),
        type_: Some("Normal".into()),
        ..Event::default()
    }
}

fn now_as_timestamp(now: chrono::DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(
        now.timestamp_nanos_opt().unwrap_or_default(),
    ))
    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Starts the background task; it ends when every [`EventSink`] is dropped.
pub fn spawn(
    client: kube::Client,
    metrics: Arc<Metrics>,
    capacity: usize,
    instance: String,
    api_timeout: Duration,
) -> (EventSink, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<RefreshEvent>(capacity.max(1));
    let task = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let Some(namespace) = event.regarding.namespace.clone() else {
                continue;
            };
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            let body = build_event(&event, &instance, Utc::now());
            match tokio::time::timeout(api_timeout, api.create(&PostParams::default(), &body)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%namespace, %error, "creating a Warehouse Event failed")
                }
                Err(_) => tracing::debug!(%namespace, "creating a Warehouse Event timed out"),
            }
        }
    });
    (EventSink { tx, metrics }, task)
}

/// A sink whose Events go to a channel the caller reads (tests).
pub fn channel(
    metrics: Arc<Metrics>,
    capacity: usize,
) -> (EventSink, mpsc::Receiver<RefreshEvent>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (EventSink { tx, metrics }, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RefreshEvent {
        RefreshEvent {
            regarding: ObjectReference {
                api_version: Some("kargo.akuity.io/v1alpha1".into()),
                kind: Some("Warehouse".into()),
                name: Some("w".into()),
                namespace: Some("p".into()),
                uid: Some("u-1".into()),
                ..ObjectReference::default()
            },
            receiver: "harbor-wh-receiver".into(),
            artifact: "harbor.example.com/library/app:1.2.3".into(),
        }
    }

    #[test]
    fn event_shape() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T03:30:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = build_event(&sample(), "pod-1", now);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["note"], "refresh requested by Harbor receiver harbor-wh-receiver for harbor.example.com/library/app:1.2.3");
        assert_eq!(json["reason"], REASON);
        assert_eq!(json["action"], ACTION);
        assert_eq!(json["type"], "Normal");
        assert_eq!(json["reportingController"], crate::NAME);
        assert_eq!(json["reportingInstance"], "pod-1");
        assert_eq!(json["regarding"]["uid"], "u-1");
        assert_eq!(json["metadata"]["namespace"], "p");
        assert!(json["metadata"]["name"].as_str().unwrap().starts_with("w."));
        assert_eq!(json["eventTime"], "2026-11-29T03:30:00.123456Z");
    }

    #[test]
    fn long_notes_are_truncated() {
        let mut ev = sample();
        ev.artifact = "é".repeat(2000);
        let e = build_event(&ev, "i", Utc::now());
        assert!(e.note.unwrap().len() <= 1024);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let (sink, mut rx) = channel(metrics.clone(), 2);
        for _ in 0..5 {
            sink.send(sample());
        }
        assert_eq!(metrics.events_dropped.get(), 3);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
    }
}
