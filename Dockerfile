# The `spillway` binary on a distroless base, as the Helm chart runs it: non-root (65532), no
# shell, read-only root filesystem (only /tmp is written). Not built by CI (no container engine
# there); `docker build -t <registry>/spillway:<version> .`
FROM rust:1.95-bookworm AS build
# librdkafka (built by the rdkafka crate, with a vendored OpenSSL) needs a C toolchain and perl.
RUN apt-get update && apt-get install -y --no-install-recommends cmake perl && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p spillway && cp target/release/spillway /spillway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /spillway /usr/local/bin/spillway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/spillway"]
