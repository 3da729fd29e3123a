#!/usr/bin/env python3
"""Structural checks of the rendered chart (run by hack/chart/validate.sh).

    check_rendered.py CHART DEFAULT_YAML ALL_YAML

DEFAULT_YAML and ALL_YAML are `helm template` output for the default values
(plus baseURL) and for hack/chart/values-all.yaml. A few more value sets are
rendered here in memory with the same Helm (hack/chart/helm.py). Checks:

- POD_NAME/POD_NAMESPACE from the downward API, the listen addresses, TLS_*
  iff tls.secretName, the container runs `run`, ports http 8080 / metrics 9090;
- the hardened pod and container securityContext, resources, probes on
  /healthz and /readyz (HTTPS when TLS is on), the read-only TLS mount;
- RBAC is exactly the expected rule set for each Secret access mode and scope,
  every Role/ClusterRole is bound to the Deployment's ServiceAccount and to
  nothing else;
- Service/ServiceMonitor/Ingress/PDB wiring, the CRDs equal files/crds.yaml
  (ours by default, Kargo's only with crds.install);
- invalid values are refused by values.schema.json and a missing baseURL by
  the template's own `required` message.

Prints one line per failed check and exits 1 if any failed.

The checks that need the program itself are Rust tests (tests/chart.rs, run
by make test after this script): the RBAC against the program's API requests
(those the end-to-end tests recorded, and those of each rendered
configuration), and the env vars against the flags of `kargo-harbor-receiver
run` (clap's Cli::command()).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import helm  # noqa: E402

RELEASE = "khr"
NAMESPACE = "kargo"
FULLNAME = "khr-kargo-harbor-receiver"
REQUIRED_MESSAGE = "baseURL is required"

failures: list[str] = []
passed = 0


def expect(cond: bool, what: str) -> None:
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)


def load(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    return load(helm.template(chart, values, name=RELEASE, namespace=NAMESPACE))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}, found {len(found)}")
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [d["kind"] for d in docs]


# ---------------------------------------------------------------------------


def check_pod(docs: list[dict[str, Any]], label: str, *, tls: bool) -> None:
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    expect(psc.get("runAsNonRoot") is True, f"{label}: pod runAsNonRoot")
    expect(psc.get("runAsUser") == 65532, f"{label}: pod runAsUser 65532")
    expect((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{label}: pod seccomp RuntimeDefault")
    expect(pod.get("serviceAccountName") == FULLNAME, f"{label}: serviceAccountName")
    expect(pod.get("automountServiceAccountToken") is True, f"{label}: token mounted (the program talks to the API)")
    expect(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), f"{label}: no host namespaces")
    expect(dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
           f"{label}: selector matches the pod labels")

    containers = pod.get("containers", []) + pod.get("initContainers", [])
    expect(len(pod.get("containers", [])) == 1, f"{label}: one container")
    for c in containers:
        where = f"{label}: container {c['name']}"
        sc = c.get("securityContext") or {}
        expect(sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
        expect(sc.get("runAsUser") == 65532, f"{where}: runAsUser 65532")
        expect(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        expect(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
        expect(sc.get("privileged") in (None, False), f"{where}: not privileged")
        caps = sc.get("capabilities") or {}
        expect("ALL" in (caps.get("drop") or []), f"{where}: capabilities drop ALL")
        expect(not caps.get("add"), f"{where}: no added capabilities")
        expect((sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
        res = c.get("resources") or {}
        expect({"cpu", "memory"} <= set((res.get("requests") or {})), f"{where}: cpu/memory requests")
        expect("memory" in (res.get("limits") or {}), f"{where}: memory limit")

    c = pod["containers"][0]
    expect(c.get("args") == ["run"], f"{label}: container runs `kargo-harbor-receiver run` (args [run])")
    expect("command" not in c, f"{label}: the image's ENTRYPOINT is the binary")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    expect(ports == {"http": 8080, "metrics": 9090}, f"{label}: ports http 8080, metrics 9090, got {ports}")
    scheme = "HTTPS" if tls else "HTTP"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        expect(get.get("path") == path and get.get("port") == "http" and get.get("scheme") == scheme,
               f"{label}: {probe} {scheme} {path} on port http, got {get}")

    env = {e["name"]: e for e in c.get("env", [])}
    names = [e["name"] for e in c.get("env", [])]
    expect(len(names) == len(set(names)), f"{label}: no duplicate env vars")
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        got = ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        expect(got == field, f"{label}: {name} from the downward API ({field})")
    expect((env.get("LISTEN_ADDRESS") or {}).get("value") == "0.0.0.0:8080", f"{label}: LISTEN_ADDRESS")
    expect((env.get("METRICS_LISTEN_ADDRESS") or {}).get("value") == "0.0.0.0:9090", f"{label}: METRICS_LISTEN_ADDRESS")

    expect(("TLS_CERT_PATH" in env) == tls and ("TLS_KEY_PATH" in env) == tls, f"{label}: TLS_* env iff tls.secretName")
    if tls:
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        m = mounts.get("tls") or {}
        expect(m.get("readOnly") is True, f"{label}: TLS volume mounted read-only")
        expect(env["TLS_CERT_PATH"]["value"] == f"{m.get('mountPath')}/tls.crt", f"{label}: TLS_CERT_PATH in the mount")
        expect(env["TLS_KEY_PATH"]["value"] == f"{m.get('mountPath')}/tls.key", f"{label}: TLS_KEY_PATH in the mount")
        expect("secret" in (vols.get("tls") or {}), f"{label}: TLS volume is a Secret")
    else:
        expect(not c.get("volumeMounts") and not pod.get("volumes"), f"{label}: no volumes without TLS")


def rule_set(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str, str, tuple[str, ...]]]:
    """(kind, namespace, apiGroup, resource, verb, resourceNames) for every rule."""
    out = set()
    for d in docs:
        if d["kind"] not in ("Role", "ClusterRole"):
            continue
        ns = d["metadata"].get("namespace", "")
        for r in d.get("rules") or []:
            for g in r.get("apiGroups", []):
                for res in r.get("resources", []):
                    for v in r.get("verbs", []):
                        out.add((d["kind"], ns, g, res, v, tuple(r.get("resourceNames") or ())))
    return out


def expected_rules(*, secret_verbs: list[str], secret_namespaces: list[str], lease: str, registrations: bool = True):
    K = "kargo.akuity.io"
    R = "kargo-harbor-receiver.io"
    rules = set()
    if registrations:
        for v in ("list", "watch", "patch"):
            rules.add(("ClusterRole", "", R, "harborwebhookregistrations", v, ()))
        rules.add(("ClusterRole", "", R, "harborwebhookregistrations/status", "patch", ()))
    for res in ("projectconfigs", "clusterconfigs", "warehouses"):
        for v in ("list", "watch"):
            rules.add(("ClusterRole", "", K, res, v, ()))
    rules.add(("ClusterRole", "", K, "warehouses", "patch", ()))
    rules.add(("ClusterRole", "", K, "projectconfigs/status", "patch", ()))
    rules.add(("ClusterRole", "", K, "clusterconfigs/status", "patch", ()))
    rules.add(("ClusterRole", "", "events.k8s.io", "events", "create", ()))
    rules.add(("ClusterRole", "", "events.k8s.io", "events", "patch", ()))
    for v in secret_verbs:
        if secret_namespaces:
            for ns in secret_namespaces:
                rules.add(("Role", ns, "", "secrets", v, ()))
        else:
            rules.add(("ClusterRole", "", "", "secrets", v, ()))
    rules.add(("Role", NAMESPACE, "coordination.k8s.io", "leases", "create", ()))
    rules.add(("Role", NAMESPACE, "coordination.k8s.io", "leases", "get", (lease,)))
    rules.add(("Role", NAMESPACE, "coordination.k8s.io", "leases", "update", (lease,)))
    return rules


def check_rbac(docs: list[dict[str, Any]], label: str, *, secret_access: str, secret_namespaces: list[str], lease: str,
               registrations: bool = True) -> None:
    """The exact rule set, and the bindings; tests/chart.rs checks the program's requests against it."""
    verbs = ["get"] if secret_access == "get" else ["get", "list", "watch"]
    want = expected_rules(secret_verbs=verbs, secret_namespaces=secret_namespaces, lease=lease, registrations=registrations)
    got = rule_set(docs)
    expect(got == want, f"{label}: RBAC rules differ; extra {sorted(got - want)}, missing {sorted(want - got)}")
    for d in docs:
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            subjects = d.get("subjects") or []
            expect(subjects == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}],
                   f"{label}: {d['kind']} {d['metadata']['name']} binds only our ServiceAccount")
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs if d["kind"] in ("Role", "ClusterRole")}
    bound = set()
    for d in docs:
        if d["kind"] == "ClusterRoleBinding":
            bound.add((d["roleRef"]["kind"], "", d["roleRef"]["name"]))
        elif d["kind"] == "RoleBinding":
            ns = d["metadata"]["namespace"] if d["roleRef"]["kind"] == "Role" else ""
            bound.add((d["roleRef"]["kind"], ns, d["roleRef"]["name"]))
    expect(roles == bound, f"{label}: every role is bound and every binding has its role ({roles ^ bound})")


def check_common(docs: list[dict[str, Any]], label: str) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for d in docs:
        meta = d["metadata"]
        name = f"{d['kind']}/{meta.get('name')}"
        if d["kind"] in cluster_scoped:
            expect("namespace" not in meta, f"{label}: {name} is cluster-scoped")
        else:
            expect(bool(meta.get("namespace")), f"{label}: {name} has a namespace")
        labels = meta.get("labels") or {}
        expect(labels.get("app.kubernetes.io/name") == "kargo-harbor-receiver"
               and labels.get("app.kubernetes.io/instance") == RELEASE
               and labels.get("app.kubernetes.io/managed-by") == "Helm",
               f"{label}: {name} carries the chart's labels")
    svc = one(docs, "Service")
    dep = one(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(svc["spec"]["selector"].items() <= pod_labels.items(), f"{label}: Service selects the pods")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    expect(sports.get("http", {}).get("targetPort") == "http", f"{label}: Service http -> container port http")
    expect(sports.get("metrics", {}).get("targetPort") == "metrics", f"{label}: Service metrics -> container port metrics")
    sa = one(docs, "ServiceAccount")
    expect(sa["metadata"]["name"] == FULLNAME, f"{label}: ServiceAccount name")


def check_default(docs: list[dict[str, Any]]) -> None:
    label = "default"
    check_common(docs, label)
    check_pod(docs, label, tls=False)
    dep = one(docs, "Deployment")
    expect(dep["spec"]["replicas"] == 2, "default: 2 replicas")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    expect(env.get("EXTERNAL_WEBHOOK_SERVER_BASE_URL") == "https://kargo-webhooks.example.com", "default: base URL from baseURL")
    expect(env.get("SECRET_ACCESS") == "watch", "default: SECRET_ACCESS watch")
    expect("WATCH_NAMESPACES" not in env, "default: no WATCH_NAMESPACES (cluster-wide)")
    spread = dep["spec"]["template"]["spec"].get("topologySpreadConstraints") or []
    expect(len(spread) == 1 and spread[0]["topologyKey"] == "kubernetes.io/hostname"
           and spread[0]["whenUnsatisfiable"] == "ScheduleAnyway", "default: soft spread across nodes")
    pdb = one(docs, "PodDisruptionBudget")
    expect(pdb["spec"]["minAvailable"] == 1, "default: PDB minAvailable 1")
    expect(pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(), "default: PDB selects the pods")
    for kind in ("Ingress", "ServiceMonitor", "NetworkPolicy"):
        expect(kind not in kinds(docs), f"default: no {kind}")
    crds = [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"]
    expect(crds == ["harborwebhookregistrations.kargo-harbor-receiver.io"],
           f"default: only our own CRD, not Kargo's ({crds})")
    expect(env.get("REGISTRATIONS") == "true", "default: REGISTRATIONS true")
    check_rbac(docs, label, secret_access="watch", secret_namespaces=[], lease=FULLNAME)


def check_all(docs: list[dict[str, Any]], values: dict[str, Any]) -> None:
    label = "all"
    check_common(docs, label)
    check_pod(docs, label, tls=True)
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    expect(env.get("SECRET_ACCESS") == "get", "all: SECRET_ACCESS get")
    expect(env.get("WATCH_NAMESPACES") == ",".join(values["watchNamespaces"]), "all: WATCH_NAMESPACES joined by commas")
    expect(env.get("LEASE_NAME") == values["leaderElection"]["leaseName"], "all: LEASE_NAME")
    expect(any(e["name"] == "REFRESH_CONCURRENCY_HINT" for e in c["env"]), "all: extraEnv appended")
    expect(c["image"] == f"{values['image']['repository']}@{values['image']['digest']}", "all: image pinned by digest")
    expect(dep["spec"]["replicas"] == values["replicas"], "all: replicas")
    expect(pod.get("affinity") == values["affinity"] and pod.get("tolerations") == values["tolerations"], "all: affinity/tolerations copied")

    ing = one(docs, "Ingress")
    rule = ing["spec"]["rules"][0]
    path = rule["http"]["paths"][0]
    expect(rule["host"] == "kargo.example.com", "all: Ingress host from baseURL")
    expect(path["path"] == "/webhook/", "all: Ingress path is baseURL's path (the receiver routes on it)")
    expect(path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}, "all: Ingress -> Service http")
    tls = ing["spec"].get("tls") or []
    expect(len(tls) == 1 and tls[0]["hosts"] == ["kargo.example.com"] and tls[0].get("secretName"), "all: Ingress TLS")
    expect(ing["spec"].get("ingressClassName") == "nginx", "all: ingressClassName")

    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service")
    expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "all: ServiceMonitor monitoring.coreos.com/v1")
    expect(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "all: ServiceMonitor selects the Service")
    ep = sm["spec"]["endpoints"][0]
    expect(ep["port"] == "metrics" and ep["path"] == "/metrics", "all: ServiceMonitor scrapes metrics:/metrics")
    expect(sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE], "all: ServiceMonitor namespace")

    np = one(docs, "NetworkPolicy")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items(), "all: NetworkPolicy selects the pods")
    expect(np["spec"]["policyTypes"] == ["Ingress"], "all: NetworkPolicy restricts ingress only")
    by_port = {r["ports"][0]["port"]: r.get("from") for r in np["spec"]["ingress"]}
    expect(by_port == {"http": values["networkPolicy"]["webhookFrom"], "metrics": values["networkPolicy"]["metricsFrom"]},
           "all: NetworkPolicy opens the webhook and metrics ports to their peers only")
    cport_names = {p["name"] for p in c["ports"]}
    expect(set(by_port) == cport_names, "all: NetworkPolicy ports are the container's named ports")

    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    shipped = [d for d in load((REPO / "charts/kargo-harbor-receiver/files/crds.yaml").read_text()) if d]
    expect(len(shipped) >= 3, "files/crds.yaml holds the CRDs")
    expect(sorted(d["metadata"]["name"] for d in crds) == sorted(d["metadata"]["name"] for d in shipped),
           "all: every CRD of files/crds.yaml is installed")
    by_name = {d["metadata"]["name"]: d for d in crds}
    for s in shipped:
        r = by_name.get(s["metadata"]["name"], {})
        expect(r.get("spec") == s["spec"], f"all: CRD {s['metadata']['name']} spec is files/crds.yaml's, unchanged")
        expect((r.get("metadata", {}).get("annotations") or {}).get("helm.sh/resource-policy") == "keep",
               f"all: CRD {s['metadata']['name']} kept on uninstall")
    expect(not any(d["metadata"]["name"].endswith("kargo.akuity.io") and d["kind"] != "CustomResourceDefinition" for d in docs), "all: sanity")
    check_rbac(docs, label, secret_access="get", secret_namespaces=values["watchNamespaces"], lease=values["leaderElection"]["leaseName"])


def check_variants(chart: str) -> None:
    base = {"baseURL": "https://kargo-webhooks.example.com"}

    docs = render(chart, {**base, "secretAccess": "get"})
    check_rbac(docs, "secretAccess=get", secret_access="get", secret_namespaces=[], lease=FULLNAME)

    docs = render(chart, {**base, "watchNamespaces": ["kargo-demo"]})
    check_rbac(docs, "watchNamespaces", secret_access="watch", secret_namespaces=["kargo-demo"], lease=FULLNAME)

    # Two releases in one cluster: cluster-scoped names never collide, whether
    # the releases share a name (other namespaces) or a namespace. A CRD is a
    # type, one per cluster: the first release installs it, every other one
    # sets crds.installRegistration=false (values.yaml says so).
    def cluster_names(name: str, namespace: str, values: dict[str, Any]) -> set[tuple[str, str]]:
        out = load(helm.template(chart, values, name=name, namespace=namespace))
        return {(d["kind"], d["metadata"]["name"]) for d in out if "namespace" not in d["metadata"]}
    one_release = cluster_names(RELEASE, NAMESPACE, base)
    expect({k for k, _ in one_release} == {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"},
           "cluster-scoped: the ClusterRole, its binding and our CRD")
    second = {**base, "crds": {"installRegistration": False}}
    for other in [(RELEASE, "kargo-staging"), ("other", NAMESPACE), ("kargo-harbor-receiver", NAMESPACE)]:
        expect(not one_release & cluster_names(*other, second),
               f"two releases: {other} (crds.installRegistration=false) shares no cluster-scoped name with {(RELEASE, NAMESPACE)}")

    docs = render(chart, {**base, "networkPolicy": {"enabled": True}})
    np = one(docs, "NetworkPolicy")
    expect(all("from" not in r for r in np["spec"]["ingress"]), "networkPolicy without peers: ports open to any source")

    docs = render(chart, {**base, "replicas": 1})
    expect("PodDisruptionBudget" not in kinds(docs), "replicas=1: no PDB")

    docs = render(chart, {**base, "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}})
    expect(not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"} & set(kinds(docs)), "rbac.create=false: no RBAC, no SA")
    expect(one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing", "serviceAccount.name used")

    docs = render(chart, {"baseURL": "https://kargo.example.com:8443", "ingress": {"enabled": True}})
    rule = one(docs, "Ingress")["spec"]["rules"][0]
    expect(rule["host"] == "kargo.example.com" and rule["http"]["paths"][0]["path"] == "/", "ingress: host without port, path / by default")
    expect("tls" not in one(docs, "Ingress")["spec"], "ingress: no TLS unless asked")

    docs = render(chart, {**base, "registration": {"enabled": False}, "crds": {"installRegistration": False}})
    check_rbac(docs, "registration.enabled=false", secret_access="watch", secret_namespaces=[], lease=FULLNAME,
               registrations=False)
    expect("CustomResourceDefinition" not in kinds(docs), "crds.installRegistration=false: no CRD")
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    expect(env.get("REGISTRATIONS") == "false", "registration.enabled=false: REGISTRATIONS false")

    # Beside Kargo's external webhooks server: one host and base path,
    # <base>/harbor/ here, everything else to Kargo's Service.
    for base_url, harbor_path, rest_path in [
        ("https://kargo.example.com/webhook", "/webhook/harbor/", "/webhook"),
        ("https://kargo.example.com/webhook/", "/webhook/harbor/", "/webhook/"),
        ("https://kargo.example.com", "/harbor/", "/"),
    ]:
        docs = render(chart, {"baseURL": base_url, "ingress": {"enabled": True, "kargoService": {"name": "kargo-external-webhooks-server"}}})
        paths = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
        expect(
            paths == [
                {"path": harbor_path, "pathType": "Prefix", "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}}},
                {"path": rest_path, "pathType": "Prefix", "backend": {"service": {"name": "kargo-external-webhooks-server", "port": {"number": 443}}}},
            ],
            f"ingress beside Kargo ({base_url}): harbor/ here, the rest to Kargo: {paths}",
        )

    docs = render(chart, {**base, "crds": {"install": True, "keep": False}})
    for d in docs:
        if d["kind"] == "CustomResourceDefinition":
            expect("helm.sh/resource-policy" not in (d["metadata"].get("annotations") or {}), "crds.keep=false: no keep annotation")

    # Refusals: the schema for malformed values, `required` for a missing baseURL.
    def refused(values: dict[str, Any], needle: str, what: str) -> None:
        try:
            helm.template(chart, values, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmFailure as exc:
            expect(needle in str(exc), f"{what}: refused, but the message lacks {needle!r}: {exc}")
        else:
            expect(False, f"{what}: rendered, should have been refused")

    refused({}, REQUIRED_MESSAGE, "no baseURL")
    refused({"baseURL": ""}, "baseURL", "empty baseURL")
    refused({"baseURL": "kargo.example.com"}, "/baseURL", "baseURL without scheme")
    refused({"baseURL": "ftp://kargo.example.com"}, "/baseURL", "ftp baseURL")
    refused({**base, "secretAccess": "list"}, "/secretAccess", "secretAccess=list")
    refused({**base, "logFormat": "xml"}, "/logFormat", "logFormat=xml")
    for bad in ["warning", "INFO", "info,", "kube=loud", ""]:
        refused({**base, "logLevel": bad}, "/logLevel", f"logLevel={bad!r}")
    refused({**base, "secretResync": "soon"}, "/secretResync", "secretResync=soon")
    refused({**base, "watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces", "bad namespace")
    refused({**base, "replicaCount": 3}, "replicaCount", "unknown key")
    refused({**base, "securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem", "writable root fs")
    refused({**base, "securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation", "privilege escalation")
    refused({**base, "podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot", "root pod")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    chart, default_yaml, all_yaml = argv[1:]
    values_all = yaml.safe_load((HERE / "values-all.yaml").read_text())
    steps: list[tuple[str, Callable[[], None]]] = [
        ("default", lambda: check_default(load(Path(default_yaml).read_text()))),
        ("all", lambda: check_all(load(Path(all_yaml).read_text()), values_all)),
        ("variants", lambda: check_variants(chart)),
    ]
    for name, step in steps:
        try:
            step()
        except (AssertionError, KeyError, IndexError, TypeError) as exc:
            failures.append(f"{name}: check crashed: {type(exc).__name__}: {exc}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"chart-checks: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
