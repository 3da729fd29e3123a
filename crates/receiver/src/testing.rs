//! Fixtures shared by the unit tests of several modules.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kargo_api::{ImageSubscription, Subscription, Warehouse, WarehouseSpec};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{Cli, Command, Config};
use crate::core::token::TokenDigest;
use crate::index::{ReceiverEntry, Route, RouteReason, RouteTable, Scope, WarehouseRef};
use crate::refresh::{PatchError, Patcher};

/// `kargo-harbor-receiver run <args>`, parsed as the binary would.
pub fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    let mut argv = vec!["kargo-harbor-receiver", "run"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Run(c) => *c,
        other => unreachable!("parsed run, got {other:?}"),
    })
}

/// A valid [`Config`] for `run <args>`.
pub fn config(args: &[&str]) -> Config {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A client for units that must hold one but never contact the API server.
pub fn offline_client() -> kube::Client {
    kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap()
}

/// A Warehouse in `namespace` with one image subscription, at generation 1.
pub fn image_warehouse(namespace: &str, name: &str, image: ImageSubscription) -> Warehouse {
    let mut w = Warehouse::new(
        name,
        WarehouseSpec {
            interval: None,
            subscriptions: vec![Subscription::image(image)],
        },
    );
    w.metadata.namespace = Some(namespace.into());
    w.metadata.generation = Some(1);
    w
}

/// A Warehouse in `namespace` whose one image subscription on `repo`
/// accepts every semantic version.
pub fn any_version_warehouse(namespace: &str, name: &str, repo: &str) -> Warehouse {
    image_warehouse(
        namespace,
        name,
        ImageSubscription {
            repo_url: repo.into(),
            ..Default::default()
        },
    )
}

/// An API server that accepts connections and never answers, and a client
/// for it; abort the task when done.
pub async fn silent_api_server() -> (kube::Client, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    (client, task)
}

/// Receiver `name` of project `project` with `token`, as the index holds it.
pub fn receiver_entry(project: &str, name: &str, token: &[u8]) -> ReceiverEntry {
    ReceiverEntry {
        scope: Scope::project_of(project),
        name: name.into(),
        token: TokenDigest::of(token),
        why: RouteReason::Current,
        counters: Default::default(),
        grace_until: None,
    }
}

/// Registers receiver `recv` of project `project` on `path` with `token`.
pub fn register_receiver(routes: &RouteTable, project: &str, path: &str, token: &[u8]) {
    let entry = receiver_entry(project, "recv", token);
    routes.replace(
        &entry.scope.clone(),
        vec![Route {
            path: path.into(),
            entry,
        }],
    );
}

/// A patcher standing in for the API server: records every call, can be
/// held at a gate, made to fail per Warehouse name (by HTTP status), or to
/// never answer for one Warehouse.
pub struct FakePatcher {
    calls: Mutex<Vec<(WarehouseRef, String, Instant)>>,
    /// Each call waits for a permit.
    pub gate: Arc<Semaphore>,
    /// Warehouse name → HTTP status of the failure (404 = gone).
    pub fail: Mutex<HashMap<String, u16>>,
    /// Warehouse names whose patch never answers.
    pub hang: Mutex<HashSet<String>>,
    /// Calls waiting at the gate or answering right now.
    pub in_flight: AtomicUsize,
    /// The most calls in flight at once.
    pub max_in_flight: AtomicUsize,
}

impl FakePatcher {
    /// A patcher whose gate is open (`open`) or closed until permits are added.
    pub fn new(open: bool) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            gate: Arc::new(Semaphore::new(if open {
                Semaphore::MAX_PERMITS
            } else {
                0
            })),
            fail: Mutex::new(HashMap::new()),
            hang: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    /// Opens the gate for every waiting and future call.
    pub fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// The values patched onto Warehouse `name`, in call order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.calls_of(name).into_iter().map(|c| c.0).collect()
    }

    /// When each call for Warehouse `name` was made.
    pub fn call_instants(&self, name: &str) -> Vec<Instant> {
        self.calls_of(name).into_iter().map(|c| c.1).collect()
    }

    fn calls_of(&self, name: &str) -> Vec<(String, Instant)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| &*c.0.name == name)
            .map(|c| (c.1.clone(), c.2))
            .collect()
    }
}

impl Patcher for Arc<FakePatcher> {
    fn patch(
        &self,
        warehouse: &WarehouseRef,
        value: &str,
    ) -> BoxFuture<'static, Result<ObjectReference, PatchError>> {
        let me = self.clone();
        let warehouse = warehouse.clone();
        let value = value.to_owned();
        async move {
            me.calls
                .lock()
                .unwrap()
                .push((warehouse.clone(), value, Instant::now()));
            let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if me.hang.lock().unwrap().contains(&*warehouse.name) {
                futures::future::pending::<()>().await;
            }
            let _permit = me.gate.acquire().await.expect("gate open");
            me.in_flight.fetch_sub(1, Ordering::SeqCst);
            match me.fail.lock().unwrap().get(&*warehouse.name) {
                Some(404) => return Err(PatchError::NotFound),
                Some(&code) => {
                    return Err(PatchError::Api(kube::Error::Api(Box::new(
                        kube::core::Status::failure("injected", "Injected").with_code(code),
                    ))))
                }
                None => {}
            }
            Ok(ObjectReference {
                name: Some(warehouse.name.to_string()),
                namespace: Some(warehouse.namespace.to_string()),
                ..ObjectReference::default()
            })
        }
        .boxed()
    }
}
