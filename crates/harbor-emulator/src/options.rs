//! Start options and the seed file (JSON or YAML) the binary reads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{RobotSpec, UserSpec};

/// A project to create at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSpec {
    /// Project name.
    pub name: String,
    /// Public projects are readable by anyone (not their webhook policies).
    #[serde(default)]
    pub public: bool,
}

impl ProjectSpec {
    /// A private project.
    pub fn private(name: impl Into<String>) -> Self {
        ProjectSpec {
            name: name.into(),
            public: false,
        }
    }

    /// A public project.
    pub fn public(name: impl Into<String>) -> Self {
        ProjectSpec {
            name: name.into(),
            public: true,
        }
    }
}

/// TLS for the API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOptions {
    /// A self-signed certificate generated at start for these names (DNS names or IP
    /// addresses); [`crate::Handle::ca_pem`] returns it for the client's CA bundle.
    Generate {
        /// Subject alternative names, e.g. `["localhost", "127.0.0.1"]`.
        subject_alt_names: Vec<String>,
    },
    /// A certificate chain and key in PEM.
    Pem {
        /// Certificate chain, leaf first.
        cert_pem: String,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key_pem: String,
    },
}

/// How webhook jobs behave (Harbor's jobservice defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOptions {
    /// Whole-request timeout of one attempt (`JOBSERVICE_WEBHOOK_JOB_HTTP_CLIENT_TIMEOUT`,
    /// default 3 s), before scaling.
    pub timeout: Duration,
    /// Attempts in all (`JOBSERVICE_WEBHOOK_JOB_MAX_RETRY`, default 3; at least 1).
    pub max_attempts: u32,
    /// An extra CA (PEM) trusted for https targets besides the system roots.
    pub extra_ca_pem: Option<String>,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            timeout: Duration::from_secs(3),
            max_attempts: 3,
            extra_ca_pem: None,
        }
    }
}

/// Options for [`crate::HarborEmulator::start`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Listen address; default `127.0.0.1:0` (a free loopback port).
    pub listen: SocketAddr,
    /// `host[:port]` of Harbor's external URL, used in `resource_url`; default the bound
    /// address (`127.0.0.1:PORT`).
    pub external_host: Option<String>,
    /// Password of the `admin` system administrator; default `Harbor12345`.
    pub admin_password: String,
    /// Robot account name prefix; default `robot$`.
    pub robot_prefix: String,
    /// Projects, IDs assigned from 1 in order; default one public `library`, as a fresh
    /// Harbor has.
    pub projects: Vec<ProjectSpec>,
    /// Robot accounts.
    pub robots: Vec<RobotSpec>,
    /// Other local users.
    pub users: Vec<UserSpec>,
    /// Multiplies every Harbor duration: delivery timeout and backoff, the 1.5 s
    /// failed-login delay. `0.001` turns seconds into milliseconds; `0` makes every
    /// delivery attempt time out at once (raise [`DeliveryOptions::timeout`] to
    /// compensate for small factors). Default 1.
    pub time_scale: f64,
    /// Webhook job behaviour.
    pub delivery: DeliveryOptions,
    /// Serve the API over TLS.
    pub tls: Option<TlsOptions>,
    /// Log every API request through `tracing` (they are always kept in
    /// [`crate::Handle::requests`]).
    pub log_requests: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            external_host: None,
            admin_password: "Harbor12345".to_string(),
            robot_prefix: "robot$".to_string(),
            projects: vec![ProjectSpec::public("library")],
            robots: Vec::new(),
            users: Vec::new(),
            time_scale: 1.0,
            delivery: DeliveryOptions::default(),
            tls: None,
            log_requests: false,
        }
    }
}

/// The seed file: every key optional.
///
/// ```yaml
/// admin_password: Harbor12345
/// external_host: harbor.example.com
/// projects: [{name: library, public: true}, {name: team-a}]
/// robots:
///   - name: kargo
///     project: team-a
///     secret: s3cret
///     permissions:
///       - namespace: team-a
///         access: [{resource: notification-policy, action: list}, …]
/// users: [{username: dev, password: pw, roles: {team-a: maintainer}}]
/// time_scale: 0.01
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// See [`EmulatorOptions::admin_password`].
    #[serde(default)]
    pub admin_password: Option<String>,
    /// See [`EmulatorOptions::external_host`].
    #[serde(default)]
    pub external_host: Option<String>,
    /// See [`EmulatorOptions::robot_prefix`].
    #[serde(default)]
    pub robot_prefix: Option<String>,
    /// Replaces the default projects when present.
    #[serde(default)]
    pub projects: Option<Vec<ProjectSpec>>,
    /// Robot accounts.
    #[serde(default)]
    pub robots: Vec<RobotSpec>,
    /// Local users.
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// See [`EmulatorOptions::time_scale`].
    #[serde(default)]
    pub time_scale: Option<f64>,
}

/// Reading a seed file failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("reading seed file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid JSON/YAML for a [`Seed`].
    #[error("parsing seed file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_yaml::Error,
    },
}

impl Seed {
    /// Read a JSON or YAML seed file.
    pub fn from_file(path: &Path) -> Result<Seed, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // YAML is a superset of JSON: one parser reads both.
        serde_yaml::from_str(&text).map_err(|source| SeedError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Apply the seed over `opts`.
    pub fn apply(self, opts: &mut EmulatorOptions) {
        if let Some(p) = self.admin_password {
            opts.admin_password = p;
        }
        if let Some(h) = self.external_host {
            opts.external_host = Some(h);
        }
        if let Some(p) = self.robot_prefix {
            opts.robot_prefix = p;
        }
        if let Some(p) = self.projects {
            opts.projects = p;
        }
        opts.robots.extend(self.robots);
        opts.users.extend(self.users);
        if let Some(t) = self.time_scale {
            opts.time_scale = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_seed_applies_over_defaults() {
        let seed: Seed = serde_yaml::from_str(
            "admin_password: pw\nprojects: [{name: team-a}]\nrobots:\n  - name: kargo\n    project: team-a\n    secret: s\n    permissions: [{namespace: team-a, access: [{resource: notification-policy, action: list}]}]\nusers: [{username: dev, password: pw, roles: {team-a: maintainer}}]\n",
        )
        .unwrap();
        let mut opts = EmulatorOptions::default();
        seed.apply(&mut opts);
        assert_eq!(opts.admin_password, "pw");
        assert_eq!(opts.projects, vec![ProjectSpec::private("team-a")]);
        assert_eq!(opts.robots[0].full_name("robot$"), "robot$team-a+kargo");
        assert_eq!(opts.users[0].username, "dev");
    }

    #[test]
    fn unknown_seed_keys_are_rejected() {
        assert!(serde_yaml::from_str::<Seed>("admin_pasword: x").is_err());
    }
}
