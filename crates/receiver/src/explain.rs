//! `kargo-harbor-receiver explain`: why a Harbor push refreshed a Warehouse
//! or not, one line per subscription on the pushed repository.
//!
//! Nothing here decides: the payload is parsed by [`harbor::parse`], the
//! Warehouses are indexed by [`RepositoryIndex`] and walked by
//! [`Repositories::explain`](crate::index::Repositories::explain) (the walk of [`Repositories::matching`](crate::index::Repositories::matching), the
//! request path's own, with each [`TagFilter`](crate::core::tags::TagFilter)
//! verdict kept), and the result line is `matching` itself. Only the words
//! are this module's.
//!
//! Warehouses come from the cluster (KUBECONFIG; listed in the project's
//! namespace, or everywhere for `--cluster`) or, offline, from YAML files.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Args;
use kargo_api::{SubscriptionSource, Warehouse};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::Value;
use thiserror::Error;

use crate::core::harbor::{self, Event};
use crate::core::repository::{normalize_chart, normalize_image};
use crate::index::{RepositoryIndex, Scope, WarehouseRef};
use crate::kubeconfig::{self, ClientError, OPERATOR_USER_AGENT};

/// Arguments of `explain`.
#[derive(Clone, Debug, Args)]
pub struct ExplainArgs {
    /// The Harbor webhook body, in either format: a file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub payload: PathBuf,
    /// The project whose receiver got the push: only its Warehouses count.
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    pub project: Option<String>,
    /// The push went to the ClusterConfig's receiver: Warehouses of every
    /// project count.
    #[arg(long)]
    pub cluster: bool,
    /// Read Warehouses from these YAML files or directories (multi-document
    /// files and `kind: List` as `kubectl get -o yaml` writes them; other
    /// kinds are skipped) instead of the cluster.
    #[arg(short = 'f', long = "warehouses", value_name = "PATH")]
    pub files: Vec<PathBuf>,
}

impl ExplainArgs {
    fn scope(&self) -> Scope {
        match &self.project {
            Some(project) => Scope::project_of(project),
            None => Scope::Cluster,
        }
    }
}

/// Why there is nothing to explain.
#[derive(Debug, Error)]
pub enum ExplainError {
    /// A file (or stdin) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which (`-` for stdin).
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The payload is not a Harbor event.
    #[error("{path}: {source}")]
    Payload {
        /// Which file.
        path: String,
        /// Why.
        source: harbor::PayloadError,
    },
    /// A Warehouse file is not YAML, or a Warehouse in it does not parse.
    #[error("{path}: {reason}")]
    Manifest {
        /// Which file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No Kubernetes client.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Listing Warehouses failed.
    #[error("cannot list Warehouses on {server}: {source}")]
    List {
        /// The API server.
        server: String,
        /// Why.
        source: kube::Error,
    },
}

/// What `explain` found: the lines to print and the Warehouses the receiver
/// would refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// One line per pushed artifact, per subscription on its repository,
    /// per other Warehouse in scope, then the result.
    pub lines: Vec<String>,
    /// `namespace/name` of each Warehouse refreshed, as the receiver would.
    pub refreshed: Vec<String>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Runs `explain`: reads the payload and the Warehouses, prints the
/// explanation on stdout.
pub async fn run(args: ExplainArgs) -> Result<(), ExplainError> {
    let body = read_input(&args.payload)?;
    let event = harbor::parse(&body).map_err(|source| ExplainError::Payload {
        path: args.payload.display().to_string(),
        source,
    })?;
    let scope = args.scope();
    let warehouses = if args.files.is_empty() {
        cluster_warehouses(&scope).await?
    } else {
        let default_namespace = args.project.as_deref().unwrap_or("default");
        let mut all = Vec::new();
        for path in &args.files {
            all.extend(file_warehouses(path, default_namespace)?);
        }
        all
    };
    print!("{}", explain(&event, &warehouses, &scope));
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>, ExplainError> {
    let read_error = |source| ExplainError::Read {
        path: path.display().to_string(),
        source,
    };
    if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(read_error)?;
        Ok(body)
    } else {
        std::fs::read(path).map_err(read_error)
    }
}

async fn cluster_warehouses(scope: &Scope) -> Result<Vec<Warehouse>, ExplainError> {
    let cluster = kubeconfig::infer(OPERATOR_USER_AGENT).await?;
    let api: Api<Warehouse> = match scope {
        Scope::Project(ns) => Api::namespaced(cluster.client, ns),
        Scope::Cluster => Api::all(cluster.client),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| ExplainError::List {
            server: cluster.server,
            source,
        })?;
    Ok(list.items)
}

/// The Warehouses in a YAML file, or in the `.yaml`/`.yml` files of a
/// directory; those without a namespace are put in `default_namespace`.
pub fn file_warehouses(
    path: &Path,
    default_namespace: &str,
) -> Result<Vec<Warehouse>, ExplainError> {
    let read_error = |source| ExplainError::Read {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_error)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        let mut all = Vec::new();
        for file in files {
            all.extend(file_warehouses(&file, default_namespace)?);
        }
        return Ok(all);
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse_warehouses(&text, default_namespace).map_err(|reason| ExplainError::Manifest {
        path: path.display().to_string(),
        reason,
    })
}

/// The Warehouses of a YAML stream (other kinds skipped).
fn parse_warehouses(text: &str, default_namespace: &str) -> Result<Vec<Warehouse>, String> {
    use serde::Deserialize as _;
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        match value["kind"].as_str() {
            Some("List" | "WarehouseList") => objects.extend(
                value["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| o["kind"] == "Warehouse")
                    .cloned(),
            ),
            Some("Warehouse") => objects.push(value),
            _ => {}
        }
    }
    objects
        .into_iter()
        .map(|o| {
            let mut w: Warehouse =
                serde_json::from_value(o).map_err(|e| format!("not a Warehouse: {e}"))?;
            if w.metadata
                .namespace
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                w.metadata.namespace = Some(default_namespace.to_owned());
            }
            Ok(w)
        })
        .collect()
}

/// Explains `event` against `warehouses` for a receiver of `scope`, with
/// the request path's own code (see the module docs).
pub fn explain(event: &Event, warehouses: &[Warehouse], scope: &Scope) -> Explanation {
    let mut lines = Vec::new();
    let where_ = match scope {
        Scope::Project(ns) => format!("project {ns}"),
        Scope::Cluster => "any project (ClusterConfig receiver)".to_owned(),
    };
    if !event.is_push() {
        lines.push(format!(
            "event type {:?} is not a push: the receiver answers 400 \"unsupported event type\" and refreshes nothing",
            event.event_type
        ));
        return Explanation {
            lines,
            refreshed: Vec::new(),
        };
    }
    let index = RepositoryIndex::new();
    let problems = index.replace_all(warehouses);
    let repos = index.load();
    let verdicts = repos.explain(scope, &event.artifacts);
    let matched = repos.matching(scope, &event.artifacts);
    let refreshed: BTreeSet<String> = matched.iter().map(|m| m.warehouse.to_string()).collect();
    let in_scope: Vec<&Warehouse> = warehouses
        .iter()
        .filter(|w| match scope {
            Scope::Project(ns) => w.namespace().as_deref() == Some(&**ns),
            Scope::Cluster => true,
        })
        .collect();

    if event.artifacts.is_empty() {
        lines.push(
            "the push names no artifact: the receiver answers 200 and refreshes nothing".into(),
        );
    }
    for artifact in &event.artifacts {
        let image_key = normalize_image(&artifact.resource_url);
        let chart_key = normalize_chart(&artifact.resource_url);
        let mut header = format!(
            "push {} (tag {}): repository normalised to {image_key}",
            artifact.resource_url, artifact.tag
        );
        if chart_key != image_key {
            let _ = write!(header, " (image), {chart_key} (chart)");
        }
        lines.push(header);
        let mut seen = false;
        for v in verdicts
            .iter()
            .filter(|v| std::ptr::eq(v.artifact, artifact))
        {
            seen = true;
            let warehouse = v.warehouse.to_string();
            let subscription = find(warehouses, v.warehouse)
                .and_then(|w| w.spec.subscriptions.get(v.position))
                .map(|s| describe(&s.source, Some(&v.key)))
                .unwrap_or_default();
            let mut line = format!(
                "  {warehouse} subscription {}{subscription}: {}: tag {}: {}",
                v.position,
                if v.verdict.accepted() {
                    "refreshed"
                } else {
                    "not refreshed"
                },
                artifact.tag,
                v.verdict
            );
            if !v.verdict.accepted() && refreshed.contains(&warehouse) {
                line.push_str(" (the Warehouse is refreshed through another subscription)");
            }
            lines.push(line);
        }
        if !seen {
            lines.push(format!(
                "  no Warehouse in {where_} subscribes to this repository"
            ));
        }
    }

    // Warehouses in scope that no pushed repository reached.
    let reached: BTreeSet<String> = verdicts.iter().map(|v| v.warehouse.to_string()).collect();
    for w in &in_scope {
        let name = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
        if reached.contains(&name) {
            continue;
        }
        let subs: Vec<String> = w
            .spec
            .subscriptions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let text = describe(&s.source, None);
                (!text.is_empty()).then(|| format!("subscription {i}{text}"))
            })
            .collect();
        let why = if subs.is_empty() {
            "no image or chart subscription".to_owned()
        } else {
            format!(
                "no subscription on the pushed repository; it has {}",
                subs.join(", ")
            )
        };
        lines.push(format!("  {name}: not refreshed: {why}"));
    }
    for problem in &problems {
        lines.push(format!("  note: {problem}"));
    }
    let outside = warehouses.len() - in_scope.len();
    if outside > 0 {
        lines.push(format!(
            "  note: {outside} Warehouse(s) outside {where_} not considered (a project's receiver reaches only its own namespace)"
        ));
    }
    let refreshed: Vec<String> = refreshed.into_iter().collect();
    lines.push(if refreshed.is_empty() {
        format!(
            "result: no Warehouse refreshed ({} in {where_}); the receiver answers 200 {{\"msg\":\"refreshed 0 warehouse(s)\"}}",
            in_scope.len()
        )
    } else {
        format!(
            "result: {} of {} Warehouse(s) in {where_} refreshed: {}",
            refreshed.len(),
            in_scope.len(),
            refreshed.join(", ")
        )
    });
    Explanation { lines, refreshed }
}

fn find<'w>(warehouses: &'w [Warehouse], wanted: &WarehouseRef) -> Option<&'w Warehouse> {
    warehouses.iter().find(|w| {
        w.namespace().as_deref() == Some(&*wanted.namespace) && w.name_any() == *wanted.name
    })
}

/// ` (image <repoURL>[, repository normalised to <key>])`; empty for kinds
/// the receiver does not index. `key` is the index's, when known.
fn describe(source: &SubscriptionSource, key: Option<&str>) -> String {
    let (kind, repo_url, normalised) = match source {
        SubscriptionSource::Image(s) => ("image", &s.repo_url, normalize_image(&s.repo_url)),
        SubscriptionSource::Chart(s) => ("chart", &s.repo_url, normalize_chart(&s.repo_url)),
        _ => return String::new(),
    };
    let key = key.unwrap_or(&normalised);
    if key == repo_url {
        format!(" ({kind} {repo_url})")
    } else {
        format!(" ({kind} {repo_url}, repository normalised to {key})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
    }

    fn payload(name: &str) -> Event {
        harbor::parse(&std::fs::read(examples().join("harbor").join(name)).unwrap()).unwrap()
    }

    fn demo() -> Vec<Warehouse> {
        file_warehouses(&examples(), "kargo-demo").unwrap()
    }

    #[test]
    fn the_demo_push_names_why_app_v2_and_my_chart_are_not_refreshed() {
        let scope = Scope::project_of("kargo-demo");
        let e = explain(&payload("push-tag.json"), &demo(), &scope);
        let text = e.to_string();
        assert_eq!(e.refreshed, ["kargo-demo/app-v1"], "{text}");
        let expected = [
            "push harbor.example.com/library/app:1.2.3 (tag 1.2.3): repository normalised to harbor.example.com/library/app",
            "  kargo-demo/app-v1 subscription 0 (image harbor.example.com/library/app): refreshed: tag 1.2.3: accepted",
            "  kargo-demo/app-v2 subscription 0 (image harbor.example.com/library/app): not refreshed: tag 1.2.3: does not satisfy `^2.0.0`",
            "  kargo-demo/my-chart: not refreshed: no subscription on the pushed repository; it has subscription 0 (chart oci://harbor.example.com/charts/my-chart, repository normalised to harbor.example.com/charts/my-chart)",
            "result: 1 of 3 Warehouse(s) in project kargo-demo refreshed: kargo-demo/app-v1",
        ];
        assert_eq!(e.lines, expected, "{text}");
    }

    #[test]
    fn the_explanation_agrees_with_the_request_path() {
        // The result is `matching` itself; each per-subscription line must
        // agree with it: a Warehouse is refreshed iff one of its lines says so.
        let warehouses = demo();
        for (file, scope) in [
            ("push-tag.json", Scope::project_of("kargo-demo")),
            ("push-chart.json", Scope::project_of("kargo-demo")),
            ("cloudevents-push.json", Scope::Cluster),
            ("push-tag.json", Scope::project_of("elsewhere")),
        ] {
            let event = payload(file);
            let e = explain(&event, &warehouses, &scope);
            let index = RepositoryIndex::new();
            index.replace_all(&warehouses);
            let server: Vec<String> = index
                .load()
                .matching(&scope, &event.artifacts)
                .iter()
                .map(|m| m.warehouse.to_string())
                .collect();
            assert_eq!(e.refreshed, server, "{file}");
            for w in &server {
                assert!(
                    e.lines
                        .iter()
                        .any(|l| l.starts_with(&format!("  {w} ")) && l.contains(": refreshed: ")),
                    "{file}: {w}\n{e}"
                );
            }
        }
    }

    #[test]
    fn normalisation_rules_and_scope_are_named() {
        let yaml = r#"
apiVersion: v1
kind: List
items:
- apiVersion: kargo.akuity.io/v1alpha1
  kind: Warehouse
  metadata: {name: ignored-rc, namespace: p}
  spec:
    subscriptions:
    - image: {repoURL: "Harbor.Example.com/library/app:1.0", ignoreTagsRegexes: ["-rc"]}
- apiVersion: kargo.akuity.io/v1alpha1
  kind: Warehouse
  metadata: {name: digest, namespace: p}
  spec:
    subscriptions:
    - image: {repoURL: harbor.example.com/library/app, imageSelectionStrategy: Digest, constraint: stable}
    - git: {repoURL: https://github.com/example/repo}
- apiVersion: kargo.akuity.io/v1alpha1
  kind: Warehouse
  metadata: {name: bad-regex, namespace: p}
  spec:
    subscriptions:
    - image: {repoURL: harbor.example.com/library/app, allowTagsRegexes: ["("]}
- apiVersion: kargo.akuity.io/v1alpha1
  kind: Warehouse
  metadata: {name: other-project, namespace: q}
  spec:
    subscriptions:
    - image: {repoURL: harbor.example.com/library/app}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: skipped}
"#;
        let warehouses = parse_warehouses(yaml, "p").unwrap();
        assert_eq!(warehouses.len(), 4);
        let body = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1.3.0-rc.1","resource_url":"harbor.example.com/library/app:1.3.0-rc.1"}]}}"#;
        let e = explain(
            &harbor::parse(body).unwrap(),
            &warehouses,
            &Scope::project_of("p"),
        );
        let text = e.to_string();
        assert!(text.contains("p/ignored-rc subscription 0 (image Harbor.Example.com/library/app:1.0, repository normalised to harbor.example.com/library/app): not refreshed: tag 1.3.0-rc.1: ignored by regex \"-rc\""), "{text}");
        assert!(text.contains("p/digest subscription 0 (image harbor.example.com/library/app): not refreshed: tag 1.3.0-rc.1: Digest strategy wants `stable`"), "{text}");
        assert!(text.contains("p/bad-regex subscription 0 (image harbor.example.com/library/app): refreshed: tag 1.3.0-rc.1: accepted: the rules cannot be evaluated (allowTagsRegexes: cannot compile"), "{text}");
        assert!(
            text.contains("note: 1 Warehouse(s) outside project p not considered"),
            "{text}"
        );
        assert!(!text.contains("other-project"), "{text}");
        assert_eq!(e.refreshed, ["p/bad-regex"]);
    }

    #[test]
    fn events_that_are_not_pushes_are_named() {
        let body = br#"{"type":"PULL_ARTIFACT","event_data":{"resources":[]}}"#;
        let e = explain(&harbor::parse(body).unwrap(), &demo(), &Scope::Cluster);
        assert!(e.lines[0].contains("not a push"), "{e}");
        assert!(e.refreshed.is_empty());
    }

    #[test]
    fn a_file_that_is_not_yaml_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yaml");
        std::fs::write(&path, "kind: Warehouse\nspec: [unclosed").unwrap();
        let err = file_warehouses(&path, "p").unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
