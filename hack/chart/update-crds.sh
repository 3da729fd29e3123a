#!/usr/bin/env bash
# Regenerates charts/kargo-harbor-receiver/files/crds.yaml from the program's
# own CRDs (`kargo-harbor-receiver crds`), or with --check verifies that the
# committed file is what the program prints now (exit 1 and a diff if not).
#
#   hack/chart/update-crds.sh            # rewrite the file
#   hack/chart/update-crds.sh --check    # compare only
#
# By default the CRDs come from `cargo run -q -p kargo-harbor-receiver -- crds`;
# set KHR_BIN=/path/to/kargo-harbor-receiver to use an already built binary.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$repo/charts/kargo-harbor-receiver/files/crds.yaml"
mode="${1:-write}"

header='# GENERATED FILE - do not edit.
# Produced by `cargo run -q -p kargo-harbor-receiver -- crds` (the program'"'"'s
# own ProjectConfig, ClusterConfig and Warehouse CRDs, generated from
# crates/kargo-api) and regenerated with `hack/chart/update-crds.sh`;
# `hack/chart/update-crds.sh --check` fails when this file is stale.
# The chart installs these only with crds.install=true.'

tmp="$(mktemp)"
trap 'rm -f "$tmp" "$tmp.new"' EXIT
if [[ -n "${KHR_BIN:-}" ]]; then
  "$KHR_BIN" crds >"$tmp"
else
  (cd "$repo" && cargo run -q -p kargo-harbor-receiver -- crds) >"$tmp"
fi
if ! grep -q '^kind: CustomResourceDefinition' "$tmp"; then
  echo "update-crds: the program printed no CRD" >&2
  exit 1
fi
{ printf '%s\n' "$header"; cat "$tmp"; } >"$tmp.new"

case "$mode" in
  write)
    mkdir -p "$(dirname "$out")"
    mv "$tmp.new" "$out"
    echo "wrote $out"
    ;;
  --check)
    if ! diff -u "$out" "$tmp.new"; then
      echo "update-crds: $out is stale; run hack/chart/update-crds.sh" >&2
      exit 1
    fi
    echo "update-crds: $out is up to date"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
