# Multi-stage image of the switchboard binary: build in the Rust image, run as a non-root
# user on a slim base. Configuration comes from the environment (see config/default.toml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY jobs ./jobs
COPY src ./src
COPY config ./config
COPY migrations ./migrations
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
ENTRYPOINT ["switchboard"]
CMD ["serve"]
