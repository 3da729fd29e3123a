#![forbid(unsafe_code)]
//! kargo-harbor-receiver: refreshes Kargo Warehouses the moment Harbor
//! reports a push.
//!
//! The data flow, one module per step (see [`app`] for how they are
//! assembled):
//!
//! - [`watch`]: ProjectConfigs, the ClusterConfig, Secret metadata and
//!   Warehouses are watched; reconciles resolve receivers and write status;
//! - [`index`]: what the watches found, as the request path needs it —
//!   routes (path → receiver) and repositories (repository → Warehouses);
//! - [`listener`]: connections, limits, TLS;
//! - [`request`]: one webhook request, in Kargo's order and with its answers;
//! - [`refresh`]: the refresh annotation PATCH, coalesced per Warehouse,
//!   and the Events on refreshed Warehouses.
//!
//! Beside the data flow: the HarborWebhookRegistration controller
//! (`watch::registrations`, over the Harbor API client `harbor_api`)
//! registers receivers in Harbor, and [`deliveries`] shows what Harbor
//! recorded about their deliveries.
//!
//! The pure logic they use (URL derivation, payloads, normalisation, tag
//! matching, token check, status model) is in [`core`], with no I/O.

pub mod app;
pub mod config;
pub mod core;
pub mod deliveries;
pub mod error_text;
pub mod explain;
pub(crate) mod harbor_api;
pub(crate) mod health;
pub mod index;
pub(crate) mod kubeconfig;
pub(crate) mod listener;
pub mod metrics;
pub(crate) mod refresh;
pub mod request;
pub mod send_test;
#[cfg(test)]
mod testing;
pub(crate) mod tls;
pub(crate) mod watch;

pub use app::run;

/// Every CRD the program works with, generated from its types: its own
/// `HarborWebhookRegistration`, and its copy of Kargo's ProjectConfig,
/// ClusterConfig and Warehouse (for clusters without Kargo). What
/// `kargo-harbor-receiver crds` prints and the chart ships.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    let mut crds = kargo_api::crds();
    crds.push(harbor_registration_api::crd());
    crds
}

/// The name the program writes under: field manager of its patches (status
/// and refresh annotation) and reporting controller of its Events. One
/// name, so that `managedFields` and Events show one actor.
pub const NAME: &str = "kargo-harbor-receiver";
