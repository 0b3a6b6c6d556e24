# syntax=docker/dockerfile:1
# The sneakerstop binary in a small, non-root image. The service is chosen by the command:
#   docker run IMAGE serve identity      (or catalog, orders, payments; no name = all)
#
# Stage 1 plans the dependency build from the manifests only, stage 2 builds dependencies
# (a layer that stays cached until Cargo.toml/Cargo.lock change), stage 3 builds our code.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.73 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Queries are checked against the committed crates/*/.sqlx metadata: no database at build time.
ENV SQLX_OFFLINE=true
COPY --from=planner /src/recipe.json recipe.json
# OpenSSL (Kafka's TLS) is built from source and linked in: the distroless image below has no
# libssl to link against at run time. Debug and test builds use the system's instead.
RUN cargo chef cook --release --recipe-path recipe.json --bin sneakerstop --features sneakerstop/vendored-openssl
COPY . .
RUN cargo build --release --bin sneakerstop --features sneakerstop/vendored-openssl && cp target/release/sneakerstop /sneakerstop

# distroless/cc: glibc and libgcc, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
# checkov:skip=CKV_DOCKER_2: Kubernetes probes /healthz and /readyz; a distroless image has no shell or curl for a Docker HEALTHCHECK
COPY --from=builder /sneakerstop /usr/local/bin/sneakerstop
USER nonroot:nonroot
ENV HOST=0.0.0.0 PORT=8080 LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sneakerstop"]
CMD ["serve"]
