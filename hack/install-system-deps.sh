#!/usr/bin/env bash
# Installs the Debian packages the local control plane needs. Idempotent and quiet when all is there.
#   install-system-deps.sh          runtime: etcd, openssl, kubectl is expected preinstalled
#   install-system-deps.sh build    also what building kube-apiserver from source needs
set -euo pipefail

pkgs=(etcd-server openssl ca-certificates curl)
if [[ "${1:-}" == "build" ]]; then
  pkgs+=(golang-1.19-go make rsync dpkg-dev golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "install-system-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
