//! The listener, per-request plumbing (authentication, faults, the request log) and the
//! shared state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api;
use crate::delivery::Deliverer;
use crate::options::DeliveryOptions;
use crate::state::State;

/// What "Harbor down" looks like to API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFault {
    /// Every API call answers 500 `internal server error`.
    InternalError,
    /// Connections are accepted and requests read, but never answered (until the fault
    /// is cleared, when they are closed without an answer).
    Hang,
    /// The listener is closed and open connections dropped: connection refused.
    Refuse,
}

/// One API call served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path as sent.
    pub path: String,
    /// Raw query (`""` when none).
    pub query: String,
    /// Answer status (0 when the request was never answered).
    pub status: u16,
    /// Who was authenticated (`None` for anonymous); never a password.
    pub user: Option<String>,
    /// The Basic user name that failed to log in, if any.
    pub failed_login: Option<String>,
    /// `X-Request-Id` of the answer.
    pub request_id: String,
    /// Whether an injected fault answered.
    pub fault: bool,
}

/// Shared by the listener, the handlers, the jobs and the handle.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    log: Mutex<Vec<RequestRecord>>,
    /// The injected fault.
    pub fault: watch::Sender<Option<ApiFault>>,
    /// Set to end everything.
    pub shutdown: watch::Sender<bool>,
    /// Webhook jobs not yet finished.
    pub active: watch::Sender<usize>,
    /// Bumped on every task change (for waiters).
    pub changes: watch::Sender<u64>,
    /// Duration multiplier.
    pub time_scale: f64,
    /// Job behaviour.
    pub delivery: DeliveryOptions,
    /// `host[:port]` for `resource_url`.
    pub external_host: String,
    /// Trace every request.
    pub log_requests: bool,
    /// HTTP clients for webhook jobs.
    pub deliverer: Deliverer,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data here (every update is a
    // single assignment), so keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Build the shared part.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: State,
        time_scale: f64,
        delivery: DeliveryOptions,
        external_host: String,
        log_requests: bool,
        deliverer: Deliverer,
    ) -> Self {
        Shared {
            state: Mutex::new(state),
            log: Mutex::new(Vec::new()),
            fault: watch::channel(None).0,
            shutdown: watch::channel(false).0,
            active: watch::channel(0).0,
            changes: watch::channel(0).0,
            time_scale,
            delivery,
            external_host,
            log_requests,
            deliverer,
        }
    }

    /// Run `f` on the state under the lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// Wake waiters after a change.
    pub fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    fn record(&self, r: RequestRecord) {
        if self.log_requests {
            tracing::info!(
                method = %r.method, path = %r.path, query = %r.query, status = r.status,
                user = r.user.as_deref().unwrap_or("-"), "api request"
            );
        }
        lock(&self.log).push(r);
    }

    /// Scale a Harbor duration.
    pub fn scaled(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() * self.time_scale).unwrap_or(Duration::MAX)
    }
}

/// A body-complete request as the handlers see it.
pub struct ApiRequest {
    /// Method.
    pub method: http::Method,
    /// Raw path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// The answer of a handler.
pub type ApiResponse = Response<Full<Bytes>>;

/// TLS acceptor or plain.
pub type Acceptor = Option<tokio_rustls::TlsAcceptor>;

/// Serve until shutdown; rebinding the same address after a `Refuse` fault is cleared.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr, tls: Acceptor) {
    let mut listener = Some(listener);
    let mut fault_rx = shared.fault.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    loop {
        if *shutdown_rx.borrow() {
            return;
        }
        let refusing = *fault_rx.borrow_and_update() == Some(ApiFault::Refuse);
        if refusing {
            listener = None;
            tokio::select! {
                _ = fault_rx.changed() => continue,
                _ = shutdown_rx.changed() => continue,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "rebinding after a refuse fault failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let accepted = tokio::select! {
            c = l.accept() => c,
            _ = fault_rx.changed() => { listener = Some(l); continue; }
            _ = shutdown_rx.changed() => { listener = Some(l); continue; }
        };
        listener = Some(l);
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let s = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move { connection(s, stream, tls).await });
    }
}

async fn connection(shared: Arc<Shared>, stream: tokio::net::TcpStream, tls: Acceptor) {
    let mut fault_rx = shared.fault.subscribe();
    let mut shutdown_rx = shared.shutdown.subscribe();
    let s = shared.clone();
    let svc = service_fn(move |req| handle(s.clone(), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Go writes canonical header names (`X-Total-Count`, `Location`).
    builder.title_case_headers(true);
    let refused = async move {
        let _ = fault_rx.wait_for(|f| *f == Some(ApiFault::Refuse)).await;
    };
    let down = async move {
        let _ = shutdown_rx.wait_for(|s| *s).await;
    };
    match tls {
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! { _ = conn => {}, _ = refused => {}, _ = down => {} }
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! { _ = conn => {}, _ = refused => {}, _ = down => {} }
        }
    }
}

/// An error that makes hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection closed by an injected fault")]
pub struct Hangup;

async fn handle(
    shared: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Result<ApiResponse, Hangup> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Hangup),
    };
    let req = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    if req.path.starts_with("/_emulator/") {
        return Ok(api::control(&shared, req).await);
    }
    let request_id = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut record = RequestRecord {
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        status: 0,
        user: None,
        failed_login: None,
        request_id: request_id.clone(),
        fault: false,
    };
    let fault = *shared.fault.borrow();
    match fault {
        Some(ApiFault::InternalError) => {
            record.status = 500;
            record.fault = true;
            shared.record(record);
            return Ok(api::error_response(
                &crate::api_error::ApiError::internal(),
                &request_id,
            ));
        }
        Some(ApiFault::Hang) => {
            record.fault = true;
            shared.record(record);
            let mut rx = shared.fault.subscribe();
            let _ = rx.wait_for(|f| *f != Some(ApiFault::Hang)).await;
            return Err(Hangup);
        }
        _ => {}
    }
    let frozen = shared.scaled(Duration::from_millis(1500));
    let auth = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let outcome = shared.with_state(|st| st.accounts.authenticate(auth.as_deref(), frozen));
    if outcome.failed_login.is_some() {
        // Harbor sleeps after a failed login before going on anonymously.
        let started = Instant::now();
        tokio::time::sleep(frozen.saturating_sub(started.elapsed())).await;
    }
    record.user = outcome.principal.name().map(str::to_string);
    record.failed_login = outcome.failed_login.clone();
    let mut resp = api::route(&shared, &req, &outcome.principal).await;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    record.status = resp.status().as_u16();
    shared.record(record);
    if req.method == http::Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    Ok(resp)
}
