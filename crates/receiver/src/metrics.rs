//! Prometheus metrics of the controller and the receiver.
//!
//! Every label value comes from a bounded set: outcomes and results are
//! enums, receiver and project names come from configuration that an
//! operator controls. Request paths never become labels (scanners would
//! create unbounded series).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::index::Sizes;

/// Which config a reconcile was about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConfigKind {
    /// A ProjectConfig.
    ProjectConfig,
    /// The ClusterConfig.
    ClusterConfig,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReconcileResult {
    /// All receivers synced.
    Ready,
    /// Reconciled, but some receiver is not ready (missing Secret/key).
    NotReady,
    /// An API error; requeued with backoff.
    Error,
}

/// Labels of reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Config kind.
    pub kind: ConfigKind,
    /// Result.
    pub result: ReconcileResult,
}

/// Labels naming a kind only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Config kind.
    pub kind: ConfigKind,
}

/// Labels naming a watched resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `projectconfigs`, `clusterconfigs`, `warehouses`, `secrets`.
    pub resource: &'static str,
}

/// The answer given to a webhook request, one per row of DESIGN.md's table.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// 200, refreshes applied.
    Refreshed,
    /// 404, unknown path.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    PayloadTooLarge,
    /// 401, no Authorization header.
    MissingAuthorization,
    /// 401, wrong token.
    Unauthorized,
    /// 400, not a Harbor event.
    InvalidBody,
    /// 400, not a push.
    UnsupportedEvent,
    /// 500, some refresh failed.
    RefreshFailed,
    /// 408/503: the request or the body took too long.
    Timeout,
}

/// Labels of webhook request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Project namespace of the receiver (`""` for the ClusterConfig or an unknown path).
    pub project: String,
    /// Receiver name (`""` for an unknown path).
    pub receiver: String,
    /// The answer.
    pub outcome: Outcome,
}

/// Labels of request duration (outcome only, to keep histograms few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The answer.
    pub outcome: Outcome,
}

/// How one Warehouse refresh ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RefreshResult {
    /// Patched.
    Patched,
    /// Satisfied by a patch another request made after this one arrived.
    Shared,
    /// The Warehouse was gone (404): counts as done.
    NotFound,
    /// API error or timeout: the request answers 500.
    Failed,
}

/// Labels of refresh metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// How it ended.
    pub result: RefreshResult,
}

/// Label values in Prometheus' usual snake_case (`outcome="not_found"`),
/// one fixed string per variant.
macro_rules! snake_case_label_values {
    ($($enum:ident { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl $enum {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $enum {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    )+};
}

snake_case_label_values! {
    ConfigKind {
        ProjectConfig => "project_config",
        ClusterConfig => "cluster_config",
    }
    ReconcileResult {
        Ready => "ready",
        NotReady => "not_ready",
        Error => "error",
    }
    Outcome {
        Refreshed => "refreshed",
        NotFound => "not_found",
        MethodNotAllowed => "method_not_allowed",
        PayloadTooLarge => "payload_too_large",
        MissingAuthorization => "missing_authorization",
        Unauthorized => "unauthorized",
        InvalidBody => "invalid_body",
        UnsupportedEvent => "unsupported_event",
        RefreshFailed => "refresh_failed",
        Timeout => "timeout",
    }
    RefreshResult {
        Patched => "patched",
        Shared => "shared",
        NotFound => "not_found",
        Failed => "failed",
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms … ~16 s
    exponential_buckets(0.0005, 2.0, 16)
}

/// All metrics of the process, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile duration by kind.
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Status patches written (leader only).
    pub status_writes: Family<KindLabels, Counter>,
    /// Watch stream restarts (errors, 410s, dropped streams) by resource.
    pub watch_restarts: Family<ResourceLabels, Counter>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Receivers in the index.
    pub index_receivers: Gauge,
    /// Warehouses in the index.
    pub index_warehouses: Gauge,
    /// Distinct repository keys in the index.
    pub index_repository_keys: Gauge,
    /// Webhook requests by project, receiver and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Webhook request duration by outcome.
    pub request_duration: Family<OutcomeLabels, Histogram>,
    /// Webhook requests being handled.
    pub requests_in_flight: Gauge,
    /// Warehouse refreshes by result.
    pub refreshes: Family<RefreshLabels, Counter>,
    /// Latency of refresh PATCH calls.
    pub refresh_patch_duration: Histogram,
    /// Warehouse Events dropped because their queue was full.
    pub events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kargo_harbor_receiver");
        let m = Self {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            status_writes: Family::default(),
            watch_restarts: Family::default(),
            leader: Gauge::default(),
            index_receivers: Gauge::default(),
            index_warehouses: Gauge::default(),
            index_repository_keys: Gauge::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            requests_in_flight: Gauge::default(),
            refreshes: Family::default(),
            refresh_patch_duration: Histogram::new(seconds_buckets()),
            events_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles by config kind and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches written",
            m.status_writes.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watch stream restarts",
            m.watch_restarts.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            m.leader.clone(),
        );
        registry.register(
            "index_receivers",
            "Receivers in the index",
            m.index_receivers.clone(),
        );
        registry.register(
            "index_warehouses",
            "Warehouses in the index",
            m.index_warehouses.clone(),
        );
        registry.register(
            "index_repository_keys",
            "Distinct repository keys in the index",
            m.index_repository_keys.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook requests by project, receiver and outcome",
            m.requests.clone(),
        );
        registry.register(
            "webhook_request_duration_seconds",
            "Webhook request duration by outcome",
            m.request_duration.clone(),
        );
        registry.register(
            "webhook_requests_in_flight",
            "Webhook requests being handled",
            m.requests_in_flight.clone(),
        );
        registry.register(
            "warehouse_refreshes",
            "Warehouse refreshes by result",
            m.refreshes.clone(),
        );
        registry.register(
            "refresh_patch_duration_seconds",
            "Latency of Warehouse refresh PATCH calls",
            m.refresh_patch_duration.clone(),
        );
        registry.register(
            "warehouse_events_dropped",
            "Warehouse Events dropped because their queue was full",
            m.events_dropped.clone(),
        );
        Self { registry, ..m }
    }

    /// Publishes index sizes.
    pub fn set_index_sizes(&self, sizes: Sizes) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.index_receivers.set(as_i64(sizes.receivers));
        self.index_warehouses.set(as_i64(sizes.warehouses));
        self.index_repository_keys
            .set(as_i64(sizes.repository_keys));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                project: "kargo-demo".into(),
                receiver: "harbor".into(),
                outcome: Outcome::Refreshed,
            })
            .inc();
        m.set_index_sizes(Sizes {
            receivers: 2,
            warehouses: 3,
            repository_keys: 1,
        });
        let text = m.encode();
        for needle in [
            r#"kargo_harbor_receiver_webhook_requests_total{project="kargo-demo",receiver="harbor",outcome="refreshed"} 1"#,
            "kargo_harbor_receiver_index_warehouses 3",
            "kargo_harbor_receiver_refresh_patch_duration_seconds_bucket",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
    }
}
