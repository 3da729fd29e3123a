//! A test double of Kargo's management controller: the ProjectConfig and
//! ClusterConfig reconcilers that write `status.webhookReceivers` and the
//! conditions on every real cluster, for every receiver type.
//!
//! Written from Kargo's source (akuity/kargo at 1c764767ae03), not from this
//! project's code, so that tests can prove the two writers converge:
//! `pkg/controller/management/projectconfigs/project_configs.go`,
//! `…/clusterconfigs/cluster_configs.go`, `pkg/kubeclient/patch.go`
//! (`PatchStatus`), `pkg/webhook/external/` (secret keys, `getSecretValues`
//! errors, `buildWebhookPath`), `pkg/conditions/conditions.go` (`Set`,
//! `Delete`), `pkg/kargo/kargo.go` (`RefreshRequested`), and from
//! Kubernetes `k8s.io/apimachinery/pkg/util/errors` (aggregate text) and
//! `k8s.io/client-go/rest` (`Request.Name` errors).
//!
//! What it reproduces:
//! - Triggers: create (also every object of the first list), a change of
//!   `metadata.generation`, a new or changed `kargo.akuity.io/refresh`
//!   annotation. Deletes are ignored. After a successful pass the object
//!   is requeued after [`KargoDoubleOptions::requeue`] (Kargo: 5 minutes);
//!   after a failed one with controller-runtime's per-item backoff (5 ms,
//!   doubling), capped at `requeue`. Secrets are not watched.
//! - A ProjectConfig request reads the ProjectConfig named like the
//!   request's *name* in the namespace of that name (Kargo's
//!   `GetProjectConfig(name)`); a ClusterConfig request reads `cluster`.
//!   Both come from the double's watch cache, as Kargo reads its informer.
//! - For each spec receiver in spec order: GET its Secret (the project's
//!   namespace, or the system resources namespace for the ClusterConfig),
//!   take the type's key, derive `path = JoinPath(basePath or "/", type,
//!   hex(sha256(project + name + value)))` and `url` = base URL with that
//!   path. Receivers whose Secret or key is missing are left out, and the
//!   conditions say why in Kargo's words.
//! - Conditions exactly as `conditions.Set` writes them: a replaced
//!   condition keeps its `lastTransitionTime` (even when its status
//!   changes), a new one gets the current second; an equal one (type,
//!   status, reason, message) with an `observedGeneration` at least as new
//!   is left alone. `status.observedGeneration` is set only when every
//!   receiver synced; `lastHandledRefresh` echoes the annotation.
//! - Writes like `PatchStatus`: a JSON merge patch of the difference
//!   between the status as Kargo's Go types marshal it before and after
//!   (lists replaced whole), to `/status`, without a resourceVersion,
//!   skipped when the difference is empty. Like Kargo, a successful pass
//!   writes twice at most: once after syncing the receivers, once with
//!   `observedGeneration` and `lastHandledRefresh`, the second diffed
//!   against the first write's response.
//!
//! Objects are handled as raw JSON ([`DynamicObject`]); the status is
//! read through a model of Kargo's own Go status type, so it drops and
//! normalises exactly what Kargo's typed client does (unknown fields,
//! fractional seconds), and nothing our `kargo-api` model would.
//!
//! Every request carries [`USER_AGENT`] (see [`is_double_request`]), so the
//! request log tells the double's writes from the program's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::RequestRecord;

/// The User-Agent of every request the double sends.
pub const USER_AGENT: &str = "kargo-management-controller-double/1";

/// Kargo's requeue interval after a successful reconcile.
pub const KARGO_REQUEUE: Duration = Duration::from_secs(5 * 60);

/// The system resources namespace Kargo's chart configures by default.
pub const DEFAULT_SYSTEM_RESOURCES_NAMESPACE: &str = "kargo-system-resources";

/// `kargo.akuity.io/refresh` (`kargoapi.AnnotationKeyRefresh`).
const REFRESH_ANNOTATION: &str = "kargo.akuity.io/refresh";

/// controller-runtime's first per-item retry delay after an error.
const FIRST_RETRY: Duration = Duration::from_millis(5);

/// How long [`KargoDouble::stop`] waits for a reconcile in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Whether a request of the emulator's log came from a [`KargoDouble`].
pub fn is_double_request(r: &RequestRecord) -> bool {
    r.user_agent.as_deref() == Some(USER_AGENT)
}

/// How a [`KargoDouble`] is configured.
#[derive(Clone, Debug)]
pub struct KargoDoubleOptions {
    /// `EXTERNAL_WEBHOOK_SERVER_BASE_URL`: `http(s)://host[:port][/path]`.
    pub base_url: String,
    /// `SYSTEM_RESOURCES_NAMESPACE`: where ClusterConfig Secrets live. Empty
    /// reproduces Kargo's "no namespace is designated" failure.
    pub system_resources_namespace: String,
    /// Requeue interval after a successful reconcile (Kargo: 5 minutes).
    pub requeue: Duration,
}

impl KargoDoubleOptions {
    /// Options with Kargo's defaults: the system resources namespace
    /// [`DEFAULT_SYSTEM_RESOURCES_NAMESPACE`] and a 5-minute requeue.
    pub fn new(base_url: impl Into<String>) -> Self {
        KargoDoubleOptions {
            base_url: base_url.into(),
            system_resources_namespace: DEFAULT_SYSTEM_RESOURCES_NAMESPACE.to_owned(),
            requeue: KARGO_REQUEUE,
        }
    }

    /// The same with another requeue interval.
    pub fn requeue(mut self, requeue: Duration) -> Self {
        self.requeue = requeue;
        self
    }

    /// The same with another system resources namespace.
    pub fn system_resources_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.system_resources_namespace = namespace.into();
        self
    }
}

/// Why a [`KargoDouble`] cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KargoDoubleError {
    /// The base URL is not one the double derives paths from the way Go
    /// does (it handles no escaping, query or fragment).
    #[error(
        "base URL {0:?}: want http(s)://host[:port][/path] with a path of A-Z a-z 0-9 - . _ ~ / only"
    )]
    BaseUrl(String),
    /// The requeue interval is zero.
    #[error("the requeue interval must not be zero")]
    Requeue,
}

/// Counters shared with the controllers.
#[derive(Debug, Default)]
struct Stats {
    reconciles: AtomicUsize,
    writes: AtomicUsize,
    failed_writes: AtomicUsize,
}

/// A running double of Kargo's management controller (both reconcilers).
/// Dropping it aborts its tasks; [`KargoDouble::stop`] ends them cleanly.
pub struct KargoDouble {
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl KargoDouble {
    /// Starts the ProjectConfig and ClusterConfig reconcilers on `client`
    /// (which should carry no User-Agent of its own: the double adds
    /// [`USER_AGENT`], and a second header would be appended, not replaced).
    /// Must be called inside a Tokio runtime.
    pub fn start(
        client: Client,
        options: KargoDoubleOptions,
    ) -> Result<KargoDouble, KargoDoubleError> {
        let base = BaseUrl::parse(&options.base_url)?;
        if options.requeue.is_zero() {
            return Err(KargoDoubleError::Requeue);
        }
        let client = with_user_agent(client);
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = watch::channel(false);
        let tasks = [Kind::Project, Kind::Cluster]
            .into_iter()
            .map(|kind| {
                let controller = Controller {
                    kind,
                    resource: kind.resource(),
                    client: client.clone(),
                    base: base.clone(),
                    system_namespace: options.system_resources_namespace.clone(),
                    requeue: options.requeue,
                    stats: stats.clone(),
                };
                tokio::spawn(controller.run(stopped.clone()))
            })
            .collect();
        Ok(KargoDouble { stats, stop, tasks })
    }

    /// Status PATCH requests sent so far (answered or not).
    pub fn writes(&self) -> usize {
        self.stats.writes.load(Ordering::Relaxed)
    }

    /// Status PATCH requests that failed.
    pub fn failed_writes(&self) -> usize {
        self.stats.failed_writes.load(Ordering::Relaxed)
    }

    /// Reconciles run so far (each dequeued request, found or not).
    pub fn reconciles(&self) -> usize {
        self.stats.reconciles.load(Ordering::Relaxed)
    }

    /// Stops both reconcilers; a reconcile in flight may finish first.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for KargoDouble {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `client` with [`USER_AGENT`] on every request.
fn with_user_agent(client: Client) -> Client {
    let default_namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let client = client.clone();
        async move {
            request.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(USER_AGENT),
            );
            client.send(request).await
        }
    });
    Client::new(service, default_namespace)
}

/// The two resources Kargo's management controller reconciles here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Project,
    Cluster,
}

impl Kind {
    fn resource(self) -> ApiResource {
        let (kind, plural) = match self {
            Kind::Project => ("ProjectConfig", "projectconfigs"),
            Kind::Cluster => ("ClusterConfig", "clusterconfigs"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", kind),
            plural,
        )
    }

    /// The Ready message once everything synced.
    fn synced_message(self) -> &'static str {
        match self {
            Kind::Project => "ProjectConfig is synced and ready for use",
            Kind::Cluster => "ClusterConfig is synced and ready for use",
        }
    }

    /// The prefix of the Ready message on failure (Kargo words the two
    /// reconcilers differently).
    fn failed_prefix(self) -> &'static str {
        match self {
            Kind::Project => "Failed to sync WebhookReceivers: ",
            Kind::Cluster => "Failed to sync webhook receivers: ",
        }
    }
}

/// A receiver type: its JSON field, its Secret key and the error its
/// `getSecretValues` returns when the key is missing.
struct ReceiverType {
    field: &'static str,
    key: &'static str,
    missing_key: &'static str,
}

/// In Kargo's registration order (Go runs `init` functions by file name),
/// which decides the type of a receiver that names several.
const RECEIVER_TYPES: [ReceiverType; 10] = [
    ReceiverType {
        field: "artifactory",
        key: "secret-token",
        missing_key: "secret data is not valid for a Artifactory WebhookReceiver",
    },
    ReceiverType {
        field: "azure",
        key: "secret",
        missing_key: "missing data key \"secret\" for Azure WebhookReceiver",
    },
    ReceiverType {
        field: "bitbucket",
        key: "secret",
        missing_key: "missing data key \"secret\" for Bitbucket WebhookReceiver",
    },
    ReceiverType {
        field: "dockerhub",
        key: "secret",
        missing_key: "missing data key \"secret\" for DockerHub WebhookReceiver",
    },
    ReceiverType {
        field: "generic",
        key: "secret",
        missing_key: "secret data is not valid for a Generic WebhookReceiver",
    },
    ReceiverType {
        field: "gitea",
        key: "secret",
        missing_key: "secret data is not valid for a Gitea WebhookReceiver",
    },
    ReceiverType {
        field: "github",
        key: "secret",
        missing_key: "missing \"secret\" data key for GitHub WebhookReceiver",
    },
    ReceiverType {
        field: "gitlab",
        key: "secret-token",
        missing_key: "missing data key \"secret-token\" for GitLab WebhookReceiver",
    },
    ReceiverType {
        field: "harbor",
        key: "auth-header",
        missing_key: "missing data key \"auth-header\" for Harbor WebhookReceiver",
    },
    ReceiverType {
        field: "quay",
        key: "secret",
        missing_key: "missing \"secret\" data key for Quay.io WebhookReceiver",
    },
];

/// One `spec.webhookReceivers[]` entry.
struct ReceiverConfig {
    name: String,
    /// The type and the Secret it references, if any type is set.
    source: Option<(&'static ReceiverType, String)>,
}

/// The receivers of a spec, in order; odd entries read as Go would decode
/// them leniently (missing strings are empty).
fn receiver_configs(spec: Option<&Value>) -> Vec<ReceiverConfig> {
    let Some(entries) = spec
        .and_then(|s| s.get("webhookReceivers"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| ReceiverConfig {
            name: str_field(entry, "name"),
            source: RECEIVER_TYPES.iter().find_map(|t| {
                let config = entry.get(t.field).filter(|v| !v.is_null())?;
                let secret = config
                    .get("secretRef")
                    .map(|r| str_field(r, "name"))
                    .unwrap_or_default();
                Some((t, secret))
            }),
        })
        .collect()
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The configured base URL, split as Go's `url.URL` keeps it.
#[derive(Clone, Debug)]
struct BaseUrl {
    /// `scheme://authority`, scheme lower-cased as Go's parser does.
    origin: String,
    /// The path, `/` when empty (`buildWebhookPath`).
    path: String,
}

impl BaseUrl {
    fn parse(raw: &str) -> Result<BaseUrl, KargoDoubleError> {
        let bad = || KargoDoubleError::BaseUrl(raw.to_owned());
        let (scheme, rest) = raw.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let authority_ok = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%'));
        let path_ok = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'));
        if !authority_ok || !path_ok {
            return Err(bad());
        }
        Ok(BaseUrl {
            origin: format!("{scheme}://{authority}"),
            path: if path.is_empty() { "/" } else { path }.to_owned(),
        })
    }

    /// `getDetails`: the receiver's name, path and URL.
    fn details(&self, project: &str, type_: &str, name: &str, value: &[u8]) -> Details {
        let mut hash = Sha256::new();
        hash.update(project.as_bytes());
        hash.update(name.as_bytes());
        hash.update(value);
        let digest = hex::encode(hash.finalize());
        let path = go_path_clean(&format!("{}/{type_}/{digest}", self.path));
        Details {
            name: name.to_owned(),
            url: format!("{}{path}", self.origin),
            path,
        }
    }
}

/// Go's `path.Clean` of a rooted path (what `url.JoinPath` applies).
fn go_path_clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `%q` for the names Kargo quotes in its messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c == ' ' || c.is_ascii_graphic() => out.push(c),
            c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if !c.is_control() && !c.is_whitespace() => out.push(c),
            c if u32::from(c) < 0x10000 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// `k8s.io/apimachinery/pkg/util/errors` aggregate text: one distinct
/// message as is, several as `[e1, e2]` (duplicates dropped).
fn aggregate(errors: &[String]) -> String {
    let mut seen = HashSet::new();
    let distinct: Vec<&str> = errors
        .iter()
        .map(String::as_str)
        .filter(|e| seen.insert(*e))
        .collect();
    match distinct.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// `conditions.truncateMessage`: at most 32768 bytes, cut on a character
/// boundary, marked.
fn truncate_message(message: String) -> String {
    const MAX: usize = 32768;
    const SUFFIX: &str = " ... (truncated)";
    if message.len() <= MAX {
        return message;
    }
    let mut end = MAX - SUFFIX.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SUFFIX}", &message[..end])
}

/// The problems client-go's `IsValidPathSegmentName` finds in a name.
fn path_segment_problems(name: &str) -> Vec<&'static str> {
    match name {
        "." => vec!["may not be '.'"],
        ".." => vec!["may not be '..'"],
        _ => [("/", "may not contain '/'"), ("%", "may not contain '%'")]
            .into_iter()
            .filter(|(needle, _)| name.contains(needle))
            .map(|(_, problem)| problem)
            .collect(),
    }
}

/// A `metav1.Condition` as Go holds it.
#[derive(Clone, Debug, PartialEq)]
struct GoCondition {
    type_: String,
    status: String,
    observed_generation: i64,
    /// `None` is Go's zero time (marshalled as `null`).
    last_transition_time: Option<DateTime<Utc>>,
    reason: String,
    message: String,
}

impl GoCondition {
    fn new(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Self {
        GoCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            observed_generation: generation,
            last_transition_time: None,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }

    fn from_json(v: &Value) -> Self {
        GoCondition {
            type_: str_field(v, "type"),
            status: str_field(v, "status"),
            observed_generation: v
                .get("observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            last_transition_time: v
                .get("lastTransitionTime")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t != go_zero_time()),
            reason: str_field(v, "reason"),
            message: str_field(v, "message"),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.type_));
        m.insert("status".into(), json!(self.status));
        if self.observed_generation != 0 {
            m.insert("observedGeneration".into(), json!(self.observed_generation));
        }
        m.insert(
            "lastTransitionTime".into(),
            match self.last_transition_time {
                // metav1.Time marshals RFC 3339 in UTC, whole seconds.
                Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                None => Value::Null,
            },
        );
        m.insert("reason".into(), json!(self.reason));
        m.insert("message".into(), json!(self.message));
        Value::Object(m)
    }

    /// `conditions.Equal`: type, status, reason and message.
    fn same_as(&self, other: &GoCondition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
    }
}

/// Go's zero `time.Time`, which `metav1.Time` treats as unset.
fn go_zero_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// `kargoapi.WebhookReceiverDetails`.
#[derive(Clone, Debug, PartialEq)]
struct Details {
    name: String,
    path: String,
    url: String,
}

/// `ProjectConfigStatus` / `ClusterConfigStatus` (same fields) as Go holds
/// it after decoding.
#[derive(Clone, Debug, Default, PartialEq)]
struct GoStatus {
    conditions: Vec<GoCondition>,
    observed_generation: i64,
    last_handled_refresh: String,
    webhook_receivers: Vec<Details>,
}

impl GoStatus {
    /// Decodes leniently: what Go would reject as a whole is read as empty.
    fn from_json(v: Option<&Value>) -> Self {
        let Some(v) = v.filter(|v| v.is_object()) else {
            return GoStatus::default();
        };
        let objects = |key: &str| -> Vec<&Value> {
            v.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|e| e.is_object()).collect())
                .unwrap_or_default()
        };
        GoStatus {
            conditions: objects("conditions")
                .into_iter()
                .map(GoCondition::from_json)
                .collect(),
            observed_generation: v
                .get("observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            last_handled_refresh: str_field(v, "lastHandledRefresh"),
            webhook_receivers: objects("webhookReceivers")
                .into_iter()
                .map(|d| Details {
                    name: str_field(d, "name"),
                    path: str_field(d, "path"),
                    url: str_field(d, "url"),
                })
                .collect(),
        }
    }

    /// `json.Marshal` of the Go type (every field `omitempty`).
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if !self.conditions.is_empty() {
            m.insert(
                "conditions".into(),
                Value::Array(self.conditions.iter().map(GoCondition::to_json).collect()),
            );
        }
        if self.observed_generation != 0 {
            m.insert("observedGeneration".into(), json!(self.observed_generation));
        }
        if !self.last_handled_refresh.is_empty() {
            m.insert(
                "lastHandledRefresh".into(),
                json!(self.last_handled_refresh),
            );
        }
        if !self.webhook_receivers.is_empty() {
            let details = self
                .webhook_receivers
                .iter()
                .map(|d| {
                    let mut e = Map::new();
                    for (key, value) in [("name", &d.name), ("path", &d.path), ("url", &d.url)] {
                        if !value.is_empty() {
                            e.insert(key.into(), json!(value));
                        }
                    }
                    Value::Object(e)
                })
                .collect();
            m.insert("webhookReceivers".into(), Value::Array(details));
        }
        m
    }

    /// `conditions.Set` for one condition, at `now` (whole seconds).
    fn set_condition(&mut self, mut condition: GoCondition, now: DateTime<Utc>) {
        condition.message = truncate_message(condition.message);
        match self
            .conditions
            .iter_mut()
            .find(|c| c.type_ == condition.type_)
        {
            Some(existing) => {
                if existing.same_as(&condition)
                    && existing.observed_generation >= condition.observed_generation
                {
                    return;
                }
                condition.last_transition_time = existing.last_transition_time.or(Some(now));
                *existing = condition;
            }
            None => {
                condition.last_transition_time = Some(now);
                self.conditions.push(condition);
            }
        }
    }

    /// `conditions.Delete`: the first condition of that type.
    fn delete_condition(&mut self, type_: &str) {
        if let Some(i) = self.conditions.iter().position(|c| c.type_ == type_) {
            self.conditions.remove(i);
        }
    }
}

/// What the receivers sync found.
enum Receivers {
    /// The spec lists none.
    None,
    /// ClusterConfig receivers but no system resources namespace.
    NoSecretsNamespace,
    /// Per receiver, in spec order: its name and details, or the cause.
    Resolved(Vec<(String, Result<Details, String>)>),
}

/// `syncWebhookReceivers`: the new status from `base` and whether every
/// receiver synced.
fn sync_webhook_receivers(
    kind: Kind,
    base: &GoStatus,
    receivers: Receivers,
    generation: i64,
    now: DateTime<Utc>,
) -> (GoStatus, bool) {
    let mut status = base.clone();
    let ready = |state: &str, reason: &str, message: &str| {
        GoCondition::new("Ready", state, reason, message, generation)
    };
    let synced = ready("True", "Synced", kind.synced_message());
    let results = match receivers {
        Receivers::None => {
            status.webhook_receivers.clear();
            status.delete_condition("Reconciling");
            status.set_condition(synced, now);
            return (status, true);
        }
        Receivers::NoSecretsNamespace => None,
        Receivers::Resolved(results) => Some(results),
    };
    status.set_condition(
        GoCondition::new(
            "Reconciling",
            "True",
            "SyncingWebhooks",
            "Syncing WebhookReceivers",
            generation,
        ),
        now,
    );
    status.set_condition(
        ready("False", "SyncingWebhooks", "Syncing WebhookReceivers"),
        now,
    );
    status.webhook_receivers.clear();
    let Some(results) = results else {
        let message = format!(
            "{}no namespace is designated for storing Secrets referenced by cluster-level \
             resources; please ensure environment variable \"SYSTEM_RESOURCES_NAMESPACE\" is set",
            kind.failed_prefix()
        );
        status.set_condition(ready("False", "SyncWebhookReceiversFailed", &message), now);
        return (status, false);
    };
    let mut errors = Vec::new();
    for (name, result) in results {
        match result {
            Ok(details) => status.webhook_receivers.push(details),
            Err(cause) => errors.push(format!(
                "error syncing WebhookReceiver {}: {cause}",
                go_quote(&name)
            )),
        }
    }
    if !errors.is_empty() {
        let message = format!("{}{}", kind.failed_prefix(), aggregate(&errors));
        status.set_condition(ready("False", "SyncWebhookReceiversFailed", &message), now);
        return (status, false);
    }
    status.delete_condition("Reconciling");
    status.set_condition(synced, now);
    (status, true)
}

/// `jsonpatch.CreateMergePatch` of two JSON objects: changed and added
/// keys, nested objects diffed, anything else (lists included) replaced
/// whole, removed keys as `null`.
fn merge_patch(original: &Map<String, Value>, modified: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, new) in modified {
        match (original.get(key), new) {
            (Some(old), new) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) => {
                let nested = merge_patch(old, new);
                if !nested.is_empty() {
                    patch.insert(key.clone(), Value::Object(nested));
                }
            }
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

/// The current time as `conditions.Set` takes it: UTC, whole seconds.
fn now_seconds() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// `(namespace, name)`; the namespace is empty for the ClusterConfig.
type Key = (String, String);

fn key_of(obj: &DynamicObject) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn refresh_token(obj: &DynamicObject) -> Option<&str> {
    obj.annotations()
        .get(REFRESH_ANNOTATION)
        .map(String::as_str)
}

/// The event filter: create, generation change, refresh requested
/// (`GenerationChangedPredicate` or `RefreshRequested`).
fn triggers(old: Option<&DynamicObject>, new: &DynamicObject) -> bool {
    let Some(old) = old else {
        return true;
    };
    if old.metadata.generation != new.metadata.generation {
        return true;
    }
    match (refresh_token(old), refresh_token(new)) {
        (_, None) => false,
        (Some(old), Some(new)) => old != new,
        (None, Some(_)) => true,
    }
}

/// How a reconcile ended, for the queue.
enum Outcome {
    /// Nothing to do (gone or being deleted): not requeued.
    Done,
    /// Success: requeue after the interval.
    Requeue,
    /// Failure: retry with backoff.
    Retry,
}

/// One reconciler (ProjectConfigs or the ClusterConfig).
struct Controller {
    kind: Kind,
    resource: ApiResource,
    client: Client,
    base: BaseUrl,
    system_namespace: String,
    requeue: Duration,
    stats: Arc<Stats>,
}

/// The reconciler's state between events: the watch cache and the queue.
#[derive(Default)]
struct State {
    cache: HashMap<Key, DynamicObject>,
    /// Keys seen since the watch (re)started listing, until `InitDone`.
    relisted: Option<HashSet<Key>>,
    /// When each queued key is due.
    queue: HashMap<Key, Instant>,
    /// Consecutive failures per key, for the backoff.
    failures: HashMap<Key, u32>,
}

impl State {
    fn enqueue(&mut self, key: Key, at: Instant) {
        self.queue
            .entry(key)
            .and_modify(|due| *due = (*due).min(at))
            .or_insert(at);
    }

    fn observe(&mut self, event: Event<DynamicObject>) {
        match event {
            Event::Init => self.relisted = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let key = key_of(&obj);
                if let Some(seen) = &mut self.relisted {
                    seen.insert(key.clone());
                }
                let old = self.cache.insert(key.clone(), obj.clone());
                if triggers(old.as_ref(), &obj) {
                    self.enqueue(key, Instant::now());
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relisted.take() {
                    self.cache.retain(|key, _| seen.contains(key));
                }
            }
            Event::Delete(obj) => {
                self.cache.remove(&key_of(&obj));
            }
        }
    }
}

impl Controller {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.resource);
        let mut events = pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        let mut state = State::default();
        loop {
            let next = state.queue.values().min().copied();
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                event = events.next() => match event {
                    None => return,
                    Some(Ok(event)) => state.observe(event),
                    Some(Err(e)) => {
                        tracing::warn!(kind = ?self.kind, error = %e, "kargo double: watch failed");
                    }
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    let now = Instant::now();
                    let due: Vec<Key> = state
                        .queue
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(key, _)| key.clone())
                        .collect();
                    for key in due {
                        state.queue.remove(&key);
                        let outcome = self.reconcile(&key, &state.cache).await;
                        let delay = match outcome {
                            Outcome::Done => {
                                state.failures.remove(&key);
                                continue;
                            }
                            Outcome::Requeue => {
                                state.failures.remove(&key);
                                self.requeue
                            }
                            Outcome::Retry => {
                                let failures = state.failures.entry(key.clone()).or_insert(0);
                                let delay = FIRST_RETRY
                                    .saturating_mul(1 << (*failures).min(20))
                                    .min(self.requeue);
                                *failures += 1;
                                delay
                            }
                        };
                        state.enqueue(key, Instant::now() + delay);
                    }
                }
            }
        }
    }

    /// `Reconcile` for one request.
    async fn reconcile(&self, key: &Key, cache: &HashMap<Key, DynamicObject>) -> Outcome {
        self.stats.reconciles.fetch_add(1, Ordering::Relaxed);
        let target = match self.kind {
            Kind::Project => (key.1.clone(), key.1.clone()),
            Kind::Cluster => (String::new(), "cluster".to_owned()),
        };
        let Some(obj) = cache.get(&target) else {
            return Outcome::Done;
        };
        if obj.metadata.deletion_timestamp.is_some() {
            return Outcome::Done;
        }
        let generation = obj.metadata.generation.unwrap_or(0);
        let (project, secrets_namespace) = match self.kind {
            Kind::Project => (target.1.clone(), target.1.clone()),
            Kind::Cluster => (String::new(), self.system_namespace.clone()),
        };
        let now = now_seconds();
        let configs = receiver_configs(obj.data.get("spec"));
        let receivers = if configs.is_empty() {
            Receivers::None
        } else if self.kind == Kind::Cluster && secrets_namespace.is_empty() {
            Receivers::NoSecretsNamespace
        } else {
            let mut resolved = Vec::with_capacity(configs.len());
            for config in configs {
                let result = self
                    .receiver_details(&config, &project, &secrets_namespace)
                    .await;
                resolved.push((config.name, result));
            }
            Receivers::Resolved(resolved)
        };
        let base = GoStatus::from_json(obj.data.get("status"));
        let (mut status, synced) =
            sync_webhook_receivers(self.kind, &base, receivers, generation, now);

        // `current` is what Kargo's `PatchStatus` diffs against: the object
        // it read, replaced by the response of each successful write.
        let mut current = obj.clone();
        if synced {
            match self.patch_status(&current, &status).await {
                Ok(Some(updated)) => current = updated,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(kind = ?self.kind, object = ?target, error = %e, "kargo double: status write failed");
                }
            }
            status.observed_generation = current.metadata.generation.unwrap_or(0);
        }
        if let Some(token) = refresh_token(&current) {
            status.last_handled_refresh = token.to_owned();
        }
        match self.patch_status(&current, &status).await {
            Ok(_) if synced => Outcome::Requeue,
            Ok(_) => Outcome::Retry,
            Err(e) => {
                tracing::warn!(kind = ?self.kind, object = ?target, error = %e, "kargo double: status write failed");
                Outcome::Retry
            }
        }
    }

    /// `PatchStatus`: the merge patch from `current`'s status to `status`;
    /// `Ok(None)` when there is nothing to write.
    async fn patch_status(
        &self,
        current: &DynamicObject,
        status: &GoStatus,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        let original = GoStatus::from_json(current.data.get("status")).to_json();
        let diff = merge_patch(&original, &status.to_json());
        if diff.is_empty() {
            return Ok(None);
        }
        let api: Api<DynamicObject> = match current.namespace() {
            Some(ns) => Api::namespaced_with(self.client.clone(), &ns, &self.resource),
            None => Api::all_with(self.client.clone(), &self.resource),
        };
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "status": Value::Object(diff) });
        match api
            .patch_status(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(updated) => Ok(Some(updated)),
            Err(e) => {
                self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// `external.NewReceiver` up to `GetDetails`: the details, or the cause
    /// in Kargo's words.
    async fn receiver_details(
        &self,
        config: &ReceiverConfig,
        project: &str,
        namespace: &str,
    ) -> Result<Details, String> {
        let Some((type_, secret_name)) = &config.source else {
            return Err("error getting receiver factory: no matching registration found".into());
        };
        let data = self
            .secret_data(namespace, secret_name)
            .await
            .map_err(|e| {
                format!(
                    "error getting Secret {} in namespace {}: {e}",
                    go_quote(secret_name),
                    go_quote(namespace)
                )
            })?;
        let Some(value) = data.get(type_.key) else {
            return Err(format!(
                "error extracting secret values from Secret {} in namespace {}: {}",
                go_quote(secret_name),
                go_quote(namespace),
                type_.missing_key
            ));
        };
        Ok(self.base.details(project, type_.field, &config.name, value))
    }

    /// A Secret's `data`, or the error text client-go would give (request
    /// validation first, then the API server's message).
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let segment = |what: &str, value: &str| {
            let problems = path_segment_problems(value);
            if problems.is_empty() {
                return Ok(());
            }
            Err(format!(
                "invalid {what} {}: [{}]",
                go_quote(value),
                problems.join(" ")
            ))
        };
        segment("namespace", namespace)?;
        if name.is_empty() {
            return Err("resource name may not be empty".into());
        }
        segment("resource name", name)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(secret) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()),
            Err(kube::Error::Api(status)) => Err(status.message.clone()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn aggregate_is_kubernetes_wording() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }

    #[test]
    fn paths_follow_url_join_path() {
        let token = b"test-auth-token-123";
        let root = BaseUrl::parse("https://webhooks.example.com").unwrap();
        let d = root.details("kargo-demo", "harbor", "harbor-wh-receiver", token);
        assert_eq!(
            d.path,
            "/harbor/17a7336dba364e59970fc2dc40e1f49e7bfd68f8176f67dcd39e28f323a992ec"
        );
        assert_eq!(d.url, format!("https://webhooks.example.com{}", d.path));
        let nested = BaseUrl::parse("HTTPS://kargo.example.com/webhook/").unwrap();
        let d = nested.details("kargo-demo", "harbor", "harbor-wh-receiver", token);
        assert!(d.path.starts_with("/webhook/harbor/17a7"), "{}", d.path);
        assert!(d
            .url
            .starts_with("https://kargo.example.com/webhook/harbor/"));
        assert_eq!(go_path_clean("//a/./b/../c//"), "/a/c");
        for bad in [
            "webhooks.example.com",
            "ftp://x",
            "https://",
            "https://x/a b",
            "https://x/?q",
            "https://x/%41",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conditions_keep_their_transition_time_when_replaced() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T00:01:00Z");
        let mut s = GoStatus::default();
        s.set_condition(GoCondition::new("Ready", "False", "R", "m", 1), t0);
        s.set_condition(GoCondition::new("Ready", "True", "Synced", "ok", 1), t1);
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.conditions[0].last_transition_time, Some(t0));
        // Equal and not newer: untouched, its generation too.
        s.set_condition(GoCondition::new("Ready", "True", "Synced", "ok", 0), t1);
        assert_eq!(s.conditions[0].observed_generation, 1);
        s.set_condition(GoCondition::new("Ready", "True", "Synced", "ok", 2), t1);
        assert_eq!(s.conditions[0].observed_generation, 2);
        assert_eq!(s.conditions[0].last_transition_time, Some(t0));
        // Deleted then set again: a new transition time, appended.
        s.set_condition(GoCondition::new("Reconciling", "True", "R", "m", 2), t0);
        s.delete_condition("Reconciling");
        s.set_condition(GoCondition::new("Reconciling", "True", "R", "m", 2), t1);
        assert_eq!(s.conditions[1].last_transition_time, Some(t1));
    }

    #[test]
    fn status_round_trips_as_go_marshals_it() {
        let raw = json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
                "lastTransitionTime": "2026-01-01T01:00:00.75+01:00", "observedGeneration": 0,
                "unknown": "dropped"
            }],
            "observedGeneration": 3,
            "lastHandledRefresh": "",
            "webhookReceivers": [{"name": "a", "path": "/p", "url": "https://x/p", "extra": 1}],
            "foreign": true
        });
        let go = GoStatus::from_json(Some(&raw)).to_json();
        assert_eq!(
            Value::Object(go),
            json!({
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"
                }],
                "observedGeneration": 3,
                "webhookReceivers": [{"name": "a", "path": "/p", "url": "https://x/p"}]
            })
        );
        assert!(GoStatus::from_json(Some(&json!("odd")))
            .to_json()
            .is_empty());
    }

    #[test]
    fn merge_patch_is_json_merge_patch_of_the_difference() {
        let a = json!({"k": 1, "list": [1, 2], "o": {"x": 1, "y": 2}, "gone": "v"});
        let b = json!({"k": 1, "list": [1, 3], "o": {"x": 1, "y": 3}, "new": true});
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(merge_patch(&a, &b)),
            json!({"list": [1, 3], "o": {"y": 3}, "new": true, "gone": null})
        );
        assert!(merge_patch(&a, &a).is_empty());
    }

    #[test]
    fn sync_without_receivers_and_without_namespace() {
        let now = at("2026-01-01T00:00:00Z");
        let mut base = GoStatus::default();
        base.webhook_receivers.push(Details {
            name: "x".into(),
            path: "/x".into(),
            url: "u".into(),
        });
        let (s, ok) = sync_webhook_receivers(Kind::Project, &base, Receivers::None, 4, now);
        assert!(ok);
        assert!(s.webhook_receivers.is_empty());
        assert_eq!(
            s.conditions,
            [GoCondition {
                last_transition_time: Some(now),
                ..GoCondition::new(
                    "Ready",
                    "True",
                    "Synced",
                    "ProjectConfig is synced and ready for use",
                    4
                )
            }]
        );
        let (s, ok) = sync_webhook_receivers(
            Kind::Cluster,
            &GoStatus::default(),
            Receivers::NoSecretsNamespace,
            1,
            now,
        );
        assert!(!ok);
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Reconciling", "Ready"]);
        assert_eq!(
            s.conditions[1].message,
            "Failed to sync webhook receivers: no namespace is designated for storing Secrets \
             referenced by cluster-level resources; please ensure environment variable \
             \"SYSTEM_RESOURCES_NAMESPACE\" is set"
        );
    }

    #[test]
    fn receiver_types_follow_registration_order() {
        let spec = json!({"webhookReceivers": [
            {"name": "both", "quay": {"secretRef": {"name": "q"}}, "github": {"secretRef": {"name": "g"}}},
            {"name": "none"},
            {"name": "null", "harbor": null},
            {"name": "bare", "harbor": {}},
        ]});
        let configs = receiver_configs(Some(&spec));
        let summary: Vec<(String, Option<(&str, String)>)> = configs
            .into_iter()
            .map(|c| (c.name, c.source.map(|(t, s)| (t.field, s))))
            .collect();
        assert_eq!(
            summary,
            [
                ("both".into(), Some(("github", "g".into()))),
                ("none".into(), None),
                ("null".into(), None),
                ("bare".into(), Some(("harbor", String::new()))),
            ]
        );
    }

    #[test]
    fn quoting_and_truncation() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        let long = "é".repeat(20000);
        let t = truncate_message(long);
        assert!(t.len() <= 32768 && t.ends_with(" ... (truncated)"));
        assert_eq!(
            path_segment_problems("a/b%c"),
            ["may not contain '/'", "may not contain '%'"]
        );
        assert_eq!(path_segment_problems(".."), ["may not be '..'"]);
    }

    #[test]
    fn triggers_are_create_generation_and_refresh() {
        let obj = |generation: i64, refresh: Option<&str>| {
            let mut o = DynamicObject::new("x", &Kind::Project.resource()).within("x");
            o.metadata.generation = Some(generation);
            if let Some(r) = refresh {
                o.metadata.annotations =
                    Some([(REFRESH_ANNOTATION.to_owned(), r.to_owned())].into());
            }
            o
        };
        assert!(triggers(None, &obj(1, None)));
        assert!(!triggers(Some(&obj(1, None)), &obj(1, None)));
        assert!(triggers(Some(&obj(1, None)), &obj(2, None)));
        assert!(triggers(Some(&obj(1, None)), &obj(1, Some("a"))));
        assert!(!triggers(Some(&obj(1, Some("a"))), &obj(1, Some("a"))));
        assert!(triggers(Some(&obj(1, Some("a"))), &obj(1, Some("b"))));
        assert!(!triggers(Some(&obj(1, Some("a"))), &obj(1, None)));
    }
}
