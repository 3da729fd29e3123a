#!/usr/bin/env bash
# Local demo on the embedded API server (kube-emulator): no cluster needed.
#
#   make demo                 # run, then keep running for experiments (Ctrl-C stops)
#   bash hack/demo.sh --no-wait   # run to the summary and stop (used by CI)
#
# Ports can be changed with DEMO_API_PORT, DEMO_PORT, DEMO_METRICS_PORT and
# DEMO_HARBOR_PORT.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WAIT=1
[ "${1:-}" = "--no-wait" ] && WAIT=0

API_PORT=${DEMO_API_PORT:-16443}
PORT=${DEMO_PORT:-18080}
METRICS_PORT=${DEMO_METRICS_PORT:-19090}
HARBOR_PORT=${DEMO_HARBOR_PORT:-18088}
HARBOR="http://127.0.0.1:$HARBOR_PORT"
DIR="$ROOT/target/demo"
KUBECONFIG_FILE="$DIR/kubeconfig"
BASE_URL="http://127.0.0.1:$PORT"
AUTH_HEADER="test-auth-token-123" # the value in examples/10-harbor-receiver.yaml

STEP=""
BOLD="" RED="" RESET=""
if [ -t 1 ]; then BOLD=$'\033[1m' RED=$'\033[31m' RESET=$'\033[0m'; fi
step() { STEP="$1"; printf '\n%s==> %s%s\n' "$BOLD" "$1" "$RESET"; }
fail() {
  printf '\n%sdemo failed at step "%s": %s%s\n' "$RED" "$STEP" "$1" "$RESET" >&2
  for log in "$DIR/emulator.log" "$DIR/receiver.log" "$DIR/harbor.log"; do
    [ -s "$log" ] && { echo "--- last lines of $log:" >&2; tail -n 15 "$log" >&2; }
  done
  exit 1
}
trap 'fail "command failed (exit $?) on line $LINENO"' ERR

PIDS=()
# Last started, first stopped, each waited for: the receiver must finish
# (release its Lease, end its watches) while the API server still answers,
# or its log ends with errors about a server that went away first.
cleanup() {
  trap - ERR
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  # The receiver's log is a file, not a terminal: plain text, and a clean
  # run (shutdown included) has no ERROR line.
  local log="$DIR/receiver.log"
  if [ -s "$log" ]; then
    if grep -q $'\033\[' "$log"; then
      echo "demo: $log contains terminal escape codes" >&2
      exit 1
    fi
    if grep -q ' ERROR ' "$log"; then
      echo "demo: $log has ERROR lines:" >&2
      grep ' ERROR ' "$log" >&2
      exit 1
    fi
  fi
}
trap cleanup EXIT
trap 'echo; echo "Stopping (Ctrl-C)…"; exit 0' INT TERM

wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

step "Building kargo-harbor-receiver, kube-emulator and harbor-emulator"
cargo build -q -p kargo-harbor-receiver -p kube-emulator -p harbor-emulator --bins || fail "cargo build failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
mkdir -p "$DIR"
: >"$DIR/emulator.log"
: >"$DIR/receiver.log"
: >"$DIR/harbor.log"

for p in "$API_PORT" "$PORT" "$METRICS_PORT" "$HARBOR_PORT"; do
  port_free "$p" || fail "port $p on 127.0.0.1 is in use (set DEMO_API_PORT / DEMO_PORT / DEMO_METRICS_PORT / DEMO_HARBOR_PORT)"
done

step "Starting kube-emulator (an in-memory Kubernetes API server) on 127.0.0.1:$API_PORT"
# setsid: a terminal's Ctrl-C reaches every process of its foreground group
# at once; in their own sessions the emulator and the receiver get only the
# script's ordered SIGTERMs (see cleanup).
setsid "$BIN/kube-emulator" --listen "127.0.0.1:$API_PORT" --kubeconfig "$KUBECONFIG_FILE" >"$DIR/emulator.log" 2>&1 &
PIDS+=($!)
export KUBECONFIG="$KUBECONFIG_FILE"
wait_for "the API server" 20 kubectl get --raw /version
kubectl version 2>/dev/null | sed 's/^/    /' || true

step "Installing the project's CRDs (ProjectConfig, ClusterConfig, Warehouse, HarborWebhookRegistration) with kubectl"
"$BIN/kargo-harbor-receiver" crds >"$DIR/crds.yaml"
kubectl apply -f "$DIR/crds.yaml" | sed 's/^/    /'
wait_for "the Warehouse resource to be served" 20 kubectl get warehouses -A

step "Starting kargo-harbor-receiver (webhooks on $BASE_URL, metrics on :$METRICS_PORT)"
setsid "$BIN/kargo-harbor-receiver" run \
  --base-url "$BASE_URL" \
  --listen "127.0.0.1:$PORT" \
  --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --lease-namespace default >"$DIR/receiver.log" 2>&1 &
PIDS+=($!)
wait_for "/readyz" 30 curl -fsS "$BASE_URL/readyz"
echo "    ready (log: $DIR/receiver.log)"

step "Applying examples/: namespace kargo-demo, the Secret and ProjectConfig, three Warehouses"
kubectl apply -f examples/00-namespace.yaml | sed 's/^/    /'
kubectl apply -f examples/10-harbor-receiver.yaml -f examples/20-warehouses.yaml | sed 's/^/    /'

step "Reading the receiver URL from the ProjectConfig's status"
echo "    \$ kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers}'"
has_url() { [ -n "$(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers[0].url}')" ]; }
wait_for "status.webhookReceivers" 20 has_url
echo "    $(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers}')"
URL=$(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers[0].url}')
kubectl get projectconfigs -n kargo-demo | sed 's/^/    /'

step "Sending a Harbor push of harbor.example.com/library/app:1.2.3, exactly as Harbor would"
echo "    \$ curl -X POST $URL -H 'Authorization: $AUTH_HEADER' -H 'Content-Type: application/json' --data @examples/harbor/push-tag.json"
RESPONSE=$(curl -sS -X POST "$URL" \
  -H "Authorization: $AUTH_HEADER" \
  -H 'Content-Type: application/json' \
  -H 'User-Agent: Go-http-client/1.1' \
  --data-binary @examples/harbor/push-tag.json \
  -w '\n%{http_code}') || fail "the request did not complete"
CODE=${RESPONSE##*$'\n'}
BODY=${RESPONSE%$'\n'*}
BODY=${BODY%$'\n'}
echo "    HTTP $CODE $BODY"
[ "$CODE" = 200 ] || fail "expected HTTP 200, got $CODE"

step "Asking the receiver why: kargo-harbor-receiver explain (the request path's own matching code)"
echo "    \$ kargo-harbor-receiver explain --project kargo-demo examples/harbor/push-tag.json"
"$BIN/kargo-harbor-receiver" explain --project kargo-demo examples/harbor/push-tag.json | sed 's/^/    /'

step "Which Warehouses got kargo.akuity.io/refresh"
kubectl get warehouses -n kargo-demo \
  -o custom-columns='WAREHOUSE:.metadata.name,REFRESH:.metadata.annotations.kargo\.akuity\.io/refresh' | sed 's/^/    /'
refreshed() { kubectl get warehouse "$1" -n kargo-demo -o=jsonpath='{.metadata.annotations.kargo\.akuity\.io/refresh}'; }
[ -n "$(refreshed app-v1)" ] || fail "app-v1 (tag 1.2.3 satisfies ^1.0.0) was not refreshed"
[ -z "$(refreshed app-v2)" ] || fail "app-v2 (^2.0.0) was refreshed but should not be"
[ -z "$(refreshed my-chart)" ] || fail "my-chart (another repository) was refreshed but should not be"

step "Starting a Harbor stand-in (harbor-emulator) on $HARBOR with project library and robot account robot\$library+kargo"
cat >"$DIR/harbor-seed.yaml" <<'YAML'
external_host: harbor.example.com
projects: [{name: library, public: true}]
robots:
  - name: kargo
    project: library
    secret: Robot-s3cret-0123
    permissions:
      - namespace: library
        access:
          - {resource: notification-policy, action: list}
          - {resource: notification-policy, action: read}
          - {resource: notification-policy, action: create}
          - {resource: notification-policy, action: update}
          - {resource: notification-policy, action: delete}
YAML
# Delivery timeout and retries 100 times faster than Harbor's, as in the tests.
"$BIN/harbor-emulator" --listen "127.0.0.1:$HARBOR_PORT" --seed "$DIR/harbor-seed.yaml" --time-scale 0.01 >"$DIR/harbor.log" 2>&1 &
PIDS+=($!)
wait_for "Harbor's API" 20 curl -fsS "$HARBOR/api/v2.0/ping"
echo "    Harbor API at $HARBOR/api/v2.0 (log: $DIR/harbor.log); no webhook policy yet"

step "Registering the receiver in Harbor: kubectl apply -f examples/30-harbor-registration.yaml"
sed "s#http://127.0.0.1:18088#$HARBOR#" examples/30-harbor-registration.yaml | kubectl apply -f - | sed 's/^/    /'
registered() { [ "$(kubectl get harborwebhookregistrations harbor -n kargo-demo -o=jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for "the registration to be Ready" 30 registered
kubectl get harborwebhookregistrations -n kargo-demo | sed 's/^/    /'
policy() { # what Harbor now has, as its API shows it (the auth header left out)
  curl -fsS -u 'robot$library+kargo:Robot-s3cret-0123' "$HARBOR/api/v2.0/projects/library/webhook/policies" \
    >"$DIR/policies.json" || fail "listing Harbor's webhook policies failed"
  python3 - "$DIR/policies.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1])):
    t = p["targets"][0]
    fmt = t.get("payload_format", "Default")
    print(f"    Harbor policy {p['name']!r}: enabled={p['enabled']}, events={p['event_types']}, {t['type']} {t['address']} ({fmt})")
PY
}
policy
POLICY_URL=$(kubectl get harborwebhookregistrations harbor -n kargo-demo -o=jsonpath='{.status.url}')
[ "$POLICY_URL" = "$URL" ] || fail "the registered URL $POLICY_URL is not the receiver's $URL"

push_via_harbor() { # tag: push harbor.example.com/library/app:TAG to the stand-in, wait for its delivery
  curl -fsS -X POST "$HARBOR/_emulator/push" -H 'Content-Type: application/json' \
    --data "{\"project\":\"library\",\"repository\":\"app\",\"tag\":\"$1\"}" >/dev/null || fail "the push was refused"
  curl -fsS -X POST "$HARBOR/_emulator/wait?timeout_ms=20000" >/dev/null || fail "Harbor's delivery did not finish"
}

step "Pushing harbor.example.com/library/app:1.2.4 to Harbor: Harbor itself calls the receiver"
BEFORE=$(refreshed app-v1)
push_via_harbor 1.2.4
changed() { [ "$(refreshed app-v1)" != "$BEFORE" ]; }
wait_for "app-v1 to be refreshed by Harbor's delivery" 20 changed
echo "    app-v1 refreshed at $(refreshed app-v1) (was $BEFORE): nobody copied a URL into Harbor"

step "Rotating the receiver's Secret: the URL changes, the registration updates Harbor"
kubectl apply -f - <<'YAML' | sed 's/^/    /'
apiVersion: v1
kind: Secret
metadata:
  name: harbor-wh-secret
  namespace: kargo-demo
  labels:
    kargo.akuity.io/cred-type: generic
stringData:
  auth-header: rotated-demo-token-456
YAML
moved() { [ "$(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers[0].url}')" != "$URL" ]; }
wait_for "the new URL in the ProjectConfig's status" 20 moved
NEW_URL=$(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers[0].url}')
reregistered() { [ "$(kubectl get harborwebhookregistrations harbor -n kargo-demo -o=jsonpath='{.status.url}')" = "$NEW_URL" ] && registered; }
wait_for "Harbor's policy to get the new URL and auth header" 30 reregistered
echo "    new URL $NEW_URL"
policy

step "Pushing harbor.example.com/library/app:1.2.5 after the rotation"
BEFORE=$(refreshed app-v1)
push_via_harbor 1.2.5
wait_for "app-v1 to be refreshed after the rotation" 20 changed
echo "    app-v1 refreshed at $(refreshed app-v1); the old URL stays accepted for --rotation-grace-period (5m) for deliveries Harbor queued before"

step "Restoring the example's auth header (the commands below use it); Harbor follows again"
kubectl apply -f examples/10-harbor-receiver.yaml | sed 's/^/    /'
back() { [ "$(kubectl get harborwebhookregistrations harbor -n kargo-demo -o=jsonpath='{.status.url}')" = "$URL" ] && registered; }
wait_for "Harbor's policy to get the example's URL back" 30 back
policy

step "What Harbor recorded: kargo-harbor-receiver deliveries -n kargo-demo --name harbor"
"$BIN/kargo-harbor-receiver" deliveries -n kargo-demo --name harbor | sed 's/^/    /' || fail "deliveries failed"

step "Summary"
cat <<EOF
    The receiver derived $URL
    (the same URL Kargo's own receiver derives), Harbor's push was answered
    "$BODY", and only app-v1 was refreshed:
    app-v2's constraint ^2.0.0 rejects 1.2.3, and my-chart subscribes to another repository.

    The HarborWebhookRegistration then registered that URL in the Harbor stand-in
    ($HARBOR), a push to Harbor refreshed app-v1, the Secret was rotated, the
    policy followed (to $NEW_URL),
    the next push landed too, and the policy followed the example's Secret back.

    Try it yourself (the URL is read from status: a Secret rotation changes it):
      export KUBECONFIG=$KUBECONFIG_FILE
      kubectl get projectconfigs,warehouses -n kargo-demo
      $BIN/kargo-harbor-receiver explain --project kargo-demo examples/harbor/push-tag.json
      $BIN/kargo-harbor-receiver send-test --project kargo-demo --repository harbor.example.com/charts/my-chart --tag 1.4.0
      URL=\$(kubectl get projectconfigs kargo-demo -n kargo-demo -o=jsonpath='{.status.webhookReceivers[0].url}')
      curl -X POST "\$URL" -H 'Authorization: $AUTH_HEADER' --data @examples/harbor/push-chart.json
      curl -X POST "\$URL" -H 'Authorization: wrong' --data @examples/harbor/push-tag.json
      curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep kargo_harbor_receiver_webhook
      kubectl get harborwebhookregistrations -n kargo-demo -o yaml
      $BIN/kargo-harbor-receiver deliveries -n kargo-demo --name harbor
EOF

if [ "$WAIT" = 1 ]; then
  echo
  echo "Running. Press Ctrl-C to stop."
  # In PIDS, so that stopping ends it too (a background job ignores Ctrl-C's SIGINT).
  sleep infinity &
  PIDS+=($!)
  wait $! || true
fi
echo "demo finished"
