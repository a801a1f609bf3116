# The boxoffice server as a container image, for deployments with an external
# PostgreSQL (DATABASE_URL is required: the image has no embedded PostgreSQL).
# deploy/compose.yaml runs three of these behind a load balancer.
#
#   docker build -t boxoffice .
#   docker run -e DATABASE_URL=postgres://… -e JWT_SECRET=… -e QR_SIGNING_KEY=… -p 8080:8080 boxoffice

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the dependency build between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p boxoffice \
    && cp target/release/boxoffice /usr/local/bin/boxoffice

FROM debian:bookworm-slim
# TLS roots are compiled in (webpki); ca-certificates serves anything that reads the system store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/boxoffice --create-home boxoffice
COPY --from=build /usr/local/bin/boxoffice /usr/local/bin/boxoffice
USER boxoffice
ENV BIND=0.0.0.0:8080 \
    BOXOFFICE_DATA_DIR=/var/lib/boxoffice \
    RUST_LOG=info
EXPOSE 8080
# SIGTERM drains: in-flight requests finish, each event's lease is handed over.
STOPSIGNAL SIGTERM
ENTRYPOINT ["boxoffice"]
CMD ["serve"]
