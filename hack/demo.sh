#!/usr/bin/env bash
# The whole thing on one machine: a real etcd + kube-apiserver, the VBS simulator seeded with
# backups in different states, the operator, the sample manifests from examples/, and
# `kubectl get vbsbackups -A` showing what the operator found.
#
#   hack/demo.sh                start (restarts a running demo), print the result, leave it running
#   hack/demo.sh --foreground   the same, then stay attached until Ctrl-C, which stops everything
#   hack/demo.sh stop           stop a running demo
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

# shellcheck source=hack/lib/cluster.sh
source hack/lib/cluster.sh

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
}

case ${1:-} in
  stop)
    stop_demo
    say "stopped"
    exit 0
    ;;
  --foreground | "") foreground=${1:-} ;;
  *)
    echo "usage: $0 [--foreground | stop]" >&2
    exit 2
    ;;
esac

command -v cargo >/dev/null || { say "cargo is missing: install Rust (https://rustup.rs)"; exit 1; }
command -v kubectl >/dev/null || { say "kubectl is missing: install kubectl >= 1.20"; exit 1; }

stop_demo
mkdir -p "$DIR"
say "building the operator and the simulator"
cargo build --locked --bins

say "starting etcd + kube-apiserver (the first run builds kube-apiserver: ~7 minutes)"
cluster_start "$DIR/cluster"
export KUBECONFIG=$CLUSTER_KUBECONFIG

say "starting the VBS simulator"
rm -f "$DIR/sim.out" # a stale file from an earlier run would look like a started simulator
target/debug/vbs-sim --listen 127.0.0.1:0 --seed examples/sim-seed.yaml >"$DIR/sim.out" 2>"$DIR/sim.log" &
echo $! >"$DIR/sim.pid"
for ((i = 0; i < 100; i++)); do
  [[ -s $DIR/sim.out ]] && break
  sleep 0.1
done
SIM_URL=$(awk 'NR==1 {print $4}' "$DIR/sim.out")
[[ -n $SIM_URL ]] || { say "the simulator did not start:"; cat "$DIR/sim.log" >&2; exit 1; }

say "installing the CRD and the examples"
# --validate=false: kubectl validates against the 1.20 server's OpenAPI, which predates the CEL
# rule in the CRD; the server itself still validates (and drops the rule it does not know).
kubectl apply --validate=false -f crds/vbsbackup.yaml >/dev/null
kubectl wait --for=condition=established --timeout=30s crd/vbsbackups.vbs.io >/dev/null
kubectl apply -f examples/namespace.yaml >/dev/null
sed "s#http://127.0.0.1:8776#$SIM_URL#g" examples/cloud-secret.yaml | kubectl apply -f - >/dev/null
kubectl apply -f examples/vbsbackups.yaml >/dev/null

say "starting the operator"
target/debug/vbs-operator run --fast-poll-interval 5s --listen-addr 127.0.0.1:0 >"$DIR/operator.log" 2>&1 &
echo $! >"$DIR/operator.pid"

total=$(kubectl get vbsbackups -A --no-headers | wc -l)
for ((i = 0; i < 300; i++)); do
  synced=$(kubectl get vbsbackups -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Synced")].status}{"\n"}{end}' | grep -c . || true)
  [[ $synced -ge $total ]] && break
  sleep 0.1
done
[[ $synced -ge $total ]] || { say "the operator did not report on every VbsBackup in 30 s; its log:"; tail -n 30 "$DIR/operator.log" >&2; exit 1; }

METRICS_ADDR=$(sed -n 's/.*serving \/metrics.*addr=\([0-9.:]*\).*/\1/p' "$DIR/operator.log" | head -n1)

echo
echo "\$ kubectl get vbsbackups -A"
kubectl get vbsbackups -A
echo
echo "\$ kubectl get vbsbackups -A -o wide"
kubectl get vbsbackups -A -o wide
cat <<MSG

It is running. Poke it:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe vbsbackup -n team-a db-nightly          # conditions and events
  kubectl get vbsbackups -n team-a -w &                    # watch, then finish the backup in the cloud:
  curl -X PATCH $SIM_URL/sim/projects/$PROJECT/backups/8c3d2e1f-7a6b-4c5d-9e8f-1a2b3c4d5e6f \\
       -H 'content-type: application/json' -d '{"status": "available"}'
  curl -X POST $SIM_URL/sim/faults -H 'content-type: application/json' \\
       -d '{"target": "show", "status": 503, "times": 5}'   # make the API fail five times
  curl -s http://$METRICS_ADDR/metrics | grep ^vbs_     # the operator's metrics
  tail -f $DIR/operator.log                               # the operator's log
Stop it: $repo/hack/demo.sh stop
MSG

if [[ $foreground == --foreground ]]; then
  trap 'stop_demo; say stopped; exit 0' INT TERM
  say "attached; Ctrl-C stops everything"
  wait
fi
