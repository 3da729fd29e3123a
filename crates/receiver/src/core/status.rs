//! Pure status model: from what a reconcile found out about each receiver
//! and the status as read, the status we want, the merge patch that gets
//! there (or none), and the Events worth emitting. No I/O here.
//!
//! Kargo's management controller writes the same status, for every receiver
//! type, on every cluster (`docs/behaviour.md`, "Sharing status with
//! Kargo"). We own the list entries of Harbor receivers only, and compute
//! everything else exactly as Kargo does (its `syncWebhookReceivers` and
//! `conditions.Set`), so that in steady state neither writer changes
//! anything. Where the answer depends on what only Kargo can judge (another
//! type's Secret), we defer to what is in status.
//!
//! # Kargo's outcomes and ours
//!
//! | Kargo's outcome (per pass) | we reproduce it | why |
//! |---|---|---|
//! | Harbor receiver synced: entry `{name, path, url}` in spec order | yes, byte for byte | same formula (`receiver_path`), same order; we get there first after a rotation (the Secret watch) |
//! | Harbor Secret missing: entry left out, cause `error getting Secret "s" in namespace "ns": <API server's message>` | yes | the same GET, the API server's own message |
//! | Harbor Secret without `auth-header`: cause `error extracting secret values … missing data key "auth-header" for Harbor WebhookReceiver` | yes | same rule (`data` only) |
//! | Harbor `auth-header` present but empty: synced, published | yes | Kargo hashes the empty value; every request to it is then 401, as in Kargo |
//! | Harbor `secretRef.name` empty: cause `error getting Secret "" in namespace "ns": resource name may not be empty` | yes | client-go's validation text |
//! | Harbor Secret unreadable for us (403) or API error | no: deferred | Kargo's RBAC and its view may differ from ours; its entry and conditions stay as they are |
//! | other receiver types (GitHub, …): entry or failure | no: kept as is, in place | their Secrets are not ours to read; if each has an entry, Kargo found it synced |
//! | receiver of no type: cause `error getting receiver factory: no matching registration found` | yes | needs no Secret |
//! | receiver naming several types | no: treated as another type's | Kargo picks by its registration order; the CRD forbids it |
//! | conditions: Ready True `Synced` "ProjectConfig is synced and ready for use" / "ClusterConfig …"; Reconciling removed | yes, when every receiver is judged | `conditions.Set` reproduced: time kept on replace, new conditions appended |
//! | conditions: Reconciling True `SyncingWebhooks` "Syncing WebhookReceivers"; Ready False `SyncWebhookReceiversFailed` prefix + aggregate | yes, when every failure is judged | prefix per kind, Kubernetes aggregate (`[e1, e2]`, duplicates dropped), 32768-byte cut |
//! | `observedGeneration` only when everything synced | yes, when judged | |
//! | `lastHandledRefresh` = the refresh annotation | yes | |
//! | no receivers at all: list removed, Ready True | only when a Harbor entry is to be removed | a config with nothing of ours gets no write |
//! | a ProjectConfig not named like its namespace, a ClusterConfig not named `cluster`: never written | yes | not served, not written |
//! | Harbor path under another base path (Kargo's `EXTERNAL_WEBHOOK_SERVER_BASE_URL` ≠ `--base-url`) | yes: Kargo's base kept | [`published_elsewhere`]; both paths are served |

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};
use kargo_api::{ConfigStatus, WebhookReceiverDetails};
use serde_json::{json, Value};

/// Condition type: every receiver synced.
pub const READY: &str = "Ready";
/// Condition type: receivers are being synced (some failed).
pub const RECONCILING: &str = "Reconciling";
/// Reason of `Ready=True`.
pub const REASON_SYNCED: &str = "Synced";
/// Reason of `Reconciling=True` (and of Kargo's transient `Ready=False`).
pub const REASON_SYNCING: &str = "SyncingWebhooks";
/// Reason of `Ready=False` after a failed sync.
pub const REASON_FAILED: &str = "SyncWebhookReceiversFailed";
/// Message of `Reconciling=True`.
const SYNCING_MESSAGE: &str = "Syncing WebhookReceivers";
/// Kargo's cause for a receiver of no type.
pub const NO_TYPE_CAUSE: &str = "error getting receiver factory: no matching registration found";
/// Kargo's limit on condition messages (`conditions.truncateMessage`).
const MAX_MESSAGE: usize = 32768;
/// What marks a cut message.
const TRUNCATED: &str = " ... (truncated)";
/// The path segment of Harbor receivers.
const HARBOR_SEGMENT: &str = "harbor";

/// Which of Kargo's two reconcilers words the conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wording {
    /// `projectconfigs`.
    ProjectConfig,
    /// `clusterconfigs`.
    ClusterConfig,
}

impl Wording {
    fn synced(self) -> &'static str {
        match self {
            Wording::ProjectConfig => "ProjectConfig is synced and ready for use",
            Wording::ClusterConfig => "ClusterConfig is synced and ready for use",
        }
    }

    /// Kargo's two reconcilers spell the prefix differently.
    fn failed_prefix(self) -> &'static str {
        match self {
            Wording::ProjectConfig => "Failed to sync WebhookReceivers: ",
            Wording::ClusterConfig => "Failed to sync webhook receivers: ",
        }
    }
}

/// Where a receiver is published: a status entry's `path` and `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Request path, base path included.
    pub path: String,
    /// Full URL.
    pub url: String,
}

/// What resolving one Harbor receiver gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HarborOutcome {
    /// Its Secret gave a token: published there.
    Synced(Published),
    /// Kargo would leave it out for this cause (its words, never the token).
    Failed {
        /// E.g. `error getting Secret "s" in namespace "ns": secrets "s" not found`.
        cause: String,
    },
    /// We cannot tell now (forbidden, API error): defer to the status.
    Unknown,
}

/// One `spec.webhookReceivers[]` entry, in spec order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecReceiver {
    /// A Harbor receiver: ours.
    Harbor {
        /// Receiver name.
        name: String,
        /// What its Secret gave.
        outcome: HarborOutcome,
    },
    /// Another type's receiver (or several types): Kargo's alone.
    Other {
        /// Receiver name.
        name: String,
    },
    /// No type at all: Kargo fails it with [`NO_TYPE_CAUSE`].
    Untyped {
        /// Receiver name.
        name: String,
    },
}

impl SpecReceiver {
    fn name(&self) -> &str {
        match self {
            SpecReceiver::Harbor { name, .. }
            | SpecReceiver::Other { name }
            | SpecReceiver::Untyped { name } => name,
        }
    }
}

/// What the reconcile observed besides the receivers.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// Whose words.
    pub wording: Wording,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The config's own `kargo.akuity.io/refresh` annotation.
    pub refresh: Option<&'a str>,
    /// The status as read.
    pub current: Option<&'a ConfigStatus>,
}

/// The status we want, and how much of it we could judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The whole status (others' fields as read).
    pub status: ConfigStatus,
    /// Whether Ready/Reconciling/observedGeneration were computed (`false`:
    /// kept as read, because some receiver's outcome is not ours to judge).
    pub judged: bool,
}

/// Splits a Harbor path `<base>/harbor/<64 lowercase hex>` into its base
/// path (`""` for the root) and its hash.
pub fn harbor_path(path: &str) -> Option<(&str, &str)> {
    let (rest, hash) = path.rsplit_once('/')?;
    let (base, segment) = rest.rsplit_once('/')?;
    let hex = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (segment == HARBOR_SEGMENT && hex).then_some((base, hash))
}

/// Whether a status entry is one of ours: its name is a Harbor receiver of
/// the spec, or (a receiver removed from the spec) its path is a Harbor one.
fn is_ours(entry: &WebhookReceiverDetails, spec: &[SpecReceiver]) -> bool {
    match spec.iter().find(|r| r.name() == entry.name) {
        Some(r) => matches!(r, SpecReceiver::Harbor { .. }),
        None => harbor_path(&entry.path).is_some(),
    }
}

/// The status we want, or `None` when nothing in it is ours (no Harbor
/// receiver in the spec, no Harbor entry in status): such a config gets no
/// write at all.
pub fn desired_status(
    observed: &Observed<'_>,
    spec: &[SpecReceiver],
    now: &Time,
) -> Option<Desired> {
    let empty = ConfigStatus::default();
    let current = observed.current.unwrap_or(&empty);
    let harbor_in_spec = spec
        .iter()
        .any(|r| matches!(r, SpecReceiver::Harbor { .. }));
    let ours_in_status = current.webhook_receivers.iter().any(|e| is_ours(e, spec));
    if !harbor_in_spec && !ours_in_status {
        return None;
    }

    let mut status = current.clone();
    status.webhook_receivers = receiver_list(current, spec);
    let judged = spec.iter().all(|r| match r {
        SpecReceiver::Harbor { outcome, .. } => *outcome != HarborOutcome::Unknown,
        SpecReceiver::Other { name } => current.webhook_receivers.iter().any(|e| &e.name == name),
        SpecReceiver::Untyped { .. } => true,
    });
    if judged {
        let synced = sync_conditions(&mut status.conditions, observed, spec, now);
        if synced {
            status.observed_generation = observed.generation;
        }
    }
    if let Some(refresh) = observed.refresh {
        status.last_handled_refresh = Some(refresh.to_owned());
    }
    Some(Desired { status, judged })
}

/// The list: every entry not ours as read, in place; ours replaced,
/// inserted (in spec order relative to the others) or dropped.
fn receiver_list(current: &ConfigStatus, spec: &[SpecReceiver]) -> Vec<WebhookReceiverDetails> {
    let position = |name: &str| spec.iter().position(|r| r.name() == name);
    let ours: Vec<(usize, WebhookReceiverDetails)> = spec
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let SpecReceiver::Harbor { name, outcome } = r else {
                return None;
            };
            let entry = match outcome {
                HarborOutcome::Synced(p) => Some(WebhookReceiverDetails {
                    name: name.clone(),
                    path: p.path.clone(),
                    url: p.url.clone(),
                }),
                HarborOutcome::Failed { .. } => None,
                HarborOutcome::Unknown => current
                    .webhook_receivers
                    .iter()
                    .find(|e| &e.name == name)
                    .cloned(),
            };
            entry.map(|e| (i, e))
        })
        .collect();
    let mut ours = ours.into_iter().peekable();
    let mut list = Vec::with_capacity(current.webhook_receivers.len() + spec.len());
    for entry in current
        .webhook_receivers
        .iter()
        .filter(|e| !is_ours(e, spec))
    {
        if let Some(at) = position(&entry.name) {
            while let Some((_, e)) = ours.next_if(|(i, _)| *i < at) {
                list.push(e);
            }
        }
        list.push(entry.clone());
    }
    list.extend(ours.map(|(_, e)| e));
    list
}

/// Kargo's `syncWebhookReceivers` on the conditions; returns whether every
/// receiver synced.
fn sync_conditions(
    conditions: &mut Vec<Condition>,
    observed: &Observed<'_>,
    spec: &[SpecReceiver],
    now: &Time,
) -> bool {
    let generation = observed.generation;
    let wording = observed.wording;
    let make = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation.filter(|g| *g != 0),
        last_transition_time: now.clone(),
    };
    let synced = make(READY, "True", REASON_SYNCED, wording.synced().to_owned());
    if spec.is_empty() {
        delete_condition(conditions, RECONCILING);
        set_condition(conditions, synced);
        return true;
    }
    let syncing = |type_| make(type_, "True", REASON_SYNCING, SYNCING_MESSAGE.to_owned());
    set_condition(conditions, syncing(RECONCILING));
    set_condition(
        conditions,
        make(READY, "False", REASON_SYNCING, SYNCING_MESSAGE.to_owned()),
    );
    let errors: Vec<String> = spec
        .iter()
        .filter_map(|r| {
            match r {
                SpecReceiver::Harbor {
                    outcome: HarborOutcome::Failed { cause },
                    ..
                } => Some(cause.as_str()),
                SpecReceiver::Untyped { .. } => Some(NO_TYPE_CAUSE),
                _ => None,
            }
            .map(|cause| {
                format!(
                    "error syncing WebhookReceiver {}: {cause}",
                    go_quote(r.name())
                )
            })
        })
        .collect();
    if errors.is_empty() {
        delete_condition(conditions, RECONCILING);
        set_condition(conditions, synced);
        return true;
    }
    let message = format!("{}{}", wording.failed_prefix(), aggregate(&errors));
    set_condition(conditions, make(READY, "False", REASON_FAILED, message));
    false
}

/// Kargo's `conditions.Set`: an equal condition (type, status, reason,
/// message) at least as new is left alone; a replaced one keeps its
/// `lastTransitionTime` (even when its status changes); a new one is
/// appended with `condition`'s time.
fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    condition.message = truncate(condition.message);
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            let equal = existing.status == condition.status
                && existing.reason == condition.reason
                && existing.message == condition.message;
            if equal
                && existing.observed_generation.unwrap_or(0)
                    >= condition.observed_generation.unwrap_or(0)
            {
                return;
            }
            condition.last_transition_time = existing.last_transition_time.clone();
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

/// Kargo's `conditions.Delete`: the first condition of that type.
fn delete_condition(conditions: &mut Vec<Condition>, type_: &str) {
    if let Some(i) = conditions.iter().position(|c| c.type_ == type_) {
        conditions.remove(i);
    }
}

/// `k8s.io/apimachinery/pkg/util/errors` aggregate text: one distinct error
/// as is, several as `[e1, e2]`, duplicates dropped.
fn aggregate(errors: &[String]) -> String {
    let mut distinct: Vec<&str> = Vec::with_capacity(errors.len());
    for e in errors {
        if !distinct.contains(&e.as_str()) {
            distinct.push(e);
        }
    }
    match distinct.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Kargo's message cut: at most 32768 bytes, on a character boundary,
/// marked ` ... (truncated)`.
fn truncate(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE - TRUNCATED.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &message[..end])
}

/// Go's `%q` of a string (the names Kargo quotes in its messages).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let escaped = match c {
            '"' | '\\' => format!("\\{c}"),
            '\u{7}' => "\\a".into(),
            '\u{8}' => "\\b".into(),
            '\u{c}' => "\\f".into(),
            '\n' => "\\n".into(),
            '\r' => "\\r".into(),
            '\t' => "\\t".into(),
            '\u{b}' => "\\v".into(),
            c if c.is_ascii_control() => format!("\\x{:02x}", u32::from(c)),
            c if c.is_control() => format!("\\u{:04x}", u32::from(c)),
            c => c.to_string(),
        };
        out.push_str(&escaped);
    }
    out.push('"');
    out
}

/// The JSON merge patch (for `/status`) that turns `current` into
/// `desired`, or `None` when nothing differs. Only fields that differ are
/// sent (lists whole; an emptied list as `null`, which is how Kargo's
/// `omitempty` diff removes it). `resource_version` makes the write
/// conditional, so a concurrent writer's change is never lost (409 → the
/// watch brings the fresh object → recomputed).
pub fn status_patch(
    current: Option<&ConfigStatus>,
    desired: &ConfigStatus,
    resource_version: Option<&str>,
) -> Option<Value> {
    let empty = ConfigStatus::default();
    let cur = current.unwrap_or(&empty);
    let mut status = serde_json::Map::new();
    if cur.conditions != desired.conditions {
        status.insert("conditions".into(), json!(desired.conditions));
    }
    if cur.observed_generation != desired.observed_generation {
        status.insert(
            "observedGeneration".into(),
            json!(desired.observed_generation),
        );
    }
    if cur.last_handled_refresh != desired.last_handled_refresh {
        status.insert(
            "lastHandledRefresh".into(),
            json!(desired.last_handled_refresh),
        );
    }
    if cur.webhook_receivers != desired.webhook_receivers {
        let list = &desired.webhook_receivers;
        let value = if list.is_empty() {
            Value::Null
        } else {
            json!(list)
        };
        status.insert("webhookReceivers".into(), value);
    }
    if status.is_empty() {
        return None;
    }
    let mut patch = json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Some(patch)
}

/// Who last set `status.webhookReceivers`, as the API server's
/// `metadata.managedFields` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListWriter {
    /// This program (its field manager).
    Us,
    /// Another manager (Kargo's controller, or a person).
    Other,
    /// No managedFields entry says (the API server does not track them,
    /// or nobody set the list yet).
    Unknown,
}

/// Whether a managedFields entry owns `status.webhookReceivers`.
pub fn owns_receiver_list(entry: &ManagedFieldsEntry) -> bool {
    entry
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:status"))
        .and_then(|s| s.get("f:webhookReceivers"))
        .is_some()
}

/// Who last set the (atomic) list: the manager owning it.
pub fn list_writer(managed_fields: &[ManagedFieldsEntry], our_manager: &str) -> ListWriter {
    let mut owners = managed_fields.iter().filter(|e| owns_receiver_list(e));
    match owners.next() {
        None => ListWriter::Unknown,
        Some(first) => {
            let ours = |e: &ManagedFieldsEntry| e.manager.as_deref() == Some(our_manager);
            if ours(first) && owners.all(ours) {
                ListWriter::Us
            } else {
                ListWriter::Other
            }
        }
    }
}

/// A Harbor receiver of ours published under a base path that is Kargo's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adoption {
    /// What to publish: Kargo's base with our current hash (what Kargo
    /// itself writes at its next pass).
    pub published: Published,
    /// Kargo's base path (`""` for the root).
    pub kargo_base: String,
}

/// The base path of a non-Harbor entry's path `<base>/<type>/<hash>`.
fn entry_base(path: &str) -> Option<&str> {
    let (rest, _) = path.rsplit_once('/')?;
    Some(rest.rsplit_once('/')?.0)
}

/// The base paths Kargo evidently publishes under: those of entries that
/// are not Harbor ones (only Kargo writes them).
pub fn kargo_bases(current: Option<&ConfigStatus>) -> BTreeSet<String> {
    current
        .map(|s| s.webhook_receivers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| harbor_path(&e.path).is_none())
        .filter_map(|e| entry_base(&e.path))
        .map(str::to_owned)
        .collect()
}

/// Whether receiver `name`'s status entry sits under another base path than
/// ours (`ours`, under `our_base`) that is Kargo's, and if so where to
/// publish instead of overwriting it back and forth.
///
/// The other base is Kargo's when Kargo evidently uses it (`known`: learned
/// from other types' entries or earlier decisions), or when the list was
/// last set by someone other than us. When we set it ourselves and nothing
/// says the base is Kargo's, it is our own earlier base (`--base-url`
/// changed): `None`, ours replaces it.
pub fn published_elsewhere(
    current: Option<&ConfigStatus>,
    name: &str,
    ours: &Published,
    our_base: &str,
    writer: ListWriter,
    known: &BTreeSet<String>,
) -> Option<Adoption> {
    let entry = current?.webhook_receivers.iter().find(|e| e.name == name)?;
    let (base, _) = harbor_path(&entry.path)?;
    let (_, our_hash) = harbor_path(&ours.path)?;
    if base == our_base || (writer == ListWriter::Us && !known.contains(base)) {
        return None;
    }
    let origin = entry
        .url
        .strip_suffix(entry.path.as_str())
        .or_else(|| ours.url.strip_suffix(ours.path.as_str()))?;
    let path = format!("{base}/{HARBOR_SEGMENT}/{our_hash}");
    Some(Adoption {
        published: Published {
            url: format!("{origin}{path}"),
            path,
        },
        kargo_base: base.to_owned(),
    })
}

/// An Event to emit on the config (leader only, transitions only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// `ReceiverReady`, `ReceiverNotReady` or `PublishedBaseDiffers`.
    pub reason: &'static str,
    /// The note; names the receiver and the cause, never the token or path.
    pub note: String,
}

/// Events for our receivers whose state changed between `current` (as
/// published) and `spec`. Derived from the published status only, so a new
/// leader does not repeat its predecessor's Events.
pub fn transition_events(current: Option<&ConfigStatus>, spec: &[SpecReceiver]) -> Vec<EventSpec> {
    let published = current
        .map(|s| s.webhook_receivers.as_slice())
        .unwrap_or_default();
    let ready_message = current
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.message.as_str())
        .unwrap_or_default();
    let mut events = Vec::new();
    for r in spec {
        let SpecReceiver::Harbor { name, outcome } = r else {
            continue;
        };
        match outcome {
            HarborOutcome::Synced(p) => {
                if !published
                    .iter()
                    .any(|d| &d.name == name && d.path == p.path)
                {
                    // The URL ends in a hash of the token and is as secret
                    // as the token: it belongs in the status (as in Kargo),
                    // not in Events, which far more users may read.
                    events.push(EventSpec {
                        warning: false,
                        reason: "ReceiverReady",
                        note: format!(
                            "Harbor webhook receiver {name:?} is ready; its URL is in status.webhookReceivers"
                        ),
                    });
                }
            }
            HarborOutcome::Failed { cause } => {
                let was_ready = published.iter().any(|d| &d.name == name);
                if was_ready || !ready_message.contains(cause.as_str()) {
                    events.push(EventSpec {
                        warning: true,
                        reason: "ReceiverNotReady",
                        note: format!("Harbor webhook receiver {name:?}: {cause}"),
                    });
                }
            }
            HarborOutcome::Unknown => {}
        }
    }
    events
}

/// The Warning Event for a receiver found under Kargo's base path.
pub fn base_differs_event(name: &str, our_base: &str, kargo_base: &str) -> EventSpec {
    EventSpec {
        warning: true,
        reason: "PublishedBaseDiffers",
        note: format!(
            "Harbor webhook receiver {name:?} is published under base path {:?} (Kargo's EXTERNAL_WEBHOOK_SERVER_BASE_URL), not {:?} (--base-url); Kargo's is kept and both are served",
            display_base(kargo_base),
            display_base(our_base)
        ),
    }
}

/// A base path as people write it (`/` for the root).
pub fn display_base(base: &str) -> &str {
    if base.is_empty() {
        "/"
    } else {
        base
    }
}

#[cfg(test)]
mod tests;
