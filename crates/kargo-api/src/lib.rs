#![forbid(unsafe_code)]
//! Types for the Kargo resources (`kargo.akuity.io/v1alpha1`) that
//! kargo-harbor-receiver reads and writes: `ProjectConfig`, `ClusterConfig`
//! and `Warehouse`.
//!
//! They carry only what the receiver needs; everything else Kargo stores in
//! these objects is ignored on read. Kargo's CRDs hold the truth about field
//! names and about which status fields survive pruning; the tests in this
//! crate check our objects against them.
//!
//! Robustness rule: a single odd object must never break a watch of all
//! objects of its kind, so parts whose shape Kargo does not constrain (the
//! raw-JSON Warehouse subscriptions, receiver kinds we do not handle) are
//! decoded leniently.

mod receivers;
mod subscriptions;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use receivers::{
    HarborWebhookReceiverConfig, ReceiverKind, SecretReference, WebhookReceiverConfig,
};
pub use subscriptions::{
    ChartSubscription, GitSubscription, ImageSubscription, Subscription, SubscriptionSource,
};

/// API group of all Kargo resources.
pub const GROUP: &str = "kargo.akuity.io";
/// API version of the Kargo resources we speak.
pub const VERSION: &str = "v1alpha1";
/// Annotation that asks Kargo's controllers to reconcile an object now.
pub const REFRESH_ANNOTATION: &str = "kargo.akuity.io/refresh";
/// The only `ClusterConfig` Kargo honours.
pub const CLUSTER_CONFIG_NAME: &str = "cluster";

/// Per-project configuration; its name equals its namespace (the project).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "kargo.akuity.io",
    version = "v1alpha1",
    kind = "ProjectConfig",
    plural = "projectconfigs",
    namespaced,
    status = "ConfigStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ProjectConfigSpec {
    /// Webhook receivers of this project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
}

/// Cluster-wide configuration; Kargo only honours the one named `cluster`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "kargo.akuity.io",
    version = "v1alpha1",
    kind = "ClusterConfig",
    plural = "clusterconfigs",
    shortname = "clusterconfig",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClusterConfigSpec {
    /// Webhook receivers whose Warehouses may live in any project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
}

/// The status of a `ProjectConfig` or `ClusterConfig`: exactly the fields
/// Kargo's CRDs declare (anything else would be pruned by the API server).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// Standard `metav1.Condition`s; we own `Ready` and `Reconciling`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last `kargo.akuity.io/refresh` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_refresh: Option<String>,
    /// One entry per Harbor receiver that is ready to be called.
    #[serde(default)]
    pub webhook_receivers: Vec<WebhookReceiverDetails>,
}

/// Where a webhook receiver listens, as published in status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceiverDetails {
    /// The receiver's name from the spec.
    pub name: String,
    /// The request path the receiver answers on, base path included.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The full URL to register in Harbor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
}

/// A source of Freight; we read its subscriptions to know which pushes matter.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "kargo.akuity.io",
    version = "v1alpha1",
    kind = "Warehouse",
    plural = "warehouses",
    namespaced,
    status = "WarehouseStatus"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct WarehouseSpec {
    /// How often Kargo polls; the refresh we trigger is what makes this matter less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Artifact sources. Raw JSON in Kargo's CRD: decoded leniently.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// The Warehouse status is Kargo's business; we never read it and drop it
/// from our caches. Declared so that generated CRDs have a status subresource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct WarehouseStatus {}

/// The project's own CRDs, generated from these types, for clusters without
/// Kargo (demo, tests). Kargo's own CRDs are a superset where it matters.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![ProjectConfig::crd(), ClusterConfig::crd(), Warehouse::crd()]
}
