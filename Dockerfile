# syntax=docker/dockerfile:1
#
# Container image of kargo-harbor-receiver.
#
# NOTE: no Docker engine runs where this project is developed and tested, so
# CI never builds this image. It builds its binary with the command of the RUN
# line below and checks it against the runtime image and the chart
# (hack/image-check.sh, `make image-check`), and lints this file with hadolint
# (hack/chart/validate.sh). Kept simple and conventional so that it builds
# anywhere with BuildKit:
#
#   docker build -t kargo-harbor-receiver:0.1.0 .
#
# The chart (charts/kargo-harbor-receiver) runs it as `kargo-harbor-receiver run`
# with user 65532, a read-only root filesystem and every capability dropped.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds; the
# binary is copied out of the cache so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p kargo-harbor-receiver --locked \
 && install -D -m 0755 target/release/kargo-harbor-receiver /out/kargo-harbor-receiver

# glibc, libgcc and CA certificates, no shell; "nonroot" is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/kargo-harbor-receiver /usr/local/bin/kargo-harbor-receiver
USER 65532:65532
# 8080: webhooks, /healthz, /readyz.  9090: /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/kargo-harbor-receiver"]
CMD ["run"]
