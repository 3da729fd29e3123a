//! The controller: watches ProjectConfigs, the ClusterConfig, Warehouses and
//! Secret metadata; keeps the index; the leader writes status.

use std::sync::Arc;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;

/// Errors that stop the controller for good.
#[derive(Debug, Error)]
pub enum ControllerError {
    /// Placeholder until the controller lands.
    #[error("controller not implemented yet")]
    NotImplemented,
}

/// Runs watches, reconciles and leader election until `shutdown`.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(), ControllerError> {
    let _ = shared;
    shutdown.cancelled().await;
    Err(ControllerError::NotImplemented)
}
