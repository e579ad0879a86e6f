#!/usr/bin/env bash
# Builds the operator's container image without Docker or a registry: the static musl binary
# (release profile), a CA bundle for the clouds' TLS, /etc/passwd and /etc/group with the non-root
# user 65532, entrypoint `vbs-operator`. Writes an OCI image archive that
# `ctr -n k8s.io images import` (and `docker load`) take, and prints its path; the manifest digest
# goes to stderr. Reproducible: the same binary and CA bundle give the same digest.
#
#   hack/build-image.sh [--name localhost/vbs-operator:dev] [--out FILE] [--profile release|dev]
#
# The layout is the Dockerfile's: /vbs-operator, /etc/ssl/certs/ca-certificates.crt, /etc/passwd,
# /etc/group, user 65532:65532, ENTRYPOINT ["/vbs-operator"], CMD ["run"], port 8080.
#
# When the x86_64-unknown-linux-musl target cannot be installed (rustup fetches it from the Rust
# distribution server), the glibc binary is used with the libraries `ldd` lists, at their paths.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

name=localhost/vbs-operator:dev
out=target/image/vbs-operator.tar
profile=release
while (($#)); do
  case $1 in
    --name) name=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    *) echo "usage: $0 [--name NAME] [--out FILE] [--profile release|dev]" >&2; exit 2 ;;
  esac
done
log() { echo "build-image: $*" >&2; }

ca_bundle=/etc/ssl/certs/ca-certificates.crt
if [[ ! -s $ca_bundle ]]; then
  hack/install-system-deps.sh >&2
fi
[[ -s $ca_bundle ]] || { log "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)"; exit 1; }

target=x86_64-unknown-linux-musl
musl=1
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  timeout 300 rustup target add "$target" >&2 || musl=0
fi
if ((musl)) && ! command -v musl-gcc >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null; } >&2 || musl=0
fi

dir_of_profile() { [[ $profile == dev ]] && echo debug || echo "$profile"; }
extra=()
if ((musl)); then
  log "building the static binary ($target, $profile)"
  cargo build --locked --profile "$profile" --target "$target" --bin vbs-operator >&2
  binary=target/$target/$(dir_of_profile)/vbs-operator
else
  log "the musl target cannot be installed here: using the glibc binary and the libraries ldd lists"
  cargo build --locked --profile "$profile" --bin vbs-operator >&2
  binary=target/$(dir_of_profile)/vbs-operator
  while read -r lib; do
    extra+=(--file "$lib=$(readlink -f "$lib"):0755")
  done < <(ldd "$binary" | grep -o '/[^ ]*' | sort -u)
fi

mkdir -p "$(dirname "$out")"
digest=$(python3 hack/lib/oci-image.py --name "$name" --out "$out" \
  --file "/vbs-operator=$binary:0755" \
  --file "/etc/ssl/certs/ca-certificates.crt=$ca_bundle:0644" \
  --file "/etc/passwd=hack/image/passwd:0644" \
  --file "/etc/group=hack/image/group:0644" \
  "${extra[@]}" \
  --dir /tmp:1777 \
  --user 65532:65532 --entrypoint /vbs-operator --cmd run --port 8080 \
  --label "org.opencontainers.image.title=vbs-operator" \
  --label "org.opencontainers.image.version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)")
log "$name $digest ($(du -h "$out" | cut -f1))"
echo "$out"
