#![forbid(unsafe_code)]
//! kargo-harbor-receiver: refreshes Kargo Warehouses the moment Harbor
//! reports a push.
//!
//! Pure logic (URL derivation, payloads, normalisation, tag matching, the
//! index) has no I/O; the controller, the HTTP server and the refresher are
//! the edges that talk to the API server and to Harbor.

pub mod config;
pub mod harbor;
pub mod receiver_path;
pub mod repository;
pub mod tags;
pub mod token;

/// Runs the controller and the webhook server until SIGTERM/SIGINT.
pub async fn run(_config: config::Config) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("run is not wired yet"))
}
