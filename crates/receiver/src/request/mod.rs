//! Webhook request handling, in Kargo's order and with Kargo's answers
//! (`docs/behaviour.md`, "A Harbor request, step by step"):
//!
//! | step | answer |
//! |---|---|
//! | path not in the index | 404 `{"error":"not found"}` |
//! | method other than POST | 405 `{"error":"method not allowed"}`, `Allow: POST` |
//! | body over 2 MiB (declared or streamed) | 413 `{"error":"content exceeds limit of 2097152 bytes"}` |
//! | no `Authorization` header (or an empty one) | 401 `{"error":"missing authorization"}` |
//! | header ≠ auth header (constant time) | 401 `{"error":"unauthorized"}` |
//! | body not a Harbor event | 400 `{"error":"invalid request body"}` |
//! | event is not a push | 400 `{"error":"unsupported event type"}` |
//! | no resources / nothing matches | 200 `{"msg":"refreshed 0 warehouse(s)"}` |
//! | otherwise | 200 `{"msg":"refreshed N warehouse(s)"}` or 500 `{"error":"failed to refresh X of N warehouses"}` |
//!
//! Bodies are JSON followed by a newline, exactly as Kargo's Go encoder
//! writes them. Beyond the table, every answer goes out within
//! `--answer-deadline` of the request head: a body not received by then
//! gets 408 `{"error":"request timeout"}`, refreshes not finished by then
//! 503 `{"error":"request timeout"}` (Harbor retries, and its retry joins
//! the work still running: see `refresh::deliveries`). A client that hangs
//! up first is counted and logged as `client_gone`.
//!
//! Logs: one line per push answered 2xx or 5xx; rejections (4xx) are
//! summarised per receiver and outcome ([`rejections`]). The method is
//! logged as a bounded value; the path and `Authorization` never.
//!
//! The decisions are pure functions ([`decide_head`], [`decide_body`],
//! [`refresh_reply`]); [`Handler::handle`] only adds I/O around them: it
//! looks the path up in the route table, reads the body, matches the push
//! against the repository index and hands the matches to the refresher.
//! [`WebhookService`] puts `/healthz` and `/readyz` beside it on the
//! webhook port.
//!
//! Memory: a request whose token is wrong is never buffered. With a declared
//! Content-Length ≤ 2 MiB it is answered 401 at once (its body cannot exceed
//! the limit, so 413 is impossible); without one its body is drained and
//! counted only, to tell 413 from 401 as the table requires. Authorised
//! bodies are bounded in all and per receiver ([`budget`]).

mod budget;
mod rejections;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
// Tokio's clock (std's when not paused): deadlines and the refresh
// promise compare instants of one clock, also in paused-clock tests.
use tokio::time::Instant;

use crate::core::harbor;
use crate::health::Health;
use crate::index::{Index, ReceiverEntry, Repositories, WarehouseMatch};
use crate::metrics::{GaugeGuard, Outcome, RequestMetrics};
use crate::refresh::deliveries::DeliveryKey;
use crate::refresh::{Delivered, RefreshSummary, Refresher};
use budget::BodyBudget;
pub use budget::{BODIES_PER_RECEIVER, MAX_BUFFERED_BODIES};
pub use rejections::method_label;
use rejections::{Rejected, Rejections};

/// Largest accepted body: 2 MiB, as Kargo.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// An answer: status, metric outcome and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// The row of the table it answers.
    pub outcome: Outcome,
    /// JSON body, newline-terminated.
    pub body: Cow<'static, str>,
}

impl Reply {
    fn fixed(status: StatusCode, outcome: Outcome, body: &'static str) -> Self {
        Self {
            status,
            outcome,
            body: Cow::Borrowed(body),
        }
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::fixed(
            StatusCode::NOT_FOUND,
            Outcome::NotFound,
            "{\"error\":\"not found\"}\n",
        )
    }

    /// 405 (sent with `Allow: POST`).
    pub fn method_not_allowed() -> Self {
        Self::fixed(
            StatusCode::METHOD_NOT_ALLOWED,
            Outcome::MethodNotAllowed,
            "{\"error\":\"method not allowed\"}\n",
        )
    }

    /// 413.
    pub fn too_large() -> Self {
        static BODY: LazyLock<String> = LazyLock::new(|| {
            format!("{{\"error\":\"content exceeds limit of {MAX_BODY_BYTES} bytes\"}}\n")
        });
        Self::fixed(
            StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::PayloadTooLarge,
            BODY.as_str(),
        )
    }

    /// 401, no header.
    pub fn missing_authorization() -> Self {
        Self::fixed(
            StatusCode::UNAUTHORIZED,
            Outcome::MissingAuthorization,
            "{\"error\":\"missing authorization\"}\n",
        )
    }

    /// 401, wrong header.
    pub fn unauthorized() -> Self {
        Self::fixed(
            StatusCode::UNAUTHORIZED,
            Outcome::Unauthorized,
            "{\"error\":\"unauthorized\"}\n",
        )
    }

    /// 400, not a Harbor event.
    pub fn invalid_body() -> Self {
        Self::fixed(
            StatusCode::BAD_REQUEST,
            Outcome::InvalidBody,
            "{\"error\":\"invalid request body\"}\n",
        )
    }

    /// 400, not a push.
    pub fn unsupported_event() -> Self {
        Self::fixed(
            StatusCode::BAD_REQUEST,
            Outcome::UnsupportedEvent,
            "{\"error\":\"unsupported event type\"}\n",
        )
    }

    /// 408: the body did not arrive within `--answer-deadline`.
    pub fn body_timeout() -> Self {
        Self::fixed(
            StatusCode::REQUEST_TIMEOUT,
            Outcome::Timeout,
            "{\"error\":\"request timeout\"}\n",
        )
    }

    /// 503: refreshes did not finish within `--answer-deadline` (they go
    /// on in the background; Harbor's retry joins them).
    pub fn refresh_timeout() -> Self {
        Self::fixed(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Timeout,
            "{\"error\":\"request timeout\"}\n",
        )
    }

    /// The client went away before its answer (a broken body, or the
    /// request dropped by hyper): never sent, counted as `client_gone`.
    pub fn client_gone() -> Self {
        Self::fixed(
            StatusCode::BAD_REQUEST,
            Outcome::ClientGone,
            "{\"error\":\"invalid request body\"}\n",
        )
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = match self.body {
            Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
            Cow::Owned(s) => Bytes::from(s),
        };
        let mut response = json_response(self.status, body);
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// A JSON response: every answer of the webhook listener, /healthz and
/// /readyz included.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer once every matching Warehouse has a result, in Kargo's
/// words. `N` counts the Warehouses that exist: refreshed (patched, or
/// satisfied by a shared patch) plus failed; deleted ones are in neither.
/// Any failure: 500 `failed to refresh X of N warehouses` (Harbor retries);
/// else 200 `refreshed N warehouse(s)`.
pub fn refresh_reply(summary: &RefreshSummary) -> Reply {
    let failed = summary.failed;
    let total = summary.refreshed() + failed;
    if failed > 0 {
        Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            outcome: Outcome::RefreshFailed,
            body: Cow::Owned(format!(
                "{{\"error\":\"failed to refresh {failed} of {total} warehouses\"}}\n"
            )),
        }
    } else {
        Reply {
            status: StatusCode::OK,
            outcome: Outcome::Refreshed,
            // The most frequent answer (a push nobody subscribes to) is
            // not formatted anew each time.
            body: match total {
                0 => Cow::Borrowed("{\"msg\":\"refreshed 0 warehouse(s)\"}\n"),
                _ => Cow::Owned(format!("{{\"msg\":\"refreshed {total} warehouse(s)\"}}\n")),
            },
        }
    }
}

/// Result of the `Authorization` check (made before the body is read,
/// reported after it, as the table's order requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Matches the receiver's auth header.
    Ok,
    /// Absent or empty.
    Missing,
    /// Present and different.
    Wrong,
}

/// What the head of a request says.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    /// Method.
    pub method: &'a Method,
    /// Full request path (no query).
    pub path: &'a str,
    /// First `Authorization` value.
    pub authorization: Option<&'a [u8]>,
    /// Declared body length (Content-Length), if any.
    pub declared_len: Option<u64>,
}

/// The decision once the head is read.
#[derive(Clone, Debug)]
pub enum HeadDecision {
    /// Answer now, without reading the body.
    Answer {
        /// The receiver, if the path named one (for logs and metrics).
        receiver: Option<Arc<ReceiverEntry>>,
        /// The answer.
        reply: Reply,
    },
    /// Read the body, then [`decide_body`].
    ReadBody {
        /// The receiver.
        receiver: Arc<ReceiverEntry>,
        /// Result of the token check.
        auth: Auth,
        /// Whether the body must be kept (authorised) or only counted.
        keep: bool,
    },
}

/// Steps 1–5 of the table, as far as they can be decided from the head;
/// `receiver` is what the route table has for the request's path.
pub fn decide_head(receiver: Option<&Arc<ReceiverEntry>>, head: &Head<'_>) -> HeadDecision {
    let Some(receiver) = receiver else {
        return HeadDecision::Answer {
            receiver: None,
            reply: Reply::not_found(),
        };
    };
    let answer = |reply| HeadDecision::Answer {
        receiver: Some(receiver.clone()),
        reply,
    };
    if head.method != Method::POST {
        return answer(Reply::method_not_allowed());
    }
    if head.declared_len.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return answer(Reply::too_large());
    }
    let auth = match head.authorization {
        None | Some([]) => Auth::Missing,
        Some(value) if receiver.token.verify(value) => Auth::Ok,
        Some(_) => Auth::Wrong,
    };
    match (auth, head.declared_len) {
        // The body cannot exceed its declared length: 413 is impossible.
        (Auth::Missing, Some(_)) => answer(Reply::missing_authorization()),
        (Auth::Wrong, Some(_)) => answer(Reply::unauthorized()),
        _ => HeadDecision::ReadBody {
            receiver: receiver.clone(),
            auth,
            keep: auth == Auth::Ok,
        },
    }
}

/// A body as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyRead {
    /// Within the limit (empty when only counted).
    Complete(Bytes),
    /// Over the limit; reading stopped there.
    TooLarge,
}

/// The decision once the body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyDecision {
    /// Answer.
    Answer(Reply),
    /// Refresh these Warehouses (at least one), then [`refresh_reply`].
    Refresh(Vec<WarehouseMatch>),
}

/// Steps 3–9 of the table once the body is in.
pub fn decide_body(
    repositories: &Repositories,
    receiver: &ReceiverEntry,
    auth: Auth,
    body: &BodyRead,
) -> BodyDecision {
    let bytes = match body {
        BodyRead::TooLarge => return BodyDecision::Answer(Reply::too_large()),
        BodyRead::Complete(bytes) => bytes,
    };
    match auth {
        Auth::Missing => return BodyDecision::Answer(Reply::missing_authorization()),
        Auth::Wrong => return BodyDecision::Answer(Reply::unauthorized()),
        Auth::Ok => {}
    }
    let event = match harbor::parse(bytes) {
        Ok(event) => event,
        Err(_) => return BodyDecision::Answer(Reply::invalid_body()),
    };
    if !event.is_push() {
        return BodyDecision::Answer(Reply::unsupported_event());
    }
    let matches = repositories.matching(&receiver.scope, &event.artifacts);
    if matches.is_empty() {
        BodyDecision::Answer(refresh_reply(&RefreshSummary::default()))
    } else {
        BodyDecision::Refresh(matches)
    }
}

/// Reads a body up to `limit` bytes: kept if `keep`, else only counted.
pub async fn read_body<B>(body: B, limit: usize, keep: bool) -> Result<BodyRead, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if keep {
        return match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(BodyRead::Complete(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(BodyRead::TooLarge),
            Err(_) => Err(BodyError),
        };
    }
    let mut body = std::pin::pin!(body);
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError)?;
        if let Some(data) = frame.data_ref() {
            seen = seen.saturating_add(data.len());
            if seen > limit {
                return Ok(BodyRead::TooLarge);
            }
        }
    }
    Ok(BodyRead::Complete(Bytes::new()))
}

/// The body could not be read (client gone, broken framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyError;

/// What the request path needs.
pub struct RequestContext {
    /// The routes and the repository index (read only).
    pub index: Index,
    /// Turns matches into refreshes.
    pub refresher: Refresher,
    /// Request metrics.
    pub metrics: RequestMetrics,
    /// Every answer goes out within this time of the request head.
    pub answer_deadline: Duration,
}

/// Handles webhook requests; one per server, shared by all connections.
pub struct Handler {
    ctx: RequestContext,
    bodies: BodyBudget,
    rejections: Rejections,
}

/// Counts and logs one request exactly once: when it is answered, or, if
/// hyper drops it first (the client hung up), as `client_gone`.
struct Record<'a> {
    handler: &'a Handler,
    arrival: Instant,
    method: &'static str,
    receiver: Option<Arc<ReceiverEntry>>,
    matched: usize,
    summary: Option<RefreshSummary>,
    done: bool,
}

impl Record<'_> {
    fn finish(&mut self, outcome: Outcome, status: StatusCode) {
        self.done = true;
        let ctx = &self.handler.ctx;
        let elapsed = self.arrival.elapsed();
        let labelled = self
            .receiver
            .as_deref()
            .map(|r| (&r.counters, r.scope.project(), r.name.as_str()));
        let grace_period = self
            .receiver
            .as_deref()
            .is_some_and(|r| r.grace_until.is_some());
        ctx.metrics.record(labelled, grace_period, outcome, elapsed);
        let (project, name) = labelled.map_or(("", ""), |(_, p, n)| (p, n));
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_client_error() && outcome != Outcome::ClientGone {
            self.handler.rejections.record(&Rejected {
                project,
                receiver: name,
                outcome,
                status: status.as_u16(),
                method: self.method,
                duration_ms,
            });
            return;
        }
        let summary = self.summary.unwrap_or_default();
        // "Why didn't my Warehouse refresh?" is the question most asked;
        // the answer is one command away.
        let hint = (outcome == Outcome::Refreshed && self.matched == 0).then_some(
            "no Warehouse matched: `kargo-harbor-receiver explain` with this payload says why",
        );
        // The path and the Authorization header are secrets: never logged.
        tracing::info!(
            receiver = name,
            project,
            method = self.method,
            outcome = outcome.metric_label(),
            status = status.as_u16(),
            matched = self.matched,
            refreshed = summary.refreshed(),
            deleted = summary.not_found,
            failed = summary.failed,
            grace_period,
            duration_ms,
            hint,
            "webhook request"
        );
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.done {
            let gone = Reply::client_gone();
            self.finish(gone.outcome, gone.status);
        }
    }
}

impl Handler {
    /// A handler buffering at most [`MAX_BUFFERED_BODIES`] bodies at once,
    /// [`BODIES_PER_RECEIVER`] per receiver.
    pub fn new(ctx: RequestContext) -> Self {
        Self::with_body_budget(ctx, MAX_BUFFERED_BODIES, BODIES_PER_RECEIVER)
    }

    /// A handler that buffers at most `bodies` authorised bodies at once,
    /// `per_receiver` for any one receiver.
    fn with_body_budget(ctx: RequestContext, bodies: usize, per_receiver: usize) -> Self {
        Self {
            ctx,
            bodies: BodyBudget::new(bodies, per_receiver),
            rejections: Rejections::default(),
        }
    }

    /// Answers one request on a receiver path (anything but /healthz and
    /// /readyz) within the answer deadline. Never panics on any input;
    /// memory per request is bounded by [`MAX_BODY_BYTES`].
    // No field from the request: its path and Authorization are secrets.
    #[tracing::instrument(name = "webhook_request", skip_all)]
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ctx = &self.ctx;
        let arrival = Instant::now();
        let deadline = arrival + ctx.answer_deadline;
        let _in_flight = GaugeGuard::inc(&ctx.metrics.in_flight);

        let (parts, body) = request.into_parts();
        let declared_len = body.size_hint().exact().or_else(|| {
            let lower = body.size_hint().lower();
            (lower > MAX_BODY_BYTES as u64).then_some(lower)
        });
        let head = Head {
            method: &parts.method,
            path: parts.uri.path(),
            authorization: parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes),
            declared_len,
        };
        let mut record = Record {
            handler: self,
            arrival,
            method: method_label(&parts.method),
            receiver: None,
            matched: 0,
            summary: None,
            done: false,
        };
        // A rotated receiver's previous path answers until its grace period
        // ends, not until the reconcile that removes it.
        let route = ctx
            .index
            .routes
            .lookup(head.path)
            .filter(|entry| entry.accepts_at(arrival.into_std()));
        let reply = match decide_head(route.as_ref(), &head) {
            HeadDecision::Answer { receiver, reply } => {
                record.receiver = receiver;
                reply
            }
            HeadDecision::ReadBody {
                receiver,
                auth,
                keep,
            } => {
                record.receiver = Some(receiver.clone());
                self.read_and_refresh(body, &receiver, auth, keep, &mut record, deadline)
                    .await
            }
        };
        record.finish(reply.outcome, reply.status);
        reply.into_response()
    }

    /// The rest of the table once the head says to read the body.
    async fn read_and_refresh<B>(
        &self,
        body: B,
        receiver: &Arc<ReceiverEntry>,
        auth: Auth,
        keep: bool,
        record: &mut Record<'_>,
        deadline: Instant,
    ) -> Reply
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ctx = &self.ctx;
        // The body is read, parsed and dropped under one permit, so the
        // refresh that may follow holds no body memory.
        let decided = tokio::time::timeout_at(deadline, async {
            let _permit = match keep {
                true => self.bodies.acquire(receiver).await,
                false => None,
            };
            let read = read_body(body, MAX_BODY_BYTES, keep).await?;
            let decision = decide_body(&ctx.index.repositories.load(), receiver, auth, &read);
            let key = match (&decision, &read) {
                (BodyDecision::Refresh(_), BodyRead::Complete(bytes)) => {
                    Some(DeliveryKey::of(receiver, bytes))
                }
                _ => None,
            };
            Ok::<_, BodyError>((decision, key))
        })
        .await;
        let (matches, key) = match decided {
            Err(_elapsed) => return Reply::body_timeout(),
            Ok(Err(BodyError)) => return Reply::client_gone(),
            Ok(Ok((BodyDecision::Answer(reply), _))) => return reply,
            Ok(Ok((BodyDecision::Refresh(matches), Some(key)))) => (matches, key),
            // A refresh decision always comes from a complete body.
            Ok(Ok((BodyDecision::Refresh(_), None))) => return Reply::invalid_body(),
        };
        record.matched = matches.len();
        let name: Arc<str> = Arc::from(receiver.name.as_str());
        match ctx
            .refresher
            .deliver(key, &name, &matches, record.arrival, deadline)
            .await
        {
            Delivered::Done(summary) => {
                record.summary = Some(summary);
                refresh_reply(&summary)
            }
            Delivered::Pending | Delivered::Busy => Reply::refresh_timeout(),
        }
    }
}

/// The webhook port's service: `/healthz`, `/readyz`, and every other path
/// to the [`Handler`].
#[derive(Clone)]
pub struct WebhookService {
    handler: Arc<Handler>,
    health: Arc<Health>,
}

impl WebhookService {
    /// The service over `handler`, answering `/readyz` from `health`.
    pub fn new(handler: Handler, health: Arc<Health>) -> Self {
        Self {
            handler: Arc::new(handler),
            health,
        }
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    json_response(status, Bytes::from_static(body.as_bytes()))
}

impl hyper::service::Service<Request<Incoming>> for WebhookService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let response = match request.uri().path() {
            "/healthz" => json(StatusCode::OK, "{\"status\":\"ok\"}\n"),
            "/readyz" if self.health.is_ready() => json(StatusCode::OK, "{\"status\":\"ready\"}\n"),
            "/readyz" if self.health.is_draining() => json(
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"status\":\"shutting down\"}\n",
            ),
            "/readyz" => json(
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"status\":\"not ready\"}\n",
            ),
            _ => {
                let handler = self.handler.clone();
                return Box::pin(async move { Ok(handler.handle(request).await) });
            }
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use kargo_api::ImageSubscription;

    const PATH: &str = "/harbor/abc";
    const TOKEN: &[u8] = b"s3cret";

    fn index() -> Index {
        let index = Index::new();
        crate::testing::register_receiver(&index.routes, "p", PATH, TOKEN);
        index.repositories.upsert(&crate::testing::image_warehouse(
            "p",
            "w",
            ImageSubscription {
                repo_url: "harbor.example.com/library/app".into(),
                constraint: Some("^1".into()),
                ..Default::default()
            },
        ));
        index
    }

    fn push(tag: &str) -> String {
        format!(
            r#"{{"type":"PUSH_ARTIFACT","event_data":{{"resources":[{{"tag":"{tag}","resource_url":"harbor.example.com/library/app:{tag}"}}]}}}}"#
        )
    }

    /// One request of the table.
    struct Row<'a> {
        method: Method,
        path: &'a str,
        auth: Option<&'a [u8]>,
        body: &'a str,
        /// Whether the request declares its length (Content-Length).
        declared: bool,
    }

    impl Default for Row<'_> {
        fn default() -> Self {
            Row {
                method: Method::POST,
                path: PATH,
                auth: Some(TOKEN),
                body: "",
                declared: true,
            }
        }
    }

    /// Runs both decisions as the handler does, returning the answer or the
    /// refresh list.
    fn decide(row: &Row<'_>) -> BodyDecision {
        let index = index();
        let head = Head {
            method: &row.method,
            path: row.path,
            authorization: row.auth,
            declared_len: row.declared.then_some(row.body.len() as u64),
        };
        match decide_head(index.routes.lookup(row.path).as_ref(), &head) {
            HeadDecision::Answer { reply, .. } => BodyDecision::Answer(reply),
            HeadDecision::ReadBody {
                receiver,
                auth,
                keep,
            } => {
                let read = if row.body.len() > MAX_BODY_BYTES {
                    BodyRead::TooLarge
                } else if keep {
                    BodyRead::Complete(Bytes::copy_from_slice(row.body.as_bytes()))
                } else {
                    BodyRead::Complete(Bytes::new())
                };
                decide_body(&index.repositories.load(), &receiver, auth, &read)
            }
        }
    }

    #[test]
    fn the_table_row_by_row() {
        let big = format!("{}{}", push("1.0.0"), " ".repeat(MAX_BODY_BYTES));
        let ok = push("1.0.0");
        let pull = r#"{"type":"PULL_ARTIFACT","event_data":{"resources":[{"tag":"1.0.0","resource_url":"harbor.example.com/library/app:1.0.0"}]}}"#;
        let empty = r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#;
        let v2 = push("2.0.0");
        let not_found = (404, r#"{"error":"not found"}"#);
        let not_allowed = (405, r#"{"error":"method not allowed"}"#);
        let too_large = (413, r#"{"error":"content exceeds limit of 2097152 bytes"}"#);
        let missing = (401, r#"{"error":"missing authorization"}"#);
        let wrong = (401, r#"{"error":"unauthorized"}"#);
        let invalid = (400, r#"{"error":"invalid request body"}"#);
        let zero = (200, r#"{"msg":"refreshed 0 warehouse(s)"}"#);
        let rows: Vec<(Row, (u16, &str))> = vec![
            (
                Row {
                    path: "/harbor/nope",
                    body: &ok,
                    ..Row::default()
                },
                not_found,
            ),
            (
                Row {
                    method: Method::GET,
                    path: "/harbor/nope",
                    auth: None,
                    ..Row::default()
                },
                not_found,
            ),
            (
                Row {
                    method: Method::GET,
                    ..Row::default()
                },
                not_allowed,
            ),
            (
                Row {
                    method: Method::PUT,
                    auth: None,
                    body: &big,
                    ..Row::default()
                },
                not_allowed,
            ),
            (
                Row {
                    auth: None,
                    body: &big,
                    ..Row::default()
                },
                too_large,
            ),
            (
                Row {
                    auth: None,
                    body: &big,
                    declared: false,
                    ..Row::default()
                },
                too_large,
            ),
            (
                Row {
                    auth: Some(b"bad"),
                    body: &big,
                    declared: false,
                    ..Row::default()
                },
                too_large,
            ),
            (
                Row {
                    auth: None,
                    body: &ok,
                    ..Row::default()
                },
                missing,
            ),
            (
                Row {
                    auth: None,
                    body: &ok,
                    declared: false,
                    ..Row::default()
                },
                missing,
            ),
            (
                Row {
                    auth: Some(b""),
                    body: &ok,
                    ..Row::default()
                },
                missing,
            ),
            (
                Row {
                    auth: Some(b"s3cre"),
                    body: &ok,
                    ..Row::default()
                },
                wrong,
            ),
            (
                Row {
                    auth: Some(b"s3cret "),
                    body: &ok,
                    declared: false,
                    ..Row::default()
                },
                wrong,
            ),
            (
                Row {
                    body: "not json",
                    ..Row::default()
                },
                invalid,
            ),
            (
                Row {
                    body: "",
                    ..Row::default()
                },
                invalid,
            ),
            (
                Row {
                    body: pull,
                    ..Row::default()
                },
                (400, r#"{"error":"unsupported event type"}"#),
            ),
            (
                Row {
                    body: empty,
                    ..Row::default()
                },
                zero,
            ),
            (
                Row {
                    body: &v2,
                    ..Row::default()
                },
                zero,
            ),
        ];
        for (row, (status, want)) in rows {
            let what = format!(
                "{} {} auth={:?} declared={} body={:.40}",
                row.method, row.path, row.auth, row.declared, row.body
            );
            match decide(&row) {
                BodyDecision::Answer(reply) => {
                    assert_eq!(reply.status.as_u16(), status, "{what}");
                    assert_eq!(reply.body, format!("{want}\n"), "{what}");
                }
                BodyDecision::Refresh(m) => panic!("{what}: refresh {m:?}"),
            }
        }
        let ce = r#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[{"tag":"1.2.0","resource_url":"harbor.example.com/library/app:1.2.0"}]}}"#;
        for body in [ok.as_str(), ce] {
            match decide(&Row {
                body,
                declared: false,
                ..Row::default()
            }) {
                BodyDecision::Refresh(m) => {
                    assert_eq!(m.len(), 1);
                    assert_eq!(&*m[0].warehouse.name, "w");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn refresh_answers() {
        let summary = |patched, shared, not_found, failed| RefreshSummary {
            total: patched + shared + not_found + failed,
            patched,
            shared,
            not_found,
            failed,
        };
        let r = refresh_reply(&summary(2, 1, 0, 0));
        assert_eq!(
            (r.status.as_u16(), r.body.as_ref()),
            (200, "{\"msg\":\"refreshed 3 warehouse(s)\"}\n")
        );
        // Deleted Warehouses are neither refreshed nor failed.
        let r = refresh_reply(&summary(0, 0, 500, 0));
        assert_eq!(
            (r.status.as_u16(), r.body.as_ref()),
            (200, "{\"msg\":\"refreshed 0 warehouse(s)\"}\n")
        );
        let r = refresh_reply(&summary(1, 0, 4, 2));
        assert_eq!(
            (r.status.as_u16(), r.body.as_ref()),
            (500, "{\"error\":\"failed to refresh 2 of 3 warehouses\"}\n")
        );
        assert_eq!(r.outcome, Outcome::RefreshFailed);
    }

    #[test]
    fn every_reply_is_json_with_its_content_type() {
        for reply in [
            Reply::not_found(),
            Reply::method_not_allowed(),
            Reply::too_large(),
            Reply::missing_authorization(),
            Reply::unauthorized(),
            Reply::invalid_body(),
            Reply::unsupported_event(),
            Reply::body_timeout(),
            Reply::refresh_timeout(),
            Reply::client_gone(),
            refresh_reply(&RefreshSummary {
                total: 1,
                patched: 1,
                ..RefreshSummary::default()
            }),
            refresh_reply(&RefreshSummary {
                total: 1,
                failed: 1,
                ..RefreshSummary::default()
            }),
        ] {
            let body = reply.body.clone();
            let allow = reply.status == StatusCode::METHOD_NOT_ALLOWED;
            let response = reply.into_response();
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers().get(ALLOW).is_some(), allow);
            assert!(body.ends_with('\n'));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(v
                .get("error")
                .or(v.get("msg"))
                .is_some_and(|s| s.is_string()));
        }
        assert_eq!(
            Reply::method_not_allowed().into_response().headers()[ALLOW],
            "POST"
        );
    }

    #[tokio::test]
    async fn body_reading_is_bounded() {
        use futures::stream;
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let chunks = |n: usize, size: usize| {
            StreamBody::new(stream::iter((0..n).map(move |_| {
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; size])))
            })))
        };
        // Exactly the limit: accepted, kept or counted.
        assert_eq!(
            read_body(chunks(2, MAX_BODY_BYTES / 2), MAX_BODY_BYTES, true).await,
            Ok(BodyRead::Complete(Bytes::from(vec![b'x'; MAX_BODY_BYTES])))
        );
        assert_eq!(
            read_body(chunks(2, MAX_BODY_BYTES / 2), MAX_BODY_BYTES, false).await,
            Ok(BodyRead::Complete(Bytes::new()))
        );
        // One byte over, and an endless stream: refused without reading on.
        assert_eq!(
            read_body(chunks(MAX_BODY_BYTES + 1, 1), MAX_BODY_BYTES, true).await,
            Ok(BodyRead::TooLarge)
        );
        let endless = StreamBody::new(stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(&[0u8; 4096])))
        }));
        assert_eq!(
            read_body(endless, MAX_BODY_BYTES, false).await,
            Ok(BodyRead::TooLarge)
        );
        let endless = StreamBody::new(stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(&[0u8; 4096])))
        }));
        assert_eq!(
            read_body(endless, MAX_BODY_BYTES, true).await,
            Ok(BodyRead::TooLarge)
        );
        // A broken body is an error, not a panic.
        let broken = StreamBody::new(stream::iter(vec![Err::<Frame<Bytes>, _>(
            std::io::Error::other("reset"),
        )]));
        assert_eq!(
            read_body(broken, MAX_BODY_BYTES, true).await,
            Err(BodyError)
        );
    }
}

#[cfg(test)]
mod handle_tests {
    //! [`Handler::handle`] in-process, with a fake patcher: timeouts,
    //! metrics and the in-flight gauge.

    use super::*;
    use crate::metrics::Metrics;
    use crate::refresh::RefreshSettings;
    use crate::testing::FakePatcher;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    fn handler(hang: bool) -> Handler {
        let patcher = FakePatcher::new(true);
        if hang {
            patcher.hang.lock().unwrap().insert("w".into());
        }
        Arc::into_inner(handler_with(patcher).0).unwrap()
    }

    fn handler_with(patcher: Arc<FakePatcher>) -> (Arc<Handler>, Arc<FakePatcher>) {
        let index = Index::new();
        crate::testing::register_receiver(&index.routes, "p", "/harbor/abc", b"t");
        index
            .repositories
            .upsert(&crate::testing::any_version_warehouse("p", "w", "h/app"));
        let metrics = Metrics::new();
        let refresher = Refresher::new(
            Arc::new(patcher.clone()),
            metrics.refresh.clone(),
            RefreshSettings {
                api_timeout: Duration::from_secs(60),
                concurrency: 4,
            },
            None,
        );
        let handler = Handler::new(RequestContext {
            index,
            refresher,
            metrics: metrics.requests,
            // Virtual: the timeout tests run on a paused clock.
            answer_deadline: Duration::from_millis(2500),
        });
        (Arc::new(handler), patcher)
    }

    /// The request metrics as Prometheus text.
    fn exposition(h: &Handler) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("webhook_requests", "", h.ctx.metrics.requests.clone());
        registry.register(
            "webhook_requests_in_flight",
            "",
            h.ctx.metrics.in_flight.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    const PUSH: &str = r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1.0.0","resource_url":"h/app:1.0.0"}]}}"#;

    async fn answer(response: Response<Full<Bytes>>) -> (u16, String) {
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn post(body: Full<Bytes>) -> Request<Full<Bytes>> {
        Request::post("/harbor/abc")
            .header("authorization", "t")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn a_push_is_refreshed_and_counted() {
        let h = handler(false);
        let got = answer(
            h.handle(post(Full::new(Bytes::from_static(PUSH.as_bytes()))))
                .await,
        )
        .await;
        assert_eq!(
            got,
            (200, "{\"msg\":\"refreshed 1 warehouse(s)\"}\n".into())
        );
        let text = exposition(&h);
        assert!(
            text.contains(
                r#"webhook_requests_total{project="p",receiver="recv",outcome="refreshed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("webhook_requests_in_flight 0"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_previous_path_answers_until_its_grace_period_ends_and_is_counted() {
        use crate::index::{ReceiverEntry, Route, Scope};
        let h = handler(false);
        let scope = Scope::project_of("p");
        let ends = tokio::time::Instant::now() + Duration::from_secs(60);
        let entry = |path: &str, token: &[u8], grace_until| Route {
            path: path.into(),
            entry: ReceiverEntry {
                scope: scope.clone(),
                name: "recv".into(),
                token: crate::core::token::TokenDigest::of(token),
                why: crate::index::RouteReason::Current,
                grace_until,
                counters: Default::default(),
            },
        };
        h.ctx.index.routes.replace(
            &scope,
            vec![
                entry("/harbor/new", b"new", None),
                entry("/harbor/abc", b"t", Some(ends.into_std())),
            ],
        );
        let old = || h.handle(post(Full::new(Bytes::from_static(PUSH.as_bytes()))));
        assert_eq!(answer(old().await).await.0, 200);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("grace", "", h.ctx.metrics.grace_period.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"grace_total{project="p",receiver="recv",outcome="refreshed"} 1"#),
            "{text}"
        );
        // At the end of the grace period the path is gone, although the
        // route is still in the table (its reconcile has not run yet).
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(h.ctx.index.routes.lookup("/harbor/abc").is_some());
        assert_eq!(
            answer(old().await).await,
            (404, "{\"error\":\"not found\"}\n".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_gets_408() {
        let h = handler(false);
        let first = futures::stream::iter(vec![Ok::<_, std::io::Error>(Frame::data(
            Bytes::from_static(b"{"),
        ))]);
        let stalled = StreamBody::new(futures::StreamExt::chain(first, futures::stream::pending()));
        let request = Request::post("/harbor/abc")
            .header("authorization", "t")
            .body(stalled)
            .unwrap();
        let got = answer(h.handle(request).await).await;
        assert_eq!(got, (408, "{\"error\":\"request timeout\"}\n".into()));
        assert!(exposition(&h).contains("webhook_requests_in_flight 0"));
    }

    #[tokio::test(start_paused = true)]
    async fn buffered_bodies_are_bounded_across_requests() {
        // Budget 1, and the one permit is taken (as by another request whose
        // body is being buffered): an authorised request cannot buffer its
        // body and times out, while a wrong-token request (drained, not
        // kept) is still answered. With the permit back, the push succeeds.
        let h = Handler::with_body_budget(handler(false).ctx, 1, 1);
        let push = || post(Full::new(Bytes::from_static(PUSH.as_bytes())));
        let receiver = h.ctx.index.routes.lookup("/harbor/abc").unwrap();
        let held = h.bodies.acquire(&receiver).await.unwrap();
        let blocked = answer(h.handle(push()).await).await;
        assert_eq!(blocked, (408, "{\"error\":\"request timeout\"}\n".into()));
        let wrong = Request::post("/harbor/abc")
            .header("authorization", "wrong")
            .body(Full::new(Bytes::from_static(PUSH.as_bytes())))
            .unwrap();
        let wrong = answer(h.handle(wrong).await).await;
        assert_eq!(wrong, (401, "{\"error\":\"unauthorized\"}\n".into()));
        drop(held);
        let again = answer(h.handle(push()).await).await;
        assert_eq!(again.0, 200, "{again:?}");
        // The permit is returned after each request.
        assert_eq!(h.bodies.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivery_joins_the_running_work_then_reuses_it() {
        let (h, patcher) = handler_with(FakePatcher::new(false));
        let push = || post(Full::new(Bytes::from_static(PUSH.as_bytes())));
        // The API server does not answer in time: 503, the PATCH goes on.
        let first = answer(h.handle(push()).await).await;
        assert_eq!(first, (503, "{\"error\":\"request timeout\"}\n".into()));
        assert_eq!(patcher.values("w").len(), 1);
        // Harbor's retry (same body) joins that PATCH rather than starting
        // another; it succeeds once the API server answers.
        let retry = tokio::spawn({
            let h = h.clone();
            async move { answer(h.handle(push()).await).await }
        });
        tokio::task::yield_now().await;
        patcher.open();
        let retry = retry.await.unwrap();
        assert_eq!(
            retry,
            (200, "{\"msg\":\"refreshed 1 warehouse(s)\"}\n".into())
        );
        assert_eq!(patcher.values("w").len(), 1, "one PATCH for both attempts");
        // Harbor never retries a 2xx: the same body again is a new push.
        let new_push = answer(h.handle(push()).await).await;
        assert_eq!(new_push.0, 200);
        assert_eq!(patcher.values("w").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_redoes_what_failed() {
        let patcher = FakePatcher::new(true);
        patcher.fail.lock().unwrap().insert("w".into(), 500);
        let (h, patcher) = handler_with(patcher);
        let push = || post(Full::new(Bytes::from_static(PUSH.as_bytes())));
        let failed = answer(h.handle(push()).await).await;
        assert_eq!(
            failed,
            (
                500,
                "{\"error\":\"failed to refresh 1 of 1 warehouses\"}\n".into()
            )
        );
        patcher.fail.lock().unwrap().clear();
        let retry = answer(h.handle(push()).await).await;
        assert_eq!(retry.0, 200);
        assert_eq!(patcher.values("w").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_hangs_up_is_counted_and_its_retry_joins_the_work() {
        let (h, patcher) = handler_with(FakePatcher::new(false));
        let push = || post(Full::new(Bytes::from_static(PUSH.as_bytes())));
        // hyper drops the service future when the client goes away.
        let cut = tokio::time::timeout(Duration::from_millis(100), h.handle(push())).await;
        assert!(cut.is_err());
        let text = exposition(&h);
        assert!(text.contains(r#"outcome="client_gone"} 1"#), "{text}");
        assert!(text.contains("webhook_requests_in_flight 0"), "{text}");
        // Harbor saw a failure and retries: the retry joins the PATCH that
        // went on.
        let retry = tokio::spawn({
            let h = h.clone();
            async move { answer(h.handle(push()).await).await }
        });
        tokio::task::yield_now().await;
        patcher.open();
        assert_eq!(retry.await.unwrap().0, 200);
        assert_eq!(patcher.values("w").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_beyond_the_answer_deadline_get_503() {
        let h = handler(true);
        let got = answer(
            h.handle(post(Full::new(Bytes::from_static(PUSH.as_bytes()))))
                .await,
        )
        .await;
        assert_eq!(got, (503, "{\"error\":\"request timeout\"}\n".into()));
        let text = exposition(&h);
        assert!(text.contains(r#"outcome="timeout"} 1"#), "{text}");
    }
}
