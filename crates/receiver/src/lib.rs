#![forbid(unsafe_code)]
//! kargo-harbor-receiver: refreshes Kargo Warehouses the moment Harbor
//! reports a push.
//!
//! Pure logic (URL derivation, payloads, normalisation, tag matching, the
//! index) has no I/O; the controller, the HTTP server and the refresher are
//! the edges that talk to the API server and to Harbor.

pub mod app;
pub mod config;
pub mod controller;
pub mod handler;
pub mod harbor;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod receiver_path;
pub mod refresh;
pub mod repository;
pub mod server;
pub mod tags;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod token;
pub mod warehouse_events;

pub use app::run;

/// The name the program writes under: field manager of its patches (status
/// and refresh annotation) and reporting controller of its Events. One
/// name, so that `managedFields` and Events show one actor.
pub const NAME: &str = "kargo-harbor-receiver";
