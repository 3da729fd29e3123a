#!/usr/bin/env bash
# What can be checked of the container image without a Docker engine.
#
#   bash hack/image-check.sh      (make image-check; CI runs it)
#
# 1. The binary is built exactly as the Dockerfile's builder stage builds it:
#    the `cargo build` command is read from the Dockerfile's RUN line (same
#    package, profile, --locked), not restated here. The builder image is
#    rust:1-bookworm; this machine is Debian 12 too (checked), so the glibc
#    the binary links against is the builder's.
# 2. The binary fits the runtime image, gcr.io/distroless/cc-debian12: it
#    needs only the shared libraries that image ships (glibc, libgcc_s) and
#    no glibc symbol newer than Debian 12's 2.36; it starts (`--version`,
#    `crds`) without a shell, a writable filesystem or a home directory.
# 3. The Dockerfile agrees with the chart: the binary is installed where
#    ENTRYPOINT points, USER is the chart's runAsUser, CMD is `run`, and the
#    EXPOSEd ports are the chart's container ports.
# The Dockerfile itself is linted with hadolint by hack/chart/validate.sh.
#
# Not verified here (needs a Docker engine and the network to the registries):
# pulling rust:1-bookworm and distroless, BuildKit's cache mounts, the COPY
# between stages, and running the image.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "image-check: FAIL: $*" >&2
  exit 1
}

dockerfile=Dockerfile
target_dir="${CARGO_TARGET_DIR:-target}"

# shellcheck disable=SC1091
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] ||
  fail "this check assumes a Debian 12 (bookworm) host like the rust:1-bookworm builder; found ${PRETTY_NAME:-unknown}"
grep -q '^FROM rust:1-bookworm AS builder' "$dockerfile" || fail "the builder stage is no longer rust:1-bookworm: update this check"
grep -q '^FROM gcr.io/distroless/cc-debian12' "$dockerfile" || fail "the runtime stage is no longer distroless cc-debian12: update this check"

# --- 1. build as the Dockerfile does -----------------------------------------
# The RUN instruction spans continuation lines; take the `cargo build …` part
# up to `&&` or the line's end.
build=$(sed -n 's/^[[:space:]]*\(cargo build [^&\\]*\).*/\1/p' "$dockerfile" | sed 's/[[:space:]]*$//')
[ -n "$build" ] || fail "no 'cargo build' in $dockerfile"
[ "$(printf '%s\n' "$build" | wc -l)" = 1 ] || fail "several 'cargo build' lines in $dockerfile"
installed_from=$(sed -n 's/.*install -D -m 0755 \([^ ]*\) \([^ ]*\).*/\1/p' "$dockerfile")
installed_to=$(sed -n 's/.*install -D -m 0755 \([^ ]*\) \([^ ]*\).*/\2/p' "$dockerfile")
[ -n "$installed_from" ] || fail "no 'install -D -m 0755 FROM TO' in $dockerfile"
echo "== $build   (from $dockerfile)"
# shellcheck disable=SC2086 # the command's words, as the shell in RUN splits them
$build
binary="$target_dir/${installed_from#target/}"
[ -x "$binary" ] || fail "$binary was not built"
echo "built $binary ($(du -h "$binary" | cut -f1))"

# --- 2. fits the runtime image -----------------------------------------------
allowed='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-x86-64\.so\.2)$'
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "needs: $(echo "$needed" | tr '\n' ' ')"
while read -r lib; do
  [[ "$lib" =~ $allowed ]] || fail "$binary needs $lib, which distroless/cc-debian12 does not ship"
done <<<"$needed"
newest=$(readelf --dyn-syms -W "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -n1)
echo "newest glibc symbol: $newest"
printf '%s\n%s\n' "${newest#GLIBC_}" "2.36" | sort -V -C || fail "$binary needs $newest, newer than Debian 12's glibc 2.36"
# No shell, no writable root, an unknown user: as in the pod.
env -i "$binary" --version
crds=$(env -i "$binary" crds) || fail "$binary crds failed"
grep -q '^kind: CustomResourceDefinition' <<<"$crds" || fail "$binary crds printed no CRD"

# --- 3. agrees with the chart --------------------------------------------------
chart=charts/kargo-harbor-receiver
in_image=$(sed -n "s|^COPY --from=builder $installed_to \([^ ]*\)\$|\1|p" "$dockerfile")
[ -n "$in_image" ] || fail "no 'COPY --from=builder $installed_to DEST' in $dockerfile"
grep -q "^ENTRYPOINT \[\"$in_image\"\]" "$dockerfile" || fail "ENTRYPOINT is not $in_image, where the binary is copied"
grep -q '^CMD \["run"\]' "$dockerfile" || fail "CMD is not [\"run\"]"
user=$(sed -n 's/^USER \([0-9]*\):\([0-9]*\)$/\1/p' "$dockerfile")
grep -q "runAsUser: $user\$" "$chart/values.yaml" || fail "USER $user is not the chart's runAsUser"
for port in $(sed -n 's/^EXPOSE //p' "$dockerfile"); do
  grep -Eq "^  (http|metrics): $port\$" "$chart/values.yaml" || fail "EXPOSE $port is not a container port of the chart"
done
echo "image-check: the Dockerfile's build, its runtime image's libraries and glibc, and the chart agree"
echo "image-check: NOT verified (no Docker engine): base image pulls, BuildKit cache mounts, COPY --from, running the image"
