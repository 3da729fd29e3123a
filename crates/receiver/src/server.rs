//! The HTTP listeners: webhook receiver (+ /healthz, /readyz) and metrics.
//!
//! Both run hyper 1 through hyper-util's auto builder (HTTP/1.1 and h2,
//! prior knowledge or ALPN), with:
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
//! With `--tls-cert`/`--tls-key` the webhook listener speaks TLS only; the
//! TLS handshake is bounded by the header read timeout. The metrics
//! listener is always plain HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
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

use crate::app::Shared;
use crate::handler::{json_response, Handler, Reply};
use crate::refresh::{KubePatcher, Refresher, RefresherOptions};
use crate::tls::{self, TlsError};
use crate::warehouse_events;

/// Capacity of the Warehouse Event queue; Events beyond it are dropped.
pub const EVENT_QUEUE: usize = 1024;
/// Connection cap of the metrics listener.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

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
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

type Body = Full<Bytes>;

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    json_response(status, Bytes::from_static(body.as_bytes()))
}

/// The webhook listener.
pub struct WebhookServer {
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<Handler>,
}

impl WebhookServer {
    /// Binds `--listen`, loads the TLS pair if configured, and starts the
    /// Warehouse Event sender.
    pub async fn bind(shared: Arc<Shared>) -> Result<Self, ServerError> {
        let config = &shared.config;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(Arc::new(tls::server_config(
                cert,
                key,
                tls::DEFAULT_CHECK_INTERVAL,
            )?))),
            _ => None,
        };
        let listener = bind(config.listen).await?;
        let (events, _task) = warehouse_events::spawn(
            shared.client.clone(),
            shared.metrics.clone(),
            EVENT_QUEUE,
            config.replica_identity(),
            config.api_timeout,
        );
        let refresher = Refresher::new(
            Arc::new(KubePatcher::new(shared.client.clone())),
            shared.metrics.clone(),
            RefresherOptions {
                api_timeout: config.api_timeout,
                concurrency: config.refresh_concurrency,
                events: Some(events),
            },
        );
        let handler = Arc::new(Handler::new(shared.clone(), refresher));
        Ok(Self {
            shared,
            listener,
            tls,
            handler,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// Serves until `shutdown`, then drains (see the module docs).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Self {
            shared,
            listener,
            tls,
            handler,
        } = self;
        let config = &shared.config;
        let limits = Limits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            shutdown_timeout: config.shutdown_timeout,
        };
        let ready = shared.ready.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = handler.clone();
            let ready = ready.clone();
            async move {
                let response = match request.uri().path() {
                    "/healthz" => json(StatusCode::OK, "{\"status\":\"ok\"}\n"),
                    "/readyz" if ready.is_ready() => {
                        json(StatusCode::OK, "{\"status\":\"ready\"}\n")
                    }
                    "/readyz" => json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"status\":\"not ready\"}\n",
                    ),
                    _ => handler.handle(request).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
        serve_loop("webhook", listener, tls, service, limits, shutdown).await;
        Ok(())
    }
}

/// The metrics listener.
pub struct MetricsServer {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `--metrics-listen`.
    pub async fn bind(shared: Arc<Shared>) -> Result<Self, ServerError> {
        let listener = bind(shared.config.metrics_listen).await?;
        Ok(Self { shared, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.metrics_listen)
    }

    /// Serves `/metrics` until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let limits = Limits {
            max_connections: METRICS_MAX_CONNECTIONS,
            header_read_timeout: self.shared.config.header_read_timeout,
            shutdown_timeout: self.shared.config.shutdown_timeout,
        };
        let shared = self.shared.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let shared = shared.clone();
            async move {
                let response = if request.uri().path() == "/metrics" {
                    // Index sizes are read when scraped rather than mirrored
                    // into the gauges by every index writer.
                    let metrics = &shared.metrics;
                    metrics.set_index_sizes(shared.index.snapshot().sizes());
                    let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    response
                } else {
                    Reply::not_found().into_response()
                };
                Ok::<_, Infallible>(response)
            }
        });
        serve_loop("metrics", self.listener, None, service, limits, shutdown).await;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    shutdown_timeout: Duration,
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

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_api::ImageSubscription;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_scrape_reports_the_current_index_sizes() {
        let config =
            crate::testing::config(&["--base-url", "https://x", "--metrics-listen", "127.0.0.1:0"]);
        // Never contacted.
        let client = crate::testing::offline_client();
        let shared = Arc::new(Shared::new(config, client));
        let w = crate::testing::image_warehouse(
            "p",
            "w",
            ImageSubscription {
                repo_url: "h/app".into(),
                ..Default::default()
            },
        );
        shared.index.upsert_warehouse(&w);
        let server = MetricsServer::bind(shared.clone()).await.unwrap();
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert!(
            text.contains("kargo_harbor_receiver_index_warehouses 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kargo_harbor_receiver_index_repository_keys 1\n"),
            "{text}"
        );
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
