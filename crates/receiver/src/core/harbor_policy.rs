//! Harbor's webhook policies (`WebhookPolicy` of `api/v2.0/swagger.yaml`)
//! and the pure decisions about the one a registration keeps in a project:
//! its desired body, whether a policy found in Harbor is ours, and what
//! differs (drift).
//!
//! Facts relied on (`harbor-delivery.md`, Harbor's `webhook.go`): names are
//! unique per project; `enabled` must be sent explicitly; a `PUT` replaces
//! every property; `GET` and the list return `auth_header` in plain text.
//! Not relied on: `creator`, `creation_time` and `update_time` (Harbor fills
//! them in, or does not, and a `PUT` may rewrite them), nor the order of
//! event types.
//!
//! Ownership: a policy is ours only when its name is the registration's
//! policy name AND its description carries the registration's marker.
//! A policy with our name but without the marker is someone else's and is
//! never changed or deleted.

use serde::{Deserialize, Serialize};

/// The only event type a receiver handles (others are answered 400).
pub const PUSH_ARTIFACT: &str = "PUSH_ARTIFACT";
/// The target type of webhooks.
pub const TARGET_HTTP: &str = "http";
/// Harbor's limit on policy names (a `varchar(256)` column).
pub const MAX_NAME: usize = 256;

/// A webhook policy as Harbor's API shows and takes it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct WebhookPolicy {
    /// Policy ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Name, unique in the project.
    #[serde(default)]
    pub name: String,
    /// Description (carries our ownership marker).
    #[serde(default)]
    pub description: String,
    /// The project's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// Where and how to deliver.
    #[serde(default)]
    pub targets: Vec<WebhookTarget>,
    /// Event types, e.g. `PUSH_ARTIFACT`.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Whoever Harbor says created it (not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// Creation time as Harbor shows it (not compared; sent back on update,
    /// because Harbor's ORM writes it from the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// Last update time (not compared, never sent).
    #[serde(default, skip_serializing)]
    pub update_time: Option<String>,
    /// Whether Harbor delivers.
    #[serde(default)]
    pub enabled: bool,
}

/// One delivery target (`WebhookTargetObject`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct WebhookTarget {
    /// `http` (or `slack`).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The URL Harbor POSTs to.
    #[serde(default)]
    pub address: String,
    /// Sent verbatim as `Authorization`: a secret.
    #[serde(default)]
    pub auth_header: String,
    /// Harbor does not verify the receiver's certificate.
    #[serde(default)]
    pub skip_cert_verify: bool,
    /// `Default` or `CloudEvents`; Harbor stores `Default` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
}

impl std::fmt::Debug for WebhookPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPolicy")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("project_id", &self.project_id)
            .field("targets", &self.targets)
            .field("event_types", &self.event_types)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the address (it embeds a digest of the token) nor the
        // auth header is printed.
        f.debug_struct("WebhookTarget")
            .field("kind", &self.kind)
            .field("skip_cert_verify", &self.skip_cert_verify)
            .field("payload_format", &self.payload_format)
            .finish_non_exhaustive()
    }
}

/// The policy a registration wants in every one of its projects.
#[derive(Clone, PartialEq, Eq)]
pub struct Desired {
    /// Policy name.
    pub name: String,
    /// Description, ownership marker included.
    pub description: String,
    /// The receiver's current URL.
    pub address: String,
    /// The receiver's auth header.
    pub auth_header: String,
    /// Harbor's "Verify Remote Certificate" off.
    pub skip_cert_verify: bool,
    /// `Default` or `CloudEvents`.
    pub payload_format: &'static str,
}

impl Drop for WebhookTarget {
    fn drop(&mut self) {
        crate::core::token::wipe_str(&mut self.auth_header);
    }
}

impl Drop for Desired {
    fn drop(&mut self) {
        crate::core::token::wipe_str(&mut self.auth_header);
    }
}

impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("name", &self.name)
            .field("payload_format", &self.payload_format)
            .finish_non_exhaustive()
    }
}

/// The marker in a policy's description that makes it a registration's.
pub fn marker(namespace: &str, registration: &str) -> String {
    format!("[managed-by=kargo-harbor-receiver registration={namespace}/{registration}]")
}

/// The description of a registration's policy.
pub fn description(namespace: &str, registration: &str, receiver: &str) -> String {
    format!(
        "Kargo webhook receiver {receiver:?}, kept up to date by kargo-harbor-receiver: \
         edits here are reverted, deleting the HarborWebhookRegistration deletes this policy. {}",
        marker(namespace, registration)
    )
}

/// The default policy name: `kargo-<namespace>-<registration>`, cut to
/// Harbor's limit.
pub fn default_name(namespace: &str, registration: &str) -> String {
    let mut name = format!("kargo-{namespace}-{registration}");
    // Kubernetes names are ASCII: cutting at a byte is cutting at a char.
    name.truncate(MAX_NAME);
    name
}

/// Whether `policy` carries `marker`.
pub fn is_ours(policy: &WebhookPolicy, marker: &str) -> bool {
    policy.description.contains(marker)
}

impl Desired {
    fn target(&self) -> WebhookTarget {
        WebhookTarget {
            kind: TARGET_HTTP.to_owned(),
            address: self.address.clone(),
            auth_header: self.auth_header.clone(),
            skip_cert_verify: self.skip_cert_verify,
            payload_format: Some(self.payload_format.to_owned()),
        }
    }

    /// The body of a `POST` creating the policy: every property explicit
    /// (`enabled` omitted would be stored as false).
    pub fn create_body(&self) -> WebhookPolicy {
        WebhookPolicy {
            name: self.name.clone(),
            description: self.description.clone(),
            targets: vec![self.target()],
            event_types: vec![PUSH_ARTIFACT.to_owned()],
            enabled: true,
            ..WebhookPolicy::default()
        }
    }

    /// The body of a `PUT` turning `current` into the desired policy. A PUT
    /// replaces every property, so what we do not own is sent back as read
    /// (`creator`, `creation_time`: Harbor's ORM writes them from the body).
    pub fn update_body(&self, current: &WebhookPolicy) -> WebhookPolicy {
        WebhookPolicy {
            id: current.id,
            project_id: current.project_id,
            creator: current.creator.clone(),
            creation_time: current.creation_time.clone(),
            ..self.create_body()
        }
    }

    /// What differs between `current` and the desired policy, by property
    /// (empty: in sync). Never compares creator or times.
    pub fn drift(&self, current: &WebhookPolicy) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if current.name != self.name {
            changed.push("name");
        }
        if current.description != self.description {
            changed.push("description");
        }
        if !current.enabled {
            changed.push("enabled");
        }
        if current.event_types != [PUSH_ARTIFACT] {
            changed.push("event types");
        }
        match current.targets.as_slice() {
            [t] if t.kind == TARGET_HTTP => {
                if t.address != self.address {
                    changed.push("address");
                }
                if t.auth_header != self.auth_header {
                    changed.push("auth header");
                }
                if t.skip_cert_verify != self.skip_cert_verify {
                    changed.push("certificate verification");
                }
                let format = t.payload_format.as_deref().filter(|f| !f.is_empty());
                if format.unwrap_or("Default") != self.payload_format {
                    changed.push("payload format");
                }
            }
            _ => changed.push("targets"),
        }
        changed
    }
}

/// What to do in one project, given the policy found there (by its ID from
/// status, or by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// None found: create it.
    Create,
    /// Ours, but different: replace it (these properties differ).
    Update {
        /// Policy ID.
        id: i64,
        /// What differs.
        changed: Vec<&'static str>,
    },
    /// Ours and as desired.
    InSync {
        /// Policy ID.
        id: i64,
    },
    /// A policy with our name that we did not create: leave it alone.
    NotOurs {
        /// Its ID.
        id: Option<i64>,
    },
}

/// The plan for one project.
pub fn plan(found: Option<&WebhookPolicy>, desired: &Desired, marker: &str) -> Plan {
    let Some(current) = found else {
        return Plan::Create;
    };
    let Some(id) = current.id.filter(|_| is_ours(current, marker)) else {
        return Plan::NotOurs { id: current.id };
    };
    let changed = desired.drift(current);
    if changed.is_empty() {
        Plan::InSync { id }
    } else {
        Plan::Update { id, changed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Desired {
        Desired {
            name: default_name("kargo-demo", "reg"),
            description: description("kargo-demo", "reg", "harbor-wh-receiver"),
            address: "https://webhooks.example.com/harbor/abc".into(),
            auth_header: "test-auth-token-123".into(),
            skip_cert_verify: false,
            payload_format: "Default",
        }
    }

    /// The policy as Harbor returns it after our create (what the emulator
    /// and Harbor's swagger produce; empty and false values omitted).
    fn as_harbor_shows_it() -> WebhookPolicy {
        serde_json::from_value(json!({
            "creation_time": "2026-11-29T02:30:00.123Z",
            "description": description("kargo-demo", "reg", "harbor-wh-receiver"),
            "enabled": true,
            "event_types": ["PUSH_ARTIFACT"],
            "id": 7,
            "name": "kargo-kargo-demo-reg",
            "project_id": 1,
            "targets": [{"address": "https://webhooks.example.com/harbor/abc",
                         "auth_header": "test-auth-token-123",
                         "payload_format": "Default", "type": "http"}],
            "update_time": "2026-11-29T02:30:00.123Z",
        }))
        .unwrap()
    }

    #[test]
    fn the_create_body_is_explicit_about_everything_harbor_defaults() {
        let body = serde_json::to_value(desired().create_body()).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "kargo-kargo-demo-reg",
                "description": description("kargo-demo", "reg", "harbor-wh-receiver"),
                "targets": [{"type": "http", "address": "https://webhooks.example.com/harbor/abc",
                             "auth_header": "test-auth-token-123", "skip_cert_verify": false,
                             "payload_format": "Default"}],
                "event_types": ["PUSH_ARTIFACT"],
                "enabled": true,
            })
        );
    }

    #[test]
    fn the_update_body_sends_back_what_we_do_not_own() {
        let mut current = as_harbor_shows_it();
        current.creator = Some("robot$kargo-demo+kargo".into());
        let body = serde_json::to_value(desired().update_body(&current)).unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["project_id"], 1);
        assert_eq!(body["creator"], "robot$kargo-demo+kargo");
        assert_eq!(body["creation_time"], "2026-11-29T02:30:00.123Z");
        assert!(body.get("update_time").is_none());
        assert_eq!(body["enabled"], true);
    }

    #[test]
    fn drift_table() {
        type Edit = fn(&mut WebhookPolicy);
        let cases: &[(&str, Edit, &[&str])] = &[
            ("as created", |_| {}, &[]),
            (
                "times and creator",
                |p| {
                    p.creation_time = Some("0001-01-01T00:00:00.000Z".into());
                    p.update_time = None;
                    p.creator = Some("admin".into());
                },
                &[],
            ),
            (
                "format omitted means Default",
                |p| p.targets[0].payload_format = None,
                &[],
            ),
            ("disabled", |p| p.enabled = false, &["enabled"]),
            (
                "address",
                |p| p.targets[0].address = "https://elsewhere/x".into(),
                &["address"],
            ),
            (
                "token",
                |p| p.targets[0].auth_header = "old".into(),
                &["auth header"],
            ),
            (
                "verification",
                |p| p.targets[0].skip_cert_verify = true,
                &["certificate verification"],
            ),
            (
                "format",
                |p| p.targets[0].payload_format = Some("CloudEvents".into()),
                &["payload format"],
            ),
            (
                "more events",
                |p| p.event_types.push("PULL_ARTIFACT".into()),
                &["event types"],
            ),
            ("no events", |p| p.event_types.clear(), &["event types"]),
            (
                "two targets",
                |p| {
                    let t = p.targets[0].clone();
                    p.targets.push(t);
                },
                &["targets"],
            ),
            (
                "slack",
                |p| p.targets[0].kind = "slack".into(),
                &["targets"],
            ),
            (
                "renamed and described",
                |p| {
                    p.name = "x".into();
                    p.description.insert(0, 'x');
                },
                &["name", "description"],
            ),
        ];
        for (what, edit, want) in cases {
            let mut p = as_harbor_shows_it();
            edit(&mut p);
            assert_eq!(desired().drift(&p), *want, "{what}");
        }
    }

    #[test]
    fn plans() {
        let d = desired();
        let m = marker("kargo-demo", "reg");
        assert_eq!(plan(None, &d, &m), Plan::Create);
        let ours = as_harbor_shows_it();
        assert_eq!(plan(Some(&ours), &d, &m), Plan::InSync { id: 7 });
        let mut edited = ours.clone();
        edited.targets[0].address = "https://elsewhere/x".into();
        assert_eq!(
            plan(Some(&edited), &d, &m),
            Plan::Update {
                id: 7,
                changed: vec!["address"]
            }
        );
        // Same name, no marker (someone made it by hand), or another
        // registration's marker: never ours.
        let mut theirs = ours.clone();
        theirs.description = "made by hand".into();
        assert_eq!(plan(Some(&theirs), &d, &m), Plan::NotOurs { id: Some(7) });
        assert_eq!(
            plan(Some(&ours), &d, &marker("kargo-demo", "other")),
            Plan::NotOurs { id: Some(7) }
        );
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let d = desired();
        let shown = format!("{d:?} {:?} {:?}", d.create_body(), as_harbor_shows_it());
        assert!(!shown.contains("test-auth-token-123"), "{shown}");
        assert!(!shown.contains("/harbor/abc"), "{shown}");
    }

    #[test]
    fn default_names_fit_harbor() {
        assert_eq!(default_name("p", "r"), "kargo-p-r");
        let long = "n".repeat(253);
        assert_eq!(default_name(&long, &long).len(), MAX_NAME);
    }
}
