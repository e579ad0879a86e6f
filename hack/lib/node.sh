# shellcheck shell=bash
# A whole single-node Kubernetes cluster on this machine: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy and a bridge CNI, all
# from Debian packages and the Kubernetes v1.20.2 binaries hack/build-kubernetes.sh builds. Pods
# run from images imported locally (no registry is reachable).
#
# Source this file (after hack/lib/cluster.sh), then:
#   node_start DIR        start everything under DIR, wait until the node is Ready; sets
#                         NODE_KUBECONFIG; prints nothing on stdout
#   node_import DIR TAR   import an image archive into the node's containerd
#   node_stop DIR         stop everything node_start DIR started and remove what it left on the
#                         host (bridge, iptables chains, mounts, pod logs); safe to repeat
#
# Layout: a bridge cni0 with 10.244.0.1/24 (the node's IP; the API server listens there, so the
# `kubernetes` Service 10.96.0.1 reaches it from pods), pods in 10.244.0.0/24 with routes only to
# that range and the service range 10.96.0.0/24, kube-proxy in iptables mode. No component or pod
# reaches any address but loopback, the bridge and those ranges: there is no default route in a
# pod, and the kubelet runs with AWS_EC2_METADATA_DISABLED=true (its in-tree AWS credential
# provider would otherwise contact 169.254.169.254). With VBS_NODE_AUDIT=1 every component runs
# under `strace -f -e trace=connect`, writing DIR/audit/*.strace, for the tests to check.
#
# The kubelet and containerd use a few fixed host paths (/var/log/pods, /var/log/containers,
# /run/netns): one node per machine at a time.

_NODE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_NODE_HACK_DIR="$(dirname "$_NODE_LIB_DIR")"

NODE_IP=10.244.0.1
NODE_POD_CIDR=10.244.0.0/24
NODE_SERVICE_CIDR=10.96.0.0/24
NODE_API_PORT=6443
NODE_NAME=vbs-node
NODE_PAUSE_IMAGE=localhost/pause:vbs

_node_log() { echo "node: $*" >&2; }

_node_install_packages() {
  local pkgs=(containerd runc containernetworking-plugins iptables conntrack socat strace gcc libc6-dev python3)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    _node_log "installing ${missing[*]}"
    apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Runs a component in the background, under strace when auditing; records its pid.
_node_spawn() {
  local dir=$1 name=$2
  shift 2
  if [[ ${VBS_NODE_AUDIT:-} == 1 ]]; then
    mkdir -p "$dir/audit"
    strace -f -qq -e trace=connect -o "$dir/audit/$name.strace" "$@" >"$dir/$name.log" 2>&1 &
  else
    "$@" >"$dir/$name.log" 2>&1 &
  fi
  echo $! >"$dir/$name.pid"
}

_node_certs() {
  local pki=$1/pki
  mkdir -p "$pki"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=vbs-node-ca \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
        -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" &&
      printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' "$NODE_IP" \
        >"$pki/apiserver.ext" &&
      openssl x509 -req -days 3650 -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
        -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" &&
      printf 'extendedKeyUsage=clientAuth\n' >"$pki/client.ext" &&
      openssl x509 -req -days 3650 -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -extfile "$pki/client.ext" -out "$pki/kubelet-client.crt" &&
      openssl genrsa -out "$pki/sa.key" 2048
  } >/dev/null 2>"$pki/openssl.log" || {
    _node_log "openssl failed:"
    cat "$pki/openssl.log" >&2
    return 1
  }
}

# The pause image every pod sandbox runs, built from hack/image/pause.c.
_node_pause_image() {
  local dir=$1
  mkdir -p "$dir/images"
  gcc -static -Os -o "$dir/images/pause" "$_NODE_HACK_DIR/image/pause.c" &&
    strip "$dir/images/pause" &&
    python3 "$_NODE_LIB_DIR/oci-image.py" --name "$NODE_PAUSE_IMAGE" --out "$dir/images/pause.tar" \
      --file "/pause=$dir/images/pause:0755" --entrypoint /pause >/dev/null
}

node_import() {
  local dir=$1 tar=$2
  ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import --no-unpack "$tar" >/dev/null ||
    ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$tar" >/dev/null
}

_node_wait() {
  local what=$1 deadline=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      _node_log "timed out waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

node_start() {
  local dir=${1:?usage: node_start DIR} bins etcd_port peer_port token kubeconfig started
  started=$(date +%s)
  _node_install_packages || return 1
  "$_NODE_HACK_DIR/install-system-deps.sh" || return 1
  bins=$("$_NODE_HACK_DIR/build-kubernetes.sh") || return 1

  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  node_stop "$dir"
  rm -rf "${dir:?}"/{etcd,pki,containerd,kubelet,cni,audit,images,*.log,*.pid}

  # The bridge first: the API server binds to its address.
  ip link add cni0 type bridge 2>/dev/null || true
  ip addr replace "$NODE_IP/24" dev cni0 && ip link set cni0 up || return 1

  _node_certs "$dir" || return 1
  token=$(openssl rand -hex 32)
  (umask 077 && echo "$token,admin,admin,system:masters" >"$dir/pki/tokens.csv")
  kubeconfig=$dir/kubeconfig
  (
    umask 077
    cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vbs-node
  cluster:
    server: https://$NODE_IP:$NODE_API_PORT
    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: vbs-node
  context: {cluster: vbs-node, user: admin}
current-context: vbs-node
EOF
  )

  read -r etcd_port peer_port _ <<<"$(_cluster_free_ports)"
  _node_spawn "$dir" etcd etcd --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port"
  _node_spawn "$dir" apiserver "$bins/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$NODE_API_PORT" \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" --cert-dir="$dir/pki/auto" \
    --token-auth-file="$dir/pki/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/pki/sa.key" --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range="$NODE_SERVICE_CIDR" --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --kubelet-client-certificate="$dir/pki/kubelet-client.crt" --kubelet-client-key="$dir/pki/kubelet-client.key"
  _node_wait "the API server" 60 kubectl --kubeconfig "$kubeconfig" get --raw /readyz || {
    tail -n 30 "$dir/apiserver.log" >&2
    return 1
  }

  _node_spawn "$dir" controller-manager "$bins/kube-controller-manager" \
    --kubeconfig="$kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --use-service-account-credentials=true
  _node_spawn "$dir" scheduler "$bins/kube-scheduler" \
    --kubeconfig="$kubeconfig" --leader-elect=false --port=0 --secure-port=0

  # containerd with everything under DIR; the CRI plugin's CNI config is ours.
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  cat >"$dir/cni/net.d/10-vbs.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "vbs",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$NODE_SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  _node_spawn "$dir" containerd containerd --config "$dir/containerd/config.toml"
  _node_wait "containerd" 30 ctr --address "$dir/containerd/containerd.sock" version || return 1
  _node_pause_image "$dir" && node_import "$dir" "$dir/images/pause.tar" || return 1

  mkdir -p "$dir/kubelet"
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failSwapOn: false
# An image that cannot be pulled (there is no registry) must never be collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
# No KUBE-FIREWALL / KUBE-MARK-* chains in the host's iptables (kube-proxy makes what it needs).
makeIPTablesUtilChains: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
EOF
  _node_spawn "$dir" kubelet env AWS_EC2_METADATA_DISABLED=true "$bins/kubelet" \
    --config="$dir/kubelet/config.yaml" --kubeconfig="$kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$dir/containerd/containerd.sock" \
    --pod-infra-container-image="$NODE_PAUSE_IMAGE" --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" \
    --root-dir="$dir/kubelet/root" --cert-dir="$dir/kubelet/pki"

  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kubeconfig}
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0}
EOF
  _node_spawn "$dir" kube-proxy "$bins/kube-proxy" --config="$dir/kube-proxy.yaml"

  _node_wait "the node to be Ready" 90 _node_ready "$kubeconfig" || {
    tail -n 20 "$dir/kubelet.log" >&2
    return 1
  }
  # shellcheck disable=SC2034 # for the caller
  NODE_KUBECONFIG=$kubeconfig
  _node_log "node $NODE_NAME Ready in $(($(date +%s) - started)) s; KUBECONFIG=$kubeconfig"
}

_node_ready() {
  [[ $(kubectl --kubeconfig "$1" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

node_stop() {
  local dir=${1:?usage: node_stop DIR} c pid sock
  [[ -d $dir ]] || return 0
  sock=$dir/containerd/containerd.sock
  _node_stop_one "$dir" kubelet kubelet
  _node_stop_one "$dir" kube-proxy kube-proxy
  _node_stop_one "$dir" scheduler kube-scheduler
  _node_stop_one "$dir" controller-manager kube-controller
  # Pods: their containers and shims, then containerd.
  if [[ -S $sock ]]; then
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
  fi
  pkill -KILL -f "containerd-shim.*$dir/containerd" 2>/dev/null || true
  _node_stop_one "$dir" containerd containerd
  _node_stop_one "$dir" apiserver kube-apiserver
  _node_stop_one "$dir" etcd etcd
  # What the node left on the host: kube-proxy's (and any other KUBE-*) iptables chains.
  _node_iptables_cleanup
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] && { umount "$ns" 2>/dev/null; rm -f "$ns"; }
  done
  rm -rf /var/log/pods/* /var/log/containers/* 2>/dev/null || true
  ip link del cni0 2>/dev/null || true
  return 0
}

# Removes every KUBE-* chain, and the jumps to them from the built-in chains, in the tables
# kube-proxy and the kubelet use.
_node_iptables_cleanup() {
  local table rule chain
  command -v iptables >/dev/null || return 0
  for table in filter nat mangle; do
    while read -r rule; do
      eval "iptables -t $table -D ${rule#-A }" 2>/dev/null || true
    done < <(iptables -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# Stops a component by its pid file, if the pid still names that program (or the strace that runs
# it when auditing): a stale pid file must never kill an unrelated process.
_node_stop_one() {
  local dir=$1 name=$2 comm=$3 pid child
  pid=$(cat "$dir/$name.pid" 2>/dev/null) || return 0
  if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == strace ]]; then
    # strace detaches on SIGTERM and leaves its tracee running: stop the tracee first.
    for child in $(pgrep -P "$pid"); do
      echo "$child" >"$dir/$name.pid"
      _cluster_stop_one "$dir/$name.pid" "$comm"
    done
    echo "$pid" >"$dir/$name.pid"
    comm=strace
  fi
  _cluster_stop_one "$dir/$name.pid" "$comm"
}
