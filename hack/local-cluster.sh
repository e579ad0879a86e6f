#!/usr/bin/env bash
# Runs a local etcd + kube-apiserver (see hack/lib/cluster.sh).
#   hack/local-cluster.sh start [DIR]   start, print the KUBECONFIG export, stay in the foreground
#                                       until Ctrl-C / SIGTERM, then stop the cluster
#   hack/local-cluster.sh stop [DIR]    stop a cluster started elsewhere, by its pid files
# DIR defaults to ${VBS_CLUSTER_DIR:-$HOME/.cache/vbs-operator/cluster}.
set -euo pipefail

# shellcheck source=hack/lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"

usage() {
  echo "usage: $0 start|stop [DIR]" >&2
  exit 2
}

cmd=${1:-}
dir=${2:-${VBS_CLUSTER_DIR:-$HOME/.cache/vbs-operator/cluster}}

cleanup() {
  trap - EXIT INT TERM
  cluster_stop "$dir"
  # Reaps anything cluster_stop did not, e.g. when `local-cluster.sh stop` removed the pid files.
  wait 2>/dev/null || true
}

case $cmd in
  start)
    # The script stays in the foreground because the processes are its children: this machine does
    # not reap orphans, so the parent has to outlive them and `wait` for them.
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    cluster_start "$dir"
    echo "export KUBECONFIG=$CLUSTER_KUBECONFIG"
    _cluster_log "running; Ctrl-C or 'hack/local-cluster.sh stop $dir' stops it"

    # `wait` returns as soon as a trapped signal arrives, or when either process exits on its own.
    status=0
    wait -n "$CLUSTER_APISERVER_PID" "$CLUSTER_ETCD_PID" || status=$?
    _cluster_log "etcd or kube-apiserver exited (status $status); stopping the cluster"
    exit 1
    ;;
  stop)
    cluster_stop "$dir"
    ;;
  *)
    usage
    ;;
esac
