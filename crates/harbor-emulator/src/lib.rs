//! `harbor-emulator`: a Harbor stand-in for tests and the demo — Harbor's v2.0 REST API for
//! webhook policies (with Basic auth for the admin, users and robot accounts) and webhook
//! delivery as Harbor's jobservice does it (payload formats, headers, timeout, retries and
//! backoff, executions and tasks with their logs).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use harbor_emulator::{EmulatorOptions, HarborEmulator, ProjectSpec, PushSpec, RobotSpec};
//! let handle = HarborEmulator::start(EmulatorOptions {
//!     projects: vec![ProjectSpec::private("team-a")],
//!     robots: vec![RobotSpec::project("team-a", "kargo", "s3cret").allow_webhooks("team-a")],
//!     time_scale: 0.001,
//!     ..EmulatorOptions::default()
//! })
//! .await?;
//! println!("Harbor API at {}", handle.api_url());
//! // … let the code under test create a webhook policy through the API …
//! let deliveries = handle.push(PushSpec::tag("team-a", "app", "1.2.3"))?;
//! handle.wait_deliveries_done(Duration::from_secs(10)).await?;
//! # let _ = deliveries;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
pub mod api_error;
pub mod auth;
pub mod delivery;
pub mod model;
pub mod options;
pub mod payload;
pub mod policy_body;
pub mod push;
pub mod query;
mod server;
pub mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use api_error::ApiError;
pub use auth::{Access, ProjectRole, RobotPermission, RobotSpec, UserSpec};
pub use model::{Execution, Policy, Project, Status, Target, Task};
pub use options::{DeliveryOptions, EmulatorOptions, ProjectSpec, Seed, SeedError, TlsOptions};
pub use push::{Delivery, PushError, PushSpec};
pub use server::{ApiFault, RequestRecord};

use server::Shared;

/// Starting the emulator failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The API certificate could not be made or loaded.
    #[error("API TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The delivery clients could not be built.
    #[error("delivery client: {0}")]
    Client(#[from] delivery::ClientError),
    /// A robot or user names a project that is not seeded.
    #[error("{0}")]
    Seed(String),
}

/// Waiting for deliveries ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Jobs were still running at the deadline.
    #[error("{active} webhook deliveries still running after {waited:?}")]
    Timeout {
        /// Jobs not finished.
        active: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// No such execution.
    #[error("execution {0} not found")]
    UnknownExecution(i64),
    /// The emulator was shut down.
    #[error("the emulator was shut down")]
    Shutdown,
}

/// Entry point.
pub struct HarborEmulator;

impl HarborEmulator {
    /// Bind, seed and start serving on the current tokio runtime.
    pub async fn start(opts: EmulatorOptions) -> Result<Handle, StartError> {
        let mut accounts = auth::Accounts::new(&opts.robot_prefix, &opts.admin_password);
        let mut st_projects = Vec::new();
        for p in &opts.projects {
            st_projects.push((p.name.clone(), p.public));
        }
        for r in &opts.robots {
            if let Some(p) = &r.project {
                if !opts.projects.iter().any(|s| &s.name == p) {
                    return Err(StartError::Seed(format!(
                        "robot {} belongs to unknown project {p}",
                        r.name
                    )));
                }
            }
            accounts.add_robot(r.clone());
        }
        for u in &opts.users {
            accounts.add_user(u.clone());
        }
        let mut state = state::State::new(accounts);
        for (name, public) in st_projects {
            state.add_project(&name, public);
        }
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: opts.listen,
            source,
        })?;
        let (acceptor, ca_pem) = match &opts.tls {
            Some(t) => {
                let (a, pem) = tls::acceptor(t)?;
                (Some(a), pem)
            }
            None => (None, None),
        };
        let deliverer = delivery::Deliverer::new(opts.delivery.extra_ca_pem.as_deref())?;
        let external_host = opts
            .external_host
            .clone()
            .unwrap_or_else(|| addr.to_string());
        let time_scale = if opts.time_scale.is_finite() && opts.time_scale >= 0.0 {
            opts.time_scale
        } else {
            1.0
        };
        let shared = Arc::new(Shared::new(
            state,
            time_scale,
            opts.delivery.clone(),
            external_host,
            opts.log_requests,
            deliverer,
        ));
        tokio::spawn(server::serve(
            shared.clone(),
            listener,
            addr,
            acceptor.clone(),
        ));
        Ok(Handle {
            shared,
            addr,
            tls: acceptor.is_some(),
            ca_pem,
        })
    }
}

/// A running emulator. Dropping it shuts the server down and ends running deliveries.
pub struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://…` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `<url>/api/v2.0`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v2.0", self.url())
    }

    /// The `host[:port]` used in `resource_url`.
    pub fn external_host(&self) -> &str {
        &self.shared.external_host
    }

    /// The generated API certificate (PEM) when [`TlsOptions::Generate`] was used.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Simulate a push: queue one delivery per enabled `PUSH_ARTIFACT` policy × http
    /// target of the project, and start them on the current tokio runtime (call it from
    /// inside one). Returns what was queued (empty when no policy matches); the executions
    /// and tasks exist when it returns.
    pub fn push(&self, spec: PushSpec) -> Result<Vec<Delivery>, PushError> {
        push::push(&self.shared, spec)
    }

    /// Wait until every queued delivery has finished (succeeded, or failed its last
    /// attempt).
    pub async fn wait_deliveries_done(&self, timeout: Duration) -> Result<(), WaitError> {
        let mut rx = self.shared.active.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .map(|r| r.is_ok());
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(WaitError::Shutdown),
            Err(_) => Err(WaitError::Timeout {
                active: *self.shared.active.borrow(),
                waited: timeout,
            }),
        }
    }

    /// Wait until an execution is final (`Success` or `Error` with no retry left) and
    /// return it with its task.
    pub async fn wait_execution_done(
        &self,
        execution_id: i64,
        timeout: Duration,
    ) -> Result<(Execution, Task), WaitError> {
        let mut rx = self.shared.changes.subscribe();
        let check = || {
            self.shared.with_state(|st| {
                let e = st.executions.get(&execution_id).cloned();
                let t = st
                    .tasks
                    .values()
                    .find(|t| t.execution_id == execution_id)
                    .cloned();
                (e, t)
            })
        };
        let max = self.shared.delivery.max_attempts.max(1) as i32;
        let fut = async {
            loop {
                match check() {
                    (None, _) | (_, None) => return Err(WaitError::UnknownExecution(execution_id)),
                    (Some(e), Some(t)) => {
                        let done = t.status == Status::Success
                            || (t.status == Status::Error && t.run_count >= max);
                        if done {
                            return Ok((e, t));
                        }
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(WaitError::Shutdown);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(WaitError::Timeout {
                active: *self.shared.active.borrow(),
                waited: timeout,
            }))
    }

    /// A receiver bumped on every task change (for custom waits).
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Make the API fail (see [`ApiFault`]); `None` recovers.
    pub fn set_fault(&self, fault: Option<ApiFault>) {
        self.shared.fault.send_replace(fault);
    }

    /// All API calls served so far (not the `/_emulator/` endpoints).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// The policies of a project (all projects when `None`).
    pub fn policies(&self, project: Option<&str>) -> Vec<Policy> {
        self.shared.with_state(|st| {
            let pid = project.map(|n| st.project_by_name(n).map(|p| p.id).unwrap_or(-1));
            st.policies
                .values()
                .filter(|p| pid.is_none_or(|id| p.project_id == id))
                .cloned()
                .collect()
        })
    }

    /// An execution and its task.
    pub fn execution(&self, execution_id: i64) -> Option<(Execution, Task)> {
        self.shared.with_state(|st| {
            let e = st.executions.get(&execution_id)?.clone();
            let t = st
                .tasks
                .values()
                .find(|t| t.execution_id == execution_id)?
                .clone();
            Some((e, t))
        })
    }

    /// Add a project after start; returns its ID.
    pub fn add_project(&self, spec: ProjectSpec) -> i64 {
        self.shared
            .with_state(|st| st.add_project(&spec.name, spec.public))
    }

    /// Add or replace a robot account.
    pub fn add_robot(&self, robot: RobotSpec) {
        self.shared.with_state(|st| st.accounts.add_robot(robot));
    }

    /// Add or replace a local user.
    pub fn add_user(&self, user: UserSpec) {
        self.shared.with_state(|st| st.accounts.add_user(user));
    }

    /// Change the admin password.
    pub fn set_admin_password(&self, password: &str) {
        self.shared.with_state(|st| {
            if let Some(a) = st.accounts.users.get_mut("admin") {
                a.password = password.to_string();
            }
        });
    }

    /// Stop serving, close connections and end running deliveries.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
