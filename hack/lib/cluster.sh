# shellcheck shell=bash
# A throwaway Kubernetes control plane (etcd + kube-apiserver v1.20.2) on loopback, for tests and
# local runs of the operator (README.md, "Development", says why it is built this way).
#
# Source this file, then:
#   cluster_start DIR   start etcd + kube-apiserver under DIR, wait until ready; sets
#                       CLUSTER_KUBECONFIG, CLUSTER_ETCD_PID, CLUSTER_APISERVER_PID
#   cluster_stop DIR    stop what cluster_start DIR started (by pid files); safe to repeat
#
# DIR/etcd.cmd and DIR/apiserver.cmd hold each component's command line (NUL-separated), so that
# the fault tests can kill one and start it again exactly as it was.
#
# With KUBECONFIG set and VBS_USE_EXISTING_CLUSTER=1, cluster_start uses that cluster instead.
#
# The processes are background children of the shell that calls cluster_start: on this machine
# orphaned processes are never reaped, so whoever starts them must also stop and `wait` for them.
# So call cluster_start and cluster_stop from the same shell, not from a `( ... )` or `$( ... )`
# subshell that exits in between.
# Errors are checked explicitly (not left to `set -e`) because `set -e` is off inside a function
# that is called as `cluster_start DIR || ...`.

_CLUSTER_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_CLUSTER_HACK_DIR="$(dirname "$_CLUSTER_LIB_DIR")"

_cluster_log() { echo "cluster: $*" >&2; }

# Alive means running: a zombie (exited, not yet reaped by its parent) counts as gone.
_cluster_alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Guards against a stale pid file whose pid now belongs to some unrelated process.
_cluster_is_named() {
  local pid=$1 name=$2 comm
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name" ]]
}

_cluster_stop_one() {
  local pidfile=$1 name=$2 pid i ppid
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && _cluster_is_named "$pid" "$name"; then
    if _cluster_alive "$pid"; then
      _cluster_log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        _cluster_alive "$pid" || break
        sleep 0.2
      done
      if _cluster_alive "$pid"; then
        _cluster_log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    # Reap it if it is ours; otherwise its own parent has to.
    ppid=$(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$pid/stat" 2>/dev/null || true)
    if [[ $ppid == "$BASHPID" ]]; then
      wait "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

cluster_stop() {
  local dir=${1:?usage: cluster_stop DIR}
  # apiserver first: it would otherwise spend its shutdown retrying a vanished etcd.
  _cluster_stop_one "$dir/apiserver.pid" kube-apiserver
  _cluster_stop_one "$dir/etcd.pid" etcd
  return 0
}

_cluster_dump_logs() {
  local dir=$1 f
  for f in apiserver.log etcd.log; do
    [[ -f $dir/$f ]] || continue
    _cluster_log "last 30 lines of $dir/$f:"
    tail -n 30 "$dir/$f" >&2
  done
}

_cluster_make_certs() {
  local dir=$1
  local pki=$dir/pki
  mkdir -p "$pki" || return 1
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=vbs-local-ca \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
        -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
        >"$pki/apiserver.ext" &&
      openssl x509 -req -days 3650 -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" &&
      openssl genrsa -out "$pki/sa.key" 2048
  } >/dev/null 2>"$pki/openssl.log" || {
    _cluster_log "openssl failed:"
    cat "$pki/openssl.log" >&2
    return 1
  }
}

# Holds all three sockets open at once so the ports differ from each other; the kernel hands out
# ephemeral ports at random, so two clusters starting together do not pick the same ones.
_cluster_free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
'
}

_cluster_start_existing() {
  if ! kubectl version >/dev/null 2>&1; then
    _cluster_log "VBS_USE_EXISTING_CLUSTER=1 but 'kubectl version' fails against KUBECONFIG=$KUBECONFIG"
    return 1
  fi
  # shellcheck disable=SC2034 # for the caller
  CLUSTER_KUBECONFIG=$KUBECONFIG
  _cluster_log "using existing cluster from KUBECONFIG=$KUBECONFIG"
}

cluster_start() {
  local dir=${1:?usage: cluster_start DIR}

  if [[ -n ${KUBECONFIG:-} && ${VBS_USE_EXISTING_CLUSTER:-} == 1 ]]; then
    _cluster_start_existing
    return
  fi

  local apiserver ports etcd_port peer_port api_port token kubeconfig started deadline
  started=$(date +%s.%N)

  "$_CLUSTER_HACK_DIR/install-system-deps.sh" || return 1
  apiserver=$("$_CLUSTER_HACK_DIR/build-kubernetes.sh")/kube-apiserver || return 1

  mkdir -p "$dir" || return 1
  dir=$(cd "$dir" && pwd) || return 1
  if [[ -f $dir/apiserver.pid || -f $dir/etcd.pid ]]; then
    # Leftovers of a run that was not stopped; never run two clusters on one data dir.
    _cluster_log "pid files found in $dir; stopping the cluster they belong to first"
    cluster_stop "$dir"
  fi
  # Each start is a fresh, empty cluster, like envtest: no state leaks from one test run to the next.
  rm -rf "$dir/etcd" "$dir/certs-auto" "$dir/pki"

  ports=$(_cluster_free_ports) || return 1
  read -r etcd_port peer_port api_port <<<"$ports"

  _cluster_make_certs "$dir" || return 1
  token=$(openssl rand -hex 32) || return 1
  (umask 077 && echo "$token,admin,admin,system:masters" >"$dir/pki/tokens.csv") || return 1

  local etcd_cmd=(etcd --name default --data-dir "$dir/etcd"
    --listen-client-urls "http://127.0.0.1:$etcd_port"
    --advertise-client-urls "http://127.0.0.1:$etcd_port"
    --listen-peer-urls "http://127.0.0.1:$peer_port"
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port"
    --initial-cluster "default=http://127.0.0.1:$peer_port")
  # The command lines, NUL-separated, so that fault tests can restart a component as it was.
  printf '%s\0' "${etcd_cmd[@]}" >"$dir/etcd.cmd"
  "${etcd_cmd[@]}" >"$dir/etcd.log" 2>&1 &
  CLUSTER_ETCD_PID=$!
  echo "$CLUSTER_ETCD_PID" >"$dir/etcd.pid"

  # Without a controller-manager nothing creates service-account tokens, so the ServiceAccount
  # admission plugin would reject every pod; tokens come from the TokenRequest API instead.
  local apiserver_cmd=("$apiserver"
    --etcd-servers "http://127.0.0.1:$etcd_port"
    --bind-address=127.0.0.1
    --secure-port="$api_port"
    --tls-cert-file="$dir/pki/apiserver.crt"
    --tls-private-key-file="$dir/pki/apiserver.key"
    --cert-dir="$dir/certs-auto"
    --token-auth-file="$dir/pki/tokens.csv"
    --authorization-mode=RBAC
    --service-account-issuer=https://kubernetes.default.svc
    --service-account-key-file="$dir/pki/sa.key"
    --service-account-signing-key-file="$dir/pki/sa.key"
    --service-cluster-ip-range=10.0.0.0/24
    --disable-admission-plugins=ServiceAccount)
  printf '%s\0' "${apiserver_cmd[@]}" >"$dir/apiserver.cmd"
  "${apiserver_cmd[@]}" >"$dir/apiserver.log" 2>&1 &
  CLUSTER_APISERVER_PID=$!
  echo "$CLUSTER_APISERVER_PID" >"$dir/apiserver.pid"
  _cluster_log "etcd pid $CLUSTER_ETCD_PID on 127.0.0.1:$etcd_port," \
    "kube-apiserver pid $CLUSTER_APISERVER_PID on 127.0.0.1:$api_port"

  kubeconfig=$dir/kubeconfig
  (
    umask 077
    cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vbs-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: vbs-local
  context:
    cluster: vbs-local
    user: admin
current-context: vbs-local
EOF
  ) || return 1
  # shellcheck disable=SC2034 # for the caller
  CLUSTER_KUBECONFIG=$kubeconfig

  # One deadline for all three waits: /readyz, discovery, and the `default` namespace that the
  # apiserver's bootstrap controller creates a moment after it reports ready.
  deadline=$(($(date +%s) + 60))
  local stage=readyz
  while :; do
    case $stage in
      readyz)
        if curl -sf -o /dev/null --max-time 2 --cacert "$dir/pki/ca.crt" \
          -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz"; then
          stage=api
          continue
        fi
        ;;
      api)
        if kubectl --kubeconfig "$kubeconfig" get --raw /api >/dev/null 2>&1; then
          stage=ns
          continue
        fi
        ;;
      ns)
        kubectl --kubeconfig "$kubeconfig" get namespace default >/dev/null 2>&1 && break
        ;;
    esac
    if ! _cluster_alive "$CLUSTER_ETCD_PID" || ! _cluster_alive "$CLUSTER_APISERVER_PID"; then
      _cluster_log "etcd or kube-apiserver exited during startup (waiting for $stage)"
      _cluster_dump_logs "$dir"
      cluster_stop "$dir"
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      _cluster_log "not ready within 60 s (waiting for $stage)"
      _cluster_dump_logs "$dir"
      cluster_stop "$dir"
      return 1
    fi
    sleep 0.2
  done

  _cluster_log "ready in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s;" \
    "KUBECONFIG=$kubeconfig"
}
