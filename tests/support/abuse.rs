//! Helpers of the abuse suite (`tests/abuse.rs`): tenants, many Warehouses
//! at once, pushes, silent connections, timed requests. Loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kargo_harbor_receiver::app::Running;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::{expected_path, send, wait_until, Answer, Env, HttpClient};

/// The repository every abuse test pushes.
pub const REPO: &str = "harbor.example.com/library/app";

/// How long the abuse tests wait for anything that must happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Harbor's delivery timeout: every answer must come before it.
pub const HARBOR_TIMEOUT: Duration = Duration::from_secs(3);

impl Env {
    /// Project `ns` with receiver `recv` (auth header `token`); returns its
    /// receiver path.
    pub async fn tenant(&self, ns: &str, token: &str) -> String {
        self.create_harbor_project(ns, "recv", "harbor-secret", token)
            .await;
        expected_path(ns, "recv", token)
    }

    /// `n` Warehouses `w0…` in `ns` subscribed to [`REPO`] (any tag), seeded
    /// straight into the store.
    pub fn many_warehouses(&self, ns: &str, n: usize) {
        let objects = (0..n).map(|i| {
            json!({
                "apiVersion": "kargo.akuity.io/v1alpha1",
                "kind": "Warehouse",
                "metadata": {"name": format!("w{i}"), "namespace": ns},
                "spec": {"subscriptions": [{"image": {"repoURL": REPO}}]},
            })
        });
        let created = self
            .emulator
            .create_many(objects)
            .unwrap_or_else(|e| panic!("seeding Warehouses: {e}"));
        assert_eq!(created, n);
    }

    /// PATCH requests of the program to Warehouses so far.
    pub fn warehouse_patches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                crate::is_program_request(r)
                    && r.method == "PATCH"
                    && r.resource.as_deref() == Some("warehouses")
            })
            .count()
    }

    /// Warehouses of `ns` carrying a refresh annotation.
    pub async fn refreshed_warehouses(&self, ns: &str) -> usize {
        let list = self
            .warehouses(ns)
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("listing Warehouses: {e}"));
        list.items
            .iter()
            .filter(|w| {
                w.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(kargo_api::REFRESH_ANNOTATION))
            })
            .count()
    }
}

/// Project `p1` with receiver `recv` (auth header `token`) and `warehouses`
/// Warehouses, the app started in-process with `args` and serving them:
/// the emulator, the receiver path and the app.
pub async fn one_tenant(token: &str, warehouses: usize, args: &[&str]) -> (Env, String, Running) {
    let env = Env::start().await;
    let path = env.tenant("p1", token).await;
    if warehouses > 0 {
        env.many_warehouses("p1", warehouses);
    }
    let app = env.start_app(args).await;
    wait_serving(&app, 1, warehouses).await;
    (env, path, app)
}

/// Waits until `app` is ready with `receivers` receivers and `warehouses`
/// Warehouses indexed.
pub async fn wait_serving(app: &Running, receivers: usize, warehouses: usize) {
    wait_until(PATIENCE, "the app ready with its index built", || async {
        let sizes = app.index().sizes();
        app.is_ready() && sizes.receivers >= receivers && sizes.warehouses >= warehouses
    })
    .await;
}

/// A Harbor push of [`REPO`]`:tag` (Default format).
pub fn push_body(tag: &str) -> String {
    format!(
        r#"{{"type":"PUSH_ARTIFACT","occur_at":1700000000,"operator":"ci","event_data":{{"resources":[{{"digest":"sha256:0","tag":"{tag}","resource_url":"{REPO}:{tag}"}}],"repository":{{"name":"app","namespace":"library","repo_full_name":"library/app","repo_type":"private"}}}}}}"#
    )
}

/// POSTs `body` to `url` with `Authorization: token`; the answer and how
/// long it took.
pub async fn timed_post(
    client: &HttpClient,
    url: &str,
    token: &str,
    body: &str,
) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = send(
        client,
        http::Method::POST,
        url,
        &[
            ("authorization", token),
            ("content-type", "application/json"),
        ],
        body.to_owned(),
    )
    .await;
    (answer, started.elapsed())
}

/// Opens `n` connections to `addr` that never send a byte.
pub async fn silent_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        streams.push(stream);
    }
    streams
}

/// Waits until the server has closed every one of `streams` (a read gives
/// EOF or an error); returns the time it took for the last one. Panics
/// after `within`.
pub async fn all_closed(streams: Vec<TcpStream>, within: Duration) -> Duration {
    let started = Instant::now();
    let waits = streams.into_iter().map(|mut stream| async move {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // An error answer (e.g. 408) before the close: read on.
                Ok(_) => {}
            }
        }
    });
    tokio::time::timeout(within, futures::future::join_all(waits))
        .await
        .unwrap_or_else(|_| panic!("connections still open after {within:?}"));
    started.elapsed()
}

/// Whether `addr` answers `GET path` with 200 within `within`.
pub async fn answers_200(client: &HttpClient, url: &str, within: Duration) -> bool {
    let request = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap_or_else(|e| panic!("request: {e}"));
    matches!(
        tokio::time::timeout(within, client.request(request)).await,
        Ok(Ok(r)) if r.status() == 200
    )
}

/// A kubeconfig (written to `dir`) pointing at `server`, for a binary
/// that must find no API server there.
pub fn kubeconfig_for(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}
