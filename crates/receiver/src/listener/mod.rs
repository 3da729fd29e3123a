//! Serving HTTP on a socket: the webhook port (receivers, /healthz,
//! /readyz; see `request`) and the metrics port (see `metrics`) both run
//! through [`Listener`], which knows nothing of what it serves.
//!
//! hyper 1 (HTTP/1.1 and h2, prior knowledge or ALPN), with the same rules
//! on both ports:
//! - every connection is accepted at once and takes a slot in the
//!   listener's table (`slots`): at most `--max-connections`, at most
//!   `--max-connections-per-client` per client address; when a cap is
//!   reached the connection that has waited longest with no request in
//!   progress gives way (never one with a request in progress);
//! - deadlines from the first byte (`connection`): TLS handshake, protocol
//!   detection and the first request head within `--header-read-timeout`;
//!   then `--idle-timeout` between requests (HTTP/1) or streams (HTTP/2);
//! - the answer deadline and the 2 MiB body limit are the handler's (see
//!   `request`);
//! - shutdown on the app's token: stop accepting (the socket is closed),
//!   let requests in progress finish within `--shutdown-timeout` while idle
//!   connections close, then abort what is left and return.
//!
//! With a TLS acceptor the listener speaks TLS only. The metrics listener
//! is always plain HTTP.

mod connection;
mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ConnectionEnd, ListenerMetrics};
use connection::{End, Protocol, Protocols, Serve};
use slots::{Eviction, Slots};

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

/// Per-client share of the metrics listener's connections.
pub const METRICS_MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// Limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections held at once (see the module docs for who gives way).
    pub max_connections: usize,
    /// Connections held at once by one client address.
    pub max_connections_per_client: usize,
    /// Time from the accept for a TLS handshake, protocol detection and
    /// the first request head.
    pub header_read_timeout: Duration,
    /// Time a connection that has served a request may stay with none in
    /// progress.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_timeout: Duration,
}

/// A bound socket, ready to serve.
pub struct Listener {
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: ListenerMetrics,
}

impl Listener {
    /// Binds `addr`; `name` labels its log lines and metrics.
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        limits: Limits,
        metrics: ListenerMetrics,
    ) -> Result<Self, ListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        Ok(Self {
            name,
            listener,
            tls,
            limits,
            metrics,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Serves `service` until `shutdown`, then drains (see the module docs).
    pub async fn serve<S>(self, service: S, shutdown: CancellationToken)
    where
        S: Serve + Clone + Sync,
    {
        let Listener {
            name,
            listener,
            tls,
            limits,
            metrics,
        } = self;
        let protocols = Arc::new(Protocols::new(
            limits.header_read_timeout,
            limits.idle_timeout,
        ));
        let slots = Slots::new(limits.max_connections, limits.max_connections_per_client);
        let drain = CancellationToken::new();
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // Reap finished connections as they end.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
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
            let accepted = Instant::now();
            let (admitted, evictions) = slots.admit(peer.ip());
            for eviction in evictions {
                metrics.closed(
                    name,
                    match eviction {
                        Eviction::PerClient => ConnectionEnd::EvictedPerClient,
                        Eviction::Global => ConnectionEnd::EvictedGlobal,
                    },
                );
            }
            let Some(admitted) = admitted else {
                metrics.closed(name, ConnectionEnd::Refused);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let task = Connection {
                name,
                protocols: protocols.clone(),
                tls: tls.clone(),
                service: service.clone(),
                metrics: metrics.clone(),
                drain: drain.clone(),
            };
            connections.spawn(async move {
                let end = task.run(stream, peer, accepted, &admitted).await;
                drop(admitted);
                if let Some(end) = end {
                    task.metrics.closed(task.name, end);
                }
            });
        }
        drop(listener);
        tracing::info!(
            listener = name,
            open = slots.len(),
            "stopped accepting; draining connections"
        );
        drain.cancel();
        let drained = tokio::time::timeout(limits.shutdown_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                listener = name,
                timeout = ?limits.shutdown_timeout,
                open = connections.len(),
                "shutdown timeout: closing the remaining connections"
            );
        }
        connections.shutdown().await;
    }
}

/// What a connection's task needs.
struct Connection<S> {
    name: &'static str,
    protocols: Arc<Protocols>,
    tls: Option<TlsAcceptor>,
    service: S,
    metrics: ListenerMetrics,
    drain: CancellationToken,
}

impl<S: Serve + Clone + Sync> Connection<S> {
    /// Serves the connection; how it ended, for the metrics (evictions
    /// were counted when they were decided).
    async fn run(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        admitted: &slots::Admitted,
    ) -> Option<ConnectionEnd> {
        let first = self.protocols.first_deadline(accepted);
        let evicted = &admitted.evicted;
        // Handshake and detection under the first deadline; an eviction
        // or the shutdown ends them too.
        let opened = tokio::select! {
            biased;
            () = evicted.cancelled() => return None,
            () = self.drain.cancelled() => return Some(ConnectionEnd::Shutdown),
            opened = tokio::time::timeout_at(first, self.open(stream)) => opened,
        };
        let end = match opened {
            Err(_elapsed) => End::HeaderTimeout,
            Ok(Err(error)) => {
                tracing::debug!(listener = self.name, %peer, %error, "connection closed before a request");
                End::Closed
            }
            Ok(Ok(Opened::Plain(stream, protocol, sniffed))) => {
                self.drive(stream, protocol, sniffed, accepted, admitted)
                    .await
            }
            Ok(Ok(Opened::Tls(stream, protocol, sniffed))) => {
                self.drive(*stream, protocol, sniffed, accepted, admitted)
                    .await
            }
        };
        Some(match end {
            End::Closed => ConnectionEnd::Closed,
            End::HeaderTimeout => ConnectionEnd::HeaderTimeout,
            End::Idle => ConnectionEnd::Idle,
            End::Evicted => return None,
            End::Shutdown => ConnectionEnd::Shutdown,
        })
    }

    async fn open(&self, stream: TcpStream) -> std::io::Result<Opened> {
        match &self.tls {
            None => {
                let mut stream = stream;
                let (protocol, sniffed) = connection::sniff(&mut stream).await?;
                Ok(Opened::Plain(stream, protocol, sniffed))
            }
            Some(acceptor) => {
                let mut stream = acceptor.accept(stream).await?;
                let alpn = connection::from_alpn(stream.get_ref().1.alpn_protocol());
                let (protocol, sniffed) = match alpn {
                    Some(protocol) => (protocol, connection::Sniffed::default()),
                    None => connection::sniff(&mut stream).await?,
                };
                Ok(Opened::Tls(Box::new(stream), protocol, sniffed))
            }
        }
    }

    async fn drive<I>(
        &self,
        io: I,
        protocol: Protocol,
        sniffed: connection::Sniffed,
        accepted: Instant,
        admitted: &slots::Admitted,
    ) -> End
    where
        I: connection::Stream,
    {
        connection::drive(
            io,
            protocol,
            sniffed,
            &self.protocols,
            self.service.clone(),
            admitted.activity.clone(),
            accepted,
            &admitted.evicted,
            &self.drain,
        )
        .await
    }
}

/// A connection past its handshake and protocol detection.
enum Opened {
    Plain(TcpStream, Protocol, connection::Sniffed),
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        Protocol,
        connection::Sniffed,
    ),
}
