//! The Kubernetes client of each command, and a one-line reason when there
//! is none.
//!
//! `run` uses [`USER_AGENT`](crate::app::USER_AGENT) (the chart's RBAC is
//! checked against requests carrying it); the operator commands (`explain`,
//! `send-test`) run with the operator's own credentials and say so in
//! theirs, [`OPERATOR_USER_AGENT`].

use std::error::Error as _;

use kube::config::{InferConfigError, KubeconfigError};
use thiserror::Error;

/// `User-Agent` of the operator commands' API requests.
pub const OPERATOR_USER_AGENT: &str = concat!(
    "kargo-harbor-receiver/",
    env!("CARGO_PKG_VERSION"),
    " (operator command)"
);

/// No usable Kubernetes configuration.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Neither a kubeconfig nor the in-cluster configuration.
    #[error("no Kubernetes configuration: {0}")]
    Infer(String),
    /// A configuration, but no client can be built from it.
    #[error("cannot build the Kubernetes client for {server}: {source}")]
    Build {
        /// The API server.
        server: String,
        /// Why.
        source: kube::Error,
    },
}

/// A configured client and the API server it talks to (for messages).
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The API server's URL.
    pub server: String,
}

/// The client from KUBECONFIG (or `~/.kube/config`) or the in-cluster
/// configuration, sending `user_agent`.
pub async fn infer(user_agent: &'static str) -> Result<Cluster, ClientError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| ClientError::Infer(describe(&e)))?;
    let server = config.cluster_url.to_string();
    let config = with_user_agent(config, user_agent);
    let client = kube::Client::try_from(config).map_err(|source| ClientError::Build {
        server: server.clone(),
        source,
    })?;
    Ok(Cluster { client, server })
}

/// `config` with exactly one `User-Agent`, `agent`.
pub fn with_user_agent(mut config: kube::Config, agent: &'static str) -> kube::Config {
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(agent),
    ));
    config
}

/// kube's inference error in one line: the kubeconfig's problem (the likely
/// mistake) with its path, then why the in-cluster configuration does not
/// apply. kube's own text repeats the cause and double-quotes paths.
fn describe(e: &InferConfigError) -> String {
    let kubeconfig = match e.source().and_then(|s| s.downcast_ref::<KubeconfigError>()) {
        Some(KubeconfigError::ReadConfig(io, path)) => {
            format!("cannot read kubeconfig {}: {io}", path.display())
        }
        Some(KubeconfigError::FindPath) => {
            "no kubeconfig (KUBECONFIG is not set and ~/.kube/config does not exist)".to_owned()
        }
        Some(other) => format!("kubeconfig: {other}"),
        None => e.to_string(),
    };
    let in_cluster = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        "not running in a cluster (KUBERNETES_SERVICE_HOST is not set)"
    } else {
        "the in-cluster configuration is unusable too"
    };
    format!("{kubeconfig}; {in_cluster}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_is_one_line_naming_the_file() {
        // KUBECONFIG is read by kube at the call; this test process sets it
        // only for itself (nextest runs each test in its own process).
        std::env::set_var("KUBECONFIG", "/nonexistent/kubeconfig");
        let err = infer(OPERATOR_USER_AGENT)
            .await
            .err()
            .expect("no configuration");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with(
                "no Kubernetes configuration: cannot read kubeconfig /nonexistent/kubeconfig: "
            ),
            "{text}"
        );
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
    }
}
