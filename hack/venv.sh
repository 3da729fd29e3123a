# Sourced by hack/deny.sh and hack/chart/validate.sh: a Python venv holding
# pinned requirements, installed once and again only when the requirements
# file changes (its hash is kept in the venv).

# ensure_venv VENV REQUIREMENTS PROBE: installs REQUIREMENTS into VENV unless
# PROBE (an executable the install provides) exists and the requirements are
# those last installed. Exits the script when no venv can be made.
ensure_venv() {
  local venv="$1" requirements="$2" probe="$3"
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ ! -x "$probe" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    printf '\n== %s\n' "installing $requirements into $venv"
    if [[ ! -x "$venv/bin/python" ]] && ! python3 -m venv "$venv"; then
      echo "$(basename "$0"): python3 -m venv failed; on Debian: apt-get install python3-venv" >&2
      exit 1
    fi
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
    echo "$want" >"$stamp"
  fi
}
