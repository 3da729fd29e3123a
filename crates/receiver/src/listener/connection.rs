//! One connection, from its first byte to its close, under deadlines:
//!
//! - the TLS handshake (ALPN decides the protocol), or else the first bytes
//!   (the HTTP/2 preface or not), and the first complete request head all
//!   fall within `--header-read-timeout` of the accept: a connection that
//!   sends nothing, or too little, is closed then;
//! - once it has served a request, a connection with no request (HTTP/1)
//!   or stream (HTTP/2) in progress for `--idle-timeout` is shut down
//!   gracefully. HTTP/2 pings do not count as activity: only what reaches
//!   the service does;
//! - a connection evicted from the slot table (see `slots`) is dropped at
//!   once; eviction only picks connections with nothing in progress;
//! - at shutdown a connection finishes its requests in progress and closes.
//!
//! hyper-util's auto builder is not used: it reads the preface with no
//! deadline, and its header timeout starts only after that read.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::slots::{ActivityCell, InProgress};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 (prior knowledge, or ALPN `h2`).
    Http2,
}

/// The protocol a TLS handshake agreed on, if any.
pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Option<Protocol> {
    match alpn {
        Some(b"h2") => Some(Protocol::Http2),
        Some(b"http/1.1") | Some(b"http/1.0") => Some(Protocol::Http1),
        _ => None,
    }
}

/// Bytes read to tell HTTP/2's preface from HTTP/1, handed back to hyper
/// before the rest of the stream.
#[derive(Default)]
pub(crate) struct Sniffed {
    buf: [u8; 24],
    len: usize,
}

/// Reads until the bytes so far differ from the HTTP/2 preface (HTTP/1) or
/// are all of it (HTTP/2). Unbounded here: the caller holds the deadline.
pub(crate) async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(Protocol, Sniffed)> {
    let mut sniffed = Sniffed::default();
    loop {
        let n = io.read(&mut sniffed.buf[sniffed.len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        sniffed.len += n;
        if sniffed.buf[..sniffed.len] != H2_PREFACE[..sniffed.len] {
            return Ok((Protocol::Http1, sniffed));
        }
        if sniffed.len == H2_PREFACE.len() {
            return Ok((Protocol::Http2, sniffed));
        }
    }
}

/// A stream whose first bytes were already read: replays them, then reads
/// on. (tokio's `chain` is read-only and hyper-util's `Rewind` is private;
/// this is the small part of it we need, for `Unpin` streams only.)
pub(crate) struct Prefixed<I> {
    sniffed: Sniffed,
    pos: usize,
    io: I,
}

impl<I> Prefixed<I> {
    pub(crate) fn new(sniffed: Sniffed, io: I) -> Self {
        Self {
            sniffed,
            pos: 0,
            io,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.sniffed.len {
            let rest = &this.sniffed.buf[this.pos..this.sniffed.len];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

type Body = Full<Bytes>;

/// The service of one connection: each call marks a request in progress
/// until its future completes or is dropped.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: ActivityCell,
}

/// A request's future, holding its in-progress mark.
pub(crate) struct TrackedFuture<F> {
    inner: F,
    _in_progress: InProgress,
}

impl<F: Future + Unpin> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl<S: Serve> hyper::service::Service<Request<Incoming>> for Tracked<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Answer>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        TrackedFuture {
            _in_progress: InProgress::start(&self.activity),
            inner: self.inner.call(request),
        }
    }
}

/// Settings of every connection of a listener.
#[derive(Clone)]
pub(crate) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Protocols {
    pub(crate) fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(header_read_timeout)
            .max_buf_size(64 * 1024);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(64)
            .max_header_list_size(64 * 1024)
            // Pings find dead peers; they do not keep a connection open
            // (the idle timeout counts streams only).
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10));
        Self {
            http1: h1,
            http2: h2,
            header_read_timeout,
            idle_timeout,
        }
    }

    /// The deadline of the first request head: from the accept.
    pub(crate) fn first_deadline(&self, accepted: Instant) -> Instant {
        accepted + self.header_read_timeout
    }
}

/// How a connection ended (for the listener's metrics and debug logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed it, or hyper ended it (errors included).
    Closed,
    /// Nothing (or no complete request head) within the header timeout.
    HeaderTimeout,
    /// Served, then idle for the idle timeout.
    Idle,
    /// Gave way to a new connection.
    Evicted,
    /// Closed at shutdown (after its requests in progress).
    Shutdown,
}

/// A stream a connection is served on (TCP, or TLS over TCP).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// What a listener serves: one response per request, never an error, its
/// futures `Unpin` (boxed, or ready) so that tracking them costs no
/// allocation.
pub(crate) trait Serve:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = <Self as Serve>::Answer,
    > + Send
    + 'static
{
    /// The future of one answer.
    type Answer: Future<Output = Result<Response<Body>, Infallible>> + Unpin + Send + 'static;
}

impl<S> Serve for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Unpin + Send + 'static,
{
    type Answer = S::Future;
}

type Io<I> = TokioIo<Prefixed<I>>;
type H1<I, S> = http1::Connection<Io<I>, Tracked<S>>;
type H2<I, S> = http2::Connection<Io<I>, Tracked<S>, TokioExecutor>;

/// A hyper connection of either protocol.
enum Conn<I: Stream, S: Serve> {
    H1(Pin<Box<H1<I, S>>>),
    H2(Pin<Box<H2<I, S>>>),
}

impl<I: Stream, S: Serve> Conn<I, S> {
    fn graceful_shutdown(&mut self) {
        match self {
            Conn::H1(c) => c.as_mut().graceful_shutdown(),
            Conn::H2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<I: Stream, S: Serve> Future for Conn<I, S> {
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Conn::H1(c) => c.as_mut().poll(cx),
            Conn::H2(c) => c.as_mut().poll(cx),
        }
    }
}

/// Serves one connection whose protocol is known (`protocol`, with the
/// bytes already read in `sniffed`) until it ends; see the module docs.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive<I, S>(
    io: I,
    protocol: Protocol,
    sniffed: Sniffed,
    protocols: &Protocols,
    service: S,
    activity: ActivityCell,
    accepted: Instant,
    evicted: &CancellationToken,
    drain: &CancellationToken,
) -> End
where
    I: Stream,
    S: Serve,
{
    let io = TokioIo::new(Prefixed::new(sniffed, io));
    let service = Tracked {
        inner: service,
        activity: activity.clone(),
    };
    let mut conn = match protocol {
        Protocol::Http1 => Conn::H1(Box::pin(protocols.http1.serve_connection(io, service))),
        Protocol::Http2 => Conn::H2(Box::pin(protocols.http2.serve_connection(io, service))),
    };
    let mut draining = false;
    // One timer for the connection's life, re-armed only when it fires: a
    // request starting or ending touches atomics and wakes nobody. When it
    // fires, the activity is read again: requests since then moved the
    // deadline, and it is re-armed for the new one.
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(accepted));
    loop {
        let now = activity.now();
        let idle_deadline = (now.active == 0 && !draining).then(|| {
            if now.served == 0 {
                protocols.first_deadline(accepted)
            } else {
                now.idle_since + protocols.idle_timeout
            }
        });
        let wake_at = match idle_deadline {
            // Before the first request one can start and end at any moment;
            // the idle deadline it sets can come an idle timeout from now,
            // before the header deadline.
            Some(deadline) if now.served == 0 => {
                deadline.min(Instant::now() + protocols.idle_timeout)
            }
            Some(deadline) => deadline,
            // Busy (or draining): the earliest an idle deadline can come is
            // a full timeout after a request that ends right now.
            None => Instant::now() + protocols.idle_timeout.min(protocols.header_read_timeout),
        };
        sleep.as_mut().reset(wake_at);
        tokio::select! {
            biased;
            () = evicted.cancelled() => return End::Evicted,
            result = &mut conn => {
                if let Err(error) = result {
                    // Header timeouts, resets, malformed requests: the client's doing.
                    tracing::debug!(%error, "connection ended with an error");
                }
                return if draining { End::Shutdown } else { End::Closed };
            }
            () = &mut sleep => {
                let Some(deadline) = idle_deadline else { continue };
                let again = activity.now();
                if again.active > 0 || again.served != now.served || Instant::now() < deadline {
                    continue;
                }
                if now.served == 0 {
                    return End::HeaderTimeout;
                }
                // Nothing in progress: a graceful close ends at once (h1)
                // or after the GOAWAY is written (h2); bounded anyway.
                conn.graceful_shutdown();
                let _ = tokio::time::timeout(protocols.header_read_timeout, &mut conn).await;
                return End::Idle;
            }
            () = drain.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn sniffing_tells_the_preface_from_http1_and_replays_the_bytes() {
        for (input, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], Protocol::Http1),
            (&b"PRI * HTTP/1.1\r\n"[..], Protocol::Http1),
            (&H2_PREFACE[..], Protocol::Http2),
            (&b"P"[..], Protocol::Http1),
        ] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(input).await.unwrap();
            if input == b"P" {
                // One byte that could start the preface, then EOF.
                drop(client);
                let mut server = server;
                assert!(sniff(&mut server).await.is_err());
                continue;
            }
            client.write_all(b"tail").await.unwrap();
            drop(client);
            let mut server = server;
            let (got, sniffed) = sniff(&mut server).await.unwrap();
            assert_eq!(got, want, "{input:?}");
            let mut replayed = Vec::new();
            Prefixed::new(sniffed, server)
                .read_to_end(&mut replayed)
                .await
                .unwrap();
            assert_eq!(replayed, [input, b"tail"].concat(), "{input:?}");
        }
    }

    #[tokio::test]
    async fn sniffing_a_byte_at_a_time() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for b in H2_PREFACE {
                client.write_all(&[*b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let (got, sniffed) = sniff(&mut server).await.unwrap();
        assert_eq!(got, Protocol::Http2);
        assert_eq!(sniffed.len, 24);
        drop(writer.await.unwrap());
    }

    #[test]
    fn alpn_decides_when_present() {
        assert_eq!(from_alpn(Some(b"h2")), Some(Protocol::Http2));
        assert_eq!(from_alpn(Some(b"http/1.1")), Some(Protocol::Http1));
        assert_eq!(from_alpn(None), None);
        assert_eq!(from_alpn(Some(b"spdy/3")), None);
    }
}
