#![forbid(unsafe_code)]
//! Checks of the rendered Helm chart against the program itself.
//!
//! Inputs, made by the steps `make test` runs before this one:
//! - `target/chart/*.yaml`: `hack/chart/validate.sh` renders the chart with
//!   real Helm (PyPI `helm-python-sdk`: only Python can reach it here);
//! - `target/e2e-requests/*.json`: the program's API requests in every other
//!   end-to-end test, as the kube-emulator recorded them (see
//!   `e2e::request_log_dir`).
//!
//! Hence this target is `test = false` in `tests/Cargo.toml`: `cargo nextest
//! run --workspace` leaves it out, and `make test` runs it last with
//! `cargo nextest run -p e2e --test chart` (what to run alone, after the
//! other two steps). A per-test check inside the harness was the other
//! option; it would need the chart rendered (Python, Helm) before any Rust
//! test could run, and could not tell which grants no test used.
//!
//! What is checked:
//! - every API request the program made in the end-to-end tests is allowed
//!   by the default render's RBAC (the Roles and ClusterRoles bound to the
//!   Deployment's ServiceAccount), and the grants no request used are
//!   reported;
//! - for each rendered variant, the requests the program makes in that
//!   configuration are allowed and use every grant;
//! - the Deployment's env vars are the flags of `kargo-harbor-receiver run`
//!   (read from `Cli::command()`), every flag is set, and the values parse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::CommandFactory;
use e2e::rbac::{request_of, Policy, Request, ResourceRequest};
use kargo_harbor_receiver::config::Cli;
use serde_json::Value;

/// The release `validate.sh` renders: name and namespace.
const RELEASE_NAMESPACE: &str = "kargo";
const FULLNAME: &str = "khr-kargo-harbor-receiver";

/// Env vars of the chart's container that are not flags of `run`.
const NON_FLAG_ENV: &[&str] = &[
    // The log filter, read by tracing's EnvFilter in main.rs.
    "RUST_LOG",
];

/// Flags the chart sets only when their values are given.
const OPTIONAL_ENV: &[&str] = &["TLS_CERT_PATH", "TLS_KEY_PATH", "WATCH_NAMESPACES"];

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// What `hack/chart/validate.sh` renders (`target/chart/NAME`).
fn rendered(name: &str) -> Vec<Value> {
    let path = workspace().join("target/chart").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\nrender the chart first: bash hack/chart/validate.sh (make test does)",
            path.display()
        )
    });
    kube_emulator::parse_manifests(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e:#}", path.display()))
}

fn values_all() -> Value {
    let path = workspace().join("hack/chart/values-all.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn the_deployment(docs: &[Value]) -> &Value {
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 1, "one Deployment");
    deployments[0]
}

fn container_env(docs: &[Value]) -> Vec<Value> {
    let dep = the_deployment(docs);
    dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `run` subcommand's flags: env var → long flag.
fn flags_by_env() -> BTreeMap<String, String> {
    let cli = Cli::command();
    let run = cli
        .find_subcommand("run")
        .expect("the run subcommand")
        .clone();
    run.get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            let long = a.get_long()?.to_string();
            Some((env, long))
        })
        .collect()
}

/// The default value of `run --<long>`.
fn flag_default(long: &str) -> String {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("the run subcommand");
    let arg = run
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap_or_else(|| panic!("run has no --{long}"));
    arg.get_default_values()
        .first()
        .and_then(|v| v.to_str())
        .unwrap_or_else(|| panic!("--{long} has no default"))
        .to_string()
}

/// The value an env var of the rendered container has in a pod: its
/// `value`, or for the downward API what the kubelet would put there.
fn env_value(env: &Value, deployment_namespace: &str) -> String {
    if let Some(v) = env["value"].as_str() {
        return v.to_string();
    }
    match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
        Some("metadata.namespace") => deployment_namespace.to_string(),
        Some("metadata.name") => "khr-kargo-harbor-receiver-5d9f8-abcde".to_string(),
        other => panic!("env {}: unexpected source {other:?}", env["name"]),
    }
}

/// (namespace, name) of the Lease the rendered Deployment's program uses:
/// `LEASE_NAME` and `POD_NAMESPACE` from its env, else the flags' defaults.
fn chart_lease(docs: &[Value]) -> (String, String) {
    let ns = the_deployment(docs)["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let env = container_env(docs);
    let get = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| env_value(e, &ns))
    };
    (
        get("POD_NAMESPACE").unwrap_or_else(|| flag_default("lease-namespace")),
        get("LEASE_NAME").unwrap_or_else(|| flag_default("lease-name")),
    )
}

/// Requests on the test runs' Lease become requests on the chart's Lease:
/// the end-to-end tests run the program with their own Lease namespace.
fn as_chart_lease(request: Request, test: &(String, String), chart: &(String, String)) -> Request {
    match request {
        Request::Resource(mut r)
            if r.group == "coordination.k8s.io"
                && r.resource == "leases"
                && r.namespace.as_deref() == Some(test.0.as_str())
                && r.name.as_ref().is_none_or(|n| *n == test.1) =>
        {
            r.namespace = Some(chart.0.clone());
            if r.name.is_some() {
                r.name = Some(chart.1.clone());
            }
            Request::Resource(r)
        }
        other => other,
    }
}

#[test]
fn every_request_of_the_end_to_end_tests_is_allowed_by_the_chart_rbac() {
    let docs = rendered("default.yaml");
    let policy = Policy::from_manifests(&docs).unwrap();
    let dir = e2e::request_log_dir();
    let logs = e2e::read_request_logs(&dir).unwrap_or_else(|e| {
        panic!("{e:#}\nrun the end-to-end tests first: cargo nextest run -p e2e (make test does)")
    });
    let total: usize = logs.iter().map(|(_, r)| r.len()).sum();
    assert!(
        total > 0,
        "no request in {}: run the end-to-end tests first (cargo nextest run -p e2e)",
        dir.display()
    );

    let config = e2e::test_config(&[]);
    let test_lease = (config.lease_namespace.clone(), config.lease_name.clone());
    let chart_lease = chart_lease(&docs);
    let mut requests = Vec::new();
    for (file, records) in &logs {
        for record in records {
            // Every request counts, those an injected fault answered too:
            // the program made them, so it needs the permission.
            let request = request_of(record).unwrap_or_else(|e| panic!("{file}: {e}"));
            if let Some(request) = request {
                requests.push((
                    file.as_str(),
                    as_chart_lease(request, &test_lease, &chart_lease),
                ));
            }
        }
    }
    let report = policy.check(requests);
    println!(
        "{} log file(s) in {}\nLease {}/{} checked as {}/{}\n{report}",
        logs.len(),
        dir.display(),
        test_lease.0,
        test_lease.1,
        chart_lease.0,
        chart_lease.1
    );
    assert!(report.ok(), "{report}");
    // Least privilege both ways: a grant no end-to-end request used is one
    // to remove (or a path the tests do not cover).
    assert!(
        report.unused.is_empty(),
        "grants of the default render no end-to-end request used:\n{report}"
    );
}

/// What the program requests in a normal run: the watches (ProjectConfig,
/// ClusterConfig, Warehouse, HarborWebhookRegistration: read only through
/// them), a refresh, status writes, Events (and their series patch), a
/// registration's finalizer and status, the Lease, and Secrets as
/// `secret_access` and `watch_namespaces` make it observe them.
fn program_requests(
    secret_access: &str,
    watch_namespaces: &[String],
    lease: &(String, String),
) -> Vec<Request> {
    const K: &str = "kargo.akuity.io";
    const L: &str = "coordination.k8s.io";
    const E: &str = "events.k8s.io";
    const R: &str = "kargo-harbor-receiver.io";
    const NS: &str = "kargo-demo";
    let r = |verb: &str, group: &str, resource: &str, namespace: &str, name: &str| {
        Request::from(ResourceRequest::new(verb, group, resource, namespace, name))
    };
    let mut out: Vec<Request> = vec![
        Request::NonResource {
            verb: "get".into(),
            path: "/version".into(),
        },
        r("patch", K, "warehouses", NS, "w1"),
        r("patch", K, "projectconfigs/status", NS, NS),
        r("patch", K, "clusterconfigs/status", "", "cluster"),
        r("create", E, "events", NS, ""),
        r("patch", E, "events", NS, "kargo-demo.18ec681eaa6dc17e"),
        r("get", L, "leases", &lease.0, &lease.1),
        r("create", L, "leases", &lease.0, ""),
        r("update", L, "leases", &lease.0, &lease.1),
        r("list", R, "harborwebhookregistrations", "", ""),
        r("watch", R, "harborwebhookregistrations", "", ""),
        // The registration controller reads the receiver's config.
        r("get", K, "projectconfigs", NS, NS),
        r("get", K, "clusterconfigs", "", "cluster"),
        r("patch", R, "harborwebhookregistrations", NS, "registration"),
        r(
            "patch",
            R,
            "harborwebhookregistrations/status",
            NS,
            "registration",
        ),
    ];
    for res in ["projectconfigs", "clusterconfigs", "warehouses"] {
        out.push(r("list", K, res, "", ""));
        out.push(r("watch", K, res, "", ""));
    }
    let secret_namespaces: Vec<String> = if watch_namespaces.is_empty() {
        vec!["kargo-demo".into(), "kargo-system-resources".into()]
    } else {
        watch_namespaces.to_vec()
    };
    for ns in &secret_namespaces {
        out.push(r("get", "", "secrets", ns, "harbor-wh-secret"));
    }
    if secret_access == "watch" {
        if watch_namespaces.is_empty() {
            out.push(r("list", "", "secrets", "", ""));
            out.push(r("watch", "", "secrets", "", ""));
        } else {
            for ns in watch_namespaces {
                out.push(r("list", "", "secrets", ns, ""));
                out.push(r("watch", "", "secrets", ns, ""));
            }
        }
    }
    out
}

#[test]
fn each_rendered_configuration_grants_exactly_what_the_program_requests() {
    let all = values_all();
    let all_namespaces: Vec<String> = all["watchNamespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let all_lease = all["leaderElection"]["leaseName"]
        .as_str()
        .unwrap()
        .to_string();
    // (file, --secret-access, --watch-namespaces, Lease name), as
    // validate.sh renders them.
    let cases: Vec<(&str, &str, Vec<String>, String)> = vec![
        ("default.yaml", "watch", vec![], FULLNAME.into()),
        ("secret-get.yaml", "get", vec![], FULLNAME.into()),
        (
            "watch-namespaces.yaml",
            "watch",
            vec!["kargo-demo".into()],
            FULLNAME.into(),
        ),
        ("all.yaml", "get", all_namespaces, all_lease),
    ];
    for (file, access, namespaces, lease_name) in cases {
        let docs = rendered(file);
        let lease = (RELEASE_NAMESPACE.to_string(), lease_name);
        assert_eq!(chart_lease(&docs), lease, "{file}: the Deployment's Lease");
        let env = container_env(&docs);
        let env_of = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str())
                .map(str::to_string)
        };
        assert_eq!(env_of("SECRET_ACCESS").as_deref(), Some(access), "{file}");
        assert_eq!(
            env_of("WATCH_NAMESPACES"),
            (!namespaces.is_empty()).then(|| namespaces.join(",")),
            "{file}"
        );
        let policy = Policy::from_manifests(&docs).unwrap();
        let requests = program_requests(access, &namespaces, &lease);
        let report = policy.check(requests.into_iter().map(|r| (file, r)));
        assert!(report.ok(), "{file}:\n{report}");
        assert!(
            report.unused.is_empty(),
            "{file}: grants the program never uses:\n{report}"
        );
    }
}

/// The env vars of the rendered container, and `run` parsing the flags
/// they stand for.
fn check_env(file: &str, extra_env: &BTreeSet<String>, all_optional_set: bool) {
    let docs = rendered(file);
    let ns = the_deployment(&docs)["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let flags = flags_by_env();
    let mut args = vec!["kargo-harbor-receiver".to_string(), "run".to_string()];
    let mut set = BTreeSet::new();
    for env in container_env(&docs) {
        let name = env["name"].as_str().unwrap().to_string();
        assert!(set.insert(name.clone()), "{file}: env {name} set twice");
        if let Some(long) = flags.get(&name) {
            args.push(format!("--{long}"));
            args.push(env_value(&env, &ns));
        } else {
            assert!(
                NON_FLAG_ENV.contains(&name.as_str()) || extra_env.contains(&name),
                "{file}: the chart sets {name}, which is no flag's env var of \
                 `kargo-harbor-receiver run` (flags: {:?})",
                flags.keys().collect::<Vec<_>>()
            );
        }
    }
    for (env, long) in &flags {
        if OPTIONAL_ENV.contains(&env.as_str()) && !all_optional_set {
            continue;
        }
        assert!(
            set.contains(env),
            "{file}: --{long} ({env}) is not set by the chart"
        );
    }
    let config = match <Cli as clap::Parser>::try_parse_from(&args) {
        Ok(Cli {
            command: kargo_harbor_receiver::config::Command::Run(config),
        }) => config,
        Ok(_) => panic!("{file}: parsed something other than run"),
        Err(e) => panic!("{file}: the container's env, as flags, does not parse: {e}\n{args:?}"),
    };
    if let Err(e) = config.validate() {
        panic!("{file}: the container's flags are refused: {e}");
    }
    // The process exits within drain delay + shutdown timeout: Kubernetes
    // must not SIGKILL it before.
    let grace = the_deployment(&docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: no terminationGracePeriodSeconds"));
    // /readyz turns 503 at SIGTERM: the probe must notice within the drain
    // delay, while the port still serves.
    let probe =
        &the_deployment(&docs)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    let notice = probe["periodSeconds"].as_u64().unwrap_or(10)
        * probe["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        std::time::Duration::from_secs(notice) < config.drain_delay,
        "{file}: the readiness probe notices a drain after {notice} s, not within the drain delay {:?}",
        config.drain_delay
    );
    let bound = config.drain_delay + config.shutdown_timeout;
    assert!(
        std::time::Duration::from_secs(grace) > bound,
        "{file}: terminationGracePeriodSeconds {grace} does not exceed drain delay + shutdown timeout ({bound:?})"
    );
}

#[test]
fn the_chart_s_env_vars_are_the_program_s_flags_and_parse() {
    let extra: BTreeSet<String> = values_all()["extraEnv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    check_env("default.yaml", &BTreeSet::new(), false);
    check_env("all.yaml", &extra, true);
}
