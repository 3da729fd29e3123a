#!/usr/bin/env bash
# Validates charts/kargo-harbor-receiver with real Helm, offline.
#
#   hack/chart/validate.sh                     lint, render, structural checks
#   hack/chart/validate.sh --apply             also: kubectl apply both renders
#                                              to kube-emulators started here
#   hack/chart/validate.sh --apply KUBECONFIG  ... or to that API server
#
# Real Helm: the PyPI wheel helm-python-sdk bundles Helm's Go SDK (v4.2.3) as a
# C library; hack/chart/helm.py gives it the `helm lint` / `helm template` CLI
# shape. It is installed once into target/chart-venv (pinned in
# hack/chart/requirements.txt, re-installed only when that file changes);
# afterwards everything runs offline. Set CHART_VENV to use another venv.
#
# Outputs, in target/chart/: default.yaml (default values + baseURL), all.yaml
# (hack/chart/values-all.yaml: every option on), secret-get.yaml
# (secretAccess=get) and watch-namespaces.yaml (watchNamespaces=[kargo-demo]).
# tests/chart.rs reads them (make test runs it after this script): the RBAC
# against the program's API requests, the env vars against its flags.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
# No __pycache__ next to helm.py in the work tree.
export PYTHONDONTWRITEBYTECODE=1

chart="charts/kargo-harbor-receiver"
here="hack/chart"
out="target/chart"
venv="${CHART_VENV:-target/chart-venv}"
release="khr"
namespace="kargo"
base_url="https://kargo-webhooks.example.com"

apply=0
apply_kubeconfig=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --apply)
      apply=1
      if [[ $# -ge 2 && "$2" != -* ]]; then
        apply_kubeconfig="$2"
        shift
      fi
      shift
      ;;
    -h | --help)
      sed -n '2,20p' "${BASH_SOURCE[0]}"
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
# shellcheck source=hack/venv.sh
source hack/venv.sh
ensure_venv "$venv" "$here/requirements.txt" "$venv/bin/python"
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
# render NAME ARGS...: helm template into $out/NAME (whole or not at all).
render() {
  local name="$1"
  shift
  "${helm[@]}" template "$release" "$chart" -n "$namespace" "$@" >"$out/$name.tmp"
  mv "$out/$name.tmp" "$out/$name"
  grep -c '^kind:' "$out/$name" | sed "s/^/$name objects: /"
}
step "helm template -> $out/{default,all,secret-get,watch-namespaces}.yaml"
render default.yaml --set "baseURL=$base_url"
render all.yaml -f "$here/values-all.yaml"
render secret-get.yaml --set "baseURL=$base_url" --set secretAccess=get
render watch-namespaces.yaml --set "baseURL=$base_url" --set 'watchNamespaces={kargo-demo}'

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

# --- 6. optional: apply to an API server --------------------------------------
# Two realistic installs, each checked by reading every object back:
#   default.yaml on a cluster where Kargo is installed (Kargo's CRDs from
#     ../shared/reference/kargo-crds, the release namespace);
#   all.yaml on a cluster without Kargo (crds.install=true brings the CRDs),
#     with the ServiceMonitor CRD (a stand-in: kubectl maps every kind before
#     applying anything) and the namespaces of watchNamespaces.
# Without a kubeconfig each runs on its own kube-emulator (built here, on a
# free loopback port, stopped on exit); the emulator stores built-ins without
# schema validation, so this checks kinds, scopes, API versions and that
# kubectl accepts the documents, not field-level validity. With a kubeconfig
# both go to that cluster, all.yaml first.
kargo_crds="../shared/reference/kargo-crds"
emulator_pids=()
stop_emulators() {
  local pid
  for pid in "${emulator_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  emulator_pids=()
}
trap stop_emulators EXIT

# start_emulator DIR: a kube-emulator on a free loopback port, its kubeconfig
# in DIR/kubeconfig; sets $url.
start_emulator() {
  local dir="$1" i
  rm -rf "$dir"
  mkdir -p "$dir"
  "$emulator" --listen 127.0.0.1:0 --kubeconfig "$dir/kubeconfig" >"$dir/emulator.out" 2>"$dir/emulator.err" &
  emulator_pids+=("$!")
  for i in $(seq 100); do
    if grep -q '^kubeconfig written to' "$dir/emulator.out" 2>/dev/null; then
      url="$(sed -n 's/^kube-emulator listening on //p' "$dir/emulator.out")"
      return 0
    fi
    kill -0 "${emulator_pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: kube-emulator did not start:" >&2
  cat "$dir/emulator.err" >&2
  exit 1
}

apply_namespaces() {
  local ns
  for ns in "$@"; do
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns" | "${kubectl[@]}" apply -f -
  done
}

# check_applied FILE: every object of FILE reads back, and the
# ClusterRoleBinding binds the ServiceAccount the Deployment runs as.
check_applied() {
  local file="$1" want got sa
  want="$(grep -c '^kind:' "$file")"
  "${kubectl[@]}" get -f "$file" -o name >"$file.applied"
  got="$(wc -l <"$file.applied")"
  if [[ "$got" != "$want" ]]; then
    cat "$file.applied"
    echo "FAIL: $got of the $want objects of $file read back" >&2
    exit 1
  fi
  sa="$("${kubectl[@]}" get deployment "$release-kargo-harbor-receiver" -n "$namespace" \
    -o 'jsonpath={.spec.template.spec.serviceAccountName}')"
  got="$("${kubectl[@]}" get clusterrolebinding "$namespace-$release-kargo-harbor-receiver" \
    -o 'jsonpath={.subjects[0].namespace}/{.subjects[0].name}')"
  if [[ "$got" != "$namespace/$sa" ]]; then
    echo "FAIL: the ClusterRoleBinding binds $got, the Deployment runs as $namespace/$sa" >&2
    exit 1
  fi
  echo "$file: all $want objects read back; the ClusterRoleBinding binds $got, the Deployment's ServiceAccount"
}

watch_namespaces() {
  "$py" - "$here/values-all.yaml" <<'EOF'
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
print("\n".join(dict.fromkeys(values.get("watchNamespaces") or [])))
EOF
}

if [[ "$apply" == 1 ]]; then
  if [[ -n "$apply_kubeconfig" ]]; then
    kubectl=(kubectl --kubeconfig "$apply_kubeconfig")
    step "kubectl apply -f $out/all.yaml, then $out/default.yaml (kubeconfig $apply_kubeconfig)"
    "${kubectl[@]}" apply -f "$here/testdata/servicemonitor-crd.yaml"
    # shellcheck disable=SC2046 # one namespace per line
    apply_namespaces "$namespace" $(watch_namespaces)
    "${kubectl[@]}" apply -f "$out/all.yaml"
    check_applied "$out/all.yaml"
    "${kubectl[@]}" apply -f "$out/default.yaml"
    check_applied "$out/default.yaml"
  else
    if [[ -n "${KUBE_EMULATOR:-}" ]]; then
      emulator="$KUBE_EMULATOR"
    else
      step "cargo build -p kube-emulator --bins (a no-op when it is up to date)"
      cargo build -q -p kube-emulator --bins
      emulator="${CARGO_TARGET_DIR:-target}/debug/kube-emulator"
    fi
    [[ -d "$kargo_crds" ]] || { echo "FAIL: $kargo_crds (Kargo's CRDs) is missing" >&2; exit 1; }

    start_emulator "$out/apply-default"
    kubectl=(kubectl --kubeconfig "$out/apply-default/kubeconfig")
    step "kubectl apply -f $out/default.yaml: a cluster with Kargo (kube-emulator at $url)"
    "${kubectl[@]}" apply -f "$kargo_crds"
    apply_namespaces "$namespace"
    "${kubectl[@]}" apply -f "$out/default.yaml"
    check_applied "$out/default.yaml"
    stop_emulators

    start_emulator "$out/apply-all"
    kubectl=(kubectl --kubeconfig "$out/apply-all/kubeconfig")
    step "kubectl apply -f $out/all.yaml: a cluster without Kargo (kube-emulator at $url)"
    "${kubectl[@]}" apply -f "$here/testdata/servicemonitor-crd.yaml"
    # shellcheck disable=SC2046 # one namespace per line
    apply_namespaces "$namespace" $(watch_namespaces)
    "${kubectl[@]}" apply -f "$out/all.yaml"
    check_applied "$out/all.yaml"
    "${kubectl[@]}" get crd projectconfigs.kargo.akuity.io \
      -o 'jsonpath=CRD {.metadata.name}: Established={.status.conditions[?(@.type=="Established")].status}{"\n"}'
    stop_emulators
  fi
fi

step "chart validation passed"
