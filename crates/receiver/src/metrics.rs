//! Prometheus metrics of the controller and the receiver.
//!
//! Every label value comes from a bounded set: outcomes and results are
//! enums, receiver and project names come from configuration that an
//! operator controls. Request paths never become labels (scanners would
//! create unbounded series).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::index::{Index, Sizes};

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

/// The answer given to a webhook request, one per row of the table in
/// `docs/behaviour.md` ("A Harbor request, step by step").
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
    /// 408/503: the body, or the refreshes, outlasted the answer deadline.
    Timeout,
    /// The client went away before its answer.
    ClientGone,
}

impl Outcome {
    /// How many there are (`outcome as usize` is below it).
    pub const COUNT: usize = Outcome::ClientGone as usize + 1;
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
pub enum RefreshOutcome {
    /// Patched.
    Patched,
    /// Satisfied by a patch another request made after this one arrived.
    Shared,
    /// The Warehouse was gone (404): counts as done.
    NotFound,
    /// API error or timeout: the request answers 500.
    Failed,
}

/// How a HarborWebhookRegistration reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RegistrationResult {
    /// Every project's policy is as declared.
    Synced,
    /// Harbor was asked; some project is not as declared.
    NotSynced,
    /// Harbor was not asked: the receiver or the credentials are unusable.
    Blocked,
    /// A Kubernetes API error; retried with backoff.
    Error,
}

/// Labels naming a registration reconcile's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The result.
    pub result: RegistrationResult,
}

/// Labels naming a webhook policy write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `create`, `update` or `delete`.
    pub action: &'static str,
}

/// How a connection ended, or why it was refused.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Closed by the client or by hyper (errors included).
    Closed,
    /// Nothing, or no complete request head, within the header timeout.
    HeaderTimeout,
    /// Served, then idle for the idle timeout.
    Idle,
    /// Gave way to a new connection of the same client address.
    EvictedPerClient,
    /// Gave way to a new connection: every slot was taken.
    EvictedGlobal,
    /// Refused at once: every candidate had a request in progress.
    Refused,
    /// Closed at shutdown.
    Shutdown,
}

/// Labels of connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `webhook` or `metrics`.
    pub listener: &'static str,
    /// How it ended.
    pub end: ConnectionEnd,
}

/// Labels of refresh metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// How it ended.
    pub result: RefreshOutcome,
}

/// Label values in Prometheus' usual snake_case (`outcome="not_found"`),
/// one fixed string per variant.
macro_rules! snake_case_label_values {
    ($($enum:ident { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl $enum {
            /// The label value.
            pub fn metric_label(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $enum {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.metric_label(), encoder)
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
        ClientGone => "client_gone",
    }
    ConnectionEnd {
        Closed => "closed",
        HeaderTimeout => "header_timeout",
        Idle => "idle",
        EvictedPerClient => "evicted_per_client",
        EvictedGlobal => "evicted_global",
        Refused => "refused",
        Shutdown => "shutdown",
    }
    RegistrationResult {
        Synced => "synced",
        NotSynced => "not_synced",
        Blocked => "blocked",
        Error => "error",
    }
    RefreshOutcome {
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

fn histogram() -> Histogram {
    Histogram::new(seconds_buckets())
}

/// Labels naming an error kind (an error enum's `metric_label()`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error kind.
    pub error: &'static str,
}

/// Labels of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindErrorLabels {
    /// Config kind.
    pub kind: ConfigKind,
    /// The error kind.
    pub error: &'static str,
}

/// Metrics of the webhook request path.
#[derive(Clone)]
pub struct RequestMetrics {
    /// Webhook requests by project, receiver and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Webhook request duration by outcome.
    pub duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    /// Webhook requests being handled.
    pub in_flight: Gauge,
    /// `duration`'s histograms, each looked up once.
    durations: Arc<PerOutcome<Histogram>>,
    /// The counters of requests on no receiver's path.
    unrouted: ReceiverCounters,
    /// Webhook requests that came in on a rotated receiver's previous path
    /// during its grace period, by project, receiver and outcome.
    pub grace_period: Family<RequestLabels, Counter>,
}

impl RequestMetrics {
    /// Counts one answered request of `receiver` (`None`: the path named
    /// none) and its duration. Each series is looked up (label hashing,
    /// label strings allocated) once, on its first request; after that a
    /// request costs an atomic add and a histogram observation.
    /// `grace_period`: the request came in on a rotated receiver's previous
    /// path, and is also counted in `grace_period`.
    pub fn record(
        &self,
        receiver: Option<(&ReceiverCounters, &str, &str)>,
        grace_period: bool,
        outcome: Outcome,
        elapsed: std::time::Duration,
    ) {
        let (counters, project, name) = receiver.unwrap_or((&self.unrouted, "", ""));
        let labels = || RequestLabels {
            project: project.to_owned(),
            receiver: name.to_owned(),
            outcome,
        };
        if grace_period {
            counters
                .0
                .grace_period
                .get(outcome, || {
                    self.grace_period.get_or_create(&labels()).clone()
                })
                .inc();
        }
        counters
            .0
            .requests
            .get(outcome, || self.requests.get_or_create(&labels()).clone())
            .inc();
        self.durations
            .get(outcome, || {
                self.duration
                    .get_or_create(&OutcomeLabels { outcome })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// One value per [`Outcome`], each made on first use and kept.
struct PerOutcome<T>([OnceLock<T>; Outcome::COUNT]);

impl<T> Default for PerOutcome<T> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| OnceLock::new()))
    }
}

impl<T> PerOutcome<T> {
    fn get(&self, outcome: Outcome, make: impl FnOnce() -> T) -> &T {
        self.0[outcome as usize].get_or_init(make)
    }
}

/// A receiver's request counters (one per outcome, and the same for its
/// grace-period requests), kept with its route so that counting its
/// requests needs no label lookup (see [`RequestMetrics::record`]). A cache
/// of the metrics registry: two are always equal, so it never makes two
/// routes differ.
#[derive(Clone, Default)]
pub struct ReceiverCounters(Arc<CounterHandles>);

#[derive(Default)]
struct CounterHandles {
    requests: PerOutcome<Counter>,
    grace_period: PerOutcome<Counter>,
}

impl PartialEq for ReceiverCounters {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ReceiverCounters {}

impl std::fmt::Debug for ReceiverCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiverCounters")
    }
}

/// Metrics of the listeners (both ports).
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    /// Connections ended, by listener and how.
    pub connections_closed: Family<ConnectionLabels, Counter>,
}

impl ListenerMetrics {
    /// Counts a connection of `listener` that ended as `end`.
    pub fn closed(&self, listener: &'static str, end: ConnectionEnd) {
        self.connections_closed
            .get_or_create(&ConnectionLabels { listener, end })
            .inc();
    }
}

/// Metrics of the refresher.
#[derive(Clone)]
pub struct RefreshMetrics {
    /// Warehouse refreshes by outcome.
    pub refreshes: Family<RefreshLabels, Counter>,
    /// Refresh PATCHes that failed, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Latency of refresh PATCH calls.
    pub patch_duration: Histogram,
    /// Warehouse Events dropped because their queue was full.
    pub events_dropped: Counter,
    /// Delivery jobs running or waiting for a turn (past their answer
    /// deadline, they run in the background).
    pub deliveries_running: Gauge,
}

impl Default for RefreshMetrics {
    fn default() -> Self {
        Self {
            refreshes: Family::default(),
            failures: Family::default(),
            patch_duration: histogram(),
            events_dropped: Counter::default(),
            deliveries_running: Gauge::default(),
        }
    }
}

/// Keeps a gauge one higher while it lives (requests in flight, jobs
/// running), however the work ends.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn inc(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Metrics of the watches, reconciles and leader election.
#[derive(Clone)]
pub struct ControllerMetrics {
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Failed reconciles by kind and error kind.
    pub reconcile_errors: Family<KindErrorLabels, Counter>,
    /// Reconcile duration by kind.
    pub reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Status patches written (leader only).
    pub status_writes: Family<KindLabels, Counter>,
    /// Harbor receivers found published under Kargo's base path rather
    /// than `--base-url`'s, once per receiver and change.
    pub published_base_differs: Family<KindLabels, Counter>,
    /// Watch stream restarts (errors, 410s, dropped streams) by resource.
    pub watch_restarts: Family<ResourceLabels, Counter>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(histogram),
            status_writes: Family::default(),
            published_base_differs: Family::default(),
            watch_restarts: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl ControllerMetrics {
    /// The restart counter of one watched resource.
    pub fn watch_restarts(&self, resource: &'static str) -> Counter {
        self.watch_restarts
            .get_or_create(&ResourceLabels { resource })
            .clone()
    }
}

/// Metrics of the HarborWebhookRegistration controller.
#[derive(Clone, Default)]
pub struct RegistrationMetrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Failed Harbor API calls by error kind.
    pub harbor_errors: Family<ErrorLabels, Counter>,
    /// Webhook policies created, updated and deleted in Harbor.
    pub policy_writes: Family<WriteLabels, Counter>,
}

/// Index sizes, set from the index when scraped.
#[derive(Clone, Default)]
struct IndexGauges {
    receivers: Gauge,
    warehouses: Gauge,
    repository_keys: Gauge,
}

/// All metrics of the process, registered in one registry; each part gets
/// (a cheap clone of) its own group.
pub struct Metrics {
    registry: Registry,
    /// The request path's.
    pub requests: RequestMetrics,
    /// The refresher's.
    pub refresh: RefreshMetrics,
    /// The controller's.
    pub controller: ControllerMetrics,
    /// The registration controller's.
    pub registrations: RegistrationMetrics,
    /// The listeners'.
    pub listeners: ListenerMetrics,
    index: IndexGauges,
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
        let requests = RequestMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram),
            in_flight: Gauge::default(),
            grace_period: Family::default(),
            durations: Arc::default(),
            unrouted: ReceiverCounters::default(),
        };
        let refresh = RefreshMetrics::default();
        let controller = ControllerMetrics::default();
        let registrations = RegistrationMetrics::default();
        let listeners = ListenerMetrics::default();
        let index = IndexGauges::default();
        let r = &mut registry;
        r.register(
            "connections_closed",
            "Connections ended, by listener and how (evictions and refusals included)",
            listeners.connections_closed.clone(),
        );
        r.register(
            "reconciles",
            "Reconciles by config kind and result",
            controller.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles by config kind and error kind",
            controller.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            controller.reconcile_duration.clone(),
        );
        r.register(
            "status_writes",
            "Status patches written",
            controller.status_writes.clone(),
        );
        r.register(
            "published_base_differs",
            "Harbor receivers found published under Kargo's base path instead of --base-url's (once per receiver and change)",
            controller.published_base_differs.clone(),
        );
        r.register(
            "watch_restarts",
            "Watch stream restarts",
            controller.watch_restarts.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the Lease",
            controller.leader.clone(),
        );
        r.register(
            "index_receivers",
            "Receivers in the index",
            index.receivers.clone(),
        );
        r.register(
            "index_warehouses",
            "Warehouses in the index",
            index.warehouses.clone(),
        );
        r.register(
            "index_repository_keys",
            "Distinct repository keys in the index",
            index.repository_keys.clone(),
        );
        r.register(
            "webhook_requests",
            "Webhook requests by project, receiver and outcome",
            requests.requests.clone(),
        );
        r.register(
            "webhook_request_duration_seconds",
            "Webhook request duration by outcome",
            requests.duration.clone(),
        );
        r.register(
            "webhook_requests_in_flight",
            "Webhook requests being handled",
            requests.in_flight.clone(),
        );
        r.register(
            "webhook_grace_period_requests",
            "Webhook requests on a rotated receiver's previous path, in its grace period",
            requests.grace_period.clone(),
        );
        r.register(
            "warehouse_refreshes",
            "Warehouse refreshes by outcome",
            refresh.refreshes.clone(),
        );
        r.register(
            "warehouse_refresh_failures",
            "Failed Warehouse refresh PATCHes by error kind",
            refresh.failures.clone(),
        );
        r.register(
            "refresh_patch_duration_seconds",
            "Latency of Warehouse refresh PATCH calls",
            refresh.patch_duration.clone(),
        );
        r.register(
            "refresh_deliveries_running",
            "Delivery jobs running or waiting for a turn, in the background past their answer deadline included",
            refresh.deliveries_running.clone(),
        );
        r.register(
            "warehouse_events_dropped",
            "Warehouse Events dropped because their queue was full",
            refresh.events_dropped.clone(),
        );
        r.register(
            "registration_reconciles",
            "HarborWebhookRegistration reconciles by result",
            registrations.reconciles.clone(),
        );
        r.register(
            "harbor_api_errors",
            "Failed Harbor API calls by error kind",
            registrations.harbor_errors.clone(),
        );
        r.register(
            "harbor_policy_writes",
            "Webhook policies created, updated and deleted in Harbor",
            registrations.policy_writes.clone(),
        );
        Self {
            registry,
            requests,
            refresh,
            controller,
            registrations,
            listeners,
            index,
        }
    }

    /// The Prometheus text exposition of every metric, with the index
    /// sizes as of now (read at scrape time rather than mirrored into the
    /// gauges by every index writer).
    pub fn encode(&self, sizes: Sizes) -> String {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.index.receivers.set(as_i64(sizes.receivers));
        self.index.warehouses.set(as_i64(sizes.warehouses));
        self.index
            .repository_keys
            .set(as_i64(sizes.repository_keys));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The metrics port's service: `/metrics` (Prometheus text, index sizes
/// read from `index` at scrape time), 404 elsewhere.
#[derive(Clone)]
pub struct MetricsService {
    metrics: Arc<Metrics>,
    index: Index,
}

impl MetricsService {
    /// The service exposing `metrics`.
    pub fn new(metrics: Arc<Metrics>, index: Index) -> Self {
        Self { metrics, index }
    }
}

impl hyper::service::Service<Request<Incoming>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let response = if request.uri().path() == "/metrics" {
            let text = self.metrics.encode(self.index.sizes());
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        } else {
            crate::request::Reply::not_found().into_response()
        };
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.requests
            .requests
            .get_or_create(&RequestLabels {
                project: "kargo-demo".into(),
                receiver: "harbor".into(),
                outcome: Outcome::Refreshed,
            })
            .inc();
        let text = m.encode(Sizes {
            receivers: 2,
            warehouses: 3,
            repository_keys: 1,
        });
        for needle in [
            r#"kargo_harbor_receiver_webhook_requests_total{project="kargo-demo",receiver="harbor",outcome="refreshed"} 1"#,
            "kargo_harbor_receiver_index_warehouses 3",
            "kargo_harbor_receiver_refresh_patch_duration_seconds_bucket",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
    }

    #[test]
    fn recorded_requests_land_in_their_labelled_series() {
        let m = Metrics::new();
        let counters = ReceiverCounters::default();
        let harbor = Some((&counters, "kargo-demo", "harbor"));
        let ms = std::time::Duration::from_millis(1);
        m.requests.record(harbor, false, Outcome::Unauthorized, ms);
        m.requests.record(harbor, false, Outcome::Unauthorized, ms);
        m.requests.record(harbor, true, Outcome::Refreshed, ms);
        m.requests.record(None, false, Outcome::NotFound, ms);
        // A copy of the entry (the same receiver on another path) shares them.
        let copy = counters.clone();
        let copy = Some((&copy, "kargo-demo", "harbor"));
        m.requests.record(copy, false, Outcome::Refreshed, ms);
        let text = m.encode(Sizes::default());
        for needle in [
            r#"webhook_requests_total{project="kargo-demo",receiver="harbor",outcome="unauthorized"} 2"#,
            r#"webhook_requests_total{project="kargo-demo",receiver="harbor",outcome="refreshed"} 2"#,
            r#"webhook_requests_total{project="",receiver="",outcome="not_found"} 1"#,
            r#"webhook_request_duration_seconds_count{outcome="unauthorized"} 2"#,
            r#"webhook_grace_period_requests_total{project="kargo-demo",receiver="harbor",outcome="refreshed"} 1"#,
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        // Only outcomes that happened have a series.
        assert!(!text.contains(r#"outcome="method_not_allowed""#), "{text}");
    }
}

#[cfg(test)]
mod scrape_tests {
    use super::*;
    use crate::listener::{Limits, Listener};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn a_scrape_reports_the_current_index_sizes() {
        let index = Index::new();
        index
            .repositories
            .upsert(&crate::testing::any_version_warehouse("p", "w", "h/app"));
        let limits = Limits {
            max_connections: 4,
            max_connections_per_client: 4,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        };
        let listener = Listener::bind(
            "metrics",
            "127.0.0.1:0".parse().unwrap(),
            None,
            limits,
            ListenerMetrics::default(),
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let service = MetricsService::new(Arc::new(Metrics::new()), index);
        let task = tokio::spawn(listener.serve(service, shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert!(
            text.contains("kargo_harbor_receiver_index_warehouses 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kargo_harbor_receiver_index_repository_keys 1\n"),
            "{text}"
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
