//! A client for the part of Harbor's REST API v2.0 the registration
//! controller and the `deliveries` subcommand use, written from Harbor's
//! `api/v2.0/swagger.yaml` and handlers (`src/server/v2.0/handler`):
//!
//! | call | request |
//! |---|---|
//! | [`HarborClient::project_exists`] | `HEAD /projects?project_name=P` (needs authentication only: tells a missing project from a missing permission; no verdict from a server without it) |
//! | [`HarborClient::find_policy`] | `GET /projects/P/webhook/policies?q=name%3DN&page=…&page_size=100`, every page |
//! | [`HarborClient::get_policy`] | `GET /projects/P/webhook/policies/ID` |
//! | [`HarborClient::create_policy`] | `POST /projects/P/webhook/policies` → 201, ID from `Location` |
//! | [`HarborClient::update_policy`] | `PUT /projects/P/webhook/policies/ID` |
//! | [`HarborClient::delete_policy`] | `DELETE /projects/P/webhook/policies/ID` |
//! | [`HarborClient::executions`], [`HarborClient::tasks`] | `GET …/policies/ID/executions?sort=-id`, `…/executions/E/tasks` |
//!
//! Every call: HTTP Basic (robot accounts are `robot$…` users), `Accept:
//! application/json`, `X-Is-Resource-Name: true` on project paths (a
//! project named like a number would otherwise be read as an ID), one
//! timeout for the whole exchange. Pagination follows `X-Total-Count`,
//! falling back to "a short page is the last" when a server omits it; `q`
//! narrows the list where the name is plain, and every result is checked by
//! name anyway, so a server ignoring `q` costs pages, not correctness.

pub mod error;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

use crate::core::harbor_policy::WebhookPolicy;
use error::harbor_message;
pub use error::HarborError;

/// Harbor's largest page.
const PAGE_SIZE: usize = 100;
/// Pages read at most for one list (10,000 policies).
const MAX_PAGES: usize = 100;
/// Largest answer body read.
const MAX_BODY: usize = 8 << 20;

/// Characters left as they are in a path segment or query value: RFC 3986
/// unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where Harbor is and how to trust it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Harbor's base URL (`https://harbor.example.com`); a trailing `/` or
    /// `/api/v2.0` is accepted.
    pub url: String,
    /// PEM certificates trusted besides the system roots.
    pub ca_bundle: Option<String>,
    /// Do not verify Harbor's certificate.
    pub insecure_skip_tls_verify: bool,
}

/// A Harbor account (usually a robot account).
#[derive(Clone)]
pub struct Credentials {
    /// `robot$<project>+<name>` for a project robot account.
    pub username: String,
    /// Its secret.
    pub password: String,
}

impl Drop for Credentials {
    fn drop(&mut self) {
        crate::core::token::wipe_str(&mut self.password);
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One delivery attempt record of a policy (Harbor's `Execution`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Execution {
    /// Execution ID.
    #[serde(default)]
    pub id: i64,
    /// `Pending`, `Running`, `Success`, `Error`, `Stopped`.
    #[serde(default)]
    pub status: String,
    /// Harbor's explanation, if any.
    #[serde(default)]
    pub status_message: String,
    /// `EVENT` for webhooks.
    #[serde(default)]
    pub trigger: String,
    /// When it was created.
    #[serde(default)]
    pub start_time: String,
    /// When it ended (Go's zero time while running).
    #[serde(default)]
    pub end_time: String,
}

/// The job of an execution (Harbor's `Task`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Task {
    /// Task ID.
    #[serde(default)]
    pub id: i64,
    /// Its execution.
    #[serde(default)]
    pub execution_id: i64,
    /// `Pending`, `Running`, `Success`, `Error` (also while a retry waits).
    #[serde(default)]
    pub status: String,
    /// Harbor's explanation, if any.
    #[serde(default)]
    pub status_message: String,
    /// Attempts started.
    #[serde(default)]
    pub run_count: i32,
    /// Start of the latest attempt.
    #[serde(default)]
    pub start_time: String,
    /// End of the latest attempt.
    #[serde(default)]
    pub end_time: String,
}

/// The system's trusted roots, read once.
static SYSTEM_ROOTS: LazyLock<Vec<CertificateDer<'static>>> =
    LazyLock::new(|| rustls_native_certs::load_native_certs().certs);

/// Accepts any certificate (`insecureSkipTLSVerify`); signatures are still
/// checked, so the handshake stays a handshake.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, signature, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, signature, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(endpoint: &Endpoint) -> Result<rustls::ClientConfig, HarborError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HarborError::Settings(format!("TLS: {e}")))?;
    if endpoint.insecure_skip_tls_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    // A system certificate rustls cannot use is skipped, as Go does.
    roots.add_parsable_certificates(SYSTEM_ROOTS.iter().cloned());
    if let Some(pem) = endpoint.ca_bundle.as_deref() {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HarborError::Settings(format!("caBundle is not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(HarborError::Settings(
                "caBundle holds no PEM certificate".into(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| HarborError::Settings(format!("caBundle: {e}")))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Harbor's base URL without a trailing `/` or `/api/v2.0`.
fn base_url(url: &str) -> Result<String, HarborError> {
    let trimmed = url.trim().trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/api/v2.0")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let uri: http::Uri = base
        .parse()
        .map_err(|_| HarborError::Settings(format!("Harbor URL {url:?} is not a URL")))?;
    match (uri.scheme_str(), uri.authority(), uri.query()) {
        (Some("http" | "https"), Some(_), None) => Ok(base.to_owned()),
        _ => Err(HarborError::Settings(format!(
            "Harbor URL {url:?} must be an absolute http(s) URL without a query"
        ))),
    }
}

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A client for one Harbor, as one account.
pub struct HarborClient {
    base: String,
    api: String,
    authorization: HeaderValue,
    http: HttpsClient,
    timeout: Duration,
}

impl std::fmt::Debug for HarborClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarborClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HarborClient {
    /// A client for `endpoint` as `credentials`; every call ends within
    /// `timeout`.
    pub fn new(
        endpoint: &Endpoint,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Self, HarborError> {
        let base = base_url(&endpoint.url)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(endpoint)?)
            .https_or_http()
            .enable_http1()
            .build();
        let mut pair = format!("{}:{}", credentials.username, credentials.password);
        let mut basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&pair)
        );
        let header = HeaderValue::from_str(&basic);
        crate::core::token::wipe_str(&mut pair);
        crate::core::token::wipe_str(&mut basic);
        let mut authorization = header
            .map_err(|_| HarborError::Settings("credentials are not valid in a header".into()))?;
        authorization.set_sensitive(true);
        Ok(Self {
            api: format!("{base}/api/v2.0"),
            base,
            authorization,
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Harbor's base URL, as normalised.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn project_path(project: &str) -> String {
        format!("projects/{}", utf8_percent_encode(project, SEGMENT))
    }

    fn policies_path(project: &str) -> String {
        format!("{}/webhook/policies", Self::project_path(project))
    }

    fn policy_path(project: &str, id: i64) -> String {
        format!("{}/{id}", Self::policies_path(project))
    }

    fn executions_path(project: &str, id: i64) -> String {
        format!("{}/executions", Self::policy_path(project, id))
    }

    /// Sends one request and reads the whole answer, within the timeout.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, HarborError> {
        self.send_accepting(method, path_and_query, body, "application/json")
            .await
    }

    /// [`Self::send`] accepting `accept` (the task log is `text/plain`;
    /// go-openapi refuses an `Accept` that excludes the answer's type).
    async fn send_accepting(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        accept: &'static str,
    ) -> Result<Answer, HarborError> {
        let url = format!("{}/{path_and_query}", self.api);
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, accept)
            .header(USER_AGENT, crate::app::USER_AGENT)
            .header("X-Is-Resource-Name", "true");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| HarborError::Settings(format!("Harbor URL {}: {e}", self.base)))?;
        let exchange = async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|e| HarborError::Unreachable {
                        url: self.base.clone(),
                        cause: transport_cause(&e),
                    })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| HarborError::Unreachable {
                    url: self.base.clone(),
                    cause: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HarborError::Timeout {
                url: self.base.clone(),
                timeout: self.timeout,
            })?
    }

    /// The error for a non-2xx answer to an operation on `project`.
    fn failure(
        answer: &Answer,
        project: &str,
        action: &'static str,
        operation: &'static str,
        secrets: &[&str],
    ) -> HarborError {
        match answer.status.as_u16() {
            401 => HarborError::Unauthorized,
            403 => HarborError::Forbidden {
                project: project.to_owned(),
                action,
            },
            status @ (400 | 409 | 422) => HarborError::Rejected {
                action,
                status,
                message: harbor_message(&answer.body, secrets),
            },
            status => HarborError::Status { operation, status },
        }
    }

    /// Whether the project exists, by `HEAD /projects?project_name=` (it
    /// needs authentication only, so it tells a missing project from a
    /// missing permission): `Some(true)` on 2xx, `Some(false)` on 404,
    /// `None` when the server gives no verdict (another status: a server
    /// without that route); 401 is an error.
    pub async fn project_exists(&self, project: &str) -> Result<Option<bool>, HarborError> {
        let path = format!("projects?{}", query([("project_name", project)]));
        let answer = self.send(Method::HEAD, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(Some(true)),
            StatusCode::NOT_FOUND => Ok(Some(false)),
            StatusCode::UNAUTHORIZED => Err(HarborError::Unauthorized),
            _ => Ok(None),
        }
    }

    /// Every policy of `project` named `name` (normally one: names are
    /// unique per project).
    pub async fn find_policy(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<WebhookPolicy>, HarborError> {
        // `q` has its own syntax (`,` separates terms, `~`, `[`, `{`, `(`
        // start operators): narrow the list only by a plain name.
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let mut found = None;
        let mut seen = 0usize;
        for page in 1..=MAX_PAGES {
            let q = plain.then(|| format!("name={name}"));
            let path = format!(
                "{}?{}",
                Self::policies_path(project),
                query(q.iter().map(|q| ("q", q.as_str())).chain([
                    ("page", page.to_string().as_str()),
                    ("page_size", PAGE_SIZE.to_string().as_str()),
                ]))
            );
            let answer = self.send(Method::GET, &path, None).await?;
            if answer.status == StatusCode::NOT_FOUND {
                // The list checks access first: a 404 here (an admin's) is
                // a missing project.
                return Err(HarborError::ProjectNotFound(project.to_owned()));
            }
            if !answer.status.is_success() {
                return Err(Self::failure(
                    &answer,
                    project,
                    "list",
                    "list policies",
                    &[],
                ));
            }
            let policies: Vec<WebhookPolicy> =
                serde_json::from_slice(&answer.body).map_err(|e| HarborError::Protocol {
                    operation: "list policies",
                    detail: format!("not a list of webhook policies: {e}"),
                })?;
            seen += policies.len();
            let short = policies.len() < PAGE_SIZE;
            if let Some(p) = policies.into_iter().find(|p| p.name == name) {
                found = Some(p);
                break;
            }
            let total = answer
                .headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            if short || total.is_some_and(|t| seen >= t) {
                break;
            }
        }
        Ok(found)
    }

    /// The policy with this ID in `project`, if it exists.
    pub async fn get_policy(
        &self,
        project: &str,
        id: i64,
    ) -> Result<Option<WebhookPolicy>, HarborError> {
        let path = Self::policy_path(project, id);
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => {
                serde_json::from_slice(&answer.body)
                    .map(Some)
                    .map_err(|e| HarborError::Protocol {
                        operation: "read a policy",
                        detail: format!("not a webhook policy: {e}"),
                    })
            }
            // A missing policy, or a project missing meanwhile (this
            // endpoint looks the project up first).
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::failure(
                &answer,
                project,
                "read",
                "read a policy",
                &[],
            )),
        }
    }

    /// Creates `policy` in `project`; returns its ID when Harbor's
    /// `Location` header gives it.
    pub async fn create_policy(
        &self,
        project: &str,
        policy: &WebhookPolicy,
    ) -> Result<Option<i64>, HarborError> {
        let body = encode(policy)?;
        let answer = self
            .send(Method::POST, &Self::policies_path(project), Some(body))
            .await?;
        if !answer.status.is_success() {
            return Err(Self::failure(
                &answer,
                project,
                "create",
                "create a policy",
                &secrets_of(policy),
            ));
        }
        Ok(answer
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
            .and_then(|id| id.parse().ok()))
    }

    /// Replaces policy `id` of `project` with `policy`.
    pub async fn update_policy(
        &self,
        project: &str,
        id: i64,
        policy: &WebhookPolicy,
    ) -> Result<(), HarborError> {
        let body = encode(policy)?;
        let path = Self::policy_path(project, id);
        let answer = self.send(Method::PUT, &path, Some(body)).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(Self::failure(
            &answer,
            project,
            "update",
            "update a policy",
            &secrets_of(policy),
        ))
    }

    /// Deletes policy `id` of `project`; `false` when it was already gone.
    pub async fn delete_policy(&self, project: &str, id: i64) -> Result<bool, HarborError> {
        let path = Self::policy_path(project, id);
        let answer = self.send(Method::DELETE, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::failure(
                &answer,
                project,
                "delete",
                "delete a policy",
                &[],
            )),
        }
    }

    /// The newest `limit` (≤ 100) executions of policy `id`, newest first.
    pub async fn executions(
        &self,
        project: &str,
        id: i64,
        limit: usize,
    ) -> Result<Vec<Execution>, HarborError> {
        let page_size = limit.clamp(1, PAGE_SIZE).to_string();
        let path = format!(
            "{}?{}",
            Self::executions_path(project, id),
            query([("sort", "-id"), ("page", "1"), ("page_size", &page_size)])
        );
        let mut executions: Vec<Execution> = self.list(&path, project, "list executions").await?;
        // Whatever order the server chose, newest first.
        executions.sort_by_key(|e| std::cmp::Reverse(e.id));
        executions.truncate(limit);
        Ok(executions)
    }

    /// The tasks of execution `execution` of policy `id`.
    pub async fn tasks(
        &self,
        project: &str,
        id: i64,
        execution: i64,
    ) -> Result<Vec<Task>, HarborError> {
        let path = format!(
            "{}/{execution}/tasks?page=1&page_size={PAGE_SIZE}",
            Self::executions_path(project, id)
        );
        self.list(&path, project, "list tasks").await
    }

    /// The job log of task `task` (text; it holds the payload, never the
    /// auth header).
    pub async fn task_log(
        &self,
        project: &str,
        id: i64,
        execution: i64,
        task: i64,
    ) -> Result<String, HarborError> {
        let path = format!(
            "{}/{execution}/tasks/{task}/log",
            Self::executions_path(project, id)
        );
        let answer = self
            .send_accepting(Method::GET, &path, None, "text/plain")
            .await?;
        if !answer.status.is_success() {
            return Err(Self::failure(
                &answer,
                project,
                "read",
                "read a task log",
                &[],
            ));
        }
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        project: &str,
        operation: &'static str,
    ) -> Result<Vec<T>, HarborError> {
        let answer = self.send(Method::GET, path, None).await?;
        if !answer.status.is_success() {
            return Err(Self::failure(&answer, project, "read", operation, &[]));
        }
        serde_json::from_slice(&answer.body).map_err(|e| HarborError::Protocol {
            operation,
            detail: e.to_string(),
        })
    }
}

/// A query string (`application/x-www-form-urlencoded`, as Go's
/// `url.Values` reads it).
fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

fn encode(policy: &WebhookPolicy) -> Result<Vec<u8>, HarborError> {
    serde_json::to_vec(policy).map_err(|e| HarborError::Protocol {
        operation: "encode a policy",
        detail: e.to_string(),
    })
}

/// What a policy body holds that Harbor's messages must not repeat.
fn secrets_of(policy: &WebhookPolicy) -> Vec<&str> {
    policy
        .targets
        .iter()
        .flat_map(|t| [t.auth_header.as_str(), t.address.as_str()])
        .collect()
}

/// The innermost cause of a transport error, in one line.
fn transport_cause(error: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        let cases = [
            (
                "https://harbor.example.com",
                Some("https://harbor.example.com"),
            ),
            (
                "https://harbor.example.com/",
                Some("https://harbor.example.com"),
            ),
            (
                "https://harbor.example.com/api/v2.0/",
                Some("https://harbor.example.com"),
            ),
            (
                "http://10.0.0.1:8080/harbor",
                Some("http://10.0.0.1:8080/harbor"),
            ),
            ("harbor.example.com", None),
            ("ftp://harbor.example.com", None),
            ("https://harbor.example.com/?x=1", None),
        ];
        for (input, want) in cases {
            assert_eq!(base_url(input).ok().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn project_names_are_one_path_segment() {
        assert_eq!(
            HarborClient::policies_path("a b/c"),
            "projects/a%20b%2Fc/webhook/policies"
        );
        assert_eq!(
            HarborClient::project_path("team-a.x_1"),
            "projects/team-a.x_1"
        );
    }

    fn endpoint(url: &str, ca_bundle: Option<&str>) -> Endpoint {
        Endpoint {
            url: url.into(),
            ca_bundle: ca_bundle.map(str::to_owned),
            insecure_skip_tls_verify: false,
        }
    }

    fn credentials(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn an_unusable_ca_bundle_is_a_settings_error() {
        let endpoint = endpoint("https://h", Some("not pem"));
        let credentials = credentials("u", "p");
        let err = HarborClient::new(&endpoint, &credentials, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.reason(), error::REASON_INVALID_HARBOR_SETTINGS, "{err}");
    }

    /// A Harbor stand-in as terse as the swagger allows: it ignores `q`,
    /// sends no `X-Total-Count` and no `Location`, has no `HEAD /projects`
    /// (405) and no project `missing` (404); 150 policies, ours on page 2.
    /// Records each request's path and query.
    async fn terse_harbor() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let uri = req.uri().clone();
                            log.lock()
                                .unwrap()
                                .push(format!("{} {}", req.method(), uri));
                            let page: usize = uri
                                .query()
                                .unwrap_or("")
                                .split('&')
                                .find_map(|kv| kv.strip_prefix("page="))
                                .and_then(|p| p.parse().ok())
                                .unwrap_or(1);
                            // Answers without a body, in this order.
                            let status = match *req.method() {
                                Method::HEAD => Some(StatusCode::METHOD_NOT_ALLOWED),
                                _ if uri.path().contains("/missing/") => {
                                    Some(StatusCode::NOT_FOUND)
                                }
                                Method::POST => Some(StatusCode::CREATED),
                                _ => None,
                            };
                            if let Some(status) = status {
                                let mut r = http::Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = status;
                                return Ok::<_, std::convert::Infallible>(r);
                            }
                            let items: Vec<serde_json::Value> = ((page - 1) * 100
                                ..(page * 100).min(150))
                                .map(|i| {
                                    let name = if i == 120 {
                                        "ours".to_owned()
                                    } else {
                                        format!("p{i}")
                                    };
                                    serde_json::json!({"id": i + 1, "name": name, "enabled": true})
                                })
                                .collect();
                            let body = serde_json::to_vec(&items).unwrap();
                            Ok(http::Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), seen)
    }

    fn client_for(url: &str) -> HarborClient {
        let credentials = credentials("robot$p+k", "s");
        HarborClient::new(&endpoint(url, None), &credentials, Duration::from_secs(10)).unwrap()
    }

    #[tokio::test]
    async fn lists_are_paged_to_the_end_and_matched_by_name_whatever_the_server_does_with_q() {
        let (url, seen) = terse_harbor().await;
        let harbor = client_for(&url);
        let found = harbor.find_policy("p", "ours").await.unwrap().unwrap();
        assert_eq!(found.id, Some(121));
        let pages: Vec<String> = seen.lock().unwrap().clone();
        assert_eq!(
            pages,
            [
                "GET /api/v2.0/projects/p/webhook/policies?q=name%3Dours&page=1&page_size=100",
                "GET /api/v2.0/projects/p/webhook/policies?q=name%3Dours&page=2&page_size=100",
            ]
        );
        // A name `q` cannot express is listed without it; a short page ends.
        seen.lock().unwrap().clear();
        assert_eq!(harbor.find_policy("p", "a,b").await.unwrap(), None);
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(!seen.lock().unwrap()[0].contains("q="));
        // No Location: the caller is told, and finds the policy by name.
        let created = harbor
            .create_policy("p", &WebhookPolicy::default())
            .await
            .unwrap();
        assert_eq!(created, None);
        // A server without HEAD /projects gives no verdict; the list does.
        assert_eq!(harbor.project_exists("p").await.unwrap(), None);
        let missing = harbor.find_policy("missing", "ours").await.unwrap_err();
        assert_eq!(
            missing.reason(),
            error::REASON_PROJECT_NOT_FOUND,
            "{missing}"
        );
    }

    #[test]
    fn credentials_never_reach_debug_output() {
        let c = credentials("robot$p+k", "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
