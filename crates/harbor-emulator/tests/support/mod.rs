//! Test helpers: a plain HTTP client for the API and a scripted webhook receiver.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use harbor_emulator::{EmulatorOptions, Handle, HarborEmulator};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::watch;

pub const ADMIN_PW: &str = "Harbor12345";

/// An emulator started with `opts`, and a client for its API.
pub async fn serve(opts: EmulatorOptions) -> (Handle, Api) {
    let h = HarborEmulator::start(opts).await.unwrap();
    let api = Api::new(h.url());
    (h, api)
}

/// An answer of the API.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The first error of Harbor's error body.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        (
            v["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The admin's `authorization` header.
pub fn admin_auth() -> String {
    basic("admin", ADMIN_PW)
}

/// A plain HTTP/1.1 client for the emulator's API.
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Api {
    pub fn new(base: String) -> Self {
        Api {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, hyper_util::client::legacy::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = self.client.request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    /// A JSON call as `admin`.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.as_user(method, path, &admin_auth(), body).await
    }

    pub async fn as_user(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> Resp {
        self.json(method, path, Some(auth), body).await
    }

    pub async fn anonymous(&self, method: Method, path: &str) -> Resp {
        self.json(method, path, None, None).await
    }

    /// A call with `auth` (`None`: anonymous) and a JSON body, if any.
    async fn json(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let has_body = body.is_some();
        let body = body.map(|v| serde_json::to_vec(&v).unwrap());
        let headers: &[(&str, &str)] = if has_body {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        self.send(method, path, auth, headers, body).await.unwrap()
    }

    /// A JSON call with `auth` (`None`: anonymous) that must answer
    /// `status`; the answer, for further checks.
    pub async fn expect(
        &self,
        auth: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Resp {
        let call = format!("{method} {path}");
        let r = self.json(method, path, auth, body).await;
        assert_eq!(r.status, status, "{call}: {}", r.text());
        r
    }

    /// Bodyless calls, in turn, each with the status it must answer:
    /// (auth (`None`: anonymous), method, path, status).
    pub async fn expect_all(&self, calls: &[(Option<&str>, Method, &str, u16)]) {
        for (auth, method, path, status) in calls {
            self.expect(*auth, method.clone(), path, None, *status)
                .await;
        }
    }

    /// `GET /api/v2.0/ping` without credentials; an error when no answer came.
    pub async fn ping(&self) -> Result<Resp, hyper_util::client::legacy::Error> {
        self.send(Method::GET, "/api/v2.0/ping", None, &[], None)
            .await
    }

    /// The emulator's push control endpoint (the demo's), with a JSON body.
    pub async fn control_push(&self, body: &str) -> Resp {
        let r = self
            .send(
                Method::POST,
                "/_emulator/push",
                None,
                &[("content-type", "application/json")],
                Some(body.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r
    }
}

/// A policy body.
pub fn policy(name: &str, address: &str, format: &str, enabled: bool) -> Value {
    serde_json::json!({
        "name": name,
        "description": "kargo refresh",
        "enabled": enabled,
        "event_types": ["PUSH_ARTIFACT"],
        "targets": [{
            "type": "http",
            "address": address,
            "auth_header": "Bearer t0ken",
            "skip_cert_verify": false,
            "payload_format": format,
        }],
    })
}

/// What the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub version: http::Version,
    pub body: Bytes,
}

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub location: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            location: None,
        }
    }
    pub fn slow(status: u16, delay: Duration) -> Self {
        Reply {
            status,
            delay,
            location: None,
        }
    }
    pub fn redirect(status: u16, location: &'static str) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            location: Some(location),
        }
    }
}

/// A webhook receiver answering from a script (then 200) and recording every request.
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    count: watch::Sender<usize>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let count = watch::channel(0usize).0;
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (g, c) = (got.clone(), count.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (g, c, script) = (g.clone(), c.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (g, c, script) = (g.clone(), c.clone(), script.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let reply = script.lock().unwrap().next().unwrap_or(Reply::status(200));
                            g.lock().unwrap().push(Received {
                                method: parts.method,
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                version: parts.version,
                                body,
                            });
                            c.send_modify(|n| *n += 1);
                            tokio::time::sleep(reply.delay).await;
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(b"receiver says hi")));
                            *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                            if let Some(l) = reply.location {
                                resp.headers_mut().insert("location", l.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, got, count }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| *c >= n))
            .await
            .expect("receiver waited too long")
            .unwrap();
        self.received()
    }
}
