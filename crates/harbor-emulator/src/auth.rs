//! Who is calling (HTTP Basic: users and robot accounts) and what they may do.
//!
//! As Harbor's security middleware: a Basic header whose name has the robot prefix is
//! checked against the robot accounts first; otherwise (or when that fails) as a user
//! login. A failed login is not an error by itself: the request continues anonymously, so
//! the handler answers 401 where authentication is needed, and Harbor sleeps 1.5 s and
//! locks the name for 1.5 s (`src/core/auth/authenticator.go`).
//!
//! Permissions follow `src/common/rbac`: a system admin may do anything, even on a
//! project that does not exist; project members get their role's policies; robots get
//! exactly their `access` list for the projects their permissions name; everyone, even
//! anonymous, may read a public project itself.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::Project;

/// Resource name of webhook policies in Harbor's RBAC.
pub const RESOURCE_NOTIFICATION_POLICY: &str = "notification-policy";
/// Resource name of the project itself (`GET /projects/{p}` needs `read` on it).
pub const RESOURCE_PROJECT: &str = "project";

/// One allowed (resource, action) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// e.g. `notification-policy`, `project`, `repository`; `*` matches any.
    pub resource: String,
    /// e.g. `list`, `read`, `create`, `update`, `delete`; `*` matches any.
    pub action: String,
}

impl Access {
    /// An allowed pair.
    pub fn new(resource: impl Into<String>, action: impl Into<String>) -> Self {
        Access {
            resource: resource.into(),
            action: action.into(),
        }
    }
}

/// A robot's permissions on one project (or every project, `*`, for system robots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    /// Project name, or `*` for all projects (system-level robots only).
    pub namespace: String,
    /// What it may do there.
    #[serde(default)]
    pub access: Vec<Access>,
}

/// A robot account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotSpec {
    /// The short name, e.g. `kargo` (full name `robot$<project>+kargo`).
    pub name: String,
    /// The project of a project-level robot; `None` for a system-level robot
    /// (`robot$kargo`).
    #[serde(default)]
    pub project: Option<String>,
    /// The secret (the Basic password).
    pub secret: String,
    /// A disabled robot cannot authenticate.
    #[serde(default)]
    pub disabled: bool,
    /// Its permissions. For a project-level robot an empty `namespace` means its project.
    #[serde(default)]
    pub permissions: Vec<RobotPermission>,
}

impl RobotSpec {
    /// A project-level robot with no permissions yet.
    pub fn project(
        project: impl Into<String>,
        name: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        RobotSpec {
            name: name.into(),
            project: Some(project.into()),
            secret: secret.into(),
            disabled: false,
            permissions: Vec::new(),
        }
    }

    /// A system-level robot with no permissions yet.
    pub fn system(name: impl Into<String>, secret: impl Into<String>) -> Self {
        RobotSpec {
            name: name.into(),
            project: None,
            secret: secret.into(),
            disabled: false,
            permissions: Vec::new(),
        }
    }

    /// Allow `actions` on `resource` in `namespace` (a project name, or `*`).
    pub fn allow(mut self, namespace: impl Into<String>, resource: &str, actions: &[&str]) -> Self {
        let namespace = namespace.into();
        let access = actions.iter().map(|a| Access::new(resource, *a));
        match self
            .permissions
            .iter_mut()
            .find(|p| p.namespace == namespace)
        {
            Some(p) => p.access.extend(access),
            None => self.permissions.push(RobotPermission {
                namespace,
                access: access.collect(),
            }),
        }
        self
    }

    /// Allow all five webhook-policy actions (list, read, create, update, delete) on
    /// `namespace`.
    pub fn allow_webhooks(self, namespace: impl Into<String>) -> Self {
        self.allow(
            namespace,
            RESOURCE_NOTIFICATION_POLICY,
            &["list", "read", "create", "update", "delete"],
        )
    }

    /// The Basic user name: `<prefix><project>+<name>` or `<prefix><name>`.
    pub fn full_name(&self, prefix: &str) -> String {
        match &self.project {
            Some(p) => format!("{prefix}{p}+{}", self.name),
            None => format!("{prefix}{}", self.name),
        }
    }
}

/// A project role (Harbor's role IDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProjectRole {
    /// 1: all webhook-policy actions.
    ProjectAdmin,
    /// 2: no webhook-policy access.
    Developer,
    /// 3: no webhook-policy access.
    Guest,
    /// 4: webhook policies read and list only.
    Maintainer,
    /// 5: no webhook-policy access.
    LimitedGuest,
}

impl ProjectRole {
    /// Harbor's role ID.
    pub fn id(self) -> i32 {
        match self {
            ProjectRole::ProjectAdmin => 1,
            ProjectRole::Developer => 2,
            ProjectRole::Guest => 3,
            ProjectRole::Maintainer => 4,
            ProjectRole::LimitedGuest => 5,
        }
    }

    fn allows(self, resource: &str, action: &str) -> bool {
        if resource == RESOURCE_PROJECT {
            return action == "read";
        }
        if resource != RESOURCE_NOTIFICATION_POLICY {
            return false;
        }
        match self {
            ProjectRole::ProjectAdmin => {
                matches!(action, "list" | "read" | "create" | "update" | "delete")
            }
            ProjectRole::Maintainer => matches!(action, "list" | "read"),
            _ => false,
        }
    }
}

/// A local (database) user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// System administrator.
    #[serde(default)]
    pub sysadmin: bool,
    /// Project name → role.
    #[serde(default)]
    pub roles: BTreeMap<String, ProjectRole>,
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No (valid) credentials.
    Anonymous,
    /// A local user.
    User {
        /// Login name.
        name: String,
        /// System administrator.
        sysadmin: bool,
        /// Project name → role.
        roles: BTreeMap<String, ProjectRole>,
    },
    /// A robot account.
    Robot {
        /// Full name, e.g. `robot$library+kargo`.
        name: String,
        /// Project of a project-level robot.
        project: Option<String>,
        /// Its permissions.
        permissions: Vec<RobotPermission>,
    },
}

/// Public projects grant these to everyone (`publicProjectPolicies`).
const PUBLIC_PROJECT: &[(&str, &str)] = &[
    (RESOURCE_PROJECT, "read"),
    ("label", "read"),
    ("label", "list"),
    ("repository", "list"),
    ("repository", "pull"),
    ("scan", "read"),
    ("scanner", "read"),
    ("tag", "list"),
    ("artifact", "read"),
    ("artifact", "list"),
    ("artifact-addition", "read"),
    ("accessory", "list"),
];

impl Principal {
    /// Whether credentials were accepted.
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Principal::Anonymous)
    }

    /// The name shown in the request log (`None` for anonymous).
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { name, .. } | Principal::Robot { name, .. } => Some(name),
        }
    }

    /// Whether the caller may do `action` on `resource` of `project` (`None`: the
    /// project does not exist).
    pub fn can(&self, project: Option<&Project>, resource: &str, action: &str) -> bool {
        if let Principal::User { sysadmin: true, .. } = self {
            return true;
        }
        let Some(project) = project else {
            return false;
        };
        if project.public && PUBLIC_PROJECT.contains(&(resource, action)) {
            return true;
        }
        match self {
            Principal::Anonymous => false,
            Principal::User { roles, .. } => roles
                .get(&project.name)
                .is_some_and(|r| r.allows(resource, action)),
            Principal::Robot {
                project: own,
                permissions,
                ..
            } => permissions.iter().any(|p| {
                let ns_ok = match own {
                    // A project robot's permissions only ever apply to its own project.
                    Some(own) => {
                        own == &project.name
                            && (p.namespace.is_empty() || p.namespace == project.name)
                    }
                    None => p.namespace == "*" || p.namespace == project.name,
                };
                ns_ok
                    && p.access.iter().any(|a| {
                        (a.resource == resource || a.resource == "*")
                            && (a.action == action || a.action == "*")
                    })
            }),
        }
    }

    /// Role IDs shown in `current_user_role_ids` (local users only).
    pub fn role_ids(&self, project: &Project) -> Vec<i32> {
        match self {
            Principal::User { name, roles, .. } => {
                let mut ids: Vec<i32> = roles
                    .get(&project.name)
                    .map(|r| r.id())
                    .into_iter()
                    .collect();
                // Harbor's admin owns the projects it created: project admin there.
                if name == "admin" && ids.is_empty() {
                    ids.push(ProjectRole::ProjectAdmin.id());
                }
                ids
            }
            _ => Vec::new(),
        }
    }
}

/// Decode `Authorization: Basic …` as Go's `Request.BasicAuth` does.
pub fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let h = header?;
    let (scheme, rest) = h.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The accounts and the login-failure locks.
#[derive(Debug)]
pub struct Accounts {
    /// The robot name prefix (`robot$`).
    pub robot_prefix: String,
    /// Users by name (the admin included).
    pub users: HashMap<String, UserSpec>,
    /// Robots by full name.
    pub robots: HashMap<String, RobotSpec>,
    locks: HashMap<String, Instant>,
}

/// What authentication decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The caller.
    pub principal: Principal,
    /// The name that failed to log in, if any: the request is delayed by the frozen time.
    pub failed_login: Option<String>,
}

impl Accounts {
    /// Accounts with an admin user.
    pub fn new(robot_prefix: &str, admin_password: &str) -> Self {
        let mut users = HashMap::new();
        users.insert(
            "admin".to_string(),
            UserSpec {
                username: "admin".into(),
                password: admin_password.into(),
                sysadmin: true,
                roles: BTreeMap::new(),
            },
        );
        Accounts {
            robot_prefix: robot_prefix.to_string(),
            users,
            robots: HashMap::new(),
            locks: HashMap::new(),
        }
    }

    /// Add or replace a user.
    pub fn add_user(&mut self, u: UserSpec) {
        self.users.insert(u.username.clone(), u);
    }

    /// Add or replace a robot.
    pub fn add_robot(&mut self, r: RobotSpec) {
        self.robots.insert(r.full_name(&self.robot_prefix), r);
    }

    /// Resolve the caller of a request; `frozen` is how long a failed name stays locked.
    pub fn authenticate(&mut self, authorization: Option<&str>, frozen: Duration) -> AuthOutcome {
        let anonymous = AuthOutcome {
            principal: Principal::Anonymous,
            failed_login: None,
        };
        let Some((name, secret)) = basic_credentials(authorization) else {
            return anonymous;
        };
        if name.starts_with(&self.robot_prefix) {
            if let Some(r) = self.robots.get(&name) {
                if r.secret == secret && !r.disabled {
                    return AuthOutcome {
                        principal: Principal::Robot {
                            name: name.clone(),
                            project: r.project.clone(),
                            permissions: r.permissions.clone(),
                        },
                        failed_login: None,
                    };
                }
            }
        }
        let now = Instant::now();
        if self.locks.get(&name).is_some_and(|until| *until > now) {
            return anonymous;
        }
        match self.users.get(&name) {
            Some(u) if u.password == secret => AuthOutcome {
                principal: Principal::User {
                    name: u.username.clone(),
                    sysadmin: u.sysadmin,
                    roles: u.roles.clone(),
                },
                failed_login: None,
            },
            _ => {
                self.locks.insert(name.clone(), now + frozen);
                AuthOutcome {
                    principal: Principal::Anonymous,
                    failed_login: Some(name),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn project(name: &str, public: bool) -> Project {
        Project {
            id: 1,
            name: name.into(),
            public,
            creation_time: Utc::now(),
        }
    }

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn robots_get_exactly_their_access() {
        let mut acc = Accounts::new("robot$", "pw");
        acc.add_robot(RobotSpec::project("library", "ro", "s").allow(
            "library",
            RESOURCE_NOTIFICATION_POLICY,
            &["list", "read"],
        ));
        let out = acc.authenticate(Some(&basic("robot$library+ro", "s")), Duration::ZERO);
        let p = project("library", false);
        assert!(out
            .principal
            .can(Some(&p), RESOURCE_NOTIFICATION_POLICY, "list"));
        assert!(!out
            .principal
            .can(Some(&p), RESOURCE_NOTIFICATION_POLICY, "create"));
        assert!(!out.principal.can(
            Some(&project("other", false)),
            RESOURCE_NOTIFICATION_POLICY,
            "list"
        ));
        assert!(!out
            .principal
            .can(None, RESOURCE_NOTIFICATION_POLICY, "list"));
    }

    #[test]
    fn a_bad_password_is_anonymous_and_locks_the_name() {
        let mut acc = Accounts::new("robot$", "pw");
        let out = acc.authenticate(Some(&basic("admin", "nope")), Duration::from_secs(60));
        assert_eq!(out.principal, Principal::Anonymous);
        assert_eq!(out.failed_login.as_deref(), Some("admin"));
        // Locked: even the right password is anonymous now (and is not another failure).
        let out = acc.authenticate(Some(&basic("admin", "pw")), Duration::from_secs(60));
        assert_eq!(
            out,
            AuthOutcome {
                principal: Principal::Anonymous,
                failed_login: None
            }
        );
    }

    #[test]
    fn public_projects_are_readable_by_anyone_but_not_their_webhooks() {
        let p = project("library", true);
        assert!(Principal::Anonymous.can(Some(&p), RESOURCE_PROJECT, "read"));
        assert!(!Principal::Anonymous.can(Some(&p), RESOURCE_NOTIFICATION_POLICY, "read"));
    }
}
