#!/usr/bin/env bash
# Checks the Helm chart in charts/vbs-operator offline, failing on the first problem:
#   1. the chart's CRDs are byte-for-byte copies of crds/*.yaml; the chart's own YAML files
#      pass yamllint; `helm package` works and leaves out schema-tests/;
#   2. `helm lint --strict`, with the defaults and with each ci/*-values.yaml;
#   3. for the defaults and each ci/*-values.yaml, the output of `helm template --include-crds`
#      a. validates against the Kubernetes API schemas (kubernetes-validate --strict: unknown
#         fields are errors) for every version in KUBE_VERSIONS,
#      b. passes yamllint (relaxed: no line length, no document start marker, any sequence indent),
#      c. holds what the operator needs and no more: RBAC rules exactly as the operator uses them,
#         cluster-wide or per watched namespace, a Lease Role only with leader election, the
#         Deployment's flags, selectors that match the pods (see check_rendered below);
#   4. values.schema.json: every schema-tests/valid-*.yaml renders (and passes 3a-3c), every
#      schema-tests/invalid-*.yaml is refused with the error its `# expect-error:` (schema) or
#      `# expect-template-error:` line names.
# Tools (helm, kubernetes-validate, yamllint) come from hack/install-tools.sh; helm runs with scratch
# HELM_*_HOME directories, so nothing of the user's helm setup is read or written.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

chart=charts/vbs-operator
release=vbs
namespace=vbs-system
# The API versions to validate against: a common production version, and the newest the validator
# knows (catches APIs that were removed since). The local test apiserver (1.20) is older than any
# schema kubernetes-validate ships (1.25 is its oldest), so that case is covered by a real install.
KUBE_VERSIONS=(1.30.0 1.37.0)

PATH="$(hack/install-tools.sh):$PATH"
# The venv's Python (it has PyYAML, which kubernetes-validate depends on), for the semantic checks.
python=$(dirname "$(readlink -f "$(command -v kubernetes-validate)")")/python

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vbs-chart-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export HELM_CACHE_HOME=$scratch/helm/cache HELM_CONFIG_HOME=$scratch/helm/config \
  HELM_DATA_HOME=$scratch/helm/data

passed=0
ok() {
  passed=$((passed + 1))
  echo "ok   $*" >&2
}
fail() {
  echo "chart-check: FAILED: $1" >&2
  if [[ -n ${2:-} && -s $2 ]]; then
    sed 's/^/    /' "$2" >&2
  fi
  exit 1
}

cat >"$scratch/yamllint.yaml" <<'EOF'
# The default rules (syntax, duplicate keys, trailing spaces, truthy values, consistent indentation,
# ...), relaxed where rendered manifests legitimately differ: long lines (descriptions in the CRD),
# no leading `---`, and sequences indented or not (toYaml and the generated CRD do not indent them).
extends: default
rules:
  line-length: disable
  document-start: disable
  indentation:
    spaces: consistent
    indent-sequences: whatever
EOF

# --- 1. CRD copy, chart sources, package ----------------------------------------------------------
for crd in vbsbackup cbrbackup; do
  cmp "crds/$crd.yaml" "$chart/crds/$crd.yaml" >"$scratch/out" 2>&1 ||
    fail "$chart/crds/$crd.yaml differs from crds/$crd.yaml; copy it: cp crds/$crd.yaml $chart/crds/" "$scratch/out"
  ok "crd: $chart/crds/$crd.yaml == crds/$crd.yaml"
done

# The chart's own YAML (Chart.yaml, values, ci/ and schema-tests/ cases), with the same rules.
yamllint -f parsable -c "$scratch/yamllint.yaml" "$chart/Chart.yaml" "$chart/values.yaml" "$chart/ci" \
  "$chart/schema-tests" >"$scratch/out" 2>&1 || fail "yamllint of the chart's YAML files" "$scratch/out"
ok "yamllint: Chart.yaml, values.yaml, ci/, schema-tests/"

# The package must hold the chart and not the schema-test fixtures (.helmignore).
helm package "$chart" -d "$scratch/package" >"$scratch/out" 2>&1 || fail "helm package $chart" "$scratch/out"
tar -tzf "$scratch"/package/*.tgz >"$scratch/out" 2>&1 || fail "cannot list the packaged chart" "$scratch/out"
! grep -q '/schema-tests/' "$scratch/out" || fail "the packaged chart contains schema-tests/ (.helmignore)" "$scratch/out"
for crd in vbsbackup cbrbackup; do
  grep -qx "vbs-operator/crds/$crd.yaml" "$scratch/out" || fail "the packaged chart lacks crds/$crd.yaml" "$scratch/out"
done
ok "package: $(basename "$scratch"/package/*.tgz), without schema-tests/"

# --- 2. helm lint ----------------------------------------------------------------------------------
shopt -s nullglob
ci_values=("$chart"/ci/*-values.yaml)
shopt -u nullglob
((${#ci_values[@]})) || fail "no $chart/ci/*-values.yaml files"

helm lint --strict "$chart" >"$scratch/out" 2>&1 || fail "helm lint --strict $chart" "$scratch/out"
ok "lint: defaults"
for values in "${ci_values[@]}"; do
  helm lint --strict "$chart" -f "$values" >"$scratch/out" 2>&1 ||
    fail "helm lint --strict $chart -f $values" "$scratch/out"
  ok "lint: $(basename "$values")"
done

# --- 3. rendered manifests -------------------------------------------------------------------------
# Semantic checks of one rendered release, in Python: argv = file, release namespace.
check_rendered() {
  "$python" - "$1" "$namespace" <<'EOF'
import sys
import yaml

path, release_ns = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
errors = []

def check(cond, msg):
    if not cond:
        errors.append(msg)

def of_kind(kind):
    return [d for d in docs if d["kind"] == kind]

def rule_set(rules):
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule.get("verbs", [])}

# What the operator uses (README, "Install"); nothing else may be granted.
WATCH_RULES = {("vbs.io", r, v) for r in ("vbsbackups", "cbrbackups") for v in ("get", "list", "watch")} | {
    ("vbs.io", f"{r}/status", "patch") for r in ("vbsbackups", "cbrbackups")} | {
    ("", "secrets", v) for v in ("get", "list", "watch")} | {
    ("events.k8s.io", "events", v) for v in ("create", "patch")}
LEASE_RULES = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update", "patch")}
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}

for d in docs:
    name = f'{d["kind"]}/{d["metadata"].get("name")}'
    if d["kind"] in CLUSTER_SCOPED:
        check("namespace" not in d["metadata"], f"{name} is cluster-scoped but has a namespace")
    else:
        check(d["metadata"].get("namespace"), f"{name} has no metadata.namespace")

deployments = of_kind("Deployment")
check(len(deployments) == 1, f"expected 1 Deployment, found {len(deployments)}")
dep = deployments[0]
pod = dep["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
containers = pod["spec"]["containers"]
check(len(containers) == 1, "expected 1 container")
c = containers[0]
args = c.get("args", [])
check(args[:1] == ["run"], f"args must start with 'run': {args}")
flag_names = [a.split("=", 1)[0] for a in args if a.startswith("--")]
for f in set(flag_names):
    check(f == "--namespace" or flag_names.count(f) == 1, f"flag {f} given twice: the operator refuses that")
watched = [a.split("=", 1)[1] for a in args if a.startswith("--namespace=")]
leader = "--leader-election" in args
env = {e["name"]: e for e in c.get("env", [])}
for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
    check(env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field,
          f"env {var} must come from the downward API ({field})")
check(pod["spec"].get("automountServiceAccountToken") is True, "the pod must mount its token")
sc = c.get("securityContext", {})
check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
check("metrics" in {p["name"] for p in c.get("ports", [])}, "container port 'metrics' missing")
replicas = dep["spec"]["replicas"]
check(replicas <= 1 or leader, "more than one replica without --leader-election")

sa = pod["spec"]["serviceAccountName"]
def binds_sa(binding):
    return any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == release_ns
               for s in binding.get("subjects", []))

roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind("Role")}
bindings = of_kind("RoleBinding")
rbac_rendered = bool(of_kind("ClusterRole") or roles)
if rbac_rendered:
    if watched:
        check(not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding"),
              "namespaced mode must not create a ClusterRole or ClusterRoleBinding")
        for ns in watched:
            nsbindings = [b for b in bindings if b["metadata"]["namespace"] == ns and binds_sa(b)]
            check(len(nsbindings) == 1, f"expected 1 RoleBinding for the operator in {ns}, found {len(nsbindings)}")
            for b in nsbindings:
                role = roles.get((ns, b["roleRef"]["name"]))
                check(b["roleRef"]["kind"] == "Role" and role is not None, f"RoleBinding in {ns} refers to no Role")
                if role is not None:
                    got = rule_set(role["rules"])
                    check(got == WATCH_RULES, f"Role in {ns}: missing {sorted(WATCH_RULES - got)}, extra {sorted(got - WATCH_RULES)}")
    else:
        crs = of_kind("ClusterRole")
        crbs = [b for b in of_kind("ClusterRoleBinding") if binds_sa(b)]
        check(len(crs) == 1 and len(crbs) == 1, "cluster-wide mode needs one ClusterRole and one ClusterRoleBinding")
        if crs and crbs:
            check(crbs[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                         "name": crs[0]["metadata"]["name"]}, "ClusterRoleBinding refers to another role")
            got = rule_set(crs[0]["rules"])
            check(got == WATCH_RULES, f"ClusterRole: missing {sorted(WATCH_RULES - got)}, extra {sorted(got - WATCH_RULES)}")
    lease_roles = [r for r in of_kind("Role") if rule_set(r["rules"]) & LEASE_RULES]
    if leader:
        check(len(lease_roles) == 1, "leader election needs one Role for leases")
        for r in lease_roles:
            check(r["metadata"]["namespace"] == release_ns, "the Lease Role must be in the release namespace")
            check(rule_set(r["rules"]) == LEASE_RULES, f"Lease Role rules: {sorted(rule_set(r['rules']))}")
            check(any(b["roleRef"]["name"] == r["metadata"]["name"] and binds_sa(b)
                      for b in bindings if b["metadata"]["namespace"] == release_ns), "the Lease Role is not bound")
        check(any(a.startswith("--leader-election-namespace=") for a in args), "--leader-election-namespace missing")
    else:
        check(not lease_roles, "Lease Role without leader election")
    others = [r for r in of_kind("Role") if r not in lease_roles and r["metadata"]["namespace"] not in watched]
    check(not others, f"unexpected Roles: {[r['metadata']['name'] for r in others]}")

def selects_pods(selector, what):
    ml = selector.get("matchLabels", selector)
    check(ml and all(pod_labels.get(k) == v for k, v in ml.items()), f"{what} selector {ml} does not match the pods")

selects_pods(dep["spec"]["selector"], "Deployment")
services = of_kind("Service")
for s in services:
    selects_pods(s["spec"]["selector"], f'Service {s["metadata"]["name"]}')
for p in of_kind("PodDisruptionBudget"):
    selects_pods(p["spec"]["selector"], "PodDisruptionBudget")
check(bool(of_kind("PodDisruptionBudget")) == (replicas > 1) or not of_kind("PodDisruptionBudget"),
      "PodDisruptionBudget over a single replica")
for n in of_kind("NetworkPolicy"):
    selects_pods(n["spec"]["podSelector"], "NetworkPolicy")
    for rule in n["spec"].get("egress", []):
        check(rule.get("ports", None) != [], "an egress rule with an empty port list allows all ports")
for sm in of_kind("ServiceMonitor"):
    svc_ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        check(ep["port"] in svc_ports, f'ServiceMonitor port {ep["port"]} is not a Service port')
    ml = sm["spec"]["selector"]["matchLabels"]
    check(any(all(s["metadata"]["labels"].get(k) == v for k, v in ml.items()) for s in services),
          "ServiceMonitor selects no Service")

if errors:
    print("\n".join(errors))
    sys.exit(1)
EOF
}

# Renders one case (label, values file or empty for the defaults) and runs 3a-3c on it.
check_case() {
  local label=$1 values=$2 rendered kv
  local values_args=()
  rendered=$scratch/rendered-${label//\//-}.yaml
  [[ -n $values ]] && values_args=(-f "$values")

  helm template "$release" "$chart" --namespace "$namespace" --include-crds \
    --kube-version "${KUBE_VERSIONS[0]}" "${values_args[@]}" >"$rendered" 2>"$scratch/out" ||
    fail "helm template ($label)" "$scratch/out"
  ok "render: $label"

  # kubernetes-validate exits non-zero on schema errors. Kinds it has no schema for only warn: the
  # one expected here is the ServiceMonitor (a Prometheus Operator CRD); any other unknown kind means
  # a mistyped apiVersion or kind, so it fails too. The VbsBackup CRD itself validates (the 1.25+
  # schemas know x-kubernetes-validations), so it is not skipped; were that to change, it would show
  # up here.
  for kv in "${KUBE_VERSIONS[@]}"; do
    if ! kubernetes-validate --strict --quiet -k "$kv" "$rendered" >"$scratch/out" 2>&1; then
      fail "kubernetes-validate --strict -k $kv ($label)" "$scratch/out"
    fi
    if grep -v "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1 " \
      "$scratch/out" | grep -q .; then
      fail "kubernetes-validate -k $kv ($label): unexpected output" "$scratch/out"
    fi
    ok "kubernetes-validate $kv: $label"
  done

  yamllint -f parsable -c "$scratch/yamllint.yaml" "$rendered" >"$scratch/out" 2>&1 ||
    fail "yamllint of the rendered manifests ($label)" "$scratch/out"
  ok "yamllint: $label"

  check_rendered "$rendered" >"$scratch/out" 2>&1 || fail "rendered manifests ($label)" "$scratch/out"
  ok "content: $label"
}

check_case defaults ""
for values in "${ci_values[@]}"; do
  check_case "$(basename "$values" .yaml)" "$values"
done

# --- 4. values schema -----------------------------------------------------------------------------
schema_error="values don't meet the specifications of the schema"
shopt -s nullglob
valid=("$chart"/schema-tests/valid-*.yaml)
invalid=("$chart"/schema-tests/invalid-*.yaml)
shopt -u nullglob
((${#valid[@]} && ${#invalid[@]})) || fail "no $chart/schema-tests/valid-*.yaml or invalid-*.yaml files"

# The valid files exercise paths the ci/ cases do not, so their output gets the checks of 3. too.
for values in "${valid[@]}"; do
  check_case "schema-tests/$(basename "$values" .yaml)" "$values"
done
# An invalid-*.yaml file names what its error must say: `# expect-error: TEXT` for a schema error
# that mentions TEXT (e.g. the value's path), `# expect-template-error: TEXT` for a `fail` in a
# template (rules the schema cannot express).
for values in "${invalid[@]}"; do
  name=$(basename "$values")
  if helm template "$release" "$chart" --namespace "$namespace" -f "$values" >/dev/null 2>"$scratch/out"; then
    fail "$values should be refused but renders"
  fi
  expect=$(sed -n 's/^# expect-error: *//p' "$values" | head -n 1)
  expect_template=$(sed -n 's/^# expect-template-error: *//p' "$values" | head -n 1)
  if [[ -n $expect_template ]]; then
    grep -qF -- "$expect_template" "$scratch/out" ||
      fail "$values was refused, but not with '$expect_template'" "$scratch/out"
    ok "template refuses: $name"
  else
    grep -qF -- "$schema_error" "$scratch/out" ||
      fail "$values was refused, but not by the values schema" "$scratch/out"
    [[ -z $expect ]] || grep -qF -- "$expect" "$scratch/out" ||
      fail "$values was refused by the schema, but the error does not mention '$expect'" "$scratch/out"
    ok "schema refuses: $name ($(grep -m1 '^- ' "$scratch/out" | sed 's/^- //'))"
  fi
done

echo "chart-check: $passed checks passed"
