//! How receiver Secrets are observed and read.
//!
//! Secret *values* are read only by a reconcile, with one GET, and only when
//! the Secret may have changed; the token is hashed at once (receiver path
//! and [`TokenDigest`]) and dropped. No cache ever holds Secret data: the
//! watches are metadata-only (`PartialObjectMetadata`, managed fields
//! stripped), and what is remembered between reconciles is the derived path
//! and digest, keyed by the Secret's `resourceVersion`.
//!
//! # Modes (`--secret-access`, `--watch-namespaces`)
//!
//! | mode | RBAC on `secrets` | rotation delay |
//! |---|---|---|
//! | `watch` (default), no `--watch-namespaces` | `get`, `list`, `watch` cluster-wide (ClusterRole) | about a second: the metadata watch sees the change, the affected configs are reconciled, one GET reads the new value |
//! | `watch` with `--watch-namespaces a,b` | `get`, `list`, `watch` in each listed namespace (a Role per namespace) | about a second for Secrets in the listed namespaces; Secrets elsewhere (still readable with `get`) are re-read every `--secret-resync` |
//! | `get` | `get` only (may be limited to named Secrets with `resourceNames`) | up to `--secret-resync` (default 60 s): every config with Harbor receivers is reconciled and its Secrets re-read at that interval |
//!
//! Mind that `list`/`watch` on Secrets, even metadata-only, is a permission
//! that can also read every Secret's data in its scope: prefer the
//! namespace-limited or `get` modes where that matters. Include the system
//! resources namespace in `--watch-namespaces` if you use a ClusterConfig.
//! In every mode, a change of a ProjectConfig/ClusterConfig itself is seen
//! at once (those are always watched), and `--resync-interval` bounds drift.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::config::SecretAccess;
use crate::core::receiver_path::{receiver_path, BaseUrl};
use crate::core::status::{go_quote, HarborOutcome, Published};
use crate::core::token::TokenDigest;
use crate::index::{ReceiverEntry, Route, RouteReason, Scope};

/// The key holding the Harbor auth header.
pub const AUTH_HEADER_KEY: &str = "auth-header";

/// The value of `key` in a Secret's `data` (the API server folds
/// `stringData` into it; Kargo reads `data` only).
pub fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

/// Metadata stores of the Secret watches: `None` key = cluster-wide.
#[derive(Clone, Default)]
pub struct SecretStores {
    stores: Vec<SecretWatch>,
}

/// One metadata-only Secret watch: its scope, its store, and the flag it
/// raises once the initial list is in the store.
#[derive(Clone)]
struct SecretWatch {
    namespace: Option<String>,
    store: Store<PartialObjectMeta<Secret>>,
    synced: watch::Receiver<bool>,
}

impl SecretWatch {
    fn covers(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

impl SecretStores {
    /// Registers the store of a watch (`None` = all namespaces) and the flag
    /// its watch raises once the initial list is in the store.
    pub fn add(
        &mut self,
        namespace: Option<String>,
        store: Store<PartialObjectMeta<Secret>>,
        synced: watch::Receiver<bool>,
    ) {
        self.stores.push(SecretWatch {
            namespace,
            store,
            synced,
        });
    }

    /// The watches' synced flags (for readiness).
    pub fn synced(&self) -> Vec<watch::Receiver<bool>> {
        self.stores.iter().map(|w| w.synced.clone()).collect()
    }

    /// What the watch knows about a Secret: `None` when no watch covers the
    /// namespace (or it is not synced yet), `Some(None)` when it does not
    /// exist, `Some(Some(rv))` otherwise.
    fn resource_version(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        // Never poll the store's `wait_until_ready` here: it keeps one waker
        // only, and a poll from this task would steal another task's.
        let watch = self
            .stores
            .iter()
            .find(|w| w.covers(namespace) && *w.synced.borrow())?;
        let key = ObjectRef::new(name).within(namespace);
        Some(
            watch
                .store
                .get(&key)
                .map(|m| m.metadata.resource_version.clone().unwrap_or_default()),
        )
    }

    /// Whether a watch covers the namespace.
    pub fn covers(&self, namespace: &str) -> bool {
        self.stores.iter().any(|w| w.covers(namespace))
    }
}

/// Zeroes every value of a Secret read with a GET (see `core::token` for
/// what is and is not wiped).
pub(super) fn wipe_secret(secret: &mut Secret) {
    for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        crate::core::token::wipe(&mut value.0);
    }
    for value in secret.string_data.iter_mut().flat_map(|d| d.values_mut()) {
        crate::core::token::wipe_str(value);
    }
}

/// What reading a receiver's Secret gave, already reduced to what we keep.
#[derive(Clone, Debug)]
enum Derived {
    Ready {
        path: String,
        token: TokenDigest,
    },
    /// Kargo leaves the receiver out, for this cause (its words).
    Failed {
        cause: String,
    },
    /// We may not read it (RBAC), or could not: Kargo may; not ours to
    /// judge.
    Unjudged,
}

#[derive(Clone, Debug)]
struct Cached {
    secret: (String, String),
    /// resourceVersion of the Secret when read; `None` = it did not exist.
    resource_version: Option<String>,
    derived: Derived,
}

/// One Harbor receiver to resolve.
pub struct Wanted<'a> {
    /// Whose receiver.
    pub scope: &'a Scope,
    /// Receiver name.
    pub name: &'a str,
    /// Secret namespace.
    pub secret_namespace: &'a str,
    /// Secret name.
    pub secret_name: &'a str,
}

/// What resolving a receiver gave.
pub struct Resolved {
    /// For the status.
    pub outcome: HarborOutcome,
    /// For the route table (ready receivers only).
    pub route: Option<Route>,
    /// A transient read error (the previous result, if any, is kept).
    pub error: Option<kube::Error>,
    /// The Secret was read with a GET.
    pub read: bool,
}

/// Reads Secrets for reconciles; remembers derived results (never tokens).
pub struct SecretReader {
    client: Client,
    mode: SecretAccess,
    stores: SecretStores,
    base_url: BaseUrl,
    cache: Mutex<HashMap<(Scope, String), Cached>>,
}

impl SecretReader {
    /// A reader in `mode`, deriving paths from `base_url`.
    pub fn new(
        client: Client,
        mode: SecretAccess,
        base_url: BaseUrl,
        stores: SecretStores,
    ) -> Self {
        Self {
            client,
            mode,
            stores,
            base_url,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Scope, String), Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the Secrets of this namespace are re-read periodically
    /// instead of being watched.
    pub fn polled(&self, namespace: &str) -> bool {
        self.mode == SecretAccess::Get || !self.stores.covers(namespace)
    }

    /// Forgets everything derived for `scope` except `keep` receivers.
    pub fn retain(&self, scope: &Scope, keep: &[&str]) {
        self.lock()
            .retain(|(s, name), _| s != scope || keep.contains(&name.as_str()));
    }

    /// Resolves one receiver: reuses the derived result if the watch says the
    /// Secret did not change, otherwise GETs the Secret once.
    pub async fn resolve(&self, wanted: &Wanted<'_>) -> Resolved {
        let key = (wanted.scope.clone(), wanted.name.to_owned());
        let secret = (
            wanted.secret_namespace.to_owned(),
            wanted.secret_name.to_owned(),
        );
        let cause_prefix = format!(
            "error getting Secret {} in namespace {}",
            go_quote(wanted.secret_name),
            go_quote(wanted.secret_namespace)
        );
        if let Some(problem) = invalid_name(wanted.secret_name) {
            // client-go refuses the request before sending it; so do we.
            let derived = Derived::Failed {
                cause: format!("{cause_prefix}: {problem}"),
            };
            return self.resolved(wanted, derived, None, false);
        }
        let cached = self.lock().get(&key).cloned();
        if self.mode == SecretAccess::Watch {
            if let (Some(rv), Some(c)) = (
                self.stores
                    .resource_version(wanted.secret_namespace, wanted.secret_name),
                cached.as_ref(),
            ) {
                if c.secret == secret && c.resource_version == rv {
                    return self.resolved(wanted, c.derived.clone(), None, false);
                }
            }
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), wanted.secret_namespace);
        let (resource_version, derived) = match api.get(wanted.secret_name).await {
            Ok(mut s) => {
                let rv = s.metadata.resource_version.clone();
                let derived = self.derive(wanted, &s);
                wipe_secret(&mut s);
                (rv, derived)
            }
            // The API server's own message, as Kargo quotes it.
            Err(kube::Error::Api(s)) if s.code == 404 => (
                None,
                Derived::Failed {
                    cause: format!("{cause_prefix}: {}", s.message),
                },
            ),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::warn!(
                    receiver = wanted.name,
                    secret = %format!("{}/{}", wanted.secret_namespace, wanted.secret_name),
                    "not allowed to read the receiver's Secret: not served; its status is left to Kargo"
                );
                (None, Derived::Unjudged)
            }
            Err(e) => {
                // Transient: keep serving what we had, retry with backoff;
                // with nothing to keep, the status is left as it is.
                let derived = match cached {
                    Some(c) if c.secret == secret => c.derived,
                    _ => Derived::Unjudged,
                };
                return self.resolved(wanted, derived, Some(e), true);
            }
        };
        self.lock().insert(
            key,
            Cached {
                secret,
                resource_version,
                derived: derived.clone(),
            },
        );
        self.resolved(wanted, derived, None, true)
    }

    /// Kargo's Harbor rule: the `auth-header` key of `data`, any value
    /// (empty included: Kargo publishes it; every request is then 401).
    fn derive(&self, wanted: &Wanted<'_>, secret: &Secret) -> Derived {
        match secret_value(secret, AUTH_HEADER_KEY) {
            None => Derived::Failed {
                cause: format!(
                    "error extracting secret values from Secret {} in namespace {}: missing data key {} for Harbor WebhookReceiver",
                    go_quote(wanted.secret_name),
                    go_quote(wanted.secret_namespace),
                    go_quote(AUTH_HEADER_KEY)
                ),
            },
            Some(bytes) => Derived::Ready {
                path: receiver_path(&self.base_url, wanted.scope.project(), wanted.name, bytes),
                token: TokenDigest::of(bytes),
            },
        }
    }

    fn resolved(
        &self,
        wanted: &Wanted<'_>,
        derived: Derived,
        error: Option<kube::Error>,
        read: bool,
    ) -> Resolved {
        let (outcome, route) = match derived {
            Derived::Ready { path, token } => (
                HarborOutcome::Synced(Published {
                    url: self.base_url.url_for(&path),
                    path: path.clone(),
                }),
                Some(Route {
                    path,
                    entry: ReceiverEntry {
                        scope: wanted.scope.clone(),
                        name: wanted.name.to_owned(),
                        token,
                        why: RouteReason::Current,
                        counters: Default::default(),
                        grace_until: None,
                    },
                }),
            ),
            Derived::Failed { cause } => (HarborOutcome::Failed { cause }, None),
            Derived::Unjudged => (HarborOutcome::Unknown, None),
        };
        Resolved {
            outcome,
            route,
            error,
            read,
        }
    }
}

/// What client-go's request validation says about a Secret name
/// (`resource name may not be empty`, `IsValidPathSegmentName`).
fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("resource name may not be empty".to_owned());
    }
    let problems: Vec<&str> = match name {
        "." => vec!["may not be '.'"],
        ".." => vec!["may not be '..'"],
        _ => [('/', "may not contain '/'"), ('%', "may not contain '%'")]
            .into_iter()
            .filter(|(c, _)| name.contains(*c))
            .map(|(_, p)| p)
            .collect(),
    };
    (!problems.is_empty()).then(|| {
        format!(
            "invalid resource name {}: [{}]",
            go_quote(name),
            problems.join(" ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_secret_is_wiped() {
        let mut secret = Secret {
            data: Some(BTreeMap::from([(
                AUTH_HEADER_KEY.to_owned(),
                k8s_openapi::ByteString(b"token".to_vec()),
            )])),
            string_data: Some(BTreeMap::from([(
                AUTH_HEADER_KEY.to_owned(),
                "token".into(),
            )])),
            ..Secret::default()
        };
        wipe_secret(&mut secret);
        assert!(secret.data.unwrap()[AUTH_HEADER_KEY].0.is_empty());
        assert!(secret.string_data.unwrap()[AUTH_HEADER_KEY].is_empty());
    }
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    /// A reader whose client is never contacted (`derive` does no I/O).
    fn offline_reader() -> (crate::config::Config, SecretReader) {
        let config = crate::testing::config(&["--base-url", "https://h"]);
        let reader = SecretReader::new(
            crate::testing::offline_client(),
            config.secret_access,
            config.base_url.clone(),
            SecretStores::default(),
        );
        (config, reader)
    }

    /// Receiver `r` of project `p`, Secret `p/s`.
    fn wanted(scope: &Scope) -> Wanted<'_> {
        Wanted {
            scope,
            name: "r",
            secret_namespace: "p",
            secret_name: "s",
        }
    }

    #[tokio::test]
    async fn a_token_that_is_not_utf8_gets_kargos_path() {
        let (config, reader) = offline_reader();
        let token = b"tok\xffen".to_vec();
        let secret = Secret {
            data: Some(BTreeMap::from([(
                AUTH_HEADER_KEY.to_owned(),
                ByteString(token.clone()),
            )])),
            ..Secret::default()
        };
        let scope = Scope::project_of("p");
        let wanted = wanted(&scope);
        match reader.derive(&wanted, &secret) {
            Derived::Ready {
                path,
                token: digest,
            } => {
                assert_eq!(path, receiver_path(&config.base_url, "p", "r", &token));
                assert_ne!(
                    path,
                    receiver_path(
                        &config.base_url,
                        "p",
                        "r",
                        String::from_utf8_lossy(&token).as_bytes()
                    )
                );
                assert!(digest.verify(&token));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn kargos_harbor_rule_for_the_secret_and_its_name() {
        let (config, reader) = offline_reader();
        let scope = Scope::project_of("p");
        let wanted = wanted(&scope);
        let with = |data: &[(&str, &[u8])]| Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        // An empty value is accepted, as Kargo accepts it.
        match reader.derive(&wanted, &with(&[(AUTH_HEADER_KEY, b"")])) {
            Derived::Ready { path, .. } => {
                assert_eq!(path, receiver_path(&config.base_url, "p", "r", b""))
            }
            other => panic!("{other:?}"),
        }
        // Another key only: Kargo's cause, byte for byte.
        match reader.derive(&wanted, &with(&[("secret", b"x")])) {
            Derived::Failed { cause } => assert_eq!(
                cause,
                "error extracting secret values from Secret \"s\" in namespace \"p\": \
                 missing data key \"auth-header\" for Harbor WebhookReceiver"
            ),
            other => panic!("{other:?}"),
        }
        // client-go's validation of the name, before any request.
        let cases = [
            ("", Some("resource name may not be empty")),
            (
                "a/b%",
                Some("invalid resource name \"a/b%\": [may not contain '/' may not contain '%']"),
            ),
            (
                "..",
                Some("invalid resource name \"..\": [may not be '..']"),
            ),
            ("ok", None),
        ];
        for (name, want) in cases {
            assert_eq!(invalid_name(name).as_deref(), want, "{name:?}");
        }
    }
}
