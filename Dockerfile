# syntax=docker/dockerfile:1
# A small static image: the operator built for x86_64 musl, on distroless/static (CA certificates,
# no shell), running as the distroless "nonroot" user (65532).
#
#   docker build -t ghcr.io/vbs-operator/vbs-operator:0.1.0 .
#
# CI builds the same binary (`cargo build --release --target x86_64-unknown-linux-musl`), so a
# broken static build shows up there even though no Docker engine runs in CI.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
COPY tests ./tests
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin vbs-operator \
 && cp target/x86_64-unknown-linux-musl/release/vbs-operator /vbs-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /vbs-operator /vbs-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vbs-operator"]
CMD ["run"]
