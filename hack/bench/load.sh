#!/usr/bin/env bash
# Load benchmark of the webhook receiver on loopback. NOT run in CI.
#
# Starts kube-emulator (Kargo's CRDs preloaded) and the receiver binary, both
# release builds, creates a project with a Harbor receiver and a few
# Warehouses, then drives wrk against three kinds of request:
#   a) a wrong token                          → 401, no API call
#   b) an authorised push matching nothing    → 200 "refreshed 0", no API call
#   c) an authorised push matching 1 Warehouse → 200 "refreshed 1", one
#      (coalesced) PATCH to the emulator per refresh
# and finally creates 10,000 more Warehouses to measure the receiver's
# resident memory (VmRSS) with them indexed.
#
# Requirements: wrk (Debian: apt-get install -y wrk), python3, curl.
# Everything listens on 127.0.0.1; every run is bounded by DURATION.
#
# Usage: hack/bench/load.sh            (DURATION=10s CONNECTIONS=16 THREADS=1
#                                       WAREHOUSES=10000 SKIP_BUILD=1 to reuse builds)
#
# Log volume of rejections: LOG_VOLUME=1 runs only a), with RUST_LOG=info and
# JSON logs (the chart's defaults), and reports the receiver's log bytes per
# 10,000 rejected requests. BIN_DIR=DIR takes both binaries from DIR (e.g.
# target/debug with SKIP_BUILD=1; RECEIVER_BIN=PATH overrides the receiver's
# alone, e.g. an older build to compare with).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
WAREHOUSES=${WAREHOUSES:-10000}
EMU_PORT=${EMU_PORT:-16443}
RECV_PORT=${RECV_PORT:-18080}
METRICS_PORT=${METRICS_PORT:-19090}
CRDS=${CRDS:-$ROOT/../shared/reference/kargo-crds}
TOKEN=bench-token-$RANDOM$RANDOM
PROJECT=bench
RECEIVER=harbor

command -v wrk >/dev/null || { echo "wrk is required (apt-get install -y wrk)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p kargo-harbor-receiver -p kube-emulator
fi
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
RECEIVER_BIN=${RECEIVER_BIN:-$BIN/kargo-harbor-receiver}
if [[ -n "${LOG_VOLUME:-}" ]]; then RUST_LOG=${RUST_LOG:-info}; fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/kube-emulator" --listen "127.0.0.1:$EMU_PORT" --kubeconfig "$WORK/kubeconfig" \
    --crd "$CRDS/projectconfigs.yaml" --crd "$CRDS/clusterconfigs.yaml" --crd "$CRDS/warehouses.yaml" \
    >"$WORK/emulator.log" 2>&1 &
EMU_PID=$!
PIDS+=($EMU_PID)
API=http://127.0.0.1:$EMU_PORT
# Ours, not whatever else may answer on the port (the demo uses the same one).
for _ in $(seq 100); do
    grep -q '^kube-emulator listening on' "$WORK/emulator.log" && break
    kill -0 "$EMU_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q '^kube-emulator listening on' "$WORK/emulator.log" ||
    { echo "kube-emulator did not start:" >&2; cat "$WORK/emulator.log" >&2; exit 1; }

# Objects through the REST API (python3: one keep-alive connection).
create() { # create project NAMESPACE RECEIVER TOKEN | create many COUNT
    python3 - "$API" "$@" <<'EOF'
import base64, http.client, json, sys, urllib.parse
api, what = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(api)
conn = http.client.HTTPConnection(u.hostname, u.port)
def post(path, obj):
    conn.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
    r = conn.getresponse(); body = r.read()
    if r.status not in (200, 201, 409):
        sys.exit(f"POST {path}: {r.status} {body[:300]!r}")
K = "/apis/kargo.akuity.io/v1alpha1/namespaces"
def warehouse(ns, name, repo, constraint):
    post(f"{K}/{ns}/warehouses", {"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"subscriptions": [{"image": {"repoURL": repo, "constraint": constraint}}]}})
if what == "project":
    ns, receiver, token = sys.argv[3:6]
    post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    post(f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "harbor-secret", "namespace": ns},
         "data": {"auth-header": base64.b64encode(token.encode()).decode()}})
    post(f"{K}/{ns}/projectconfigs", {"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "ProjectConfig",
         "metadata": {"name": ns, "namespace": ns},
         "spec": {"webhookReceivers": [{"name": receiver, "harbor": {"secretRef": {"name": "harbor-secret"}}}]}})
    warehouse(ns, "app", "harbor.example.com/library/app", "^1.0.0")
    warehouse(ns, "app-v2", "harbor.example.com/library/app", "^2.0.0")
    warehouse(ns, "other", "harbor.example.com/library/other", "")
elif what == "many":
    n = int(sys.argv[3])
    for p in range(100):
        post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"many-{p}"}})
    for i in range(n):
        warehouse(f"many-{i % 100}", f"w-{i}", f"harbor.example.com/team-{i % 100}/app-{i}", "^1")
EOF
}
create project "$PROJECT" "$RECEIVER" "$TOKEN"

HASH=$(printf '%s' "$PROJECT$RECEIVER$TOKEN" | sha256sum | cut -d' ' -f1)
URL=http://127.0.0.1:$RECV_PORT/harbor/$HASH
KUBECONFIG=$WORK/kubeconfig RUST_LOG=${RUST_LOG:-warn} LOG_FORMAT=json "$RECEIVER_BIN" run \
    --base-url "http://127.0.0.1:$RECV_PORT" --listen "127.0.0.1:$RECV_PORT" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" --lease-namespace default --identity bench \
    >"$WORK/receiver.log" 2>&1 &
RECV_PID=$!
PIDS+=($RECV_PID)

NOTHING='{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"9.9.9","resource_url":"harbor.example.com/library/app:9.9.9"}]}}'
ONE='{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1.2.3","resource_url":"harbor.example.com/library/app:1.2.3"}]}}'
for _ in $(seq 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $TOKEN" -d "$NOTHING" "$URL" || true)
    [[ $code == 200 ]] && break
    sleep 0.1
done
[[ $code == 200 ]] || { echo "receiver not serving (last answer $code)"; cat "$WORK/receiver.log"; exit 1; }

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("WRK_TOKEN")
EOF

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$RECV_PID/status"; }
run() { # run <title> <token> <body>
    echo "== $1"
    WRK_TOKEN=$2 WRK_BODY=$3 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -s "$WORK/post.lua" "$URL" | grep -E 'Requests/sec|Non-2xx|50%|90%|99%|requests in|Socket errors'
}

echo "receiver RSS at start: $(rss)"
if [[ -n "${LOG_VOLUME:-}" ]]; then
    before=$(wc -c <"$WORK/receiver.log")
    out=$(WRK_TOKEN="wrong-$TOKEN" WRK_BODY=$ONE wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
        -s "$WORK/post.lua" "$URL")
    sleep 1
    bytes=$(( $(wc -c <"$WORK/receiver.log") - before ))
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "log volume: $bytes bytes for $requests rejected requests:" \
        "$(( bytes * 10000 / requests )) bytes per 10,000"
    exit 0
fi
run "a) wrong token (expect all Non-2xx: 401)" "wrong-$TOKEN" "$ONE"
run "b) authorised push matching nothing (200, no API call)" "$TOKEN" "$NOTHING"
run "c) authorised push matching 1 Warehouse (200, coalesced PATCH)" "$TOKEN" "$ONE"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^kargo_harbor_receiver_warehouse_refreshes_total' || true
echo "receiver RSS after load: $(rss)"

echo "== creating $WAREHOUSES Warehouses"
start=$(date +%s)
create many "$WAREHOUSES"
want=$((WAREHOUSES + 3))
for _ in $(seq 600); do
    got=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^kargo_harbor_receiver_index_warehouses / {print $2}')
    [[ ${got:-0} -ge $want ]] && break
    sleep 0.5
done
echo "indexed ${got:-0} Warehouses in $(( $(date +%s) - start ))s (creation included)"
echo "receiver RSS with $got Warehouses indexed: $(rss)"
run "c') push matching 1 Warehouse with $got indexed" "$TOKEN" "$ONE"
echo "receiver RSS at the end: $(rss)"
