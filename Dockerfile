# Multi-stage image of the switchboard binary: build in the Rust image, run as a non-root
# user on a slim base. Configuration comes from the environment (see config/default.toml).
# The build stage copies every file the build reads; `scripts/docker-context-check` (run by
# scripts/test) builds from exactly these COPY lines to prove it.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY jobs ./jobs
COPY src ./src
COPY config ./config
COPY migrations ./migrations
# The dashboard's page templates (askama, compiled in).
COPY templates ./templates
# The demo's sample webhooks (compiled in).
COPY tests/fixtures/webhooks ./tests/fixtures/webhooks
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home switchboard
WORKDIR /app
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY config ./config
USER switchboard
ENV SWITCHBOARD_ENV=production
# production.toml listens on 0.0.0.0: serve needs SWITCHBOARD_DASHBOARD_TOKEN and/or
# SWITCHBOARD_DASHBOARD_PASSWORD at run time (it refuses an open dashboard).
EXPOSE 8080
# Liveness through the process' own /healthz, with bash's /dev/tcp (no curl in the image).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["switchboard"]
CMD ["serve"]
