#!/usr/bin/env bash
# Validates charts/kargo-harbor-receiver with real Helm, offline.
#
#   hack/chart/validate.sh                     lint, render, check, unit tests
#   hack/chart/validate.sh --check-crds        also: files/crds.yaml is what
#                                              `kargo-harbor-receiver crds` prints
#                                              (builds the binary with cargo)
#   hack/chart/validate.sh --apply KUBECONFIG  also: kubectl apply the rendered
#                                              all.yaml to that API server
#
# Real Helm: the PyPI wheel helm-python-sdk bundles Helm's Go SDK (v4.2.3) as a
# C library; hack/chart/helm.py gives it the `helm lint` / `helm template` CLI
# shape. It is installed once into target/chart-venv (pinned in
# hack/chart/requirements.txt, re-installed only when that file changes);
# afterwards everything runs offline. Set CHART_VENV to use another venv.
#
# Outputs: target/chart/default.yaml (default values + baseURL) and
# target/chart/all.yaml (hack/chart/values-all.yaml: every option on).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

chart="charts/kargo-harbor-receiver"
here="hack/chart"
out="target/chart"
venv="${CHART_VENV:-target/chart-venv}"
release="khr"
namespace="kargo"
base_url="https://kargo-webhooks.example.com"

apply_kubeconfig=""
check_crds=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --apply)
      [[ $# -ge 2 ]] || { echo "validate.sh: --apply needs a kubeconfig path" >&2; exit 2; }
      apply_kubeconfig="$2"
      shift 2
      ;;
    --check-crds)
      check_crds=1
      shift
      ;;
    -h | --help)
      sed -n '2,17p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "validate.sh: unknown argument $1" >&2
      exit 2
      ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

# --- 1. the venv with Helm (idempotent) ------------------------------------
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  step "installing $here/requirements.txt into $venv"
  if [[ ! -x "$venv/bin/python" ]] && ! python3 -m venv "$venv"; then
    echo "validate.sh: python3 -m venv failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  fi
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
py="$venv/bin/python"
helm=("$py" "$here/helm.py")
"${helm[@]}" version

mkdir -p "$out"

# --- 2. lint -----------------------------------------------------------------
step "helm lint --strict (default values + baseURL)"
"${helm[@]}" lint "$chart" --strict -n "$namespace" --set "baseURL=$base_url"
step "helm lint --strict (values-all.yaml)"
"${helm[@]}" lint "$chart" --strict -n "$namespace" -f "$here/values-all.yaml"

# --- 3. render ---------------------------------------------------------------
step "helm template -> $out/default.yaml, $out/all.yaml"
"${helm[@]}" template "$release" "$chart" -n "$namespace" --set "baseURL=$base_url" >"$out/default.yaml.tmp"
mv "$out/default.yaml.tmp" "$out/default.yaml"
"${helm[@]}" template "$release" "$chart" -n "$namespace" -f "$here/values-all.yaml" >"$out/all.yaml.tmp"
mv "$out/all.yaml.tmp" "$out/all.yaml"
grep -c '^kind:' "$out/default.yaml" | sed 's/^/default.yaml objects: /'
grep -c '^kind:' "$out/all.yaml" | sed 's/^/all.yaml objects: /'

# --- 4. a missing baseURL must fail with the chart's own message -------------
step "helm template without baseURL fails with the required-message"
if "${helm[@]}" template "$release" "$chart" -n "$namespace" >/dev/null 2>"$out/no-baseurl.err"; then
  echo "FAIL: rendering without baseURL succeeded" >&2
  exit 1
fi
if ! grep -q 'baseURL is required' "$out/no-baseurl.err"; then
  echo "FAIL: rendering without baseURL failed without the required-message:" >&2
  cat "$out/no-baseurl.err" >&2
  exit 1
fi
cat "$out/no-baseurl.err"

# --- 5. structural checks and unit tests -------------------------------------
step "structural checks of the rendered manifests"
"$py" "$here/check_rendered.py" "$chart" "$out/default.yaml" "$out/all.yaml"

step "hadolint Dockerfile (the image itself is never built here: no Docker engine)"
"$venv/bin/hadolint" Dockerfile && echo "Dockerfile: no findings"

step "unit tests of hack/chart (rbac.py)"
"$py" -m unittest discover -s "$here" -p 'test_*.py'

# --- 6. optional: the CRDs are the program's -----------------------------------
if [[ "$check_crds" == 1 ]]; then
  step "files/crds.yaml is up to date"
  "$here/update-crds.sh" --check
fi

# --- 7. optional: apply to an API server --------------------------------------
# The chart's all.yaml needs, on the server: the ServiceMonitor CRD (a stand-in
# is applied first, since kubectl maps kinds before applying anything), the
# release namespace and the watchNamespaces (created here), and the
# apiextensions, rbac, apps, policy and networking APIs. The Kargo CRDs come
# with all.yaml itself (crds.install=true); where Kargo's own CRDs are already
# there they are updated in place. Tried against crates/kube-emulator as of its
# first version: the CRDs, the ServiceMonitor and the namespaces apply; the
# emulator does not serve ServiceAccount, Service, apps/v1, policy/v1,
# rbac.authorization.k8s.io/v1 or networking.k8s.io/v1 yet, so kubectl reports
# "no matches for kind" for those and this step fails until it does.
if [[ -n "$apply_kubeconfig" ]]; then
  step "kubectl apply -f $out/all.yaml (kubeconfig $apply_kubeconfig)"
  kubectl=(kubectl --kubeconfig "$apply_kubeconfig")
  "${kubectl[@]}" apply -f "$here/testdata/servicemonitor-crd.yaml"
  namespaces="$("$py" - "$here/values-all.yaml" "$namespace" <<'EOF'
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
names = [sys.argv[2]] + list(values.get("watchNamespaces") or [])
print("\n".join(dict.fromkeys(names)))
EOF
)"
  for ns in $namespaces; do
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns" | "${kubectl[@]}" apply -f -
  done
  "${kubectl[@]}" apply -f "$out/all.yaml"
  "${kubectl[@]}" get -f "$out/all.yaml" -o name
fi

step "chart validation passed"
