//! Kubernetes Events (`events.k8s.io/v1`) on refreshed Warehouses, sent off
//! the response path: the refresher hands them to a bounded channel and a
//! background task creates them. When the channel is full the Event is
//! dropped and counted (`warehouse_events_dropped`); a webhook answer never
//! waits for an Event. Refreshes of one Warehouse closer together than
//! [`COALESCE`] make one Event: a burst of pushes then costs the API server
//! (and this process) one create call, not one per push.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Refreshes of one Warehouse within this time of its last Event make no
/// Event of their own.
pub const COALESCE: Duration = Duration::from_secs(1);

/// Warehouses with an Event in the last [`COALESCE`]: which Events to make.
#[derive(Default)]
struct Recent {
    last: HashMap<String, Instant>,
}

/// Entries kept before the expired ones are swept.
const RECENT_SWEEP: usize = 4096;

impl Recent {
    /// Whether an Event for `namespace/name` is due at `now` (and if so,
    /// remembers it).
    fn admit(&mut self, namespace: &str, name: &str, now: Instant) -> bool {
        if self.last.len() >= RECENT_SWEEP {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < COALESCE);
        }
        let key = format!("{namespace}/{name}");
        match self.last.get(&key) {
            Some(at) if now.saturating_duration_since(*at) < COALESCE => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }
}

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
    dropped: Counter,
}

impl EventSink {
    /// Queues an Event, or drops and counts it if the queue is full (or the
    /// sender task has stopped).
    pub fn send(&self, event: RefreshEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }
}

/// Settings of the Event sender.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// Queue capacity; Events beyond it are dropped.
    pub capacity: usize,
    /// This replica's identity (`reportingInstance`).
    pub instance: String,
    /// Bound of each create call.
    pub api_timeout: Duration,
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

/// Starts the background task. It ends when every [`EventSink`] is dropped
/// or at `shutdown`; Events still queued then are dropped and counted (they
/// are a courtesy to humans, never worth delaying a shutdown for).
pub fn spawn(
    client: kube::Client,
    settings: EventSettings,
    dropped: Counter,
    shutdown: CancellationToken,
) -> (EventSink, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<RefreshEvent>(settings.capacity.max(1));
    let counter = dropped.clone();
    let task = tokio::spawn(async move {
        let mut recent = Recent::default();
        loop {
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = rx.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            let Some(namespace) = event.regarding.namespace.clone() else {
                continue;
            };
            let name = event.regarding.name.as_deref().unwrap_or_default();
            if !recent.admit(&namespace, name, Instant::now()) {
                continue;
            }
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            let body = build_event(&event, &settings.instance, Utc::now());
            let params = PostParams::default();
            let create = api.create(&params, &body);
            let created = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                created = tokio::time::timeout(settings.api_timeout, create) => created,
            };
            match created {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%namespace, %error, "creating a Warehouse Event failed")
                }
                Err(_) => tracing::debug!(%namespace, "creating a Warehouse Event timed out"),
            }
        }
        rx.close();
        let mut left = 0u64;
        while rx.try_recv().is_ok() {
            left += 1;
        }
        counter.inc_by(left);
        if left > 0 {
            tracing::info!(dropped = left, "shutdown: queued Warehouse Events dropped");
        }
    });
    (EventSink { tx, dropped }, task)
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

    #[test]
    fn one_event_per_warehouse_and_second() {
        let mut recent = Recent::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(recent.admit("p", "w", t0));
        assert!(!recent.admit("p", "w", t0 + ms(999)));
        assert!(recent.admit("p", "other", t0 + ms(10)));
        assert!(recent.admit("q", "w", t0 + ms(10)));
        assert!(recent.admit("p", "w", t0 + COALESCE));
        assert!(!recent.admit("p", "w", t0 + COALESCE + ms(1)));
    }

    #[test]
    fn the_memory_of_recent_events_stays_bounded() {
        let mut recent = Recent::default();
        let t0 = Instant::now();
        for i in 0..3 * RECENT_SWEEP {
            // Each a second apart from the previous sweep's entries.
            let at = t0 + COALESCE * (i / RECENT_SWEEP) as u32;
            assert!(recent.admit("p", &format!("w-{i}"), at));
        }
        assert!(
            recent.last.len() <= 2 * RECENT_SWEEP,
            "{}",
            recent.last.len()
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let sink = EventSink {
            tx,
            dropped: Counter::default(),
        };
        for _ in 0..5 {
            sink.send(sample());
        }
        assert_eq!(sink.dropped.get(), 3);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn shutdown_stops_the_sender_and_counts_what_was_left() {
        // An API server that never answers: the first Event blocks in its
        // create call until shutdown.
        let (client, silent) = crate::testing::silent_api_server().await;
        let shutdown = CancellationToken::new();
        let settings = EventSettings {
            capacity: 8,
            instance: "i".into(),
            api_timeout: Duration::from_secs(3600),
        };
        let (sink, task) = spawn(client, settings, Counter::default(), shutdown.clone());
        for _ in 0..3 {
            sink.send(sample());
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the sender stops at shutdown")
            .unwrap();
        // At most the one in its create call was not counted.
        assert!(sink.dropped.get() >= 2, "{}", sink.dropped.get());
        silent.abort();
    }
}
