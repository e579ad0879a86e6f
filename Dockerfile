# syntax=docker/dockerfile:1
# The operator's image for users with Docker, with the same layout as hack/build-image.sh (which
# builds it without Docker or a registry, and is what the tests run): the static x86_64 musl binary
# at /vbs-operator, a CA bundle for the clouds' TLS, /etc/passwd and /etc/group with the non-root
# user 65532, nothing else (no shell).
#
#   docker build -t ghcr.io/vbs-operator/vbs-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
COPY tests ./tests
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin vbs-operator \
 && cp target/x86_64-unknown-linux-musl/release/vbs-operator /vbs-operator

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY hack/image/passwd /etc/passwd
COPY hack/image/group /etc/group
COPY --from=build /vbs-operator /vbs-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vbs-operator"]
CMD ["run"]
