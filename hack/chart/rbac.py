#!/usr/bin/env python3
"""Check a log of Kubernetes API requests against the chart's RBAC.

Given rendered manifests (e.g. target/chart/default.yaml) and JSON lists of
API requests made by the program (e.g. the kube-emulator's request logs that
the end-to-end tests leave in target/e2e-requests/, one file per test):

    [{"method": "GET", "path": "/apis/kargo.akuity.io/v1alpha1/warehouses",
      "query": "watch=true&resourceVersion=12"}, ...]

each request is turned into the attributes the Kubernetes API server
authorizes (its RequestInfoFactory: API group, resource, subresource, verb,
namespace, name) and checked against the Roles and ClusterRoles bound to the
Deployment's ServiceAccount, the way the RBAC authorizer does. The report
lists every request that would be forbidden and every granted
(rule, group, resource, verb) that no request used.

    python3 hack/chart/rbac.py target/chart/default.yaml target/e2e-requests \
        --user-agent '^kargo-harbor-receiver/' --lease default/kargo-harbor-receiver

Each REQUESTS argument is a JSON file, a directory (every *.json in it) or
"-" (stdin). Every request counts, including those an injected fault
answered: the program made them, so it needs the permission.

Exit status: 0 when every request is allowed (unused grants are reported as
a warning but do not fail unless --fail-on-unused), 1 when a request is
forbidden, 2 on bad input or when no request was left to check.

--lease NAMESPACE/NAME: the log's program used this Lease (tests run with
their own --lease-namespace/--lease-name); its requests are checked as
requests on the Lease the rendered Deployment configures (LEASE_NAME, and
POD_NAMESPACE: the Deployment's namespace). Requests on any other Lease are
checked as they are.

"query" may be a string ("watch=true&limit=500"), an object ({"watch": "true"})
or absent; a "?query" left in "path" is understood too. Entries may carry a
"userAgent"/"user_agent" field: --user-agent REGEX keeps only the matching
ones, --exclude-user-agent REGEX drops the matching ones (e.g. '^kubectl/' to
leave out what a test harness did itself; kube-rs sends no User-Agent by
default). Requests to the kube-emulator's own control endpoints (/_emulator/)
are skipped. When an entry also carries the server's own idea of the verb
("verb", as the kube-emulator logs it), a disagreement is reported as a
warning: one of the two mappings is wrong. Non-resource paths that
every authenticated client may read (discovery, /version, /openapi, health)
are allowed as the default system:discovery and system:public-info-viewer
ClusterRoles do.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote

import yaml

# --------------------------------------------------------------------------
# Requests -> attributes (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go)
# --------------------------------------------------------------------------

API_PREFIXES = {"api", "apis"}
GROUPLESS_API_PREFIXES = {"api"}
# Subresources of a namespace that are addressed as /namespaces/{name}/{sub}.
NAMESPACE_SUBRESOURCES = {"status", "finalize"}

# Non-resource URLs granted to every authenticated user by default
# (ClusterRoles system:discovery, system:basic-user, system:public-info-viewer).
DEFAULT_NON_RESOURCE = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
    "/healthz",
    "/livez",
    "/readyz",
]

# Resource requests every authenticated user may make (system:basic-user).
DEFAULT_RESOURCE_GRANTS = [
    ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    ("authorization.k8s.io", "selfsubjectrulesreviews", "create"),
    ("authentication.k8s.io", "selfsubjectreviews", "create"),
]


@dataclass(frozen=True)
class Attributes:
    """What the API server authorizes for one request."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        if not self.resource_request:
            return f"{self.verb} {self.path} (non-resource)"
        group = self.api_group or '""'
        where = f"namespace {self.namespace}" if self.namespace else "cluster-wide"
        name = f" {self.name}" if self.name else ""
        return f"{self.verb} {group} {self.full_resource}{name} ({where})"


def _query_params(query: Any) -> dict[str, list[str]]:
    if query is None or query == "":
        return {}
    if isinstance(query, str):
        return parse_qs(query.lstrip("?"), keep_blank_values=True)
    if isinstance(query, dict):
        out: dict[str, list[str]] = {}
        for key, value in query.items():
            if isinstance(value, list):
                out[key] = [str(v) for v in value]
            elif isinstance(value, bool):
                out[key] = ["true" if value else "false"]
            else:
                out[key] = [str(value)]
        return out
    raise ValueError(f"query must be a string or an object, not {type(query).__name__}")


def request_attributes(method: str, path: str, query: Any = None) -> Attributes:
    """Map an HTTP request to authorization attributes like the API server does."""
    if "?" in path:
        path, _, inline = path.partition("?")
        params = _query_params(inline)
        for key, values in _query_params(query).items():
            params.setdefault(key, []).extend(values)
    else:
        params = _query_params(query)
    method = method.upper()
    path = unquote(path)
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []

    non_resource = Attributes(verb=method.lower(), path=path, resource_request=False)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        # /api, /apis, /apis/{group}, /version, /openapi/v3, /healthz ...
        return non_resource
    prefix, parts = parts[0], parts[1:]
    if prefix in GROUPLESS_API_PREFIXES:
        group = ""
    else:
        group, parts = parts[0], parts[1:]
    if len(parts) < 2:
        # /api/v1 or /apis/{group}/{version}: discovery documents.
        return non_resource
    version, parts = parts[0], parts[1:]

    verb_by_method = {
        "POST": "create",
        "GET": "get",
        "HEAD": "get",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }
    if parts[0] in {"watch", "proxy"}:
        # The special verbs in the path: /watch/... (deprecated) and /proxy/...
        verb, parts = parts[0], parts[1:]
    else:
        verb = verb_by_method.get(method, "")

    namespace = ""
    if parts and parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            # /namespaces/{ns}/{resource}/... addresses a namespaced resource;
            # /namespaces/{ns}[/status|/finalize] addresses the namespace itself.
            if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 and verb != "proxy" else ""
    if resource == "namespaces" and name:
        # The namespace of a Namespace object is its own name.
        namespace = name

    if not name and verb == "get":
        # No name: a collection. watch=true makes it a watch, else a list; a
        # fieldSelector metadata.name=X narrows either to the name X.
        verb = "watch" if _parse_bool(params.get("watch")) else "list"
        for selector in params.get("fieldSelector", []):
            for term in selector.split(","):
                match = re.fullmatch(r"\s*metadata\.name\s*==?\s*([^=!\s]+)\s*", term)
                if match:
                    name = match.group(1)
    if verb == "delete" and not name:
        verb = "deletecollection"
    if not verb:
        # An HTTP method the API server has no verb for (it would answer 405).
        verb = method.lower()
    return Attributes(
        verb=verb,
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


def _parse_bool(values: list[str] | None) -> bool:
    """strconv.ParseBool of the first value, as the API server reads ?watch=."""
    if not values:
        return False
    return values[0] in {"1", "t", "T", "TRUE", "true", "True"}


# --------------------------------------------------------------------------
# RBAC (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac)
# --------------------------------------------------------------------------


@dataclass
class Rule:
    origin: str  # "ClusterRole/x" or "Role/ns/x"
    index: int
    api_groups: list[str]
    resources: list[str]
    verbs: list[str]
    resource_names: list[str]
    non_resource_urls: list[str]

    def label(self) -> str:
        return f"{self.origin} rule {self.index}"


@dataclass
class Grant:
    """A rule bound to our subject, with the namespace it applies in ("" = all)."""

    rule: Rule
    namespace: str  # "" for ClusterRoleBinding: every namespace and cluster scope
    binding: str


@dataclass
class Policy:
    subject: tuple[str, str]  # (namespace, service account name)
    grants: list[Grant] = field(default_factory=list)


def load_manifests(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in paths:
        for doc in yaml.safe_load_all(Path(p).read_text()):
            if isinstance(doc, dict) and doc.get("kind"):
                if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
                    docs.extend(d for d in doc["items"] if isinstance(d, dict))
                else:
                    docs.append(doc)
    return docs


def _the_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart's one Deployment."""
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise ValueError(f"expected exactly one Deployment in the manifests, found {len(deployments)}")
    return deployments[0]


def find_subject(docs: list[dict[str, Any]], default_namespace: str = "default") -> tuple[str, str]:
    """The ServiceAccount the chart's Deployment runs as: (namespace, name)."""
    dep = _the_deployment(docs)
    ns = dep.get("metadata", {}).get("namespace") or default_namespace
    spec = dep.get("spec", {}).get("template", {}).get("spec", {})
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    return ns, name


def _subject_matches(subject: dict[str, Any], binding_ns: str, sa: tuple[str, str]) -> bool:
    kind = subject.get("kind")
    sa_ns, sa_name = sa
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return ns == sa_ns and subject.get("name") == sa_name
    if kind == "User":
        return subject.get("name") == f"system:serviceaccount:{sa_ns}:{sa_name}"
    if kind == "Group":
        return subject.get("name") in {
            "system:serviceaccounts",
            f"system:serviceaccounts:{sa_ns}",
            "system:authenticated",
        }
    return False


def _rules(role: dict[str, Any], origin: str) -> list[Rule]:
    out = []
    for i, r in enumerate(role.get("rules") or []):
        out.append(
            Rule(
                origin=origin,
                index=i,
                api_groups=list(r.get("apiGroups") or []),
                resources=list(r.get("resources") or []),
                verbs=list(r.get("verbs") or []),
                resource_names=list(r.get("resourceNames") or []),
                non_resource_urls=list(r.get("nonResourceURLs") or []),
            )
        )
    return out


def build_policy(docs: list[dict[str, Any]], subject: tuple[str, str] | None = None) -> Policy:
    sa = subject or find_subject(docs)
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ClusterRole"}
    roles = {
        (d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") == "Role"
    }
    policy = Policy(subject=sa)
    for d in docs:
        kind = d.get("kind")
        if kind not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        meta = d.get("metadata", {})
        binding_ns = meta.get("namespace", "") if kind == "RoleBinding" else ""
        if not any(_subject_matches(s, binding_ns or sa[0], sa) for s in d.get("subjects") or []):
            continue
        ref = d.get("roleRef") or {}
        binding = f"{kind}/{binding_ns + '/' if binding_ns else ''}{meta.get('name')}"
        if ref.get("kind") == "ClusterRole":
            role = cluster_roles.get(ref.get("name"))
            origin = f"ClusterRole/{ref.get('name')}"
        elif ref.get("kind") == "Role" and kind == "RoleBinding":
            role = roles.get((binding_ns, ref.get("name")))
            origin = f"Role/{binding_ns}/{ref.get('name')}"
        else:
            role = None
            origin = ""
        if role is None:
            raise ValueError(f"{binding} refers to {ref.get('kind')} {ref.get('name')!r}, which is not in the manifests")
        for rule in _rules(role, origin):
            policy.grants.append(Grant(rule=rule, namespace=binding_ns, binding=binding))
    return policy


def _group_matches(rule: Rule, group: str) -> bool:
    return "*" in rule.api_groups or group in rule.api_groups


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.resources:
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
        if subresource and r == f"{resource}/*":
            return True
    return False


def _verb_matches(rule: Rule, verb: str) -> bool:
    return "*" in rule.verbs or verb in rule.verbs


def _name_matches(rule: Rule, name: str) -> bool:
    if not rule.resource_names:
        return True
    return bool(name) and name in rule.resource_names


def _non_resource_matches(patterns: list[str], path: str) -> bool:
    for p in patterns:
        if p == "*" or p == path:
            return True
        if p.endswith("*") and path.startswith(p[:-1]):
            return True
    return False


def allowed_by(policy: Policy, attrs: Attributes) -> list[Grant]:
    """Every grant that allows the request (empty: forbidden)."""
    hits = []
    for g in policy.grants:
        rule = g.rule
        if not attrs.resource_request:
            # Non-resource rules only count in ClusterRoles bound cluster-wide.
            if g.namespace == "" and _verb_matches(rule, attrs.verb) and _non_resource_matches(rule.non_resource_urls, attrs.path):
                hits.append(g)
            continue
        if not rule.resources:
            continue
        # A RoleBinding grants only in its namespace; cluster-scoped objects
        # (namespace "") need a ClusterRoleBinding.
        if g.namespace and g.namespace != attrs.namespace:
            continue
        if (
            _group_matches(rule, attrs.api_group)
            and _resource_matches(rule, attrs.resource, attrs.subresource)
            and _verb_matches(rule, attrs.verb)
            and _name_matches(rule, attrs.name)
        ):
            hits.append(g)
    return hits


def allowed_by_default(attrs: Attributes) -> bool:
    if not attrs.resource_request:
        return attrs.verb in {"get", "head"} and _non_resource_matches(DEFAULT_NON_RESOURCE, attrs.path)
    return (attrs.api_group, attrs.full_resource, attrs.verb) in DEFAULT_RESOURCE_GRANTS


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


EMPTY_GROUP = '""'
EMULATOR_CONTROL_PREFIX = "/_emulator/"
SOURCE = "_file"  # set on requests read from a file: where they came from


@dataclass
class Report:
    subject: tuple[str, str]
    requests: int
    denied: list[tuple[dict[str, Any], Attributes]]
    unused: list[tuple[Grant, str, str, str]]  # grant, group, resource, verb
    used: dict[tuple[str, str, str], int]  # (group, resource, verb) -> count
    mismatches: list[tuple[dict[str, Any], Attributes]] = field(default_factory=list)
    lease: str = ""  # "ns/name checked as ns/name" with --lease

    @property
    def ok(self) -> bool:
        return not self.denied

    def to_json(self) -> dict[str, Any]:
        return {
            "serviceAccount": f"{self.subject[0]}/{self.subject[1]}",
            "lease": self.lease or None,
            "requests": self.requests,
            "denied": [
                {"request": {k: v for k, v in req.items() if k != SOURCE}, "attributes": attrs.describe(), "file": req.get(SOURCE)}
                for req, attrs in self.denied
            ],
            "unused": [
                {
                    "rule": g.rule.label(),
                    "binding": g.binding,
                    "apiGroup": group,
                    "resource": resource,
                    "verb": verb,
                }
                for g, group, resource, verb in self.unused
            ],
            "used": [
                {"apiGroup": k[0], "resource": k[1], "verb": k[2], "count": v}
                for k, v in sorted(self.used.items())
            ],
            "verbMismatches": [
                {"request": req, "ours": attrs.verb, "logged": req.get("verb")}
                for req, attrs in self.mismatches
            ],
        }

    def to_text(self) -> str:
        lines = [
            f"RBAC check for ServiceAccount {self.subject[0]}/{self.subject[1]}: "
            f"{self.requests} request(s), {len(self.denied)} forbidden, "
            f"{len(self.unused)} unused grant(s)"
        ]
        if self.lease:
            lines.append(f"Lease {self.lease}")
        if self.used:
            lines.append("used:")
            for (group, resource, verb), n in sorted(self.used.items()):
                lines.append(f"  {group or EMPTY_GROUP} {resource} {verb}: {n}")
        if self.denied:
            lines.append("FORBIDDEN (the chart's RBAC does not allow these):")
            # One line per (verb, group, resource), with the first example.
            seen: dict[str, list[tuple[dict[str, Any], Attributes]]] = {}
            for req, attrs in self.denied:
                key = (
                    f"{attrs.verb} {attrs.api_group or EMPTY_GROUP} {attrs.full_resource}"
                    if attrs.resource_request
                    else attrs.describe()
                )
                seen.setdefault(key, []).append((req, attrs))
            for key, hits in seen.items():
                req, attrs = hits[0]
                where = f" in {req[SOURCE]}" if req.get(SOURCE) else ""
                lines.append(f"  {key}: {len(hits)} request(s), e.g.")
                lines.append(f"    {attrs.describe()}   <- {req.get('method')} {req.get('path')}{where}")
        if self.mismatches:
            lines.append("WARNING: the log's verb differs from the API server mapping:")
            for req, attrs in self.mismatches:
                lines.append(f"  {req.get('method')} {req.get('path')}: logged {req.get('verb')}, mapped {attrs.verb}")
        if self.unused:
            lines.append("WARNING: unused (granted, never requested):")
            for g, group, resource, verb in self.unused:
                lines.append(f"  {g.rule.label()} via {g.binding}: {group or EMPTY_GROUP} {resource} {verb}")
        return "\n".join(lines)


def _expand(values: list[str], wildcard: str) -> list[str]:
    return values if values else [wildcard]


# The program's defaults (crates/receiver/src/config.rs): --lease-name,
# --lease-namespace.
DEFAULT_LEASE_NAME = "kargo-harbor-receiver"
DEFAULT_LEASE_NAMESPACE = "default"


def chart_lease(docs: list[dict[str, Any]]) -> tuple[str, str]:
    """(namespace, name) of the Lease the rendered Deployment's program uses."""
    dep = _the_deployment(docs)
    dep_ns = dep.get("metadata", {}).get("namespace") or "default"
    name, namespace = DEFAULT_LEASE_NAME, DEFAULT_LEASE_NAMESPACE
    containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    for container in containers[:1]:
        for env in container.get("env") or []:
            if env.get("name") == "LEASE_NAME" and env.get("value"):
                name = str(env["value"])
            if env.get("name") == "POD_NAMESPACE":
                if env.get("value"):
                    namespace = str(env["value"])
                elif (env.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                    namespace = dep_ns
    return namespace, name


def map_lease(attrs: Attributes, logged: tuple[str, str], chart: tuple[str, str]) -> Attributes:
    """Requests on the log's Lease become requests on the chart's Lease."""
    if not (
        attrs.resource_request
        and attrs.api_group == "coordination.k8s.io"
        and attrs.resource == "leases"
        and attrs.namespace == logged[0]
        and attrs.name in {logged[1], ""}
    ):
        return attrs
    return replace(attrs, namespace=chart[0], name=chart[1] if attrs.name else "")


def check(
    docs: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    *,
    subject: tuple[str, str] | None = None,
    user_agent: str | None = None,
    exclude_user_agent: str | None = None,
    lease: tuple[str, str] | None = None,
) -> Report:
    policy = build_policy(docs, subject)
    lease_map = (lease, chart_lease(docs)) if lease else None
    agent_re = re.compile(user_agent) if user_agent else None
    exclude_re = re.compile(exclude_user_agent) if exclude_user_agent else None
    mismatches: list[tuple[dict[str, Any], Attributes]] = []
    denied: list[tuple[dict[str, Any], Attributes]] = []
    used_grants: set[tuple[int, str, str, str]] = set()
    used: dict[tuple[str, str, str], int] = {}
    counted = 0
    for req in requests:
        if not isinstance(req, dict) or "method" not in req or "path" not in req:
            raise ValueError(f"a request needs method and path: {req!r}")
        if str(req["path"]).startswith(EMULATOR_CONTROL_PREFIX):
            continue
        agent = str(req.get("userAgent") or req.get("user_agent") or "")
        if agent_re is not None and not agent_re.search(agent):
            continue
        if exclude_re is not None and exclude_re.search(agent):
            continue
        counted += 1
        attrs = request_attributes(str(req["method"]), str(req["path"]), req.get("query"))
        if lease_map:
            attrs = map_lease(attrs, *lease_map)
        logged_verb = req.get("verb")
        if attrs.resource_request and logged_verb and logged_verb != attrs.verb:
            mismatches.append((req, attrs))
        hits = allowed_by(policy, attrs)
        if attrs.resource_request:
            key = (attrs.api_group, attrs.full_resource, attrs.verb)
            used[key] = used.get(key, 0) + 1
        if not hits and not allowed_by_default(attrs):
            denied.append((req, attrs))
        for g in hits:
            used_grants.add((id(g), attrs.api_group, attrs.full_resource, attrs.verb))

    unused: list[tuple[Grant, str, str, str]] = []
    for g in policy.grants:
        rule = g.rule
        if rule.non_resource_urls and not rule.resources:
            continue
        for group in _expand(rule.api_groups, "*"):
            for resource in _expand(rule.resources, "*"):
                for verb in _expand(rule.verbs, "*"):
                    if not any(
                        gid == id(g)
                        and (group == "*" or ugroup == group)
                        and (resource == "*" or uresource == resource or _wild_resource(resource, uresource))
                        and (verb == "*" or uverb == verb)
                        for gid, ugroup, uresource, uverb in used_grants
                    ):
                        unused.append((g, group, resource, verb))
    return Report(
        subject=policy.subject,
        lease=(f"{lease[0]}/{lease[1]} checked as {lease_map[1][0]}/{lease_map[1][1]}" if lease_map else ""),
        requests=counted,
        denied=denied,
        unused=unused,
        used=used,
        mismatches=mismatches,
    )


def _wild_resource(pattern: str, resource: str) -> bool:
    if pattern.startswith("*/"):
        return resource.endswith(pattern[1:])
    if pattern.endswith("/*"):
        return resource.startswith(pattern[:-1])
    return False


def _requests_of(raw: str, origin: str) -> list[dict[str, Any]]:
    requests = json.loads(raw)
    if isinstance(requests, dict) and isinstance(requests.get("requests"), list):
        requests = requests["requests"]
    if not isinstance(requests, list):
        raise ValueError(f"{origin}: the request log must be a JSON list")
    return requests


def load_requests(sources: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """Requests from JSON files, directories of them (*.json) or "-" (stdin);
    each request read from a file records it under SOURCE. Returns the
    requests and the number of files read."""
    out: list[dict[str, Any]] = []
    files = 0
    for source in sources:
        if source == "-":
            out.extend(_requests_of(sys.stdin.read(), "stdin"))
            files += 1
            continue
        path = Path(source)
        paths = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if path.is_dir() and not paths:
            raise ValueError(f"{source}: no *.json files")
        for p in paths:
            try:
                requests = _requests_of(p.read_text(), str(p))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}: {exc}") from exc
            files += 1
            for req in requests:
                out.append({**req, SOURCE: p.name} if isinstance(req, dict) else req)
    return out, files


def _namespace_name(value: str) -> tuple[str, str]:
    """argparse type of the NAMESPACE/NAME options."""
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/NAME")
    return ns, name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rbac.py",
        description="Check API requests against the chart's RBAC (see the module docstring).",
    )
    parser.add_argument("manifests", help="rendered chart manifests (multi-document YAML)")
    parser.add_argument(
        "requests",
        nargs="+",
        help='JSON lists of {"method", "path", "query"}: files, directories of *.json files, or "-" for stdin',
    )
    parser.add_argument(
        "--service-account",
        metavar="NAMESPACE/NAME",
        type=_namespace_name,
        help="subject to check (default: the Deployment's ServiceAccount)",
    )
    parser.add_argument("--user-agent", metavar="REGEX", help="only requests whose userAgent matches")
    parser.add_argument("--exclude-user-agent", metavar="REGEX", help="leave out requests whose userAgent matches")
    parser.add_argument(
        "--lease",
        metavar="NAMESPACE/NAME",
        type=_namespace_name,
        help="the Lease the logged program used; checked as the chart's Lease (see the module docstring)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--fail-on-unused", action="store_true", help="exit 1 when a grant was never used")
    args = parser.parse_args(argv)

    try:
        docs = load_manifests([args.manifests])
        requests, files = load_requests(args.requests)
        report = check(
            docs,
            requests,
            subject=args.service_account,
            user_agent=args.user_agent,
            exclude_user_agent=args.exclude_user_agent,
            lease=args.lease,
        )
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"rbac.py: {exc}", file=sys.stderr)
        return 2

    print(json.dumps(report.to_json(), indent=2) if args.json else f"{files} file(s) read\n{report.to_text()}")
    if report.requests == 0:
        print("rbac.py: no request left to check (empty log, or every request filtered out)", file=sys.stderr)
        return 2
    if not report.ok:
        return 1
    if args.fail_on_unused and report.unused:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
