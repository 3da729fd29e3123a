#!/usr/bin/env python3
"""`helm lint` and `helm template` for this repository, offline, with real Helm.

Real Helm here is the Helm v4 Go SDK compiled into a C library, shipped in the
PyPI wheel `helm-python-sdk` (pinned in requirements.txt) and called through
ctypes: chart loading, values coalescing, values.schema.json validation, the
template engine (Sprig, `required`, `.Files`, `.Capabilities`) and the linter
are Helm's own code, not a reimplementation. No helm binary, no cluster and no
network are used.

What this file adds is the CLI shape of the two commands:

    helm.py lint CHART [-f values.yaml]... [--set k=v]... [--strict]
    helm.py template NAME CHART [-n NS] [-f values.yaml]... [--set k=v]...
                     [--set-string k=v]... [--notes]

`template` prints what `helm template` prints: each non-empty manifest as
`---\\n# Source: <chart>/templates/<file>`, sorted in Helm's install order
(kind order, then template path), NOTES.txt and partials left out. Every
document is parsed as YAML, so a template that renders invalid YAML fails here
as it would in Helm.

Exit codes: 0 ok, 1 lint errors or render failure (message on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

# helm.sh/helm/v4/pkg/release/v1/util/kind_sorter.go (InstallOrder). Kinds not
# listed sort after these, alphabetically by kind.
INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]


class HelmFailure(Exception):
    """Lint or render failed; the message is Helm's."""


def _helm():
    try:
        import helm_python  # noqa: PLC0415 (import late: the library is 80 MB)
    except ImportError as exc:  # pragma: no cover - environment problem
        raise SystemExit(
            "helm.py: helm-python-sdk is not installed; run hack/chart/validate.sh "
            f"(it creates the venv) or pip install -r hack/chart/requirements.txt ({exc})"
        ) from exc
    helm_python.disable_logging()
    return helm_python


def helm_version() -> str:
    h = _helm()
    return f"helm-python-sdk {h.__version__}, helm-c {h.helm_c_version()}, Helm SDK {h.helm_sdk_version()}"


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def user_values(
    files: list[str] | None = None,
    sets: list[str] | None = None,
    set_strings: list[str] | None = None,
) -> dict[str, Any]:
    """Values the way the helm CLI composes them: -f files, then --set, then --set-string."""
    h = _helm()
    values: dict[str, Any] = {}
    for f in files or []:
        loaded = h.values_from_yaml(Path(f).read_text())
        values = _deep_merge(values, loaded or {})
    for s in sets or []:
        values = _deep_merge(values, h.parse_set_string(s))
    for s in set_strings or []:
        values = _deep_merge(values, h.parse_set_string_values(s))
    return values


def lint(chart: str, values: dict[str, Any], *, strict: bool = False, namespace: str = "default") -> list[dict[str, Any]]:
    """Run Helm's linter; returns its messages (severity 1 info, 2 warning, 3 error)."""
    h = _helm()
    report = h.lint(chart, values, strict=strict, namespace=namespace)
    return list(report.get("messages") or [])


def _kind_key(kind: str) -> tuple[int, str]:
    try:
        return (INSTALL_ORDER.index(kind), "")
    except ValueError:
        return (len(INSTALL_ORDER), kind)


def _render(chart: str, values: dict[str, Any], name: str, namespace: str) -> dict[str, str]:
    """Every template of the chart rendered for an install: path -> text. Raises HelmFailure."""
    h = _helm()
    try:
        with h.Chart.load(chart) as loaded:
            return loaded.render(values, name=name, namespace=namespace, is_install=True)
    except h.HelmError as exc:
        raise HelmFailure(str(exc)) from exc


def template(
    chart: str,
    values: dict[str, Any],
    *,
    name: str = "release-name",
    namespace: str = "default",
) -> str:
    """Render like `helm template`: the manifest stream as text. Raises HelmFailure."""
    rendered = _render(chart, values, name, namespace)
    docs: list[tuple[tuple[int, str], str, int, str]] = []
    for path in sorted(rendered):
        base = path.rsplit("/", 1)[-1]
        if base.startswith("_") or base == "NOTES.txt":
            continue
        # Split the way Helm's releaseutil.SplitManifests does.
        for index, chunk in enumerate(_split_docs(rendered[path])):
            try:
                obj = yaml.safe_load(chunk)
            except yaml.YAMLError as exc:
                raise HelmFailure(f"YAML parse error on {path}: {exc}") from exc
            if obj is None:
                continue
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                raise HelmFailure(f"{path}: document {index} is not a Kubernetes object")
            docs.append((_kind_key(obj["kind"]), path, index, chunk.strip("\n")))
    docs.sort(key=lambda d: (d[0], d[1], d[2]))
    return "".join(f"---\n# Source: {path}\n{text}\n" for _, path, _, text in docs)


def notes(chart: str, values: dict[str, Any], *, name: str = "release-name", namespace: str = "default") -> str:
    """The rendered NOTES.txt (what `helm install` prints)."""
    for path, text in _render(chart, values, name, namespace).items():
        if path.endswith("/NOTES.txt"):
            return text
    return ""


def _split_docs(text: str) -> list[str]:
    docs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "---" or line.startswith("--- "):
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return [d for d in docs if d.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helm.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
        p.add_argument("--set", action="append", default=[], metavar="K=V")
        p.add_argument("--set-string", action="append", default=[], metavar="K=V")
        p.add_argument("-n", "--namespace", default="default")

    p_lint = sub.add_parser("lint", help="helm lint")
    p_lint.add_argument("chart")
    p_lint.add_argument("--strict", action="store_true", help="warnings fail too")
    common(p_lint)

    p_tpl = sub.add_parser("template", help="helm template")
    p_tpl.add_argument("name")
    p_tpl.add_argument("chart")
    p_tpl.add_argument("--notes", action="store_true", help="print the rendered NOTES.txt instead")
    common(p_tpl)

    sub.add_parser("version", help="versions of the bundled Helm")

    args = parser.parse_args(argv)
    if args.cmd == "version":
        print(helm_version())
        return 0

    values = user_values(args.values, args.set, args.set_string)
    if args.cmd == "lint":
        messages = lint(args.chart, values, strict=args.strict, namespace=args.namespace)
        names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
        failed = False
        for m in messages:
            sev = int(m.get("severity", 0))
            print(f"[{names.get(sev, sev)}] {m.get('path')}: {m.get('error', '').strip()}")
            if sev >= 3 or (args.strict and sev >= 2):
                failed = True
        print(f"1 chart(s) linted, {'1 chart(s) failed' if failed else '0 chart(s) failed'}")
        return 1 if failed else 0

    try:
        if args.notes:
            sys.stdout.write(notes(args.chart, values, name=args.name, namespace=args.namespace))
        else:
            sys.stdout.write(template(args.chart, values, name=args.name, namespace=args.namespace))
    except HelmFailure as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
