//! Shared scaffolding for the integration tests: the real kube-apiserver (from KUBECONFIG, which
//! `hack/test.sh` sets up), a `vbs-sim` process per test, a `vbs-operator` process per test
//! scoped to the test's own namespace, and waits on conditions with deadlines.

// Shared by the integration tests and the node tests (tests/node): each uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use vbs_operator::crd::{
    BackupSpec, CbrBackup, CbrBackupSpec, CbrBackupStatus, CloudRef, VbsBackup, VbsBackupSpec,
    VbsBackupStatus,
};
use vbs_operator::status::BackupStatus;

pub const PROJECT: &str = "b23b579f08c84228b9b4673c46f0c442";
pub const USER: &str = "svc-backup";
pub const PASSWORD: &str = "s3cret-Pa55";
pub const DOMAIN: &str = "Example";
pub const AK: &str = "AKTESTEXAMPLE";
pub const SK: &str = "SKTESTEXAMPLE-secret";
pub const SECRET: &str = "vbs-cloud";
/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The reference page's example backup, as the simulator stores it.
pub fn reference_backup() -> Value {
    json!({
        "status": "error", "description": null, "availability_zone": null,
        "volume_id": "2748f2f2-4394-4e6e-af8d-8dd34496c024",
        "fail_reason": "Connection to swift failed: [Errno 111] ECONNREFUSED",
        "size": 1, "object_count": null, "container": "volumebackups", "name": null,
        "created_at": "2013-06-27T08:48:03.000000",
        "os-backup-project-attr:project_id": PROJECT,
        "snapshot_id": "66a574c0-4415-499e-b0b1-3f340d7f7932",
        "updated_at": "2019-03-27T12:36:17.596602",
        "data_timestamp": "2019-03-16T11:56:00.917245",
        "has_dependent_backups": false, "is_incremental": false
    })
}

pub const REFERENCE_ID: &str = "1d1139d8-8989-49d3-8aa1-83eb691e6db2";

pub fn kubeconfig() -> PathBuf {
    match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "integration tests need a Kubernetes API server: run `hack/test.sh`, which starts one, \
             or set KUBECONFIG (with VBS_USE_EXISTING_CLUSTER=1 for hack/test.sh)"
        ),
    }
}

async fn client_for(path: &std::path::Path) -> Client {
    vbs_operator::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// Installs the CRDs of both kinds (once; later calls find them) and waits until they are
/// established. A plain create, not server-side apply: a 1.20 apiserver refuses to apply the CEL
/// rules it does not know, but drops them on create.
async fn ensure_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [VbsBackup::crd(), CbrBackup::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create CRD {name}: {e}"),
        }
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(DEADLINE, established)
            .await
            .expect("CRD established in time")
            .expect("watch CRD");
    }
}

/// A running `vbs-sim`.
pub struct SimProcess {
    _child: Child,
    pub url: String,
    http: reqwest::Client,
    /// The CA certificate (PEM) the simulator's HTTPS certificate is signed with, when it serves TLS.
    pub ca_pem: Option<String>,
}

impl SimProcess {
    pub async fn start(seed: Value) -> Self {
        Self::spawn(seed, false, "127.0.0.1:0").await
    }

    /// A simulator listening on `addr` (e.g. the node's bridge address, where pods reach it).
    pub async fn start_on(addr: &str, seed: Value) -> Self {
        Self::spawn(seed, false, addr).await
    }

    /// A simulator serving HTTPS with a certificate from a throwaway private CA.
    pub async fn start_tls(seed: Value) -> Self {
        Self::spawn(seed, true, "127.0.0.1:0").await
    }

    async fn spawn(seed: Value, tls: bool, listen: &str) -> Self {
        vbs_operator::install_crypto_provider();
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let seed_path = dir.path().join("seed.json");
        std::fs::write(&seed_path, seed.to_string()).expect("write seed");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbs-sim"));
        cmd.args(["--listen", listen, "--seed"]).arg(&seed_path);
        let ca_pem = tls.then(|| {
            let (ca, cert, key) = make_certificates(dir.path());
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            ca
        });
        let mut child = cmd
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn vbs-sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("vbs-sim announces its address in time")
            .expect("read vbs-sim stdout");
        let url = line.trim().rsplit(' ').next().expect("url").to_string();
        let mut http = reqwest::Client::builder();
        if let Some(pem) = &ca_pem {
            http =
                http.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem.as_bytes()).expect("CA pem"));
        }
        SimProcess {
            _child: child,
            url,
            http: http.build().expect("http client"),
            ca_pem,
        }
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("sim control call");
        assert!(
            resp.status().is_success(),
            "sim control {path}: {}",
            resp.status()
        );
    }

    /// A control call on one backup of the test project: `collection` is `backups` (VBS) or
    /// `cbr-backups`.
    async fn backup_call(&self, method: reqwest::Method, collection: &str, id: &str, fields: Value) {
        let path = format!("/sim/projects/{PROJECT}/{collection}/{id}");
        self.control(method, &path, Some(fields)).await;
    }

    pub async fn put_backup(&self, id: &str, fields: Value) {
        self.backup_call(reqwest::Method::PUT, "backups", id, fields)
            .await;
    }

    pub async fn patch_backup(&self, id: &str, fields: Value) {
        self.backup_call(reqwest::Method::PATCH, "backups", id, fields)
            .await;
    }

    /// Adds (or replaces) a CBR backup of the test project.
    pub async fn put_cbr_backup(&self, id: &str, fields: Value) {
        self.backup_call(reqwest::Method::PUT, "cbr-backups", id, fields)
            .await;
    }

    pub async fn patch_cbr_backup(&self, id: &str, fields: Value) {
        self.backup_call(reqwest::Method::PATCH, "cbr-backups", id, fields)
            .await;
    }

    pub async fn add_fault(&self, fault: Value) {
        self.control(reqwest::Method::POST, "/sim/faults", Some(fault))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/sim/faults", None).await;
    }

    pub async fn revoke_tokens(&self) {
        self.control(reqwest::Method::POST, "/sim/tokens/revoke", None)
            .await;
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/sim/stats", self.url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    pub async fn count(&self, kind: &str) -> u64 {
        self.stats().await["requests"][kind].as_u64().unwrap_or(0)
    }

    /// When each show call of `id` arrived, as Unix time in milliseconds.
    pub async fn show_times(&self, id: &str) -> Vec<u64> {
        self.stats().await["show_times_ms"][id]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default()
    }

    pub async fn shows_of(&self, id: &str) -> u64 {
        self.stats().await["shows_by_backup"][id].as_u64().unwrap_or(0)
    }

    /// The default seed: one user, one key, no backups.
    pub fn seed() -> Value {
        json!({
            "region": "eu-de",
            "users": [{"name": USER, "password": PASSWORD, "domain": DOMAIN, "project_id": PROJECT, "project_name": "eu-de_test"}],
            "access_keys": [{"ak": AK, "sk": SK}],
        })
    }

    /// clouds.yaml with a password cloud `pw` (endpoints from the catalog) and an AK/SK cloud `aksk`
    /// (endpoint overrides for VBS and CBR).
    pub fn clouds_yaml(&self, password: &str, extra: &str) -> String {
        format!(
            "clouds:\n  pw:\n    auth:\n      auth_url: {url}/v3\n      username: {USER}\n      password: {password}\n      user_domain_name: {DOMAIN}\n      project_id: {PROJECT}\n    region_name: eu-de\n{extra}  aksk:\n    auth_type: aksk\n    auth: {{ak: {AK}, sk: {SK}, project_id: {PROJECT}}}\n    block_storage_endpoint_override: {url}\n    cbr_endpoint_override: {url}/cbr\n{extra}",
            url = self.url
        )
    }
}

/// Options of the operator process under test.
#[derive(Default)]
pub struct OperatorOptions {
    /// `--poll-interval`; one hour when unset, so that settled backups are not re-polled during a
    /// test unless it asks for it: anything fast must come from a watch or the fast interval.
    pub poll_interval: Option<&'static str>,
    /// Namespaces to watch; the test's own when empty.
    pub namespaces: Vec<String>,
    pub extra_args: Vec<String>,
    /// Run as another identity (e.g. a service account token); the admin kubeconfig when unset.
    pub kubeconfig: Option<PathBuf>,
    /// Exactly these arguments after `run` (plus `--listen-addr` and `namespaces`), instead of the
    /// test defaults: for running the operator as a Helm chart's Deployment would.
    pub exact_args: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
}

/// A `vbs-operator run` limited to one namespace; its log goes to a file, printed if the test fails.
pub struct OperatorProcess {
    pub child: Child,
    pub log: PathBuf,
    /// Base URL of its /metrics, /healthz and /readyz server.
    pub http_url: String,
}

impl OperatorProcess {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as the kubelet does, and returns the exit status; fails the test if the
    /// process is still running after `within`.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("operator still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the operator ignored SIGTERM for {within:?}:\n{}",
                    self.log_text()
                )
            })
            .expect("wait for operator")
    }
}

impl OperatorProcess {
    /// The value of one series on the operator's /metrics (`name` with its labels, if any); 0 when
    /// the series is absent or the server is not up yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let body = match reqwest::get(format!("{}/metrics", self.http_url)).await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        vbs_operator::metrics::sample(&body, series).unwrap_or(0.0)
    }

    /// Peak resident memory of the process so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let pid = self.child.id().expect("operator running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .expect("VmHWM")
    }

    /// Kills the process without warning (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill operator");
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- operator log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// One test's world: its namespace, simulator and (once started) operator.
pub struct TestEnv {
    pub client: Client,
    /// The kubeconfig of the cluster this test runs against (operators get it by default).
    pub kubeconfig: PathBuf,
    pub ns: String,
    pub sim: SimProcess,
    pub operator: Option<OperatorProcess>,
}

impl TestEnv {
    pub async fn new(name: &str) -> Self {
        Self::with_seed(name, SimProcess::seed()).await
    }

    /// The common setup: the simulator holds `backup` as REFERENCE_ID, the namespace has the
    /// Secret with the default clouds.yaml, and an operator runs with the default options.
    pub async fn running(name: &str, backup: Value) -> Self {
        let mut env = Self::new(name).await;
        env.sim.put_backup(REFERENCE_ID, backup).await;
        env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
        env.start_operator(OperatorOptions::default());
        env
    }

    pub async fn with_seed(name: &str, seed: Value) -> Self {
        Self::with_sim(name, SimProcess::start(seed).await).await
    }

    pub async fn with_sim(name: &str, sim: SimProcess) -> Self {
        Self::on_cluster(name, sim, kubeconfig()).await
    }

    /// A test world on the cluster of `kubeconfig` (for tests with a private control plane).
    pub async fn on_cluster(name: &str, sim: SimProcess, kubeconfig: PathBuf) -> Self {
        let client = client_for(&kubeconfig).await;
        ensure_crd(&client).await;
        let ns = create_namespace(&client, name).await;
        TestEnv {
            client,
            kubeconfig,
            ns,
            sim,
            operator: None,
        }
    }

    pub fn start_operator(&mut self, opts: OperatorOptions) {
        self.operator = Some(self.spawn_operator(opts));
    }

    /// Starts an operator process; its log file is named after the namespace and `opts`.
    pub fn spawn_operator(&self, opts: OperatorOptions) -> OperatorProcess {
        let port = free_port();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("operator-{}-{port}.log", self.ns));
        let file = std::fs::File::create(&log).expect("operator log file");
        let err = file.try_clone().expect("clone log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbs-operator"));
        cmd.arg("run");
        let namespaces = match &opts.exact_args {
            Some(args) => {
                cmd.args(args);
                opts.namespaces
            }
            None => {
                cmd.args(["--log-level", "info,vbs_operator=debug"])
                    .args([
                        "--poll-interval",
                        opts.poll_interval.unwrap_or("1h"),
                        "--fast-poll-interval",
                        "1s",
                    ])
                    .args([
                        "--initial-backoff",
                        "200ms",
                        "--max-backoff",
                        "2s",
                        "--cloud-timeout",
                        "5s",
                    ])
                    .args(&opts.extra_args);
                if opts.namespaces.is_empty() {
                    vec![self.ns.clone()]
                } else {
                    opts.namespaces
                }
            }
        };
        for ns in &namespaces {
            cmd.arg(format!("--namespace={ns}"));
        }
        cmd.arg(format!("--listen-addr=127.0.0.1:{port}"))
            .envs(opts.env)
            .env(
                "KUBECONFIG",
                opts.kubeconfig.unwrap_or_else(|| self.kubeconfig.clone()),
            )
            .env_remove("RUST_LOG")
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn vbs-operator");
        OperatorProcess {
            child,
            log,
            http_url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn backups(&self) -> Api<VbsBackup> {
        self.backups_in(&self.ns)
    }

    pub fn backups_in(&self, ns: &str) -> Api<VbsBackup> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn create_secret(&self, clouds_yaml: &str) {
        self.create_secret_in(&self.ns, clouds_yaml).await;
    }

    pub async fn create_secret_in(&self, ns: &str, clouds_yaml: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(SECRET.into()),
                ..Default::default()
            },
            string_data: Some([("clouds.yaml".to_string(), clouds_yaml.to_string())].into()),
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }

    pub async fn create_backup(&self, name: &str, backup_id: &str, cloud: &str) -> VbsBackup {
        self.create_backup_in(&self.ns, name, backup_id, cloud).await
    }

    pub async fn create_backup_in(&self, ns: &str, name: &str, backup_id: &str, cloud: &str) -> VbsBackup {
        let spec = VbsBackupSpec::from(vbs_operator::crd::BackupSpec {
            backup_id: backup_id.into(),
            cloud_ref: CloudRef {
                secret_name: SECRET.into(),
                cloud: Some(cloud.into()),
            },
            poll_interval: None,
        });
        self.backups_in(ns)
            .create(&PostParams::default(), &VbsBackup::new(name, spec))
            .await
            .expect("create VbsBackup")
    }

    pub fn cbr_backups(&self) -> Api<CbrBackup> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create_cbr_backup(&self, name: &str, backup_id: &str, cloud: &str) -> CbrBackup {
        let spec = CbrBackupSpec::from(BackupSpec {
            backup_id: backup_id.into(),
            cloud_ref: CloudRef {
                secret_name: SECRET.into(),
                cloud: Some(cloud.into()),
            },
            poll_interval: None,
        });
        self.cbr_backups()
            .create(&PostParams::default(), &CbrBackup::new(name, spec))
            .await
            .expect("create CbrBackup")
    }

    /// Waits (watch-based, with a deadline) until the CbrBackup's status satisfies `check`.
    pub async fn wait_cbr_status(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&CbrBackupStatus) -> bool,
    ) -> CbrBackup {
        let cond = move |obj: Option<&CbrBackup>| obj.and_then(|o| o.status.as_ref()).is_some_and(&check);
        match tokio::time::timeout(DEADLINE, await_condition(self.cbr_backups(), name, cond)).await {
            Ok(Ok(Some(obj))) => obj,
            Ok(other) => panic!("waiting for {what} on {name}: {other:?}"),
            Err(_) => {
                let last = self
                    .cbr_backups()
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status);
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what} on CbrBackup {name}; last status: {last:#?}"
                )
            }
        }
    }

    pub async fn backup_in(&self, ns: &str, name: &str) -> VbsBackup {
        self.backups_in(ns).get(name).await.expect("get VbsBackup")
    }

    /// Another namespace for this test (for scope tests).
    pub async fn extra_namespace(&self, prefix: &str) -> String {
        create_namespace(&self.client, prefix).await
    }

    /// Waits (watch-based, with a deadline) until the VbsBackup's status satisfies `check`.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&VbsBackupStatus) -> bool,
    ) -> VbsBackup {
        self.wait_status_in(&self.ns, name, what, check).await
    }

    pub async fn wait_status_in(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        check: impl Fn(&VbsBackupStatus) -> bool,
    ) -> VbsBackup {
        let cond = move |obj: Option<&VbsBackup>| obj.and_then(|o| o.status.as_ref()).is_some_and(&check);
        self.wait_in(ns, name, what, cond).await
    }

    /// Waits until the VbsBackup reports `Synced=False` with `reason`.
    pub async fn wait_synced_false(&self, name: &str, reason: &str) -> VbsBackup {
        let what = format!("Synced=False {reason}");
        self.wait_status(name, &what, |s| is(s, "Synced", ("False", reason)))
            .await
    }

    pub async fn wait_in(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        cond: impl Condition<VbsBackup>,
    ) -> VbsBackup {
        match tokio::time::timeout(DEADLINE, await_condition(self.backups_in(ns), name, cond)).await {
            Ok(Ok(Some(obj))) => obj,
            Ok(other) => panic!("waiting for {what} on {name}: {other:?}"),
            Err(_) => {
                let last = self
                    .backups_in(ns)
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status);
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what} on {ns}/{name}; last status: {last:#?}"
                )
            }
        }
    }

    /// Events the operator published about a VbsBackup, as (type, reason, note).
    pub async fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = events.list(&Default::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl TestEnv {
    /// Waits until the operator published an Event about `name` that `check` accepts (Events are
    /// queued and published apart from the status write, so they can trail it by a moment).
    pub async fn wait_event(&self, name: &str, what: &str, check: impl Fn(&str, &str, &str) -> bool) {
        eventually(what, || async {
            self.events_for(name).await.iter().any(|(t, r, n)| check(t, r, n))
        })
        .await;
    }

    /// Waits until at least `n` Events about `name` were published, and returns them all.
    pub async fn wait_events(&self, name: &str, n: usize) -> Vec<(String, String, String)> {
        eventually(&format!("{n} Events about {name}"), || async {
            self.events_for(name).await.len() >= n
        })
        .await;
        self.events_for(name).await
    }
}

/// Waits until an async check holds, polling every 100 ms until the deadline.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(DEADLINE, what, check).await;
}

/// [`eventually`] with a deadline of its own (pods on a node take longer than API objects).
pub async fn eventually_within<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn condition<'a, S: BackupStatus>(
    status: &'a S,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions().iter().find(|c| c.type_ == type_)
}

/// The message of the `Synced` condition.
pub fn synced_message(obj: &VbsBackup) -> String {
    let status = obj.status.as_ref().expect("status");
    condition(status, "Synced")
        .expect("Synced condition")
        .message
        .clone()
}

/// `(status, reason)` of a condition, for terse assertions.
pub fn cond_state<S: BackupStatus>(status: &S, type_: &str) -> Option<(String, String)> {
    condition(status, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

pub fn is<S: BackupStatus>(status: &S, type_: &str, want: (&str, &str)) -> bool {
    cond_state(status, type_).is_some_and(|(s, r)| s == want.0 && r == want.1)
}

/// Creates a namespace named `{prefix}-{random}`. Namespaces are left behind: the test cluster is
/// thrown away after the run (and a 1.20 apiserver alone never finishes deleting them).
async fn create_namespace(client: &Client, prefix: &str) -> String {
    let ns = format!("{prefix}-{}", hex_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let meta = ObjectMeta {
        name: Some(ns.clone()),
        ..Default::default()
    };
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta,
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    ns
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
/// Returns (CA certificate PEM, certificate path, key path).
fn make_certificates(dir: &std::path::Path) -> (String, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vbs-test-ca",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("read ca.pem");
    (ca, dir.join("tls.pem"), dir.join("tls.key"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn hex_suffix() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xffffff)
}

/// Appends a row to the fault suite's report (`hack/test.sh` prints it as a table at the end):
/// the fault tried, and the figures measured under it. Call it after the test's assertions.
pub fn report(fault: &str, figures: &str) {
    use std::io::Write;
    let path = std::env::var_os("VBS_FAULT_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-report.tsv"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open fault report");
    writeln!(file, "{fault}\t{figures}").expect("write fault report");
}

/// A listener that accepts connections, records every byte sent to it and never answers: a tarpit,
/// and the recorder of what a redirect would have leaked.
pub struct Listener {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    pub async fn start() -> Self {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        r.lock().expect("lock").extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Listener {
            url,
            received,
            connections,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }
}

/// An etcd + kube-apiserver of this test's own (from `hack/lib/cluster.sh`), for faults that would
/// disturb every other test: killing and restarting the API server or etcd.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// Components started again by the test (children of this process, killed on drop).
    restarted: Vec<Child>,
}

impl PrivateCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let out = Command::new("bash")
            .args(["-c", "source hack/lib/cluster.sh && cluster_start \"$1\"", "bash"])
            .arg(dir.path())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("VBS_USE_EXISTING_CLUSTER")
            .output()
            .await
            .expect("run cluster_start");
        assert!(
            out.status.success(),
            "cluster_start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.path().join("kubeconfig");
        PrivateCluster {
            dir,
            kubeconfig,
            restarted: Vec::new(),
        }
    }

    fn pid(&self, component: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join(format!("{component}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs `component` (`apiserver` or `etcd`) and waits until it is gone.
    pub async fn kill(&self, component: &str) {
        let pid = self.pid(component).expect("pid file");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        eventually(&format!("{component} to die"), || async move {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|r| r.split(' ').next())
                .unwrap_or("X");
            stat.is_empty() || state == "Z" || state == "X"
        })
        .await;
    }

    /// Starts `component` again with its original command line.
    pub fn restart(&mut self, component: &str) {
        let cmd = std::fs::read(self.dir.path().join(format!("{component}.cmd"))).expect("cmd file");
        let argv: Vec<String> = cmd
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{component}.log")))
            .expect("log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("restart component");
        let pid = child.id().expect("pid");
        std::fs::write(self.dir.path().join(format!("{component}.pid")), pid.to_string()).expect("pid file");
        self.restarted.push(child);
    }

    /// Waits until the API server answers again.
    pub async fn wait_ready(&self, client: &Client) {
        eventually("the API server to answer", || async {
            client.apiserver_version().await.is_ok()
        })
        .await;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for component in ["apiserver", "etcd"] {
            if let Some(pid) = self.pid(component) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Runs a command-line tool (kubectl, helm) against the test cluster, with helm's state in a
/// scratch directory; its stdout, or an error with everything it printed.
pub fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let helm_home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let out = std::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .output()
        .map_err(|e| format!("cannot run {program} (hack/test.sh puts helm on PATH): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
