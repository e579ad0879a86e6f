//! The Helm chart, installed by a real `helm` into the real apiserver, and the operator binary run
//! with exactly the chart's permissions: a token of the chart's ServiceAccount and the arguments of
//! the chart's Deployment. (No pods run on a bare apiserver, so the binary stands in for the pod.)

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vbs-operator");

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_tool(program, args)
}

/// An installed release of the chart in the test's namespace.
struct Release {
    ns: String,
    fullname: String,
}

impl Release {
    /// `helm install` (CRDs are installed by the harness already) and wait for nothing: there are
    /// no nodes to run pods.
    fn install(env: &TestEnv, set: &[String]) -> Self {
        let name = format!("r-{}", env.ns);
        let mut args = vec!["install", &name, CHART, "--namespace", &env.ns, "--skip-crds"];
        for s in set {
            args.extend(["--set", s.as_str()]);
        }
        let notes = run("helm", &args).expect("helm install");
        assert!(
            notes.contains("VbsBackup"),
            "NOTES.txt tells what to do next: {notes}"
        );
        Release {
            ns: env.ns.clone(),
            fullname: format!("{name}-vbs-operator"),
        }
    }

    fn service_account(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.ns, self.fullname)
    }

    /// A kubeconfig that authenticates with a fresh token of the chart's ServiceAccount.
    fn service_account_kubeconfig(&self) -> PathBuf {
        let token = run("kubectl", &["create", "token", &self.fullname, "-n", &self.ns])
            .expect("kubectl create token");
        let admin = kube::config::Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
        let cluster = admin.clusters[0].cluster.as_ref().expect("cluster");
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "local", "cluster": {
                "server": cluster.server, "certificate-authority-data": cluster.certificate_authority_data}}],
            "users": [{"name": "sa", "user": {"token": token.trim()}}],
            "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}]
        });
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-sa.kubeconfig", self.ns));
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }

    /// The operator container's arguments from the chart's Deployment, without `run` and
    /// `--listen-addr` (the harness gives the process a free loopback port instead).
    fn deployment_args(&self) -> Vec<String> {
        let json = run(
            "kubectl",
            &["get", "deployment", &self.fullname, "-n", &self.ns, "-o", "json"],
        )
        .expect("get deployment");
        let deployment: Value = serde_json::from_str(&json).expect("deployment json");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| *a != "run" && !a.starts_with("--listen-addr"))
            .map(String::from)
            .collect()
    }

    /// Runs the operator as the chart would, with the chart's identity.
    fn start_operator(&self, env: &TestEnv, extra_namespaces: Vec<String>) -> OperatorProcess {
        env.spawn_operator(OperatorOptions {
            exact_args: Some(self.deployment_args()),
            namespaces: extra_namespaces,
            kubeconfig: Some(self.service_account_kubeconfig()),
            env: vec![
                ("POD_NAMESPACE".into(), self.ns.clone()),
                ("POD_NAME".into(), format!("{}-0", self.fullname)),
            ],
            ..Default::default()
        })
    }

    fn can_i(&self, verb: &str, resource: &str, scope: &[&str]) -> bool {
        let sa = self.service_account();
        let (resource, subresource) = resource
            .split_once('/')
            .map_or((resource, None), |(r, s)| (r, Some(s)));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", sa.as_str()];
        let sub = subresource.map(|s| format!("--subresource={s}"));
        args.extend(sub.as_deref());
        args.extend(scope);
        // `can-i` answers "yes" (exit 0) or "no" (exit 1).
        run("kubectl", &args).is_ok_and(|out| out.trim() == "yes")
    }
}

#[tokio::test]
async fn chart_rbac_is_exactly_enough_cluster_wide() {
    let env = TestEnv::new("chart").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    let release = Release::install(&env, &[]);

    // Everything the code uses, and nothing more.
    for (verb, resource) in [
        ("list", "vbsbackups.vbs.io"),
        ("watch", "vbsbackups.vbs.io"),
        ("patch", "vbsbackups.vbs.io/status"),
        ("list", "secrets"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(
            release.can_i(verb, resource, &["--all-namespaces"]),
            "{verb} {resource}"
        );
    }
    for (verb, resource) in [
        ("update", "vbsbackups.vbs.io"),
        ("delete", "vbsbackups.vbs.io"),
        ("create", "secrets"),
        ("update", "secrets"),
        ("list", "configmaps"),
        ("create", "events"),
    ] {
        assert!(
            !release.can_i(verb, resource, &["--all-namespaces"]),
            "must not {verb} {resource}"
        );
    }
    assert!(release.can_i("update", "leases.coordination.k8s.io", &["-n", &env.ns]));
    assert!(!release.can_i("update", "leases.coordination.k8s.io", &["--all-namespaces"]));

    // The cluster-wide grant, used for this test's namespace only (other tests share the cluster).
    let operator = release.start_operator(&env, vec![env.ns.clone()]);
    env.create_backup("via-chart", REFERENCE_ID, "pw").await;
    env.wait_status("via-chart", "Ready=True", |s| {
        is(s, "Ready", ("True", "Available"))
    })
    .await;
    env.wait_event("via-chart", "an Available event", |_, r, _| r == "Available")
        .await;
    let log = operator.log_text();
    assert!(log.contains("acquired the leader lease"), "{log}");
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");
}

#[tokio::test]
async fn a_missing_rule_is_reported_clearly() {
    let env = TestEnv::new("chart-norule").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    let release = Release::install(&env, &[]);

    // Drop the Secrets rule from the chart's ClusterRole.
    let role: Value = serde_json::from_str(
        &run(
            "kubectl",
            &["get", "clusterrole", &release.fullname, "-o", "json"],
        )
        .expect("get clusterrole"),
    )
    .expect("json");
    let mut edited = role.clone();
    let rules = edited["rules"].as_array_mut().expect("rules");
    rules.retain(|r| {
        !r["resources"]
            .as_array()
            .is_some_and(|res| res.iter().any(|x| x == "secrets"))
    });
    assert_eq!(
        rules.len() + 1,
        role["rules"].as_array().map_or(0, Vec::len),
        "one rule removed"
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-role.json", env.ns));
    std::fs::write(&path, edited.to_string()).expect("write role");
    run("kubectl", &["replace", "-f", &path.to_string_lossy()]).expect("replace clusterrole");

    let mut operator = release.start_operator(&env, vec![env.ns.clone()]);
    env.create_backup("no-secret-access", REFERENCE_ID, "pw").await;
    let obj = env.wait_synced_false("no-secret-access", "SecretForbidden").await;
    let message = synced_message(&obj);
    assert!(
        message.contains("may not read Secret") && message.contains("grant it get, list and watch"),
        "{message}"
    );
    eventually("the watch failure to be logged", || async {
        operator
            .log_text()
            .contains("the operator may not watch secrets: it needs get, list and watch")
    })
    .await;
    assert!(
        operator.child.try_wait().expect("try_wait").is_none(),
        "the operator keeps running"
    );
    // Even with its Secret watch failing, it stops on SIGTERM well within a pod's 30 s grace.
    let status = operator.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn namespaced_mode_ignores_other_namespaces() {
    let env = TestEnv::new("chart-ns").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    let other_id = "0c7e5a9b-1111-4222-8333-944455556666";
    env.sim.put_backup(other_id, json!({"status": "available"})).await;
    let watched = env.extra_namespace("chart-watched").await;
    let outside = env.extra_namespace("chart-outside").await;
    let clouds = env.sim.clouds_yaml(PASSWORD, "");
    env.create_secret_in(&watched, &clouds).await;
    env.create_secret_in(&outside, &clouds).await;
    let release = Release::install(&env, &[format!("watchNamespaces={{{watched}}}")]);

    assert!(release.can_i("get", "secrets", &["-n", &watched]));
    assert!(
        !release.can_i("get", "secrets", &["-n", &outside]),
        "no access outside watchNamespaces"
    );
    assert!(
        !release.can_i("list", "vbsbackups.vbs.io", &["--all-namespaces"]),
        "nothing cluster-wide"
    );
    let roles = run("kubectl", &["get", "clusterrole", &release.fullname]);
    assert!(
        roles.is_err(),
        "namespaced mode creates no ClusterRole: {roles:?}"
    );

    // The chart's own --namespace arguments decide what is watched.
    let operator = release.start_operator(&env, Vec::new());
    env.create_backup_in(&watched, "inside", REFERENCE_ID, "pw").await;
    env.create_backup_in(&outside, "outside", other_id, "pw").await;
    env.wait_status_in(&watched, "inside", "Ready=True", |s| {
        is(s, "Ready", ("True", "Available"))
    })
    .await;
    assert!(
        env.backup_in(&outside, "outside").await.status.is_none(),
        "not reconciled"
    );
    assert_eq!(
        env.sim.shows_of(other_id).await,
        0,
        "the outside backup was never queried"
    );
    let log = operator.log_text();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "it never tried to read outside: {log}"
    );
}
