# Multi-stage build: compile in the Rust image, run from a small distroless image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Cache dependencies separately from the sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin dolphin-bridge && rm -rf src
COPY src ./src
COPY migrations ./migrations
# Only the service binary (not the bench).
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin dolphin-bridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dolphin-bridge /usr/local/bin/dolphin-bridge
ENV BRIDGE_LISTEN=0.0.0.0:8080 \
    BRIDGE_LOG_FORMAT=json
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/dolphin-bridge"]
CMD ["serve"]
