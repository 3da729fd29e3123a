#!/usr/bin/env bash
# Memory and readiness benchmark of the receiver. NOT run in CI (it asserts
# nothing; its numbers depend on the machine).
#
# Builds the release receiver and crates/bench, then, for each size and
# Warehouse shape (plain semver constraint; + one allowTagsRegexes pattern
# shared by all; + one ignoreTagsRegexes pattern unique to each), seeds a
# fresh kube-emulator, starts the receiver binary as its own process, waits
# for /readyz and prints time to ready, RSS, net bytes per Warehouse (RSS −
# RSS of the same binary with no seeded Warehouse) and matched-push latency
# beside a direct PATCH. Everything listens on 127.0.0.1.
#
# Usage: hack/bench/memory.sh [--sizes 1000,10000,100000] [--shapes plain,shared-allow,unique-ignore]
#                             [--pushes 200] [--after-ready]      (SKIP_BUILD=1 reuses the builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p kargo-harbor-receiver -p bench
fi
exec "${CARGO_TARGET_DIR:-target}/release/bench-memory" "$@"
