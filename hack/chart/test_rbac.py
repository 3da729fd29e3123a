"""Unit tests of hack/chart/rbac.py.

    python3 -m unittest discover -s hack/chart -p 'test_*.py'

Needs only PyYAML (no Helm): the manifests below are written by hand in the
shape the chart renders.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rbac  # noqa: E402

MANIFESTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: khr, namespace: kargo}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: khr}
rules:
  - apiGroups: ["kargo.akuity.io"]
    resources: ["projectconfigs", "clusterconfigs", "warehouses"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["kargo.akuity.io"]
    resources: ["warehouses"]
    verbs: ["patch"]
  - apiGroups: ["kargo.akuity.io"]
    resources: ["projectconfigs/status", "clusterconfigs/status"]
    verbs: ["patch"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: khr}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: khr}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: khr-lease, namespace: kargo}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["khr"]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: khr-lease, namespace: kargo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-lease}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: khr, namespace: kargo}
spec:
  template:
    spec:
      serviceAccountName: khr
      containers: [{name: receiver, image: x}]
"""

# What the program does in a normal run: discovery, the four watches, one
# Secret read, the Lease dance, a status write, a refresh and an event.
PROGRAM_REQUESTS = [
    {"method": "GET", "path": "/version"},
    {"method": "GET", "path": "/apis"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/projectconfigs", "query": "limit=500"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/projectconfigs", "query": "watch=true&resourceVersion=5&allowWatchBookmarks=true"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/clusterconfigs", "query": ""},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/clusterconfigs", "query": {"watch": "true"}},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/warehouses"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/warehouses?watch=1&resourceVersion=9"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/warehouses/w1"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/projectconfigs/kargo-demo"},
    {"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/clusterconfigs/cluster"},
    {"method": "GET", "path": "/api/v1/secrets"},
    {"method": "GET", "path": "/api/v1/secrets", "query": "watch=true"},
    {"method": "GET", "path": "/api/v1/namespaces/kargo-demo/secrets/harbor-wh-secret"},
    {"method": "GET", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases/khr"},
    {"method": "POST", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases"},
    {"method": "PUT", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases/khr"},
    {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/projectconfigs/kargo-demo/status"},
    {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/clusterconfigs/cluster/status"},
    {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/warehouses/w1"},
    {"method": "POST", "path": "/apis/events.k8s.io/v1/namespaces/kargo-demo/events"},
]


def docs(text: str = MANIFESTS):
    return [d for d in yaml.safe_load_all(text) if d]


class RequestAttributesTest(unittest.TestCase):
    def attrs(self, method, path, query=None):
        a = rbac.request_attributes(method, path, query)
        return (a.verb, a.api_group, a.full_resource, a.namespace, a.name)

    def test_verbs_follow_the_api_server(self):
        cases = [
            (("GET", "/api/v1/namespaces/a/secrets/s"), ("get", "", "secrets", "a", "s")),
            (("HEAD", "/api/v1/namespaces/a/secrets/s"), ("get", "", "secrets", "a", "s")),
            (("GET", "/api/v1/namespaces/a/secrets"), ("list", "", "secrets", "a", "")),
            (("GET", "/api/v1/secrets", "watch=true"), ("watch", "", "secrets", "", "")),
            (("GET", "/api/v1/secrets", "watch=false"), ("list", "", "secrets", "", "")),
            (("GET", "/api/v1/watch/namespaces/a/secrets"), ("watch", "", "secrets", "a", "")),
            (("POST", "/api/v1/namespaces/a/secrets"), ("create", "", "secrets", "a", "")),
            (("PUT", "/api/v1/namespaces/a/secrets/s"), ("update", "", "secrets", "a", "s")),
            (("PATCH", "/api/v1/namespaces/a/secrets/s"), ("patch", "", "secrets", "a", "s")),
            (("DELETE", "/api/v1/namespaces/a/secrets/s"), ("delete", "", "secrets", "a", "s")),
            (("DELETE", "/api/v1/namespaces/a/secrets"), ("deletecollection", "", "secrets", "a", "")),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                self.assertEqual(self.attrs(*args), want)

    def test_groups_subresources_and_cluster_scope(self):
        self.assertEqual(
            self.attrs("PATCH", "/apis/kargo.akuity.io/v1alpha1/namespaces/p/projectconfigs/p/status"),
            ("patch", "kargo.akuity.io", "projectconfigs/status", "p", "p"),
        )
        self.assertEqual(
            self.attrs("PATCH", "/apis/kargo.akuity.io/v1alpha1/clusterconfigs/cluster/status"),
            ("patch", "kargo.akuity.io", "clusterconfigs/status", "", "cluster"),
        )
        # A Namespace object lives in itself; its status is a subresource.
        self.assertEqual(self.attrs("GET", "/api/v1/namespaces/foo"), ("get", "", "namespaces", "foo", "foo"))
        self.assertEqual(
            self.attrs("PUT", "/api/v1/namespaces/foo/finalize"), ("update", "", "namespaces/finalize", "foo", "foo")
        )

    def test_field_selector_on_name_narrows_list_and_watch(self):
        self.assertEqual(
            self.attrs("GET", "/apis/coordination.k8s.io/v1/namespaces/k/leases", "fieldSelector=metadata.name%3Dl&watch=true"),
            ("watch", "coordination.k8s.io", "leases", "k", "l"),
        )
        self.assertEqual(
            self.attrs("GET", "/api/v1/namespaces/a/secrets", {"fieldSelector": "metadata.name==s"}),
            ("list", "", "secrets", "a", "s"),
        )
        self.assertEqual(
            self.attrs("GET", "/api/v1/namespaces/a/secrets", {"fieldSelector": "metadata.name!=s"}),
            ("list", "", "secrets", "a", ""),
        )

    def test_discovery_and_other_paths_are_non_resource(self):
        for path in ["/api", "/api/v1", "/apis", "/apis/kargo.akuity.io", "/apis/kargo.akuity.io/v1alpha1", "/version", "/openapi/v3"]:
            with self.subTest(path=path):
                a = rbac.request_attributes("GET", path)
                self.assertFalse(a.resource_request)
                self.assertTrue(rbac.allowed_by_default(a))
        self.assertFalse(rbac.allowed_by_default(rbac.request_attributes("GET", "/metrics")))


class CheckTest(unittest.TestCase):
    def test_the_program_s_requests_are_all_allowed(self):
        report = rbac.check(docs(), PROGRAM_REQUESTS)
        self.assertEqual(report.denied, [], report.to_text())
        self.assertEqual(report.subject, ("kargo", "khr"))
        self.assertEqual(report.requests, len(PROGRAM_REQUESTS))
        self.assertEqual(report.unused, [], report.to_text())

    def test_unused_verbs_are_reported(self):
        requests = [r for r in PROGRAM_REQUESTS if r["method"] != "POST" or "events" not in r["path"]]
        requests = [r for r in requests if not r["path"].startswith("/api/v1/namespaces/kargo-demo/secrets/")]
        report = rbac.check(docs(), requests)
        self.assertTrue(report.ok)
        unused = {(g.rule.origin, group, resource, verb) for g, group, resource, verb in report.unused}
        self.assertEqual(
            unused,
            {
                ("ClusterRole/khr", "events.k8s.io", "events", "create"),
                ("ClusterRole/khr", "", "secrets", "get"),
            },
        )

    def test_forbidden_requests(self):
        forbidden = [
            # The Lease is replaced (PUT), never patched.
            {"method": "PATCH", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases/khr"},
            # resourceNames: only our own Lease.
            {"method": "PUT", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases/other"},
            # Events are created, never patched.
            {"method": "PATCH", "path": "/apis/events.k8s.io/v1/namespaces/kargo-demo/events/e.1"},
            # Role in "kargo" grants nothing in another namespace.
            {"method": "POST", "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases"},
            # create with a name-restricted rule only: create carries no name.
            {"method": "GET", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases"},
            # Core events are not granted (the Recorder speaks events.k8s.io).
            {"method": "POST", "path": "/api/v1/namespaces/kargo-demo/events"},
            {"method": "PUT", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/p/warehouses/w"},
            {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/p/warehouses/w/status"},
            {"method": "DELETE", "path": "/api/v1/namespaces/a/secrets/s"},
            {"method": "GET", "path": "/api/v1/configmaps"},
            {"method": "GET", "path": "/metrics"},
        ]
        report = rbac.check(docs(), PROGRAM_REQUESTS + forbidden)
        self.assertFalse(report.ok)
        self.assertEqual([req for req, _ in report.denied], forbidden)

    def test_namespaced_roles_grant_only_in_their_namespace(self):
        text = MANIFESTS.replace(
            """  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch"]
""",
            "",
        ) + """
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: khr-secrets, namespace: kargo-demo}
rules: [{apiGroups: [""], resources: ["secrets"], verbs: ["get"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: khr-secrets, namespace: kargo-demo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: khr-secrets}
subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]
"""
        ok = {"method": "GET", "path": "/api/v1/namespaces/kargo-demo/secrets/s"}
        other_ns = {"method": "GET", "path": "/api/v1/namespaces/kargo-other/secrets/s"}
        cluster_watch = {"method": "GET", "path": "/api/v1/secrets", "query": "watch=true"}
        ns_watch = {"method": "GET", "path": "/api/v1/namespaces/kargo-demo/secrets", "query": "watch=true"}
        report = rbac.check(docs(text), [ok, other_ns, cluster_watch, ns_watch])
        self.assertEqual([req for req, _ in report.denied], [other_ns, cluster_watch, ns_watch])

    def test_bindings_to_someone_else_do_not_count(self):
        text = MANIFESTS.replace("subjects: [{kind: ServiceAccount, name: khr, namespace: kargo}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role", "subjects: [{kind: ServiceAccount, name: khr, namespace: elsewhere}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role", 1)
        report = rbac.check(docs(text), [{"method": "GET", "path": "/api/v1/secrets"}])
        self.assertFalse(report.ok)

    def test_wildcards(self):
        text = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: wide}
rules:
  - {apiGroups: ["*"], resources: ["*/status"], verbs: ["patch"]}
  - {apiGroups: ["apps"], resources: ["*"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{kind: ServiceAccount, name: sa, namespace: ns}]
"""
        requests = [
            {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/p/projectconfigs/p/status"},
            {"method": "DELETE", "path": "/apis/apps/v1/namespaces/p/deployments/d"},
            {"method": "PATCH", "path": "/apis/kargo.akuity.io/v1alpha1/namespaces/p/projectconfigs/p"},
        ]
        report = rbac.check(docs(text), requests, subject=("ns", "sa"))
        self.assertEqual([req for req, _ in report.denied], requests[2:])
        self.assertEqual(report.unused, [])

    def test_user_agent_filter(self):
        requests = [
            {"method": "GET", "path": "/api/v1/configmaps", "userAgent": "kubectl/v1.32.4"},
            {"method": "GET", "path": "/api/v1/secrets", "userAgent": "kargo-harbor-receiver/0.1.0"},
        ]
        report = rbac.check(docs(), requests, user_agent=r"^kargo-harbor-receiver/")
        self.assertTrue(report.ok)
        self.assertEqual(report.requests, 1)


class EmulatorLogTest(unittest.TestCase):
    """testdata/emulator-requests.json is a real kube-emulator request log
    (GET /_emulator/requests): kubectl creating and listing Secrets, then
    requests shaped like the program's, sent without a User-Agent as kube-rs does."""

    def setUp(self):
        self.log = json.loads((Path(__file__).parent / "testdata" / "emulator-requests.json").read_text())

    def test_the_emulator_and_rbac_py_agree_on_verbs(self):
        for entry in self.log:
            if entry.get("verb") and entry["path"].startswith(("/api/", "/apis/")):
                with self.subTest(path=entry["path"], query=entry["query"]):
                    attrs = rbac.request_attributes(entry["method"], entry["path"], entry["query"])
                    self.assertEqual(attrs.verb, entry["verb"])
                    self.assertEqual(attrs.resource, entry["resource"])
                    if entry["resource"] != "namespaces":
                        # (For a Namespace object the API server's request
                        # namespace is its name; the emulator logs none.)
                        self.assertEqual(attrs.namespace, entry["namespace"] or "")

    def test_harness_requests_can_be_left_out(self):
        manifests = docs(MANIFESTS.replace('resourceNames: ["khr"]', 'resourceNames: ["khr-kargo-harbor-receiver"]'))
        report = rbac.check(manifests, self.log, exclude_user_agent=r"^kubectl/")
        self.assertEqual(report.requests, 11)  # the control endpoint and kubectl's 2 left out
        self.assertEqual(report.mismatches, [])
        denied = sorted(a.describe() for _, a in report.denied)
        self.assertEqual(
            denied,
            [
                'deletecollection "" configmaps (namespace kargo-demo)',
                'get "" namespaces kargo (namespace kargo)',
                "patch coordination.k8s.io leases khr-kargo-harbor-receiver (namespace kargo)",
            ],
        )
        with_kubectl = rbac.check(manifests, self.log)
        self.assertIn('create "" secrets (namespace kargo-demo)', [a.describe() for _, a in with_kubectl.denied])

    def test_a_verb_disagreement_is_a_warning(self):
        entry = {"method": "GET", "path": "/api/v1/secrets", "query": "watch=true", "verb": "list"}
        report = rbac.check(docs(), [entry])
        self.assertTrue(report.ok)
        self.assertEqual(len(report.mismatches), 1)
        self.assertIn("WARNING", report.to_text())


class CliTest(unittest.TestCase):
    def run_cli(self, requests, *extra):
        with tempfile.TemporaryDirectory() as tmp:
            manifests = Path(tmp, "m.yaml")
            manifests.write_text(MANIFESTS)
            log = Path(tmp, "r.json")
            log.write_text(json.dumps(requests))
            out = io.StringIO()
            err = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = rbac.main([str(manifests), str(log), *extra])
            return code, out.getvalue(), err.getvalue()

    def test_exit_codes(self):
        code, out, _ = self.run_cli(PROGRAM_REQUESTS)
        self.assertEqual(code, 0, out)
        self.assertIn("0 forbidden", out)

        code, out, _ = self.run_cli(PROGRAM_REQUESTS[:3])
        self.assertEqual(code, 0)
        self.assertIn("unused", out)
        code, _, _ = self.run_cli(PROGRAM_REQUESTS[:3], "--fail-on-unused")
        self.assertEqual(code, 1)

        code, out, _ = self.run_cli([{"method": "PATCH", "path": "/apis/coordination.k8s.io/v1/namespaces/kargo/leases/khr"}])
        self.assertEqual(code, 1)
        self.assertIn("FORBIDDEN", out)
        self.assertIn("patch coordination.k8s.io leases khr (namespace kargo)", out)

        code, out, _ = self.run_cli(PROGRAM_REQUESTS, "--json")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["serviceAccount"], "kargo/khr")

        code, _, err = self.run_cli({"not": "a list"})
        self.assertEqual(code, 2)
        self.assertIn("JSON list", err)
        code, _, err = self.run_cli([{"path": "/api"}])
        self.assertEqual(code, 2)

    def test_namespace_name_options(self):
        for option in ("--lease", "--service-account"):
            with self.subTest(option=option), self.assertRaises(SystemExit) as exit:
                self.run_cli(PROGRAM_REQUESTS, option, "no-slash")
            self.assertEqual(exit.exception.code, 2)
        _, out, _ = self.run_cli(PROGRAM_REQUESTS, "--service-account", "kargo/khr", "--lease", "kargo/khr")
        self.assertIn("ServiceAccount kargo/khr:", out)
        self.assertIn("Lease kargo/khr checked as default/kargo-harbor-receiver", out)


# The chart's Deployment tells the program its Lease through the environment.
WITH_LEASE_ENV = MANIFESTS.replace(
    "containers: [{name: receiver, image: x}]",
    """containers:
        - name: receiver
          image: x
          env:
            - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
            - {name: LEASE_NAME, value: khr}""",
)

# The Lease dance of a test run: --lease-namespace default, default name.
TEST_LEASE_REQUESTS = [
    {"method": "GET", "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases/kargo-harbor-receiver"},
    {"method": "POST", "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases"},
    {"method": "PUT", "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases/kargo-harbor-receiver"},
]


class LeaseTest(unittest.TestCase):
    def test_the_chart_s_lease_comes_from_the_deployment(self):
        self.assertEqual(rbac.chart_lease(docs(WITH_LEASE_ENV)), ("kargo", "khr"))
        self.assertEqual(rbac.chart_lease(docs()), ("default", "kargo-harbor-receiver"))

    def test_the_log_s_lease_is_checked_as_the_chart_s(self):
        manifests = docs(WITH_LEASE_ENV)
        self.assertEqual(len(rbac.check(manifests, TEST_LEASE_REQUESTS).denied), 3)
        report = rbac.check(manifests, TEST_LEASE_REQUESTS, lease=("default", "kargo-harbor-receiver"))
        self.assertTrue(report.ok, report.to_text())
        self.assertIn("checked as kargo/khr", report.to_text())
        # Another Lease, or the same name elsewhere, stays as it is.
        others = [
            {"method": "PUT", "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases/someone-else"},
            {"method": "PUT", "path": "/apis/coordination.k8s.io/v1/namespaces/other/leases/kargo-harbor-receiver"},
        ]
        report = rbac.check(manifests, others, lease=("default", "kargo-harbor-receiver"))
        self.assertEqual(len(report.denied), 2)


class LogFilesTest(unittest.TestCase):
    """target/e2e-requests/: one JSON file per end-to-end test."""

    def test_a_directory_of_logs(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "a-1-0.json").write_text(json.dumps(PROGRAM_REQUESTS[:10]))
            Path(tmp, "b-2-0.json").write_text(json.dumps(PROGRAM_REQUESTS[10:]))
            Path(tmp, "notes.txt").write_text("not a log")
            requests, files = rbac.load_requests([tmp])
            self.assertEqual((len(requests), files), (len(PROGRAM_REQUESTS), 2))
            self.assertEqual(requests[0][rbac.SOURCE], "a-1-0.json")
            self.assertEqual(requests[-1][rbac.SOURCE], "b-2-0.json")
            # Files and directories mix.
            single = str(Path(tmp, "a-1-0.json"))
            self.assertEqual(rbac.load_requests([tmp, single])[1], 3)
            empty = Path(tmp, "empty")
            empty.mkdir()
            with self.assertRaisesRegex(ValueError, "no \\*.json files"):
                rbac.load_requests([str(empty)])

    def test_a_forbidden_request_names_its_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "m.yaml").write_text(MANIFESTS)
            logs = Path(tmp, "logs")
            logs.mkdir()
            Path(logs, "ok-1-0.json").write_text(json.dumps(PROGRAM_REQUESTS))
            bad = {"method": "PATCH", "path": "/apis/events.k8s.io/v1/namespaces/p/events/e1", "injectedFault": True}
            Path(logs, "faults-1-1.json").write_text(json.dumps([bad, bad]))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = rbac.main([str(Path(tmp, "m.yaml")), str(logs)])
            self.assertEqual(code, 1)
            text = out.getvalue()
            self.assertIn("2 file(s) read", text)
            # Fault-injected requests count: the program made them.
            self.assertIn("patch events.k8s.io events: 2 request(s), e.g.", text)
            self.assertIn("in faults-1-1.json", text)


class EmptyLogTest(unittest.TestCase):
    def test_nothing_to_check_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "m.yaml").write_text(MANIFESTS)
            Path(tmp, "r.json").write_text(json.dumps([{"method": "GET", "path": "/api", "userAgent": "kubectl/1"}]))
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = rbac.main([str(Path(tmp, "m.yaml")), str(Path(tmp, "r.json")), "--user-agent", "^kargo-harbor-receiver/"])
            self.assertEqual(code, 2)
            self.assertIn("no request left to check", err.getvalue())


if __name__ == "__main__":
    unittest.main()
