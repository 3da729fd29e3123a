//! A plain HTTP/1.1 client (hyper's pooled one) and the waits built on it.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::process::Program;

/// hyper's pooled HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A new client with its own pool.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request and reads the whole answer: (status, body).
pub async fn send(
    client: &Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into()))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .with_context(|| format!("no answer from {url} within 30 s"))??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Polls `url` with GET until it answers `expected`, while `program` runs;
/// gives up after `deadline`. Returns when it first answered so.
pub async fn wait_for_status(
    client: &Client,
    url: &str,
    expected: StatusCode,
    program: &mut Program,
    deadline: Duration,
) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        program.check_running()?;
        if let Ok((status, _)) = send(client, Method::GET, url, &[], Bytes::new()).await {
            if status == expected {
                return Ok(Instant::now());
            }
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "{url} not {expected} within {deadline:?}:\n{}",
            program.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `q` quantile (0..=1) of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[rank]
}
