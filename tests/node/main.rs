//! The operator as its users run it: the chart installed by a real `helm` onto a real node
//! (kubelet + containerd, hack/lib/node.sh), the pod running the image hack/build-image.sh built
//! here, with the chart's securityContext, probes, ServiceAccount and in-cluster configuration.
//! `hack/test.sh` starts the node, builds and imports the image, and runs these with KUBECONFIG,
//! VBS_NODE_DIR and VBS_NODE_IP set.

#[path = "../integration/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vbs-operator");
/// How long a pod may take from `helm install` to Ready, and a leader to be replaced.
const POD_DEADLINE: Duration = Duration::from_secs(120);

fn node_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the node tests with hack/test.sh"))
}

/// The world of one node test: a namespace with the Secret, the simulator on the node's address
/// (where pods reach it), and a release of the chart watching only that namespace.
struct NodeTest {
    env: TestEnv,
    release: String,
}

impl NodeTest {
    async fn new(name: &str, set: &[&str]) -> Self {
        let sim = SimProcess::start_on(&format!("{}:0", node_env("VBS_NODE_IP")), SimProcess::seed()).await;
        let env = TestEnv::with_sim(name, sim).await;
        env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
        let release = format!("r-{}", env.ns);
        let mut args = vec![
            "install".to_string(),
            release.clone(),
            CHART.into(),
            "--namespace".into(),
            env.ns.clone(),
            "--wait".into(),
            "--timeout".into(),
            "120s".into(),
        ];
        for value in [
            "image.repository=localhost/vbs-operator",
            "image.tag=dev",
            "image.pullPolicy=Never",
            "operator.fastPollInterval=2s",
            &format!("watchNamespaces={{{}}}", env.ns),
        ]
        .iter()
        .chain(set)
        {
            args.extend(["--set".into(), value.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("helm", &args).expect("helm install");
        NodeTest { env, release }
    }

    fn fullname(&self) -> String {
        format!("{}-vbs-operator", self.release)
    }

    async fn pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let selector = format!("app.kubernetes.io/instance={}", self.release);
        pods.list(&ListParams::default().labels(&selector))
            .await
            .expect("list pods")
            .items
    }

    async fn ready_pods(&self) -> Vec<String> {
        self.pods()
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    fn helm(&self, verb: &str, set: &[&str]) {
        let mut args = vec![
            verb,
            &self.release,
            CHART,
            "--namespace",
            &self.env.ns,
            "--reuse-values",
            "--wait",
        ];
        for s in set {
            args.extend(["--set", s]);
        }
        run_tool("helm", &args).unwrap_or_else(|e| panic!("helm {verb}: {e}"));
    }

    fn logs(&self, pod: &str) -> String {
        run_tool("kubectl", &["logs", "-n", &self.env.ns, pod]).expect("kubectl logs")
    }

    /// The holder of the leader-election Lease: the pod name the identity starts with.
    fn leader(&self) -> Option<String> {
        let out = run_tool(
            "kubectl",
            &[
                "get",
                "lease",
                &self.fullname(),
                "-n",
                &self.env.ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
        .ok()?;
        let identity = out.trim();
        (!identity.is_empty()).then(|| {
            identity
                .rsplit_once('-')
                .map_or(identity, |(pod, _)| pod)
                .to_string()
        })
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ready(s: &vbs_operator::crd::VbsBackupStatus) -> bool {
    is(s, "Ready", ("True", "Available"))
}

/// The host's view of the operator process of `pod`: its /proc directory.
fn process_of(pod: &str) -> PathBuf {
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let dir = entry.path();
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"/vbs-operator\0run")
            && environ
                .split(|b| *b == 0)
                .any(|v| v == format!("POD_NAME={pod}").as_bytes())
        {
            return dir;
        }
    }
    panic!("no operator process for pod {pod} on this node");
}

#[tokio::test]
async fn the_chart_pod_runs_hardened_and_keeps_vbsbackups_true() {
    let t = NodeTest::new("node-pod", &[]).await;
    t.env
        .sim
        .put_backup(REFERENCE_ID, json!({"status": "creating"}))
        .await;
    t.env.create_backup("web", REFERENCE_ID, "pw").await;
    t.env
        .wait_status("web", "creating, through the in-cluster config", |s| {
            s.backup_status.as_deref() == Some("creating")
        })
        .await;
    t.env
        .sim
        .patch_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    t.env.wait_status("web", "Ready=True", ready).await;
    // A CbrBackup beside it, from the same pod, Secret and token.
    let server = "6df2b54c-dd62-4059-a07c-1b8f24f2725d";
    t.env
        .sim
        .put_cbr_backup(
            server,
            json!({"status": "available", "resource_type": "OS::Nova::Server"}),
        )
        .await;
    t.env.create_cbr_backup("server", server, "pw").await;
    t.env
        .wait_cbr_status("server", "CbrBackup Ready=True", |s| {
            is(s, "Ready", ("True", "Available"))
        })
        .await;

    let pods = t.ready_pods().await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    let proc_dir = process_of(&pods[0]);
    let status = std::fs::read_to_string(proc_dir.join("status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65532 65532 65532 65532", "non-root");
    assert_eq!(field("CapEff:"), "0000000000000000", "no capabilities");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "seccomp filter (RuntimeDefault)");
    let mounts = std::fs::read_to_string(proc_dir.join("mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("root mount");
    assert!(
        root.split(' ')
            .nth(5)
            .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "read-only root: {root}"
    );

    // The pod's network: only the pod and service ranges, no default route.
    let routes = std::process::Command::new("nsenter")
        .arg(format!("--net={}", proc_dir.join("ns/net").display()))
        .args(["ip", "route"])
        .output()
        .expect("nsenter");
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("default"),
        "a pod must not route off the machine: {routes}"
    );

    // JSON logs with the documented fields.
    let logs = t.logs(&pods[0]);
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "message", "target"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let update = lines
        .iter()
        .find(|l| l["message"] == "status updated" && l["span"]["kind"] == "VbsBackup")
        .unwrap_or_else(|| panic!("no status update logged:\n{logs}"));
    assert_eq!(update["span"]["resource"], "web", "{update}");
    assert!(
        lines.iter().any(|l| l["message"] == "status updated"
            && l["span"]["kind"] == "CbrBackup"
            && l["span"]["resource"] == "server"),
        "no CbrBackup status update logged:\n{logs}"
    );
    assert_eq!(update["span"]["namespace"], t.env.ns.as_str());
    assert_eq!(update["span"]["backup_id"], REFERENCE_ID);
    report(
        "node: the chart's pod",
        "Ready; uid 65532, no capabilities, seccomp, read-only root, no default route; a VbsBackup and a CbrBackup true through the in-cluster config; JSON logs",
    );
}

#[tokio::test]
async fn helm_upgrade_rolls_the_pod_and_sigterm_ends_the_old_one_cleanly() {
    let t = NodeTest::new("node-upgrade", &[]).await;
    t.env
        .sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    t.env.create_backup("before", REFERENCE_ID, "pw").await;
    t.env.wait_status("before", "Ready=True", ready).await;
    let old = t.ready_pods().await;
    assert_eq!(old.len(), 1);
    let events_before = t.env.wait_events("before", 1).await.len();
    // Follow the old pod's log to its end, to see how it stops.
    let follow = tokio::process::Command::new("kubectl")
        .args(["logs", "-f", "-n", &t.env.ns, &old[0]])
        .env("KUBECONFIG", kubeconfig())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl logs -f");

    let started = Instant::now();
    t.helm("upgrade", &["operator.pollInterval=20m"]);
    // The old pod is gone, the new one runs the new value.
    eventually_within(POD_DEADLINE, "the old pod to be gone", || async {
        let pods = t.pods().await;
        pods.iter().all(|p| p.metadata.name.as_ref() != Some(&old[0]))
    })
    .await;
    let rolled = started.elapsed();
    let new = t.ready_pods().await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_ne!(new[0], old[0]);
    let deployment = run_tool(
        "kubectl",
        &["get", "deploy", &t.fullname(), "-n", &t.env.ns, "-o", "json"],
    )
    .expect("deploy");
    let deployment: Value = serde_json::from_str(&deployment).expect("json");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("20m"), "{args}");

    // The old pod stopped on the kubelet's SIGTERM, well within its 30 s grace period, and said so.
    let out = tokio::time::timeout(POD_DEADLINE, follow.wait_with_output())
        .await
        .expect("the old pod's log ended")
        .expect("kubectl logs -f");
    let old_log: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |message: &str| {
        old_log
            .iter()
            .find(|l| l["message"] == message)
            .and_then(|l| l["timestamp"].as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or_else(|| panic!("the old pod never logged {message:?}: {old_log:?}"))
    };
    let stop_took = at("stopped").duration_since(at("shutting down"));
    assert!(
        stop_took < jiff::SignedDuration::from_secs(30),
        "stopping took {stop_took:?}"
    );
    assert_eq!(
        old_log.last().map(|l| l["message"].clone()),
        Some(json!("stopped"))
    );

    // The new pod took over: a new VbsBackup is served, the old one was not rewritten.
    t.env.create_backup("after", REFERENCE_ID, "pw").await;
    t.env
        .wait_status("after", "Ready=True from the new pod", ready)
        .await;
    assert_eq!(
        t.env.events_for("before").await.len(),
        events_before,
        "no repeated Events"
    );
    report(
        "node: helm upgrade (new pollInterval)",
        &format!(
            "pod rolled in {:.1}s; the old pod stopped {:.2}s after the kubelet's SIGTERM (grace 30s); the new pod served a new VbsBackup, no repeated Events",
            rolled.as_secs_f64(),
            stop_took.as_secs_f64()
        ),
    );
}

/// Lease duration of the failover test, and the fast poll interval every node test runs with.
const LEASE: Duration = Duration::from_secs(6);
const FAST_POLL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn two_replicas_fail_over_when_the_leader_pod_is_deleted() {
    let t = NodeTest::new(
        "node-ha",
        &[
            "replicaCount=2",
            "extraArgs={--leader-election-lease-duration=6s}",
        ],
    )
    .await;
    t.env
        .sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    t.env.create_backup("one", REFERENCE_ID, "pw").await;
    t.env.wait_status("one", "Ready=True", ready).await;
    eventually_within(POD_DEADLINE, "two Ready replicas and a leader", || async {
        t.ready_pods().await.len() == 2 && t.leader().is_some()
    })
    .await;
    let leader = t.leader().expect("leader");
    let events_before = t.env.wait_events("one", 1).await.len();

    // The backup changes in the cloud while the leader goes away: the new leader must not leave
    // the VbsBackup stale.
    let started = Instant::now();
    run_tool(
        "kubectl",
        &["delete", "pod", &leader, "-n", &t.env.ns, "--wait=false"],
    )
    .expect("delete leader");
    t.env
        .sim
        .patch_backup(
            REFERENCE_ID,
            json!({"status": "error", "fail_reason": "disk gone"}),
        )
        .await;
    eventually_within(POD_DEADLINE, "another replica to take the Lease", || async {
        t.leader().is_some_and(|l| l != leader)
    })
    .await;
    let takeover = started.elapsed();
    t.env
        .wait_status("one", "the change made during the failover", |s| {
            s.backup_status.as_deref() == Some("error")
        })
        .await;
    let fresh = started.elapsed();
    assert!(
        fresh < LEASE + FAST_POLL + Duration::from_secs(10),
        "the VbsBackup was stale for {fresh:?} after the leader's deletion"
    );
    t.env.create_backup("two", REFERENCE_ID, "pw").await;
    t.env
        .wait_status("two", "a status from the new leader", |s| {
            s.backup_status.is_some()
        })
        .await;
    // One Event for the change (BackupFailed), none repeated.
    let events: Vec<String> = t
        .env
        .wait_events("one", events_before + 1)
        .await
        .into_iter()
        .map(|(_, r, _)| r)
        .collect();
    assert_eq!(events.len(), events_before + 1, "Events: {events:?}");
    report(
        "node: 2 replicas, leader pod deleted",
        &format!(
            "another replica held the Lease {:.1}s after the deletion (lease 6s, released on SIGTERM); a change made meanwhile showed after {:.1}s; one Event for it, none repeated",
            takeover.as_secs_f64(),
            fresh.as_secs_f64()
        ),
    );
}

#[tokio::test]
async fn helm_uninstall_leaves_only_the_crd() {
    let t = NodeTest::new("node-uninstall", &[]).await;
    t.env
        .sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    t.env.create_backup("kept", REFERENCE_ID, "pw").await;
    t.env.wait_status("kept", "Ready=True", ready).await;
    run_tool(
        "helm",
        &["uninstall", &t.release, "--namespace", &t.env.ns, "--wait"],
    )
    .expect("helm uninstall");
    let selector = format!("app.kubernetes.io/instance={}", t.release);
    let kinds = "deploy,rs,pod,svc,sa,role,rolebinding,clusterrole,clusterrolebinding,lease,pdb,networkpolicy,configmap,secret";
    // Pods end within their grace period (30 s); the garbage collector removes what they leave.
    eventually_within(POD_DEADLINE, "every object of the release to be gone", || async {
        match run_tool("kubectl", &["get", kinds, "-A", "-l", &selector, "-o", "name"]) {
            Ok(out) if out.trim().is_empty() => true,
            Ok(out) => {
                eprintln!("still there: {}", out.trim().replace('\n', ", "));
                false
            }
            Err(e) => {
                eprintln!("{e}");
                false
            }
        }
    })
    .await;
    let sa_tokens = run_tool("kubectl", &["get", "secrets", "-n", &t.env.ns, "-o", "name"]).expect("secrets");
    assert!(
        !sa_tokens.contains(&t.fullname()),
        "the ServiceAccount's token Secret is left: {sa_tokens}"
    );
    run_tool(
        "kubectl",
        &["get", "crd", "vbsbackups.vbs.io", "cbrbackups.vbs.io"],
    )
    .expect("the CRDs stay");
    assert!(
        t.env.backup_in(&t.env.ns, "kept").await.status.is_some(),
        "VbsBackups stay"
    );
    report(
        "node: helm uninstall",
        "nothing of the release is left but the CRDs (and the VbsBackups)",
    );
}

#[tokio::test]
async fn no_node_component_connects_off_the_machine() {
    // Give every component time to have made its connections: a pod of this test's own runs first.
    let t = NodeTest::new("node-audit", &[]).await;
    t.env
        .sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    t.env.create_backup("audited", REFERENCE_ID, "pw").await;
    t.env.wait_status("audited", "Ready=True", ready).await;
    let dir = PathBuf::from(node_env("VBS_NODE_DIR")).join("audit");
    let mut seen = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("audit dir (VBS_NODE_AUDIT=1)")
        .flatten()
    {
        files += 1;
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for addr in text
            .split("inet_addr(\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
        {
            seen.insert(addr.to_string());
        }
        for addr in text
            .split("inet_pton(AF_INET6, \"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
        {
            seen.insert(addr.to_string());
        }
    }
    assert!(files >= 6, "{files} audit files in {}", dir.display());
    let allowed = |a: &str| {
        a.starts_with("127.")
            || a.starts_with("10.244.0.")
            || a.starts_with("10.96.0.")
            || a == "::1"
            || a == "0.0.0.0"
    };
    let outside: Vec<&String> = seen.iter().filter(|a| !allowed(a)).collect();
    assert!(
        outside.is_empty(),
        "connections off the machine: {outside:?} (all: {seen:?})"
    );
    assert!(!seen.is_empty(), "the audit saw no connection at all");
    report(
        "node: connect() audit of every node component (strace)",
        &format!(
            "addresses connected to: {}",
            seen.into_iter().collect::<Vec<_>>().join(", ")
        ),
    );
}
