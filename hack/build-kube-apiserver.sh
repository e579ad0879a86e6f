#!/usr/bin/env bash
# Builds kube-apiserver v1.20.2 from Debian bookworm's `kubernetes` source package, once, and caches
# the binary outside the checkout. Prints the binary's path on stdout.
#
# No registry this project can reach ships a kube-apiserver binary; Debian ships the source with its
# vendor/ tree, which builds with Debian's Go 1.19. The vendored reflect2 1.0.1 crashes under
# Go >= 1.18 on the first custom-resource write, so it and json-iterator are replaced with Debian's
# newer copies (upstream did the same in Kubernetes 1.23).
set -euo pipefail

CACHE_DIR="${VBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vbs-operator}"
BIN="$CACHE_DIR/bin/kube-apiserver"
SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

log() { echo "build-kube-apiserver: $*" >&2; }

"$(dirname "$0")/install-system-deps.sh" build >&2

work="$CACHE_DIR/build"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$CACHE_DIR/bin"
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

log "building kube-apiserver (about 7 minutes on 2 cores)"
(cd "$work/src" && PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
  GOCACHE="$work/gocache" KUBE_GIT_VERSION_FILE="$work/version.env" \
  make WHAT=cmd/kube-apiserver GOLDFLAGS="-s -w" >&2)
install -m 0755 "$work/src/_output/local/bin/linux/amd64/kube-apiserver" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
rm -rf "$work"
log "cached $BIN"
echo "$BIN"
