//! Pure status computation: from what a reconcile found out about each
//! receiver to the status we want, the merge patch that gets there (or none
//! when nothing changed), and the Events worth emitting. No I/O here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kargo_api::{ConfigStatus, WebhookReceiverDetails};
use serde_json::{json, Value};

/// Condition type: all Harbor receivers are usable.
pub const READY: &str = "Ready";
/// Condition type: work is pending (an API error is being retried).
pub const RECONCILING: &str = "Reconciling";

/// Reason of `Ready=True`.
pub const REASON_SYNCED: &str = "Synced";
/// The referenced Secret does not exist.
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
/// The Secret has no usable `auth-header` key.
pub const REASON_SECRET_KEY_MISSING: &str = "SecretKeyMissing";
/// We may not read the Secret (RBAC).
pub const REASON_SECRET_FORBIDDEN: &str = "SecretForbidden";
/// Reading the Secret failed with a transient error.
pub const REASON_SECRET_READ_FAILED: &str = "SecretReadFailed";
/// The receiver entry itself is unusable.
pub const REASON_INVALID_RECEIVER: &str = "InvalidReceiver";
/// Several receivers fail for different reasons.
pub const REASON_RECEIVERS_NOT_READY: &str = "ReceiversNotReady";
/// `Reconciling=True` while an API error is retried.
pub const REASON_RETRYING: &str = "RetryingAfterError";

/// Kargo's limit on condition messages.
const MAX_MESSAGE: usize = 32768;

/// What a reconcile found out about one entry of `spec.webhookReceivers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverOutcome {
    /// A Harbor receiver that is in the index and can be called.
    Ready {
        /// Receiver name.
        name: String,
        /// Request path (base path included).
        path: String,
        /// Full URL.
        url: String,
    },
    /// A Harbor receiver that cannot be served.
    NotReady {
        /// Receiver name.
        name: String,
        /// Condition reason (CamelCase, matches Kargo's pattern).
        reason: &'static str,
        /// Human explanation naming the receiver and the cause; never the token.
        message: String,
    },
    /// Not a Harbor receiver: someone else's business.
    Skipped {
        /// Receiver name.
        name: String,
        /// Its kind (`github`, …).
        kind: String,
    },
}

/// What the reconcile observed besides the receivers.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The config's own `kargo.akuity.io/refresh` annotation.
    pub refresh: Option<&'a str>,
    /// The current status (as last read).
    pub current: Option<&'a ConfigStatus>,
    /// Some API call failed and the reconcile will be retried (the
    /// summary names what failed, without error detail so that it is stable).
    pub retrying: Option<&'a str>,
}

/// The status we want. Conditions of other types are kept as they are;
/// `lastTransitionTime` is kept when a condition's status does not change.
pub fn desired_status(
    observed: &Observed<'_>,
    outcomes: &[ReceiverOutcome],
    now: &Time,
) -> ConfigStatus {
    let current = observed.current;
    let webhook_receivers = outcomes
        .iter()
        .filter_map(|o| match o {
            ReceiverOutcome::Ready { name, path, url } => Some(WebhookReceiverDetails {
                name: name.clone(),
                path: path.clone(),
                url: url.clone(),
            }),
            _ => None,
        })
        .collect();

    let (ready_status, ready_reason, ready_message) = ready_condition(outcomes);
    let mut ours = vec![condition(
        current,
        READY,
        ready_status,
        ready_reason,
        ready_message,
        observed.generation,
        now,
    )];
    if let Some(what) = observed.retrying {
        ours.push(condition(
            current,
            RECONCILING,
            "True",
            REASON_RETRYING,
            truncate(format!("retrying: {what}")),
            observed.generation,
            now,
        ));
    }

    // Others' conditions keep their place; ours replace theirs in place or
    // are appended; a Reconciling we no longer want disappears.
    let mut conditions: Vec<Condition> = Vec::new();
    for c in current.map(|s| s.conditions.as_slice()).unwrap_or_default() {
        if let Some(pos) = ours.iter().position(|o| o.type_ == c.type_) {
            conditions.push(ours.remove(pos));
        } else if c.type_ != RECONCILING && c.type_ != READY {
            conditions.push(c.clone());
        }
    }
    conditions.extend(ours);

    ConfigStatus {
        conditions,
        observed_generation: observed
            .generation
            .or_else(|| current.and_then(|s| s.observed_generation)),
        last_handled_refresh: observed
            .refresh
            .map(str::to_owned)
            .or_else(|| current.and_then(|s| s.last_handled_refresh.clone())),
        webhook_receivers,
    }
}

fn ready_condition(outcomes: &[ReceiverOutcome]) -> (&'static str, &'static str, String) {
    let ready = outcomes
        .iter()
        .filter(|o| matches!(o, ReceiverOutcome::Ready { .. }))
        .count();
    let failures: Vec<(&'static str, &str)> = outcomes
        .iter()
        .filter_map(|o| match o {
            ReceiverOutcome::NotReady {
                reason, message, ..
            } => Some((*reason, message.as_str())),
            _ => None,
        })
        .collect();
    let skipped: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            ReceiverOutcome::Skipped { name, kind } => Some(format!("{name} ({kind})")),
            _ => None,
        })
        .collect();
    let skipped_note = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped non-Harbor receiver(s): {}", skipped.join(", "))
    };
    if failures.is_empty() {
        let message = if ready == 0 && skipped.is_empty() {
            "no Harbor webhook receivers configured".to_owned()
        } else {
            format!("{ready} Harbor webhook receiver(s) ready{skipped_note}")
        };
        return ("True", REASON_SYNCED, truncate(message));
    }
    let first = failures[0].0;
    let reason = if failures.iter().all(|(r, _)| *r == first) {
        first
    } else {
        REASON_RECEIVERS_NOT_READY
    };
    let messages: Vec<&str> = failures.iter().map(|(_, m)| *m).collect();
    let message = format!(
        "{}; {ready} Harbor webhook receiver(s) ready{skipped_note}",
        messages.join("; ")
    );
    ("False", reason, truncate(message))
}

fn condition(
    current: Option<&ConfigStatus>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    message
}

/// The JSON merge patch (for `/status`) that turns `current` into `desired`,
/// or `None` when our fields already match. Only our fields are sent:
/// `conditions` (a merge patch replaces lists whole, so others' conditions
/// are included as read), `observedGeneration`, `lastHandledRefresh`,
/// `webhookReceivers`. `resource_version` makes the write conditional, so a
/// concurrent writer's condition is never lost (409 → retry).
pub fn status_patch(
    current: Option<&ConfigStatus>,
    desired: &ConfigStatus,
    resource_version: Option<&str>,
) -> Option<Value> {
    let empty = ConfigStatus::default();
    let cur = current.unwrap_or(&empty);
    let same = current.is_some()
        && cur.conditions == desired.conditions
        && cur.observed_generation == desired.observed_generation
        && cur.last_handled_refresh == desired.last_handled_refresh
        && cur.webhook_receivers == desired.webhook_receivers;
    if same {
        return None;
    }
    let mut status = serde_json::Map::new();
    status.insert("conditions".into(), json!(desired.conditions));
    status.insert("webhookReceivers".into(), json!(desired.webhook_receivers));
    if let Some(g) = desired.observed_generation {
        status.insert("observedGeneration".into(), json!(g));
    }
    if let Some(r) = &desired.last_handled_refresh {
        status.insert("lastHandledRefresh".into(), json!(r));
    }
    let mut patch = json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Some(patch)
}

/// An Event to emit on the config (leader only, transitions only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// `ReceiverReady` or `ReceiverNotReady`.
    pub reason: &'static str,
    /// The note; names the receiver and the cause, never the token.
    pub note: String,
}

/// Events for receivers whose readiness changed between `current` (as
/// published) and `outcomes`. Derived from the published status only, so a
/// new leader does not repeat its predecessor's Events.
pub fn transition_events(
    current: Option<&ConfigStatus>,
    outcomes: &[ReceiverOutcome],
) -> Vec<EventSpec> {
    let published: Vec<&WebhookReceiverDetails> = current
        .map(|s| s.webhook_receivers.iter().collect())
        .unwrap_or_default();
    let ready_message = current
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.message.as_str())
        .unwrap_or_default();
    let mut events = Vec::new();
    for outcome in outcomes {
        match outcome {
            ReceiverOutcome::Ready { name, path, .. } => {
                let was = published.iter().any(|d| &d.name == name && &d.path == path);
                if !was {
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
            ReceiverOutcome::NotReady { name, message, .. } => {
                let was_ready = published.iter().any(|d| &d.name == name);
                if was_ready || !ready_message.contains(message.as_str()) {
                    events.push(EventSpec {
                        warning: true,
                        reason: "ReceiverNotReady",
                        note: message.clone(),
                    });
                }
            }
            ReceiverOutcome::Skipped { .. } => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn ready(name: &str) -> ReceiverOutcome {
        ReceiverOutcome::Ready {
            name: name.into(),
            path: format!("/harbor/{name}"),
            url: format!("https://h/harbor/{name}"),
        }
    }

    fn missing(name: &str) -> ReceiverOutcome {
        ReceiverOutcome::NotReady {
            name: name.into(),
            reason: REASON_SECRET_NOT_FOUND,
            message: format!("receiver {name:?}: Secret \"ns/{name}-s\" not found"),
        }
    }

    fn no_key(name: &str) -> ReceiverOutcome {
        ReceiverOutcome::NotReady {
            name: name.into(),
            reason: REASON_SECRET_KEY_MISSING,
            message: format!(
                "receiver {name:?}: Secret \"ns/{name}-s\" has no key \"auth-header\""
            ),
        }
    }

    fn skipped(name: &str) -> ReceiverOutcome {
        ReceiverOutcome::Skipped {
            name: name.into(),
            kind: "github".into(),
        }
    }

    fn observed<'a>(current: Option<&'a ConfigStatus>) -> Observed<'a> {
        Observed {
            generation: Some(3),
            refresh: None,
            current,
            retrying: None,
        }
    }

    fn cond(status: &ConfigStatus, type_: &str) -> Option<Condition> {
        status.conditions.iter().find(|c| c.type_ == type_).cloned()
    }

    #[test]
    fn ready_condition_table() {
        // (outcomes, status, reason, message fragments)
        let cases: Vec<(Vec<ReceiverOutcome>, &str, &str, Vec<&str>)> = vec![
            (
                vec![],
                "True",
                "Synced",
                vec!["no Harbor webhook receivers"],
            ),
            (
                vec![ready("a")],
                "True",
                "Synced",
                vec!["1 Harbor webhook receiver(s) ready"],
            ),
            (
                vec![ready("a"), ready("b")],
                "True",
                "Synced",
                vec!["2 Harbor"],
            ),
            (
                vec![ready("a"), skipped("gh")],
                "True",
                "Synced",
                vec!["1 Harbor", "skipped non-Harbor receiver(s): gh (github)"],
            ),
            (
                vec![skipped("gh")],
                "True",
                "Synced",
                vec!["0 Harbor", "gh (github)"],
            ),
            (
                vec![missing("a")],
                "False",
                "SecretNotFound",
                vec!["receiver \"a\": Secret \"ns/a-s\" not found", "0 Harbor"],
            ),
            (
                vec![ready("a"), no_key("b")],
                "False",
                "SecretKeyMissing",
                vec!["\"auth-header\"", "1 Harbor"],
            ),
            (
                vec![missing("a"), no_key("b"), skipped("gh")],
                "False",
                "ReceiversNotReady",
                vec!["receiver \"a\"", "receiver \"b\"", "gh (github)"],
            ),
            (
                vec![missing("a"), missing("b")],
                "False",
                "SecretNotFound",
                vec!["\"a\"", "\"b\""],
            ),
        ];
        let re = regex::Regex::new("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$").unwrap();
        for (outcomes, status, reason, fragments) in cases {
            let s = desired_status(&observed(None), &outcomes, &t(100));
            let c = cond(&s, READY).unwrap();
            assert_eq!(c.status, status, "{outcomes:?}");
            assert_eq!(c.reason, reason, "{outcomes:?}");
            for f in fragments {
                assert!(c.message.contains(f), "{f:?} not in {:?}", c.message);
            }
            assert_eq!(c.observed_generation, Some(3));
            assert_eq!(c.last_transition_time, t(100));
            assert!(re.is_match(&c.reason));
            let ready_names: Vec<&str> = s
                .webhook_receivers
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            let want: Vec<&str> = outcomes
                .iter()
                .filter_map(|o| match o {
                    ReceiverOutcome::Ready { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(ready_names, want);
            assert!(cond(&s, RECONCILING).is_none());
        }
    }

    #[test]
    fn transition_times_and_foreign_conditions() {
        let first = desired_status(&observed(None), &[ready("a")], &t(100));
        let mut current = first.clone();
        current.conditions.insert(
            0,
            Condition {
                type_: "Healthy".into(),
                status: "True".into(),
                reason: "Other".into(),
                message: "someone else's".into(),
                observed_generation: None,
                last_transition_time: t(5),
            },
        );
        // Same status later: time kept, foreign condition kept in place, no patch.
        let again = desired_status(&observed(Some(&current)), &[ready("a")], &t(200));
        assert_eq!(again.conditions[0].type_, "Healthy");
        assert_eq!(cond(&again, READY).unwrap().last_transition_time, t(100));
        assert_eq!(status_patch(Some(&current), &again, Some("7")), None);
        // Status flips: new time; message change alone keeps the time.
        let flipped = desired_status(&observed(Some(&current)), &[missing("a")], &t(300));
        assert_eq!(cond(&flipped, READY).unwrap().last_transition_time, t(300));
        let still = desired_status(&observed(Some(&flipped)), &[no_key("a")], &t(400));
        assert_eq!(cond(&still, READY).unwrap().last_transition_time, t(300));
        assert_eq!(still.conditions.len(), 2);
        // Retrying adds Reconciling; recovery removes it.
        let mut o = observed(Some(&still));
        o.retrying = Some("reading Secret \"ns/a-s\"");
        let retrying = desired_status(&o, &[no_key("a")], &t(500));
        let rc = cond(&retrying, RECONCILING).unwrap();
        assert_eq!(
            (rc.status.as_str(), rc.reason.as_str()),
            ("True", "RetryingAfterError")
        );
        let recovered = desired_status(&observed(Some(&retrying)), &[ready("a")], &t(600));
        assert!(cond(&recovered, RECONCILING).is_none());
        assert_eq!(recovered.conditions.len(), 2);
    }

    #[test]
    fn patch_only_when_something_changed() {
        let base = desired_status(&observed(None), &[ready("a")], &t(1));
        // (description, desired, want a patch)
        let mut new_gen = base.clone();
        new_gen.observed_generation = Some(4);
        let mut refreshed = base.clone();
        refreshed.last_handled_refresh = Some("x".into());
        let mut other_path = base.clone();
        other_path.webhook_receivers[0].path = "/harbor/new".into();
        let cases = [
            ("unchanged", base.clone(), false),
            ("generation", new_gen, true),
            ("refresh", refreshed, true),
            ("path", other_path, true),
        ];
        for (what, desired, want) in cases {
            let p = status_patch(Some(&base), &desired, Some("9"));
            assert_eq!(p.is_some(), want, "{what}");
            if let Some(p) = p {
                assert_eq!(p["metadata"]["resourceVersion"], "9");
                let keys: Vec<&String> = p["status"].as_object().unwrap().keys().collect();
                for k in keys {
                    assert!(
                        [
                            "conditions",
                            "webhookReceivers",
                            "observedGeneration",
                            "lastHandledRefresh"
                        ]
                        .contains(&k.as_str()),
                        "{k}"
                    );
                }
                // Every condition carries Kargo's required fields.
                for c in p["status"]["conditions"].as_array().unwrap() {
                    for f in ["type", "status", "lastTransitionTime", "reason", "message"] {
                        assert!(c.get(f).is_some(), "{f} missing in {c}");
                    }
                }
            }
        }
        // No status at all yet: always a patch, even for an empty desired one.
        assert!(status_patch(None, &base, None).is_some());
    }

    #[test]
    fn refresh_annotation_is_echoed_and_kept() {
        let mut o = observed(None);
        o.refresh = Some("2026-11-29T00:00:00Z");
        let s = desired_status(&o, &[], &t(1));
        assert_eq!(
            s.last_handled_refresh.as_deref(),
            Some("2026-11-29T00:00:00Z")
        );
        let later = desired_status(&observed(Some(&s)), &[], &t(2));
        assert_eq!(
            later.last_handled_refresh.as_deref(),
            Some("2026-11-29T00:00:00Z")
        );
    }

    #[test]
    fn long_messages_are_truncated() {
        let outcomes: Vec<ReceiverOutcome> = (0..2000)
            .map(|i| missing(&format!("receiver-{i}")))
            .collect();
        let s = desired_status(&observed(None), &outcomes, &t(1));
        let m = &cond(&s, READY).unwrap().message;
        assert!(m.len() <= MAX_MESSAGE && m.ends_with("..."));
    }

    #[test]
    fn events_on_transitions_only() {
        let none: Vec<EventSpec> = vec![];
        let reasons = |e: Vec<EventSpec>| e.into_iter().map(|e| e.reason).collect::<Vec<_>>();
        // New config: one ready, one failing.
        let outcomes = [ready("a"), missing("b"), skipped("gh")];
        assert_eq!(
            reasons(transition_events(None, &outcomes)),
            vec!["ReceiverReady", "ReceiverNotReady"]
        );
        // Once published, the same outcomes emit nothing.
        let published = desired_status(&observed(None), &outcomes, &t(1));
        assert_eq!(transition_events(Some(&published), &outcomes), none);
        // a fails, b becomes ready.
        let e = transition_events(Some(&published), &[missing("a"), ready("b")]);
        assert_eq!(
            reasons(e.clone()),
            vec!["ReceiverNotReady", "ReceiverReady"]
        );
        assert!(e[0].warning && !e[1].warning);
        // A new cause for b is a transition too.
        assert_eq!(
            reasons(transition_events(
                Some(&published),
                &[ready("a"), no_key("b")]
            )),
            vec!["ReceiverNotReady"]
        );
        // A rotated token (new path) is announced.
        let rotated = ReceiverOutcome::Ready {
            name: "a".into(),
            path: "/harbor/rotated".into(),
            url: "https://h/harbor/rotated".into(),
        };
        assert_eq!(
            reasons(transition_events(
                Some(&published),
                &[rotated, missing("b")]
            )),
            vec!["ReceiverReady"]
        );
    }

    #[test]
    fn event_notes_never_carry_the_receiver_path() {
        // The path's last segment is a hash of the token: a secret.
        for e in transition_events(None, &[ready("a"), missing("b")]) {
            assert!(!e.note.contains("/harbor/"), "{}", e.note);
        }
    }
}
