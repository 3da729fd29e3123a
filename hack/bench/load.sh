#!/usr/bin/env bash
# Load benchmark of the webhook receiver against a bare hyper server on
# loopback. NOT run in CI (it asserts nothing; its numbers depend on the
# machine).
#
# Builds the release receiver, the bare-hyper baseline and crates/bench,
# installs wrk (Debian package) if missing, then runs wrk (1 thread, 32
# connections by default) in alternating rounds — baseline, wrong-token
# rejects, authorised pushes matching nothing, baseline — and prints each
# round's ratios to the baseline and their medians; finally pushes matching
# one Warehouse (one refresh PATCH to kube-emulator each). Everything
# listens on 127.0.0.1 and every run is bounded by --duration.
#
# Log volume of rejections: --log-volume runs only the wrong-token load, with
# RUST_LOG=info and JSON logs (the chart's defaults), and reports the
# receiver's log bytes per 10,000 rejected requests.
#
# Usage: hack/bench/load.sh [--rounds 5] [--duration 5s] [--connections 32] [--threads 1]
#                           [--no-matched] [--log-volume] [--receiver PATH]
#                           (SKIP_BUILD=1 reuses the builds; --receiver compares another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p kargo-harbor-receiver -p bench
fi
exec "${CARGO_TARGET_DIR:-target}/release/bench-load" "$@"
