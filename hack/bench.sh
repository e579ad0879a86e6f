#!/usr/bin/env bash
# The fleet benchmark (benches/fleet.rs) against a real etcd + kube-apiserver started here and the
# simulator: N VbsBackups in 100 namespaces with 10 credential sets, the operator's release binary
# in `batch` and `single` refresh mode side by side, and the API server's own limit (bare status
# patches) measured in the same run. Prints one Markdown table.
#
#   hack/bench.sh                                  N = 1,000 and 10,000, 5 minutes of steady state each
#   VBS_BENCH_SIZES=1000 VBS_BENCH_STEADY_SECS=120 hack/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/lib/cluster.sh
source hack/lib/cluster.sh

cargo bench --locked --bench fleet --no-run
dir=$(mktemp -d "${TMPDIR:-/tmp}/vbs-bench.XXXXXX")
trap 'cluster_stop "$dir"; rm -rf "$dir"' EXIT
cluster_start "$dir"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r)"
KUBECONFIG="$CLUSTER_KUBECONFIG" cargo bench --locked --bench fleet
