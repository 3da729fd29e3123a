#![forbid(unsafe_code)]
//! kargo-harbor-receiver's own resource, `HarborWebhookRegistration`
//! (`kargo-harbor-receiver.io/v1alpha1`): "register this receiver's URL and
//! auth header as a webhook policy in these Harbor projects, and keep it
//! registered".
//!
//! Kargo's CRDs are not extended (a real API server prunes fields they do
//! not declare), so the registration is a small namespaced resource of its
//! own, in its own API group. These types change when *our* registration
//! feature changes, never when Kargo changes: hence a crate apart from
//! `kargo-api`.
//!
//! The credentials Secret names a Harbor robot account; the permissions it
//! needs are, at project scope, on resource `notification-policy`:
//! `list`, `read`, `create`, `update`, `delete` ([`REQUIRED_PERMISSIONS`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the registration resource.
pub const GROUP: &str = "kargo-harbor-receiver.io";
/// Its version.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that holds a registration until its Harbor policies are deleted.
pub const FINALIZER: &str = "kargo-harbor-receiver.io/harbor-webhook-policy";
/// Key of the credentials Secret holding the robot account's name
/// (`robot$<project>+<name>`), as in a `kubernetes.io/basic-auth` Secret.
pub const USERNAME_KEY: &str = "username";
/// Key of the credentials Secret holding the robot account's secret.
pub const PASSWORD_KEY: &str = "password";
/// What the robot account must be allowed, at project scope, in every
/// Harbor project it registers in: Harbor resource `notification-policy`
/// with these actions.
pub const REQUIRED_PERMISSIONS: (&str, &[&str]) = (
    "notification-policy",
    &["list", "read", "create", "update", "delete"],
);

/// Registers a Kargo Harbor receiver as a webhook policy in Harbor projects.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "kargo-harbor-receiver.io",
    version = "v1alpha1",
    kind = "HarborWebhookRegistration",
    plural = "harborwebhookregistrations",
    shortname = "hwr",
    namespaced,
    status = "RegistrationStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Harbor","type":"string","jsonPath":".spec.harbor.url"}"#,
    printcolumn = r#"{"name":"Synced","type":"date","jsonPath":".status.lastSyncedTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSpec {
    /// The receiver whose URL and auth header are registered.
    pub receiver: ReceiverSelector,
    /// The Harbor instance and projects to register in.
    pub harbor: HarborSpec,
    /// The webhook policy created in each project.
    #[serde(default)]
    pub policy: PolicySpec,
}

/// Which Kargo config holds the receiver.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConfigKind {
    /// The ProjectConfig of the registration's own namespace.
    #[default]
    ProjectConfig,
    /// The ClusterConfig `cluster`.
    ClusterConfig,
}

/// A Harbor receiver of a ProjectConfig or of the ClusterConfig.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSelector {
    /// `name` of a Harbor entry of the config's `spec.webhookReceivers`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `ProjectConfig` (default): the one in this namespace; `ClusterConfig`:
    /// the ClusterConfig `cluster`.
    #[serde(default)]
    pub config: ConfigKind,
}

/// Where to register.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HarborSpec {
    /// Harbor's URL, e.g. `https://harbor.example.com` (the REST API is
    /// under `/api/v2.0`).
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub url: String,
    /// Harbor project names; one webhook policy is kept in each.
    #[schemars(
        length(min = 1),
        inner(regex(pattern = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$"))
    )]
    pub projects: Vec<String>,
    /// A Secret in this namespace with keys `username` and `password` (as a
    /// `kubernetes.io/basic-auth` Secret) of a Harbor robot account allowed
    /// `notification-policy` list, read, create, update and delete in each
    /// project.
    pub credentials_secret_ref: LocalSecretReference,
    /// PEM certificates trusted for Harbor's TLS certificate, besides the
    /// system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Do not verify Harbor's TLS certificate (never in production).
    #[serde(
        default,
        rename = "insecureSkipTLSVerify",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub insecure_skip_tls_verify: bool,
}

/// A Secret in the registration's namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Harbor's webhook payload formats.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Harbor's own JSON payload.
    #[default]
    Default,
    /// CloudEvents 1.0 (`application/cloudevents+json`).
    CloudEvents,
}

impl PayloadFormat {
    /// The value of Harbor's `payload_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Default => "Default",
            PayloadFormat::CloudEvents => "CloudEvents",
        }
    }
}

/// The webhook policy kept in each Harbor project.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Policy name (unique per Harbor project); default
    /// `kargo-<namespace>-<registration name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// Payload format Harbor sends: `Default` (default) or `CloudEvents`.
    #[serde(default)]
    pub payload_format: PayloadFormat,
    /// Tell Harbor not to verify the receiver's TLS certificate ("Verify
    /// Remote Certificate" off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_cert_verify: bool,
}

/// What the controller last found and did. Never holds a token.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// `Ready`: every project's policy matches the receiver's current URL
    /// and auth header; when `False`, its reason names the cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The receiver URL registered in Harbor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the policies were last compared with Harbor and found (or made)
    /// equal to the declared state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<Time>,
    /// One entry per Harbor project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<ProjectStatus>,
}

/// The policy in one Harbor project.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// Harbor project name.
    pub name: String,
    /// ID of our webhook policy there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<i64>,
    /// Whether the policy there is as declared.
    #[serde(default)]
    pub synced: bool,
    /// Why not (a condition reason), when not synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Explanation, when not synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The CRD, generated from these types (printed by `kargo-harbor-receiver
/// crds`, shipped in the chart).
pub fn crd(
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    HarborWebhookRegistration::crd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn schema() -> Value {
        let crd = serde_json::to_value(crd()).unwrap();
        kube_emulator::schema::crd_schema(&crd, VERSION)
            .cloned()
            .unwrap()
    }

    fn object(spec: Value) -> Value {
        json!({
            "apiVersion": "kargo-harbor-receiver.io/v1alpha1",
            "kind": "HarborWebhookRegistration",
            "metadata": {"name": "r", "namespace": "kargo-demo"},
            "spec": spec,
        })
    }

    fn minimal() -> Value {
        json!({
            "receiver": {"name": "harbor-wh-receiver"},
            "harbor": {
                "url": "https://harbor.example.com",
                "projects": ["library"],
                "credentialsSecretRef": {"name": "harbor-robot"},
            },
        })
    }

    #[test]
    fn a_minimal_registration_is_valid_and_gets_the_defaults() {
        let obj = object(minimal());
        kube_emulator::schema::validate(&schema(), &obj).unwrap();
        let r: HarborWebhookRegistration = serde_json::from_value(obj).unwrap();
        assert_eq!(r.spec.receiver.config, ConfigKind::ProjectConfig);
        assert_eq!(r.spec.policy.payload_format, PayloadFormat::Default);
        assert_eq!(r.spec.policy.name, None);
        assert!(!r.spec.harbor.insecure_skip_tls_verify);
    }

    #[test]
    fn the_schema_refuses_what_harbor_would_refuse() {
        let cases: &[(&str, Value)] = &[
            ("/harbor/url", json!("harbor.example.com")),
            ("/harbor/url", json!("ftp://harbor.example.com")),
            ("/harbor/projects", json!([])),
            ("/harbor/projects", json!(["Team A"])),
            ("/policy/payloadFormat", json!("Slack")),
            ("/receiver/config", json!("Warehouse")),
            ("/receiver/name", json!("")),
        ];
        for (pointer, value) in cases {
            let mut spec = minimal();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            if spec.pointer(parent).is_none() {
                spec[parent.trim_start_matches('/')] = json!({});
            }
            spec.pointer_mut(parent).unwrap()[key] = value.clone();
            let result = kube_emulator::schema::validate(&schema(), &object(spec));
            assert!(result.is_err(), "{pointer} = {value} must be refused");
        }
    }

    #[test]
    fn a_full_status_round_trips_through_the_schema() {
        let mut obj = object(minimal());
        obj["status"] = json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "MissingPermission",
                            "message": "m", "lastTransitionTime": "2026-11-29T03:00:00Z",
                            "observedGeneration": 1}],
            "observedGeneration": 1,
            "url": "https://webhooks.example.com/harbor/abc",
            "lastSyncedTime": "2026-11-29T03:00:00Z",
            "projects": [{"name": "library", "policyId": 3, "synced": false,
                          "reason": "MissingPermission", "message": "m"}],
        });
        let schema = schema();
        let mut pruned = obj.clone();
        kube_emulator::schema::prune(&schema, &mut pruned);
        assert_eq!(pruned, obj, "every status field is declared");
        kube_emulator::schema::validate(&schema, &obj).unwrap();
        let r: HarborWebhookRegistration = serde_json::from_value(obj).unwrap();
        assert_eq!(r.status.unwrap().projects[0].policy_id, Some(3));
    }
}
