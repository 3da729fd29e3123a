//! A plain HTTP client for the webhook listener, as Harbor would use it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long [`send`] waits for an answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// hyper's pooled HTTP/1.1 client.
pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A new [`HttpClient`] (its own connection pool).
pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An answer, its body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request with `headers` and `body`; panics when there is no
/// answer within [`ANSWER_DEADLINE`].
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = tokio::time::timeout(ANSWER_DEADLINE, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("no answer from {url} within {ANSWER_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("request to {url}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
