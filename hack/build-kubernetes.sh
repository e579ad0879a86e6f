#!/usr/bin/env bash
# Builds the Kubernetes v1.20.2 binaries from Debian bookworm's `kubernetes` source package, once,
# and caches them outside the checkout. Prints the directory that holds them on stdout:
#   kube-apiserver                      the control plane of every test and the demo
#   kubelet, kube-controller-manager,   the real node (hack/lib/node.sh): pods from the
#   kube-scheduler, kube-proxy          operator's own image
# All five come from one `make`, so the shared packages compile once (about 11 minutes on 2 cores,
# 7 of them for kube-apiserver alone).
#
# No registry this project can reach ships a kube-apiserver binary; Debian ships the source with its
# vendor/ tree, which builds with Debian's Go 1.19. The vendored reflect2 1.0.1 crashes under
# Go >= 1.18 on the first custom-resource write, so it and json-iterator are replaced with Debian's
# newer copies (upstream did the same in Kubernetes 1.23).
set -euo pipefail

CACHE_DIR="${VBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vbs-operator}"
BIN_DIR="$CACHE_DIR/bin"
SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
COMPONENTS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)

missing=()
for c in "${COMPONENTS[@]}"; do
  [[ -x "$BIN_DIR/$c" ]] || missing+=("$c")
done
if ((${#missing[@]} == 0)); then
  echo "$BIN_DIR"
  exit 0
fi

log() { echo "build-kubernetes: $*" >&2; }

"$(dirname "$0")/install-system-deps.sh" build >&2

work="$CACHE_DIR/build"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$BIN_DIR"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/apt/debian-src.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")

log "fetching Debian source package kubernetes=$SRC_VERSION"
apt-get "${apt_opts[@]}" update >&2
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$SRC_VERSION" >&2)
tarball=$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)
mkdir -p "$work/src"
tar -xf "$tarball" -C "$work/src" --strip-components=1

log "replacing vendored reflect2 and json-iterator with Debian's copies"
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  vend="$work/src/vendor/$pkg"
  find "$vend" -maxdepth 1 -name '*.go' ! -name '*_test.go' -delete
  find "/usr/share/gocode/src/$pkg" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$vend/" \;
done

cat > "$work/version.env" <<'VER'
KUBE_GIT_VERSION='v1.20.2'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
VER

what=$(printf 'cmd/%s ' "${missing[@]}")
log "building ${missing[*]} (about 11 minutes on 2 cores for all five)"
(cd "$work/src" && PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
  GOCACHE="$work/gocache" KUBE_GIT_VERSION_FILE="$work/version.env" \
  make WHAT="${what% }" GOLDFLAGS="-s -w" >&2)
for c in "${missing[@]}"; do
  install -m 0755 "$work/src/_output/local/bin/linux/amd64/$c" "$BIN_DIR/$c.tmp"
  mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
done
rm -rf "$work"
log "cached ${missing[*]} in $BIN_DIR"
echo "$BIN_DIR"
