# syntax=docker/dockerfile:1
#
# argocd-cdevents container image.
#   docker build -t argocd-cdevents:0.1.0 .
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# sqlx: never try to reach a database at compile time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# The cargo registry and target directory are cache mounts (kept between builds, not in the
# image), so the binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin argocd-cdevents \
 && install -D -m 0755 target/release/argocd-cdevents /out/argocd-cdevents \
 && install -d -m 0750 /out/state

# ---- runtime --------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc only, no shell; the :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="argocd-cdevents" \
      org.opencontainers.image.description="A bidirectional CDEvents gateway for Argo CD" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The binary stays root-owned (not writable by the process); the state directory is the
# nonroot user's.
COPY --from=builder /out/argocd-cdevents /usr/local/bin/argocd-cdevents
COPY --from=builder --chown=65532:65532 /out/state /var/lib/argocd-cdevents
USER 65532:65532
# CloudEvents intake at /, /healthz, /readyz, /metrics.
EXPOSE 8080
# State (SQLite) lives here; mount a volume on it.
VOLUME ["/var/lib/argocd-cdevents"]
ENTRYPOINT ["/usr/local/bin/argocd-cdevents"]
# The chart and deploy/ mount the config file here and pass these arguments themselves.
CMD ["serve", "--config", "/etc/argocd-cdevents/config.yaml"]
