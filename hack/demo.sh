#!/usr/bin/env bash
# The whole thing on one machine: the simulator seeded with VBS and CBR backups in different
# states, the operator, the sample manifests from examples/, and `kubectl get vbsbackups -A` and
# `kubectl get cbrbackups -A` showing what the operator found.
#
#   hack/demo.sh [--in-cluster]  the operator as users run it (the default): a real node (etcd,
#                                kube-apiserver, controller-manager, scheduler, containerd, kubelet,
#                                kube-proxy, a bridge CNI), the operator's image built here, the
#                                Helm chart installed with `helm install`; leaves it running
#   hack/demo.sh --local         lighter: etcd + kube-apiserver only, the operator as a local process
#   hack/demo.sh --local --foreground   the same, staying attached until Ctrl-C stops everything
#   hack/demo.sh stop            stop a running demo (either kind)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

# shellcheck source=hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=hack/lib/node.sh
source hack/lib/node.sh

DIR=${VBS_DEMO_DIR:-$HOME/.cache/vbs-operator/demo}
PROJECT=b23b579f08c84228b9b4673c46f0c442
say() { echo "demo: $*" >&2; }

stop_pidfile() {
  local pidfile=$1 pid i
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

stop_demo() {
  stop_pidfile "$DIR/operator.pid"
  stop_pidfile "$DIR/sim.pid"
  cluster_stop "$DIR/cluster"
  node_stop "$DIR/node"
}

start_sim() {
  local addr=$1
  rm -f "$DIR/sim.out" # a stale file from an earlier run would look like a started simulator
  target/debug/vbs-sim --listen "$addr" --seed examples/sim-seed.yaml >"$DIR/sim.out" 2>"$DIR/sim.log" &
  echo $! >"$DIR/sim.pid"
  for ((i = 0; i < 100; i++)); do
    [[ -s $DIR/sim.out ]] && break
    sleep 0.1
  done
  SIM_URL=$(awk 'NR==1 {print $4}' "$DIR/sim.out")
  [[ -n $SIM_URL ]] || { say "the simulator did not start:"; cat "$DIR/sim.log" >&2; exit 1; }
}

install_examples() {
  # --validate=false: kubectl validates against the 1.20 server's OpenAPI, which predates the CEL
  # rule in the CRD; the server itself still validates (and drops the rule it does not know).
  kubectl apply --validate=false -f crds/vbsbackup.yaml -f crds/cbrbackup.yaml >/dev/null
  kubectl wait --for=condition=established --timeout=30s crd/vbsbackups.vbs.io crd/cbrbackups.vbs.io >/dev/null
  kubectl apply -f examples/namespace.yaml >/dev/null
  sed "s#http://127.0.0.1:8776#$SIM_URL#g" examples/cloud-secret.yaml | kubectl apply -f - >/dev/null
  kubectl apply -f examples/vbsbackups.yaml -f examples/cbrbackups.yaml >/dev/null
}

wait_synced() {
  local total synced=0 i
  total=$(kubectl get vbsbackups,cbrbackups -A --no-headers | wc -l)
  for ((i = 0; i < 600; i++)); do
    synced=$(kubectl get vbsbackups,cbrbackups -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Synced")].status}{"\n"}{end}' | grep -c . || true)
    [[ $synced -ge $total ]] && return 0
    sleep 0.1
  done
  return 1
}

case ${1:-} in
  stop)
    stop_demo
    say "stopped"
    exit 0
    ;;
  --in-cluster | "") mode=--in-cluster ;;
  --local) mode=--local foreground=${2:-} ;;
  --foreground) mode=--local foreground=--foreground ;;
  *)
    echo "usage: $0 [--in-cluster | --local [--foreground] | stop]" >&2
    exit 2
    ;;
esac

command -v cargo >/dev/null || { say "cargo is missing: install Rust (https://rustup.rs)"; exit 1; }
command -v kubectl >/dev/null || { say "kubectl is missing: install kubectl >= 1.20"; exit 1; }

stop_demo
mkdir -p "$DIR"
say "building the operator and the simulator"
cargo build --locked --bins

if [[ $mode == --in-cluster ]]; then
  started=$(date +%s)
  say "starting a whole node (the first run builds the Kubernetes binaries: ~11 minutes)"
  node_start "$DIR/node"
  export KUBECONFIG=$NODE_KUBECONFIG
  say "building the operator's image and importing it into the node's containerd"
  image=$(hack/build-image.sh --name localhost/vbs-operator:dev)
  node_import "$DIR/node" "$image"
  say "starting the simulator (VBS and CBR) on the node's address, where pods reach it"
  start_sim "$NODE_IP:0"
  install_examples
  say "installing the chart with helm"
  PATH="$(hack/install-tools.sh):$PATH"
  export HELM_CACHE_HOME=$DIR/helm/cache HELM_CONFIG_HOME=$DIR/helm/config HELM_DATA_HOME=$DIR/helm/data
  helm install vbs-operator charts/vbs-operator -n vbs-system --create-namespace \
    --set image.repository=localhost/vbs-operator --set image.tag=dev --set image.pullPolicy=Never \
    --set operator.fastPollInterval=5s --wait --timeout 120s >/dev/null
  wait_synced || { say "the operator did not report on every VbsBackup in 60 s; its log:"; kubectl logs -n vbs-system deploy/vbs-operator --tail 30 >&2; exit 1; }
  echo
  echo "\$ kubectl get pods -n vbs-system -o wide"
  kubectl get pods -n vbs-system -o wide
  echo
  echo "\$ kubectl get vbsbackups -A"
  kubectl get vbsbackups -A
  echo
  echo "\$ kubectl get cbrbackups -A"
  kubectl get cbrbackups -A
  cat <<MSG

The operator runs as the chart's pod, from the image built here ($(($(date +%s) - started)) s). Poke it:
  export KUBECONFIG=$KUBECONFIG
  kubectl logs -n vbs-system deploy/vbs-operator            # JSON logs
  kubectl describe vbsbackup -n team-a db-nightly           # conditions and events
  curl -X PATCH $SIM_URL/sim/projects/$PROJECT/cbr-backups/7e21c9d4-0a1b-4c2d-8e3f-5a6b7c8d9e0f \\
       -H 'content-type: application/json' -d '{"status": "available"}'
  curl -X PATCH $SIM_URL/sim/projects/$PROJECT/backups/8c3d2e1f-7a6b-4c5d-9e8f-1a2b3c4d5e6f \\
       -H 'content-type: application/json' -d '{"status": "available"}'
Stop it: $repo/hack/demo.sh stop
MSG
  exit 0
fi

say "starting etcd + kube-apiserver (the first run builds kube-apiserver: ~7 minutes)"
cluster_start "$DIR/cluster"
export KUBECONFIG=$CLUSTER_KUBECONFIG

say "starting the simulator (VBS and CBR)"
start_sim 127.0.0.1:0

say "installing the CRDs and the examples"
install_examples

say "starting the operator"
target/debug/vbs-operator run --fast-poll-interval 5s --listen-addr 127.0.0.1:0 >"$DIR/operator.log" 2>&1 &
echo $! >"$DIR/operator.pid"
wait_synced || { say "the operator did not report on every VbsBackup in 60 s; its log:"; tail -n 30 "$DIR/operator.log" >&2; exit 1; }

METRICS_ADDR=$(sed -n 's/.*serving \/metrics.*addr=\([0-9.:]*\).*/\1/p' "$DIR/operator.log" | head -n1)

echo
echo "\$ kubectl get vbsbackups -A"
kubectl get vbsbackups -A
echo
echo "\$ kubectl get vbsbackups -A -o wide"
kubectl get vbsbackups -A -o wide
echo
echo "\$ kubectl get cbrbackups -A -o wide"
kubectl get cbrbackups -A -o wide
cat <<MSG

It is running. Poke it:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe vbsbackup -n team-a db-nightly          # conditions and events
  kubectl get cbrbackups -n team-a -w &                    # watch, then finish the CBR backup in the cloud:
  curl -X PATCH $SIM_URL/sim/projects/$PROJECT/cbr-backups/7e21c9d4-0a1b-4c2d-8e3f-5a6b7c8d9e0f \\
       -H 'content-type: application/json' -d '{"status": "available"}'
  kubectl get vbsbackups -n team-a -w &                    # and the VBS one:
  curl -X PATCH $SIM_URL/sim/projects/$PROJECT/backups/8c3d2e1f-7a6b-4c5d-9e8f-1a2b3c4d5e6f \\
       -H 'content-type: application/json' -d '{"status": "available"}'
  curl -X POST $SIM_URL/sim/faults -H 'content-type: application/json' \\
       -d '{"target": "show", "status": 503, "times": 5}'   # make the API fail five times
  curl -s http://$METRICS_ADDR/metrics | grep ^vbs_     # the operator's metrics
  tail -f $DIR/operator.log                               # the operator's log
Stop it: $repo/hack/demo.sh stop
MSG

if [[ ${foreground:-} == --foreground ]]; then
  trap 'stop_demo; say stopped; exit 0' INT TERM
  say "attached; Ctrl-C stops everything"
  wait
fi
