//! The HTTP listeners: webhook receiver (+ /healthz, /readyz) and metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;

/// Server failures.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The webhook listener.
pub struct WebhookServer {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
}

impl WebhookServer {
    /// Binds `--listen`.
    pub async fn bind(shared: Arc<Shared>) -> Result<Self, ServerError> {
        let addr = shared.config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self { shared, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        shutdown.cancelled().await;
        Ok(())
    }
}

/// The metrics listener.
pub struct MetricsServer {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
}

impl MetricsServer {
    /// Binds `--metrics-listen`.
    pub async fn bind(shared: Arc<Shared>) -> Result<Self, ServerError> {
        let addr = shared.config.metrics_listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self { shared, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.metrics_listen)
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        shutdown.cancelled().await;
        Ok(())
    }
}
