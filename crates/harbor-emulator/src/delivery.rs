//! Webhook jobs as Harbor's jobservice runs them
//! (`src/jobservice/job/impl/notification/webhook_job.go`, the `goharbor/work` retry queue).
//!
//! One job per execution: a POST of the body rendered at queue time, with the headers
//! Harbor stored (`Content-Type`, `Authorization` verbatim) plus what Go's HTTP client adds
//! (`User-Agent: Go-http-client/1.1`, `Content-Length`, `Accept-Encoding: gzip`), over
//! HTTP/1.1. A status outside 200–299, a network error or the whole-request timeout fails
//! the attempt; a failed attempt is retried after `fails⁴ + 15 + rand(0..29)×(fails+1)`
//! seconds until the attempts are used up. Redirects are followed as Go's client does.
//!
//! The task log is what Harbor's file logger leaves: each attempt writes its lines from
//! the start of the file without truncating it, so a shorter attempt leaves the tail of a
//! longer earlier one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::model::{now_micros, Status};
use crate::server::Shared;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Building the delivery HTTP clients failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra CA is not PEM certificates.
    #[error("extra CA: {0}")]
    ExtraCa(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The two HTTP clients Harbor keeps: verifying and `skip_cert_verify`.
pub struct Deliverer {
    secure: HttpsClient,
    insecure: HttpsClient,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliverer")
    }
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client(cfg: rustls::ClientConfig) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        // Go writes canonical header names; some receivers log them.
        .http1_title_case_headers(true)
        .build(connector)
}

impl Deliverer {
    /// Clients trusting the system roots plus `extra_ca_pem`.
    pub fn new(extra_ca_pem: Option<&str>) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A broken system certificate is skipped, as Go's pool loader does.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_ca_pem {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| ClientError::ExtraCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientError::ExtraCa("no certificate in PEM".into()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ClientError::ExtraCa(e.to_string()))?;
            }
        }
        let secure = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let insecure = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        Ok(Deliverer {
            secure: client(secure),
            insecure: client(insecure),
        })
    }
}

/// One queued webhook job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its task.
    pub task_id: i64,
    /// Its execution.
    pub execution_id: i64,
    /// The target address as stored.
    pub address: String,
    /// `Content-Type` and, when set, `Authorization`.
    pub headers: Vec<(String, String)>,
    /// The rendered payload (identical on every attempt).
    pub body: Bytes,
    /// Use the non-verifying client.
    pub skip_cert_verify: bool,
}

/// Why an attempt failed, worded as Harbor's job log words it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// `http.NewRequest` failed: no request was sent.
    Build(String),
    /// Sending failed or the answer was not 2xx.
    Send(String),
}

/// Seconds before the retry after `fails` failures (`goharbor/work`'s backoff).
pub fn backoff_seconds(fails: u32) -> u64 {
    let f = u64::from(fails);
    f.pow(4) + 15 + fastrand::u64(0..30) * (f + 1)
}

fn scaled(d: Duration, scale: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * scale).unwrap_or(Duration::MAX)
}

const JOB_FILE: &str = "/jobservice/job/impl/notification/webhook_job.go";

fn log_line(level: &str, line: u32, msg: &str) -> String {
    format!(
        "{} [{level}] [{JOB_FILE}:{line}]: {msg}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Write `attempt` over `file` from offset 0 without truncation.
fn overwrite(file: &str, attempt: &str) -> String {
    if attempt.len() >= file.len() {
        return attempt.to_string();
    }
    let mut cut = attempt.len();
    while !file.is_char_boundary(cut) {
        cut += 1;
    }
    format!("{attempt}{}", &file[cut..])
}

/// Run a job to its end; updates the task and execution as Harbor's status hooks do.
pub async fn run(shared: Arc<Shared>, job: Job) {
    let max = shared.delivery.max_attempts.max(1);
    let timeout = scaled(shared.delivery.timeout, shared.time_scale);
    for attempt in 1..=max {
        let base_log = shared.with_state(|st| {
            let now = now_micros();
            let t = st.tasks.get_mut(&job.task_id)?;
            t.status = Status::Running;
            t.run_count = attempt as i32;
            t.start_time = Some(now);
            t.end_time = None;
            t.update_time = now;
            let log = t.log.clone();
            st.refresh_execution(job.execution_id);
            Some(log)
        });
        // The policy (and so the task) was deleted: Harbor's job would run on but its
        // status hooks find nothing; stop here.
        let Some(base_log) = base_log else { break };
        shared.bump();
        let mut lines = log_line("INFO", 73, "start to run webhook job");
        let append = |lines: &str| {
            shared.with_state(|st| {
                if let Some(t) = st.tasks.get_mut(&job.task_id) {
                    t.log = overwrite(&base_log, lines);
                }
            })
        };
        append(&lines);
        let result = attempt_once(&shared, &job, timeout, &mut |msg| {
            lines.push_str(&log_line("INFO", 118, msg));
            append(&lines);
        })
        .await;
        let status = match &result {
            Ok(()) => {
                lines.push_str(&log_line("INFO", 80, "success to run webhook job"));
                Status::Success
            }
            Err(Failure::Build(m)) | Err(Failure::Send(m)) => {
                lines.push_str(&log_line(
                    "ERROR",
                    76,
                    &format!("exit webhook job, error: {m}"),
                ));
                Status::Error
            }
        };
        append(&lines);
        shared.with_state(|st| {
            let now = now_micros();
            if let Some(t) = st.tasks.get_mut(&job.task_id) {
                t.status = status;
                t.end_time = Some(now);
                t.update_time = now;
            }
            st.refresh_execution(job.execution_id);
        });
        shared.bump();
        if status == Status::Success || attempt == max {
            break;
        }
        let wait = scaled(
            Duration::from_secs(backoff_seconds(attempt)),
            shared.time_scale,
        );
        let mut shutdown = shared.shutdown.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    shared.active.send_modify(|n| *n = n.saturating_sub(1));
    shared.bump();
}

/// Go's `url.Parse` + `Client.Do` scheme handling, before any byte is sent.
fn target_uri(address: &str) -> Result<Uri, Failure> {
    let scheme_end = address.find(':').filter(|&i| {
        i > 0
            && address.as_bytes()[0].is_ascii_alphabetic()
            && address[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let scheme = match scheme_end {
        Some(i) => address[..i].to_ascii_lowercase(),
        None => {
            let first = address.split('/').next().unwrap_or("");
            if first.contains(':') {
                return Err(Failure::Build(format!(
                    "error to generate request: parse \"{address}\": first path segment in URL cannot contain colon"
                )));
            }
            String::new()
        }
    };
    if scheme != "http" && scheme != "https" {
        return Err(Failure::Send(format!(
            "error to send request: Post \"{address}\": unsupported protocol scheme \"{scheme}\""
        )));
    }
    address.parse::<Uri>().map_err(|e| {
        Failure::Build(format!(
            "error to generate request: parse \"{address}\": {e}"
        ))
    })
}

fn same_or_sub_domain(original: &Uri, next: &Uri) -> bool {
    let (Some(a), Some(b)) = (original.host(), next.host()) else {
        return false;
    };
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    b == a || b.ends_with(&format!(".{a}"))
}

/// The rustls error inside (possibly nested) I/O errors.
fn rustls_cause(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
    loop {
        if let Some(t) = inner.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        inner = match inner.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => inner.source()?,
        };
    }
}

fn go_error(url: &Uri, err: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut detail = err.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = rustls_cause(io) {
                detail = match tls {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                        "tls: failed to verify certificate: x509: certificate signed by unknown authority".into()
                    }
                    rustls::Error::InvalidCertificate(c) => {
                        format!("tls: failed to verify certificate: x509: {c:?}")
                    }
                    other => format!("tls: {other}"),
                };
                break;
            }
            let host = url.host().unwrap_or("");
            let port = url
                .port_u16()
                .unwrap_or(if url.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            detail = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("dial tcp {host}:{port}: connect: connection refused")
                }
                std::io::ErrorKind::ConnectionReset => "read: connection reset by peer".into(),
                std::io::ErrorKind::UnexpectedEof => "EOF".into(),
                _ => format!("dial tcp {host}:{port}: {io}"),
            };
            break;
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                detail = "EOF".into();
                break;
            }
            detail = h.to_string();
        }
        source = s.source();
    }
    format!("error to send request: Post \"{url}\": {detail}")
}

async fn attempt_once(
    shared: &Shared,
    job: &Job,
    timeout: Duration,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), Failure> {
    let original = target_uri(&job.address)?;
    log(&format!(
        "send request to remote endpoint, body: {}",
        String::from_utf8_lossy(&job.body)
    ));
    let client = if job.skip_cert_verify {
        &shared.deliverer.insecure
    } else {
        &shared.deliverer.secure
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut url = original.clone();
    let mut method = Method::POST;
    let mut body = Some(job.body.clone());
    let mut referer: Option<String> = None;
    let mut hops = 0;
    let timed_out = |url: &Uri| {
        Failure::Send(format!(
            "error to send request: Post \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    };
    let resp = loop {
        let mut req = Request::builder().method(method.clone()).uri(url.clone());
        let headers = req
            .headers_mut()
            .ok_or_else(|| Failure::Build(format!("error to generate request: parse \"{url}\"")))?;
        // Go's wire order: Host, User-Agent, Content-Length, the stored headers sorted, then
        // Accept-Encoding.
        if let Some(a) = url.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                headers.insert(http::header::HOST, v);
            }
        }
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static("Go-http-client/1.1"),
        );
        if let Some(b) = &body {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        let mut stored: Vec<&(String, String)> = job.headers.iter().collect();
        stored.sort();
        for (k, v) in stored {
            if k.eq_ignore_ascii_case("authorization") && !same_or_sub_domain(&original, &url) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.append(n, v);
            }
        }
        if let Some(r) = &referer {
            if let Ok(v) = HeaderValue::from_str(r) {
                headers.insert(http::header::REFERER, v);
            }
        }
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        let req = req
            .body(Full::new(body.clone().unwrap_or_default()))
            .map_err(|e| Failure::Build(format!("error to generate request: {e}")))?;
        let resp = match tokio::time::timeout_at(deadline, client.request(req)).await {
            Err(_) => return Err(timed_out(&url)),
            Ok(Err(e)) => return Err(Failure::Send(go_error(&url, &e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let (true, Some(location)) = (redirect, location) else {
            break resp;
        };
        hops += 1;
        if hops > 10 {
            return Err(Failure::Send(format!(
                "error to send request: Post \"{location}\": stopped after 10 redirects"
            )));
        }
        let next = resolve(&url, &location).ok_or_else(|| {
            Failure::Send(format!(
                "error to send request: Post \"{url}\": failed to parse Location header \"{location}\""
            ))
        })?;
        if !(url.scheme_str() == Some("https") && next.scheme_str() == Some("http")) {
            referer = Some(url.to_string());
        }
        if matches!(status.as_u16(), 301..=303) {
            method = Method::GET;
            body = None;
        }
        url = next;
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    // Harbor reads the body of a failed answer into its log, within the same deadline.
    let body = match tokio::time::timeout_at(deadline, resp.into_body().collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        _ => String::new(),
    };
    Err(Failure::Send(format!(
        "abnormal response code: {}, body: {body}",
        status_code(status)
    )))
}

fn status_code(s: StatusCode) -> u16 {
    s.as_u16()
}

/// Resolve a `Location` against the request URL.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Ok(u) = location.parse::<Uri>() {
        if u.scheme().is_some() {
            return Some(u);
        }
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let path = if location.starts_with("//") {
        return format!("{scheme}:{location}").parse().ok();
    } else if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_harbors_formula() {
        for _ in 0..100 {
            let b = backoff_seconds(1);
            assert!((16..=16 + 29 * 2).contains(&b), "{b}");
            let b = backoff_seconds(2);
            assert!((31..=31 + 29 * 3).contains(&b), "{b}");
        }
    }

    #[test]
    fn a_shorter_attempt_leaves_the_tail_of_a_longer_one() {
        assert_eq!(overwrite("abcdef", "XY"), "XYcdef");
        assert_eq!(overwrite("ab", "XYZ"), "XYZ");
    }

    #[test]
    fn addresses_without_scheme_fail_like_go() {
        assert_eq!(
            target_uri("receiver:8080/hook").unwrap_err(),
            Failure::Send("error to send request: Post \"receiver:8080/hook\": unsupported protocol scheme \"receiver\"".into())
        );
        assert!(matches!(
            target_uri("127.0.0.1:80/x"),
            Err(Failure::Build(_))
        ));
        assert_eq!(target_uri("HTTP://h/x").unwrap().host(), Some("h"));
    }

    #[test]
    fn locations_resolve() {
        let base: Uri = "http://h:1/a/b".parse().unwrap();
        assert_eq!(resolve(&base, "/c").unwrap().to_string(), "http://h:1/c");
        assert_eq!(resolve(&base, "c").unwrap().to_string(), "http://h:1/a/c");
        assert_eq!(
            resolve(&base, "https://x/y").unwrap().to_string(),
            "https://x/y"
        );
    }
}
