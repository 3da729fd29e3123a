//! `kargo-harbor-receiver deliveries`: what Harbor recorded about the
//! webhook deliveries of a registration's policies — the last few
//! executions per project, each with its task's status and attempts (and,
//! for a failed one, the error line of Harbor's job log) — so a failing
//! webhook can be diagnosed without Harbor's UI.
//!
//! Reads the registration and its credentials Secret with the caller's
//! KUBECONFIG, then asks Harbor as the registration's robot account
//! (`notification-policy` read). Prints no secret: Harbor's job log holds
//! the payload and the error, never the auth header.

use std::time::Duration;

use clap::Args;
use harbor_registration_api::HarborWebhookRegistration;
use kube::Api;
use thiserror::Error;

use crate::harbor_api::error::shortened;
use crate::harbor_api::{Execution, HarborClient, HarborError, Task};
use crate::watch::registrations::{harbor_client, policy_name, Blocker, HarborClientError};

/// Arguments of `deliveries`.
#[derive(Clone, Debug, Args)]
pub struct DeliveriesArgs {
    /// Namespace of the HarborWebhookRegistration.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Its name.
    #[arg(long)]
    pub name: String,
    /// Executions shown per project, newest first.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub limit: u16,
    /// Timeout of each Harbor request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub harbor_timeout: Duration,
}

/// Why nothing could be shown.
#[derive(Debug, Error)]
pub enum DeliveriesError {
    /// No usable Kubernetes configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    Kubeconfig(String),
    /// Reading the registration failed.
    #[error("reading HarborWebhookRegistration {key}: {source}")]
    Read {
        /// `namespace/name`.
        key: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// It does not exist.
    #[error("HarborWebhookRegistration {0} not found")]
    NotFound(String),
    /// Its credentials or Harbor settings are unusable.
    #[error("{0}")]
    Harbor(String),
}

/// One execution and its task, as Harbor recorded them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The execution.
    pub execution: Execution,
    /// Its task (Harbor creates one per execution).
    pub task: Option<Task>,
    /// For a failed task, the error its job log ends with.
    pub error: Option<String>,
}

/// What was found for one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectDeliveries {
    /// Harbor project.
    pub project: String,
    /// Our policy there, if known.
    pub policy_id: Option<i64>,
    /// The deliveries, or why they could not be read.
    pub deliveries: Result<Vec<Delivery>, String>,
}

/// Go's zero time, Harbor's "not yet".
fn shown_time(t: &str) -> &str {
    if t.is_empty() || t.starts_with("0001-01-01") {
        "-"
    } else {
        t
    }
}

/// The error a failed task's job log ends with: the message of its last
/// line mentioning an error, without Harbor's log prefix.
pub fn log_error(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("error"))?;
    let message = line.split_once("]: ").map_or(line, |(_, m)| m).trim();
    Some(shortened(message.to_owned(), 300))
}

/// The report, as printed.
pub fn render(key: &str, harbor: &str, policy: &str, projects: &[ProjectDeliveries]) -> String {
    let mut out =
        format!("HarborWebhookRegistration {key}: webhook policy {policy:?} in {harbor}\n");
    for p in projects {
        let policy = p
            .policy_id
            .map_or_else(|| "no policy".to_owned(), |id| format!("policy {id}"));
        match &p.deliveries {
            Err(why) => out.push_str(&format!("\nproject {} ({policy}): {why}\n", p.project)),
            Ok(list) if list.is_empty() => out.push_str(&format!(
                "\nproject {} ({policy}): no deliveries recorded\n",
                p.project
            )),
            Ok(list) => {
                out.push_str(&format!(
                    "\nproject {} ({policy}): {} most recent deliveries\n",
                    p.project,
                    list.len()
                ));
                out.push_str(&format!(
                    "  {:<10} {:<8} {:<8} {:<20} {:<20} {}\n",
                    "EXECUTION", "STATUS", "ATTEMPTS", "STARTED", "ENDED", "ERROR"
                ));
                for d in list {
                    let (status, attempts, start, end) = match &d.task {
                        Some(t) => (
                            t.status.as_str(),
                            t.run_count.to_string(),
                            shown_time(&t.start_time),
                            shown_time(&t.end_time),
                        ),
                        None => (
                            d.execution.status.as_str(),
                            "-".to_owned(),
                            shown_time(&d.execution.start_time),
                            shown_time(&d.execution.end_time),
                        ),
                    };
                    let row = format!(
                        "  {:<10} {:<8} {:<8} {:<20} {:<20} {}",
                        d.execution.id,
                        status,
                        attempts,
                        start,
                        end,
                        d.error.as_deref().unwrap_or("")
                    );
                    out.push_str(row.trim_end());
                    out.push('\n');
                }
            }
        }
    }
    out
}

async fn deliveries_of(
    harbor: &HarborClient,
    project: &str,
    id: i64,
    limit: usize,
) -> Result<Vec<Delivery>, HarborError> {
    let mut out = Vec::new();
    for execution in harbor.executions(project, id, limit).await? {
        let task = harbor
            .tasks(project, id, execution.id)
            .await?
            .into_iter()
            .next();
        let error = match &task {
            Some(t) if t.status == "Error" => harbor
                .task_log(project, id, execution.id, t.id)
                .await
                .ok()
                .and_then(|log| log_error(&log)),
            _ => None,
        };
        out.push(Delivery {
            execution,
            task,
            error,
        });
    }
    Ok(out)
}

/// Reads what Harbor recorded; returns the report to print.
pub async fn run(args: DeliveriesArgs) -> Result<String, DeliveriesError> {
    // It runs as the operator, not as the controller's ServiceAccount.
    let cluster = crate::kubeconfig::infer(crate::kubeconfig::OPERATOR_USER_AGENT)
        .await
        .map_err(|e| DeliveriesError::Kubeconfig(e.to_string()))?;
    report(&cluster.client, &args).await
}

/// [`run`] with a given client.
pub async fn report(
    client: &kube::Client,
    args: &DeliveriesArgs,
) -> Result<String, DeliveriesError> {
    let key = format!("{}/{}", args.namespace, args.name);
    let api: Api<HarborWebhookRegistration> = Api::namespaced(client.clone(), &args.namespace);
    let reg = api
        .get_opt(&args.name)
        .await
        .map_err(|source| DeliveriesError::Read {
            key: key.clone(),
            source,
        })?
        .ok_or_else(|| DeliveriesError::NotFound(key.clone()))?;
    let harbor = harbor_client(client, &reg, args.harbor_timeout)
        .await
        .map_err(|e| {
            DeliveriesError::Harbor(match e {
                HarborClientError::Blocked(Blocker::Problem(p)) => p.message,
                HarborClientError::Blocked(Blocker::Api(e)) => e.to_string(),
                HarborClientError::Harbor(e) => e.to_string(),
            })
        })?;
    let name = policy_name(&reg);
    let status = reg.status.clone().unwrap_or_default();
    let mut projects = Vec::new();
    for project in &reg.spec.harbor.projects {
        let known = status
            .projects
            .iter()
            .find(|p| &p.name == project)
            .and_then(|p| p.policy_id);
        let id = match known {
            Some(id) => Ok(Some(id)),
            None => harbor
                .find_policy(project, &name)
                .await
                .map(|p| p.and_then(|p| p.id)),
        };
        let (policy_id, deliveries) = match id {
            Err(e) => (None, Err(e.to_string())),
            Ok(None) => (None, Err("no webhook policy registered yet".to_owned())),
            Ok(Some(id)) => (
                Some(id),
                deliveries_of(&harbor, project, id, usize::from(args.limit))
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        projects.push(ProjectDeliveries {
            project: project.clone(),
            policy_id,
            deliveries,
        });
    }
    Ok(render(&key, harbor.base_url(), &name, &projects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_of_a_job_log() {
        let log = "2026-11-29T02:30:00Z [INFO] [/jobservice/job/impl/notification/webhook_job.go:73]: start to run webhook job\n\
                   2026-11-29T02:30:00Z [INFO] [/jobservice/job/impl/notification/webhook_job.go:80]: send request to remote endpoint, body: {}\n\
                   2026-11-29T02:30:03Z [ERROR] [/jobservice/job/impl/notification/webhook_job.go:90]: exit webhook job, error: webhook job(target: http://r/harbor/x) response code is 500\n";
        assert_eq!(
            log_error(log).as_deref(),
            Some("exit webhook job, error: webhook job(target: http://r/harbor/x) response code is 500")
        );
        assert_eq!(log_error("success to run webhook job\n"), None);
    }

    #[test]
    fn the_report_shows_status_attempts_and_errors() {
        let ok = Delivery {
            execution: Execution {
                id: 12,
                status: "Success".into(),
                start_time: "2026-11-29T02:30:00Z".into(),
                end_time: "2026-11-29T02:30:00Z".into(),
                ..Execution::default()
            },
            task: Some(Task {
                id: 40,
                execution_id: 12,
                status: "Success".into(),
                run_count: 1,
                start_time: "2026-11-29T02:30:00Z".into(),
                end_time: "2026-11-29T02:30:00Z".into(),
                ..Task::default()
            }),
            error: None,
        };
        let failed = Delivery {
            execution: Execution {
                id: 11,
                status: "Running".into(),
                ..Execution::default()
            },
            task: Some(Task {
                id: 39,
                execution_id: 11,
                status: "Error".into(),
                run_count: 2,
                start_time: "2026-11-29T02:29:00Z".into(),
                end_time: "0001-01-01T00:00:00Z".into(),
                ..Task::default()
            }),
            error: Some("exit webhook job, error: response code is 500".into()),
        };
        let text = render(
            "kargo-demo/reg",
            "https://harbor.example.com",
            "kargo-kargo-demo-reg",
            &[
                ProjectDeliveries {
                    project: "library".into(),
                    policy_id: Some(3),
                    deliveries: Ok(vec![ok, failed]),
                },
                ProjectDeliveries {
                    project: "team-b".into(),
                    policy_id: None,
                    deliveries: Err("Harbor project \"team-b\" does not exist".into()),
                },
            ],
        );
        let want = "\
HarborWebhookRegistration kargo-demo/reg: webhook policy \"kargo-kargo-demo-reg\" in https://harbor.example.com

project library (policy 3): 2 most recent deliveries
  EXECUTION  STATUS   ATTEMPTS STARTED              ENDED                ERROR
  12         Success  1        2026-11-29T02:30:00Z 2026-11-29T02:30:00Z
  11         Error    2        2026-11-29T02:29:00Z -                    exit webhook job, error: response code is 500

project team-b (no policy): Harbor project \"team-b\" does not exist
";
        assert_eq!(text, want);
    }
}
