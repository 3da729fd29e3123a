//! `kargo-harbor-receiver send-test`: a test delivery, since Harbor has had
//! no test button since v2.3.
//!
//! It builds a Harbor push of a repository and tag in either format
//! (shaped like Harbor's own: `type`, `occur_at`, `operator`, `event_data`
//! with one resource and its repository; or a CloudEvents 1.0 envelope
//! around the same data), reads the receiver's URL from the
//! ProjectConfig's (or ClusterConfig's) `status.webhookReceivers` and its
//! auth header from the Secret its spec names, and sends the push as
//! Harbor's jobservice does: POST over HTTP/1.1, `Content-Type` of the
//! format, `Authorization` verbatim, `User-Agent: Go-http-client/1.1`,
//! `Accept-Encoding: gzip`, canonical header names, 3 s for the whole
//! request. It prints the answer; the auth header is never printed.

use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Secret;
use kargo_api::{ClusterConfig, ConfigStatus, ProjectConfig, WebhookReceiverConfig};
use kube::Api;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::core::harbor::{CLOUDEVENTS_PUSH, DEFAULT_PUSH};
use crate::kubeconfig::{self, ClientError, OPERATOR_USER_AGENT};
use crate::watch::secrets::AUTH_HEADER_KEY;

/// Harbor's default timeout for a whole webhook request.
const HARBOR_TIMEOUT: &str = "3s";
/// The name of the ClusterConfig (Kargo allows only this one).
const CLUSTER_CONFIG: &str = "cluster";
/// `operator` of the test push, so that it can be told apart in logs.
const OPERATOR: &str = "kargo-harbor-receiver send-test";

/// Harbor's two payload formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PayloadFormat {
    /// Harbor's own (`Content-Type: application/json`).
    Default,
    /// CloudEvents 1.0, structured (`application/cloudevents+json`).
    Cloudevents,
}

impl PayloadFormat {
    /// Harbor's name for it (its policy form's "Payload Format").
    fn name(self) -> &'static str {
        match self {
            PayloadFormat::Default => "Default",
            PayloadFormat::Cloudevents => "CloudEvents",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            PayloadFormat::Default => "application/json",
            PayloadFormat::Cloudevents => "application/cloudevents+json",
        }
    }
}

/// Arguments of `send-test`.
#[derive(Clone, Debug, Args)]
pub struct SendTestArgs {
    /// The pushed repository as Harbor writes it in `resource_url`:
    /// `host[:port]/project/name`, e.g. `harbor.example.com/library/app`.
    #[arg(long)]
    pub repository: String,
    /// The pushed tag (a `sha256:…` digest for a push by digest).
    #[arg(long)]
    pub tag: String,
    /// Payload format of the Harbor webhook policy.
    #[arg(long, value_enum, default_value = "default")]
    pub format: PayloadFormat,
    /// The project whose ProjectConfig holds the receiver.
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    pub project: Option<String>,
    /// Use the ClusterConfig's receiver instead.
    #[arg(long)]
    pub cluster: bool,
    /// The receiver's name in the config's spec (needed when it has several
    /// Harbor receivers).
    #[arg(long)]
    pub receiver: Option<String>,
    /// Where the ClusterConfig's receiver Secrets live.
    #[arg(
        long,
        env = "SYSTEM_RESOURCES_NAMESPACE",
        default_value = "kargo-system-resources"
    )]
    pub system_resources_namespace: String,
    /// Send here instead of the URL in status (e.g. through a
    /// port-forward); the token still comes from the Secret.
    #[arg(long)]
    pub url: Option<String>,
    /// Time for the whole request (Harbor's default is 3s).
    #[arg(long, default_value = HARBOR_TIMEOUT, value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why no test delivery was made, or what it was answered.
#[derive(Debug, Error)]
pub enum SendTestError {
    /// `--repository` is not `host/project/name`.
    #[error("--repository {0:?}: expected host[:port]/project/name as in Harbor's resource_url, e.g. harbor.example.com/library/app")]
    Repository(String),
    /// No Kubernetes client.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Reading the config or the Secret failed.
    #[error("cannot read {what} on {server}: {source}")]
    Read {
        /// Which object.
        what: String,
        /// The API server.
        server: String,
        /// Why.
        source: kube::Error,
    },
    /// The config, its receiver or its Secret is not as needed.
    #[error("{0}")]
    Setup(String),
    /// The request could not be built or sent.
    #[error("POST {url}: {reason}")]
    Send {
        /// Where to.
        url: String,
        /// Why (never the auth header).
        reason: String,
    },
    /// The receiver answered, but not 2xx (Harbor would retry).
    #[error("the receiver answered {0}; Harbor counts that as a failed delivery")]
    Refused(StatusCode),
}

/// A Harbor push, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: String,
}

/// Builds a push of `repository:tag` at `occur_at` (Unix seconds) in
/// `format`; `id` is the CloudEvents `id` and `requestid`.
pub fn harbor_push(
    format: PayloadFormat,
    repository: &str,
    tag: &str,
    occur_at: i64,
    id: &str,
) -> Result<Push, SendTestError> {
    let bad = || SendTestError::Repository(repository.to_owned());
    let (_host, full_name) = repository.split_once('/').ok_or_else(bad)?;
    let (namespace, name) = full_name.split_once('/').ok_or_else(bad)?;
    if [_host, namespace, name].iter().any(|s| s.is_empty()) {
        return Err(bad());
    }
    // A push by digest carries the digest as its tag and `@` in the URL.
    let (digest, resource_url) = if tag.starts_with("sha256:") {
        (tag.to_owned(), format!("{repository}@{tag}"))
    } else {
        let made_up = hex::encode(Sha256::digest(format!("{repository}:{tag}")));
        (format!("sha256:{made_up}"), format!("{repository}:{tag}"))
    };
    let q = |s: &str| serde_json::Value::from(s).to_string();
    // Written out rather than through serde_json's map so the fields keep
    // Harbor's order (Go marshals struct fields in declaration order).
    let data = format!(
        r#"{{"resources":[{{"digest":{},"tag":{},"resource_url":{}}}],"repository":{{"date_created":{occur_at},"name":{},"namespace":{},"repo_full_name":{},"repo_type":"private"}}}}"#,
        q(&digest),
        q(tag),
        q(&resource_url),
        q(name),
        q(namespace),
        q(full_name),
    );
    let body = match format {
        PayloadFormat::Default => format!(
            r#"{{"type":"{DEFAULT_PUSH}","occur_at":{occur_at},"operator":{},"event_data":{data}}}"#,
            q(OPERATOR)
        ),
        PayloadFormat::Cloudevents => {
            let time = chrono::DateTime::from_timestamp(occur_at, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%SZ");
            format!(
                r#"{{"specversion":"1.0","id":{id},"source":"/projects/0/webhook/policies/0","type":"{CLOUDEVENTS_PUSH}","datacontenttype":"application/json","time":"{time}","data":{data},"operator":{},"requestid":{id}}}"#,
                q(OPERATOR),
                id = q(id),
            )
        }
    };
    Ok(Push {
        content_type: format.content_type(),
        body,
    })
}

/// Where to send, and the auth header (never printed).
struct Target {
    url: String,
    auth_header: Vec<u8>,
}

/// Runs `send-test`: prints what is sent and the answer on stdout.
pub async fn run(args: SendTestArgs) -> Result<(), SendTestError> {
    let now = chrono::Utc::now();
    let id = hex::encode(&Sha256::digest(format!("{now:?}{}", args.tag))[..16]);
    let push = harbor_push(
        args.format,
        &args.repository,
        &args.tag,
        now.timestamp(),
        &id,
    )?;
    let target = target(&args).await?;
    println!(
        "POST {} ({} format, {}:{})",
        target.url,
        args.format.name(),
        args.repository,
        args.tag
    );
    let (status, answer) = deliver(&target, &push, args.timeout).await?;
    println!("HTTP {} {}", status.as_u16(), answer.trim_end());
    if status.is_success() {
        Ok(())
    } else {
        Err(SendTestError::Refused(status))
    }
}

/// The receiver's URL (status) and auth header (its Secret).
async fn target(args: &SendTestArgs) -> Result<Target, SendTestError> {
    let cluster = kubeconfig::infer(OPERATOR_USER_AGENT).await?;
    let server = cluster.server.clone();
    let read = |what: String| {
        let server = server.clone();
        move |source| SendTestError::Read {
            what,
            server,
            source,
        }
    };
    let (what, receivers, status, secret_namespace) = match &args.project {
        Some(project) => {
            let what = format!("ProjectConfig {project}/{project}");
            let api: Api<ProjectConfig> = Api::namespaced(cluster.client.clone(), project);
            let pc = api.get(project).await.map_err(read(what.clone()))?;
            (what, pc.spec.webhook_receivers, pc.status, project.clone())
        }
        None => {
            let what = format!("ClusterConfig {CLUSTER_CONFIG}");
            let api: Api<ClusterConfig> = Api::all(cluster.client.clone());
            let cc = api.get(CLUSTER_CONFIG).await.map_err(read(what.clone()))?;
            (
                what,
                cc.spec.webhook_receivers,
                cc.status,
                args.system_resources_namespace.clone(),
            )
        }
    };
    let (name, secret_name) = choose_receiver(&what, &receivers, args.receiver.as_deref())?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => status_url(&what, status.as_ref(), &name)?,
    };
    let secrets: Api<Secret> = Api::namespaced(cluster.client, &secret_namespace);
    let secret_label = format!("Secret {secret_namespace}/{secret_name}");
    let secret = secrets
        .get(&secret_name)
        .await
        .map_err(read(secret_label.clone()))?;
    let auth_header = secret
        .data
        .and_then(|mut d| d.remove(AUTH_HEADER_KEY))
        .map(|b| b.0)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            SendTestError::Setup(format!(
                "{secret_label} has no (or an empty) key {AUTH_HEADER_KEY:?}"
            ))
        })?;
    Ok(Target { url, auth_header })
}

/// The Harbor receiver to test: `wanted`, or the only one. Its name and
/// its Secret's name.
fn choose_receiver(
    what: &str,
    receivers: &[WebhookReceiverConfig],
    wanted: Option<&str>,
) -> Result<(String, String), SendTestError> {
    let harbor: Vec<(&str, &str)> = receivers
        .iter()
        .filter_map(|r| {
            r.harbor
                .as_ref()
                .map(|h| (r.name.as_str(), h.secret_ref.name.as_str()))
        })
        .collect();
    let names = || {
        harbor
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match wanted {
        Some(w) => harbor.iter().find(|(n, _)| *n == w).ok_or_else(|| {
            SendTestError::Setup(format!(
                "{what} has no Harbor receiver {w:?} (it has: {})",
                names()
            ))
        })?,
        None => match harbor.as_slice() {
            [one] => one,
            [] => {
                return Err(SendTestError::Setup(format!(
                    "{what} has no Harbor webhook receiver in spec.webhookReceivers"
                )))
            }
            _ => {
                return Err(SendTestError::Setup(format!(
                    "{what} has several Harbor receivers ({}): choose one with --receiver",
                    names()
                )))
            }
        },
    };
    Ok((chosen.0.to_owned(), chosen.1.to_owned()))
}

/// The receiver's URL in status.
fn status_url(
    what: &str,
    status: Option<&ConfigStatus>,
    receiver: &str,
) -> Result<String, SendTestError> {
    status
        .into_iter()
        .flat_map(|s| &s.webhook_receivers)
        .find(|r| r.name == receiver && !r.url.is_empty())
        .map(|r| r.url.clone())
        .ok_or_else(|| {
            let ready = status
                .into_iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == "Ready")
                .map(|c| format!(" (Ready={}: {})", c.status, c.message))
                .unwrap_or_default();
            SendTestError::Setup(format!(
                "{what} has no URL for receiver {receiver:?} in status.webhookReceivers{ready}: \
                 is kargo-harbor-receiver running, and its Secret in place?"
            ))
        })
}

/// POSTs `push` to the target as Harbor does; the status and body.
async fn deliver(
    target: &Target,
    push: &Push,
    timeout: Duration,
) -> Result<(StatusCode, String), SendTestError> {
    let failed = |reason: String| SendTestError::Send {
        url: target.url.clone(),
        reason,
    };
    crate::tls::provider();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| failed(format!("no system CA certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http1_title_case_headers(true)
        .build::<_, Full<Bytes>>(connector);
    // From bytes, so the value is sent exactly as stored; an error must not
    // echo it.
    let auth = HeaderValue::from_bytes(&target.auth_header)
        .map_err(|_| failed("the auth header cannot be sent as an HTTP header value".into()))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(&target.url)
        .header(http::header::CONTENT_TYPE, push.content_type)
        .header(http::header::USER_AGENT, "Go-http-client/1.1")
        .header(HeaderName::from_static("accept-encoding"), "gzip")
        .body(Full::new(Bytes::from(push.body.clone())))
        .map_err(|e| failed(e.to_string()))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, auth);
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(cause(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        failed(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))
    })?
}

/// The innermost cause of a client error (hyper-util's own text is just
/// "client error (Connect)").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn sample(name: &str) -> Value {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/harbor-payloads")
            .join(name);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The sample with the fields a test push makes up itself set to ours.
    fn comparable(mut v: Value, data: &str) -> Value {
        v["operator"] = OPERATOR.into();
        v[data]["repository"]["date_created"] = v.get("occur_at").cloned().unwrap_or(1.into());
        v[data]["repository"]["repo_type"] = "private".into();
        v[data]["resources"][0]["digest"] = Value::Null;
        v
    }

    #[test]
    fn pushes_have_the_shape_of_harbor_s_samples() {
        let cases = [
            ("push-tag.json", "harbor.example.com/library/app", "1.2.3"),
            (
                "push-chart.json",
                "harbor.example.com/charts/my-chart",
                "1.4.0",
            ),
            (
                "push-digest.json",
                "harbor.example.com/library/app",
                "sha256:9b2a28eb47540823042a2ba401386845089bb7b62a9637d55816132c4c3c36eb",
            ),
        ];
        for (file, repository, tag) in cases {
            let want = sample(file);
            let at = want["occur_at"].as_i64().unwrap();
            let push = harbor_push(PayloadFormat::Default, repository, tag, at, "x").unwrap();
            assert_eq!(push.content_type, "application/json");
            let mut ours: Value = serde_json::from_str(&push.body).unwrap();
            if tag.starts_with("sha256:") {
                assert_eq!(ours["event_data"]["resources"][0]["digest"], tag);
            }
            ours["event_data"]["resources"][0]["digest"] = Value::Null;
            assert_eq!(ours, comparable(want, "event_data"), "{file}");
            assert!(push
                .body
                .starts_with(r#"{"type":"PUSH_ARTIFACT","occur_at":"#));
            // What the receiver reads of it.
            let event = crate::core::harbor::parse(push.body.as_bytes()).unwrap();
            assert!(event.is_push());
            assert_eq!(event.artifacts[0].tag, tag);
        }
        let want = sample("cloudevents-push.json");
        let push = harbor_push(
            PayloadFormat::Cloudevents,
            "harbor.example.com/library/app",
            "1.2.3",
            1_764_383_400,
            "an-id",
        )
        .unwrap();
        assert_eq!(push.content_type, "application/cloudevents+json");
        let mut ours: Value = serde_json::from_str(&push.body).unwrap();
        for key in ["id", "requestid"] {
            assert_eq!(ours[key], "an-id");
        }
        let mut want = comparable(want, "data");
        for key in ["id", "requestid", "source", "occur_at"] {
            ours.as_object_mut().unwrap().remove(key);
            want.as_object_mut().unwrap().remove(key);
        }
        ours["data"]["resources"][0]["digest"] = Value::Null;
        ours["data"]["repository"]["date_created"] = 1.into();
        assert_eq!(ours, want);
        assert!(crate::core::harbor::parse(push.body.as_bytes())
            .unwrap()
            .is_push());
    }

    #[test]
    fn a_repository_without_project_is_refused() {
        for bad in ["app", "harbor.example.com/app", "/library/app", "h//app"] {
            let err = harbor_push(PayloadFormat::Default, bad, "1", 0, "x").unwrap_err();
            assert!(matches!(err, SendTestError::Repository(_)), "{bad}");
        }
    }

    fn receiver(name: &str, harbor_secret: Option<&str>) -> WebhookReceiverConfig {
        serde_json::from_value(match harbor_secret {
            Some(s) => serde_json::json!({"name": name, "harbor": {"secretRef": {"name": s}}}),
            None => serde_json::json!({"name": name, "github": {"secretRef": {"name": "g"}}}),
        })
        .unwrap()
    }

    #[test]
    fn the_receiver_is_the_only_harbor_one_or_the_one_named() {
        let one = [receiver("gh", None), receiver("h", Some("s"))];
        assert_eq!(
            choose_receiver("pc", &one, None).unwrap(),
            ("h".into(), "s".into())
        );
        let two = [receiver("a", Some("s1")), receiver("b", Some("s2"))];
        let err = choose_receiver("pc", &two, None).unwrap_err().to_string();
        assert!(err.contains("several Harbor receivers (a, b)"), "{err}");
        assert_eq!(choose_receiver("pc", &two, Some("b")).unwrap().1, "s2");
        let err = choose_receiver("pc", &two, Some("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Harbor receiver \"c\""), "{err}");
        assert!(choose_receiver("pc", &[receiver("gh", None)], None).is_err());
    }

    #[test]
    fn a_missing_url_says_what_status_says() {
        let status: ConfigStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotFound",
                "message": "Secret x not found", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
        .unwrap();
        let err = status_url("pc", Some(&status), "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ready=False: Secret x not found"), "{err}");
        assert!(status_url("pc", None, "h").is_err());
    }

    /// One request as it arrives on the socket, answered 200.
    async fn capture_one(listener: tokio::net::TcpListener) -> String {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let answer = "{\"msg\":\"refreshed 0 warehouse(s)\"}\n";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8(seen).unwrap()
    }

    #[tokio::test]
    async fn it_is_sent_as_harbor_sends_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(capture_one(listener));
        let target = Target {
            url: format!("http://{addr}/harbor/abc"),
            auth_header: b"s3cret token".to_vec(),
        };
        let push = harbor_push(PayloadFormat::Cloudevents, "h/p/a", "1.0.0", 0, "i").unwrap();
        let (status, body) = deliver(&target, &push, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "{\"msg\":\"refreshed 0 warehouse(s)\"}\n");
        let request = server.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("POST /harbor/abc HTTP/1.1"));
        let headers: Vec<&str> = lines.collect();
        for want in [
            "Content-Type: application/cloudevents+json",
            "Authorization: s3cret token",
            "User-Agent: Go-http-client/1.1",
            "Accept-Encoding: gzip",
            &format!("Content-Length: {}", push.body.len()),
        ] {
            assert!(headers.contains(&want), "{want} in {headers:?}");
        }
        assert_eq!(body, push.body);
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_named_with_the_cause_not_the_token() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target {
            url: format!("http://127.0.0.1:{port}/harbor/abc"),
            auth_header: b"s3cret".to_vec(),
        };
        let push = harbor_push(PayloadFormat::Default, "h/p/a", "1.0.0", 0, "i").unwrap();
        let err = deliver(&target, &push, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("POST http://127.0.0.1:{port}/harbor/abc: ")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("refused"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
