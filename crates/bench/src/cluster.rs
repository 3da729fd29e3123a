//! kube-emulator (in this process) with Kargo's CRDs, one project `bench`
//! with a Harbor receiver and one Warehouse a push can match, and as many
//! more Warehouses of a chosen [`Shape`] as asked, seeded without HTTP.

use std::fmt;
use std::str::FromStr;

use kargo_harbor_receiver::core::receiver_path::{receiver_path, BaseUrl};
use kube_emulator::{kargo_crd_dir, Emulator, EmulatorOptions, Handle};
use serde_json::{json, Value};

/// The benchmark project (namespace, ProjectConfig).
pub const PROJECT: &str = "bench";
/// Its Harbor receiver.
pub const RECEIVER: &str = "harbor";
/// The receiver's auth header.
pub const TOKEN: &str = "bench-auth-token-0123456789";
/// The one Warehouse of the project, subscribed to [`TARGET_REPO`] with
/// constraint `^1.0.0`.
pub const TARGET: &str = "app";
/// Repository of [`TARGET`].
pub const TARGET_REPO: &str = "harbor.example.com/library/app";
/// Namespaces the seeded Warehouses are spread over.
pub const SEEDED_NAMESPACES: usize = 100;

/// A push that refreshes [`TARGET`] (and nothing else).
pub fn push_matching_one() -> String {
    push("1.2.3")
}

/// A push to [`TARGET_REPO`] that no rule accepts.
pub fn push_matching_nothing() -> String {
    push("9.9.9")
}

fn push(tag: &str) -> String {
    json!({
        "type": "PUSH_ARTIFACT",
        "event_data": {"resources": [{"tag": tag, "resource_url": format!("{TARGET_REPO}:{tag}")}]}
    })
    .to_string()
}

/// What the seeded Warehouses look like: one image subscription each, on a
/// repository of its own, in the three shapes of issue 11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A semver constraint only.
    Plain,
    /// Plus one `allowTagsRegexes` pattern, the same for every Warehouse.
    SharedAllow,
    /// Plus one `ignoreTagsRegexes` pattern unique to each Warehouse.
    UniqueIgnore,
}

impl Shape {
    /// Every shape, in the order the tables list them.
    pub const ALL: [Shape; 3] = [Shape::Plain, Shape::SharedAllow, Shape::UniqueIgnore];

    /// The subscription of seeded Warehouse `i`.
    pub fn subscription(self, i: usize) -> Value {
        let mut image = json!({
            "repoURL": format!("harbor.example.com/team-{}/app-{i}", i % SEEDED_NAMESPACES),
            "constraint": "^1.0.0",
        });
        if matches!(self, Shape::SharedAllow | Shape::UniqueIgnore) {
            image["allowTagsRegexes"] = json!([r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$"]);
        }
        if self == Shape::UniqueIgnore {
            image["ignoreTagsRegexes"] =
                json!([format!(r"^[0-9]+\.[0-9]+\.{i}-(rc|beta)\.[0-9]+$")]);
        }
        json!({"image": image})
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Plain => "plain",
            Shape::SharedAllow => "shared-allow",
            Shape::UniqueIgnore => "unique-ignore",
        })
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.to_string() == s)
            .ok_or_else(|| format!("unknown shape {s:?} (plain, shared-allow, unique-ignore)"))
    }
}

fn warehouse(namespace: &str, name: &str, subscription: Value) -> Value {
    json!({
        "apiVersion": "kargo.akuity.io/v1alpha1",
        "kind": "Warehouse",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"subscriptions": [subscription]},
    })
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A running emulator holding the benchmark project.
pub struct Cluster {
    handle: Handle,
}

impl Cluster {
    /// Starts an emulator with Kargo's CRDs and the benchmark project.
    pub async fn start() -> anyhow::Result<Cluster> {
        let crds = kargo_crd_dir();
        let handle = Emulator::start(
            EmulatorOptions::default()
                .with_crd(crds.join("projectconfigs.yaml"))
                .with_crd(crds.join("clusterconfigs.yaml"))
                .with_crd(crds.join("warehouses.yaml")),
        )
        .await?;
        handle.create_many([
            namespace(PROJECT),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "harbor-secret", "namespace": PROJECT},
                "stringData": {"auth-header": TOKEN},
            }),
            json!({
                "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
                "metadata": {"name": PROJECT, "namespace": PROJECT},
                "spec": {"webhookReceivers": [
                    {"name": RECEIVER, "harbor": {"secretRef": {"name": "harbor-secret"}}}
                ]},
            }),
            warehouse(
                PROJECT,
                TARGET,
                json!({"image": {"repoURL": TARGET_REPO, "constraint": "^1.0.0"}}),
            ),
        ])?;
        Ok(Cluster { handle })
    }

    /// Creates `count` Warehouses of `shape` in [`SEEDED_NAMESPACES`]
    /// namespaces.
    pub fn seed(&self, shape: Shape, count: usize) -> anyhow::Result<()> {
        let namespaces = (0..SEEDED_NAMESPACES.min(count)).map(|n| namespace(&format!("many-{n}")));
        let warehouses = (0..count).map(|i| {
            warehouse(
                &format!("many-{}", i % SEEDED_NAMESPACES),
                &format!("w-{i}"),
                shape.subscription(i),
            )
        });
        self.handle.create_many(namespaces.chain(warehouses))?;
        Ok(())
    }

    /// The emulator's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// Its kubeconfig file.
    pub fn kubeconfig(&self) -> &std::path::Path {
        self.handle.kubeconfig_path()
    }

    /// The URL path of the benchmark receiver, as the receiver derives it.
    pub fn receiver_path() -> anyhow::Result<String> {
        let base = BaseUrl::parse("http://127.0.0.1")?;
        Ok(receiver_path(&base, PROJECT, RECEIVER, TOKEN))
    }

    /// API path of [`TARGET`], for direct PATCHes.
    pub fn target_path() -> String {
        format!("/apis/kargo.akuity.io/v1alpha1/namespaces/{PROJECT}/warehouses/{TARGET}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip_their_names() {
        for shape in Shape::ALL {
            assert_eq!(shape.to_string().parse::<Shape>(), Ok(shape));
        }
        assert!("other".parse::<Shape>().is_err());
    }

    #[test]
    fn only_the_unique_shape_has_a_pattern_per_warehouse() {
        let ignore = |shape: Shape, i| shape.subscription(i)["image"]["ignoreTagsRegexes"].clone();
        assert_ne!(
            ignore(Shape::UniqueIgnore, 1),
            ignore(Shape::UniqueIgnore, 2)
        );
        assert_eq!(ignore(Shape::SharedAllow, 1), Value::Null);
        let allow = |i| Shape::SharedAllow.subscription(i)["image"]["allowTagsRegexes"].clone();
        assert_eq!(allow(1), allow(2));
    }
}
