//! Serving HTTP on a socket: the webhook port (receivers, /healthz,
//! /readyz; see `request`) and the metrics port (see `metrics`) both run
//! through [`Listener`], which knows nothing of what it serves.
//!
//! hyper 1 through hyper-util's auto builder (HTTP/1.1 and h2, prior
//! knowledge or ALPN), with:
//! - `--header-read-timeout`: time for a request head to arrive. For
//!   HTTP/1.1 the timer also runs while a kept-alive connection waits for
//!   its next request, so it is the idle timeout of keep-alive too;
//! - `--request-timeout`: body plus refreshes, enforced by the handler
//!   (408 while the body is still arriving, 503 once refreshing);
//! - `--max-connections` (webhook listener): a semaphore taken *before*
//!   `accept`, so connections beyond the cap wait in the kernel's listen
//!   backlog until a slot frees (they are neither accepted nor closed;
//!   clients see a slow connect, and the kernel refuses them once the
//!   backlog itself is full);
//! - the 2 MiB body limit (see `handler`);
//! - graceful shutdown on the app's token: stop accepting (the listener is
//!   closed), let in-flight requests finish within `--shutdown-timeout`
//!   while idle connections close, then abort what is left and return.
//!
//! With a TLS acceptor the listener speaks TLS only; the handshake is
//! bounded by the header read timeout. The metrics listener is always plain
//! HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Connection cap of the metrics listener.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// Why a listener could not start.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time for a request head (and a TLS handshake) to arrive.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_timeout: Duration,
}

type Body = Full<Bytes>;

/// A bound socket, ready to serve.
pub struct Listener {
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

impl Listener {
    /// Binds `addr`; `name` labels its log lines.
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        limits: Limits,
    ) -> Result<Self, ListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        Ok(Self {
            name,
            listener,
            tls,
            limits,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Serves `service` until `shutdown`, then drains (see the module docs).
    pub async fn serve<S>(self, service: S, shutdown: CancellationToken)
    where
        S: hyper::service::Service<
                Request<Incoming>,
                Response = Response<Body>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        serve_loop(
            self.name,
            self.listener,
            self.tls,
            service,
            self.limits,
            shutdown,
        )
        .await
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

async fn serve_loop<S>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, &builder, service, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, &builder, service, watcher).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        listener = name,
        open,
        "stopped accepting; draining connections"
    );
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            timeout = ?limits.shutdown_timeout,
            "shutdown timeout: closing the remaining connections"
        );
    }
    connections.shutdown().await;
}

async fn serve_connection<I, S>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        // Header timeouts, resets, malformed requests: the client's doing.
        tracing::debug!(%error, "connection ended with an error");
    }
}
