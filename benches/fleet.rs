//! The fleet benchmark: N VbsBackups across 100 namespaces and 10 credential sets, against the
//! real kube-apiserver of KUBECONFIG and the simulator (20 ms per call), with the operator's
//! release binary in `batch` and `single` refresh mode side by side, and N CbrBackups in `batch`
//! mode (`cbr-batch`). Prints one Markdown table. Run it with `hack/bench.sh` (which starts etcd +
//! kube-apiserver); never a timed test.
//!
//!   VBS_BENCH_SIZES=1000,10000 VBS_BENCH_STEADY_SECS=300 [VBS_BENCH_MODES=batch,single,cbr-batch] cargo bench --bench fleet

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use vbs_operator::crd::{BackupSpec, CbrBackup, CloudRef, VbsBackup};
use vbs_operator::kind::BackupKind;
use vbs_operator::status::BackupStatus;

const NAMESPACES: usize = 100;
const CREDENTIAL_SETS: usize = 10;
const POLL: &str = "60s";
const FAST_POLL: &str = "15s";
const LATENCY_MS: u64 = 20;
/// Backups measured for change-to-status latency, per kind (settled, transitional).
const PROBES: usize = 20;
const DOMAIN: &str = "Bench";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn backup_id(run: usize, j: usize) -> String {
    format!("{run:02x}{j:06x}-0000-4000-8000-000000000000")
}

fn project(set: usize) -> String {
    format!("{set:032x}")
}

struct Run {
    index: usize,
    n: usize,
    mode: &'static str,
}

impl Run {
    fn cbr(&self) -> bool {
        self.mode == "cbr-batch"
    }
    /// The operator's `--refresh` for this run.
    fn refresh(&self) -> &'static str {
        if self.mode == "single" { "single" } else { "batch" }
    }
    /// The simulator's call counters of this run's service.
    fn calls(&self) -> [&'static str; 3] {
        if self.cbr() {
            ["cbr_list", "cbr_show", "auth"]
        } else {
            ["list", "show", "auth"]
        }
    }
    fn label(&self) -> String {
        format!("n{}-{}", self.n, self.mode)
    }
    fn namespace(&self, i: usize) -> String {
        format!("bench-{}-{i:03}", self.label())
    }
    /// Backup j lives in namespace j % 100, whose Secret uses credential set (j % 100) % 10.
    fn set_of(&self, j: usize) -> usize {
        (j % NAMESPACES) % CREDENTIAL_SETS
    }
    /// One backup in a hundred is transitional (`creating`; CBR's `protecting`).
    fn initial_status(&self, j: usize) -> &'static str {
        match (j % 100 == 7, self.cbr()) {
            (true, false) => "creating",
            (true, true) => "protecting",
            (false, _) => "available",
        }
    }
}

/// The simulator, started once with every run's backups.
struct Sim {
    _child: Child,
    url: String,
    http: reqwest::Client,
}

impl Sim {
    async fn start(runs: &[Run], dir: &std::path::Path) -> Result<Self, Error> {
        let users: Vec<Value> = (0..CREDENTIAL_SETS)
            .map(|s| json!({"name": format!("u{s}"), "password": format!("pw-{s}"), "domain": DOMAIN, "project_id": project(s)}))
            .collect();
        let (mut backups, mut cbr_backups) = (Vec::new(), Vec::new());
        for run in runs {
            for j in 0..run.n {
                let (id, project, status) = (
                    backup_id(run.index, j),
                    project(run.set_of(j)),
                    run.initial_status(j),
                );
                if run.cbr() {
                    cbr_backups.push(
                        json!({"id": id, "project_id": project, "status": status, "resource_size": 10,
                        "created_at": "2026-11-01T10:00:00.000+00:00"}),
                    );
                } else {
                    backups.push(
                        json!({"id": id, "project_id": project, "status": status, "size": 10,
                        "created_at": "2026-11-01T10:00:00.000000"}),
                    );
                }
            }
        }
        let seed = dir.join("seed.json");
        std::fs::write(
            &seed,
            json!({"region": "eu-de", "users": users, "backups": backups, "cbr_backups": cbr_backups})
                .to_string(),
        )?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vbs-sim"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(&seed)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("sim stdout")?)
            .read_line(&mut line)
            .await?;
        let url = line.trim().rsplit(' ').next().ok_or("sim url")?.to_string();
        let sim = Sim {
            _child: child,
            url,
            http: reqwest::Client::new(),
        };
        // Every call takes 20 ms, as a cloud API would at least.
        sim.http
            .post(format!("{}/sim/faults", sim.url))
            .json(&json!({"target": "any", "delay_ms": LATENCY_MS, "status": 200}))
            .send()
            .await?
            .error_for_status()?;
        Ok(sim)
    }

    async fn calls(&self) -> Result<HashMap<String, u64>, Error> {
        let stats: Value = self
            .http
            .get(format!("{}/sim/stats", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(stats["requests"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn set_status(&self, run: &Run, project: &str, id: &str, status: &str) -> Result<(), Error> {
        let kind = if run.cbr() { "cbr-backups" } else { "backups" };
        self.http
            .patch(format!("{}/sim/projects/{project}/{kind}/{id}", self.url))
            .json(&json!({"status": status}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn clouds_yaml(sim: &str, set: usize) -> String {
    format!(
        "clouds:\n  c:\n    auth:\n      auth_url: {sim}/v3\n      username: u{set}\n      password: pw-{set}\n      user_domain_name: {DOMAIN}\n      project_id: {}\n    region_name: eu-de\n",
        project(set)
    )
}

async fn create_fleet(client: &Client, sim: &Sim, run: &Run) -> Result<Duration, Error> {
    let started = Instant::now();
    futures::stream::iter(0..NAMESPACES)
        .map(|i| {
            let client = client.clone();
            let ns = run.namespace(i);
            let yaml = clouds_yaml(&sim.url, i % CREDENTIAL_SETS);
            async move {
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
                    .await?;
                let secrets: Api<Secret> = Api::namespaced(client, &ns);
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some("cloud".into()),
                        ..Default::default()
                    },
                    string_data: Some([("clouds.yaml".to_string(), yaml)].into()),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &secret).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    futures::stream::iter(0..run.n)
        .map(|j| {
            let client = client.clone();
            let (ns, id, label) = (
                run.namespace(j % NAMESPACES),
                backup_id(run.index, j),
                run.label(),
            );
            let cbr = run.cbr();
            async move {
                let name = format!("b{j:05}");
                let spec = BackupSpec {
                    backup_id: id,
                    cloud_ref: CloudRef {
                        secret_name: "cloud".into(),
                        cloud: None,
                    },
                    poll_interval: None,
                };
                let labels = Some([("bench-run".to_string(), label)].into());
                let params = PostParams::default();
                if cbr {
                    let mut obj = CbrBackup::new(&name, spec.into());
                    obj.metadata.labels = labels;
                    Api::<CbrBackup>::namespaced(client, &ns)
                        .create(&params, &obj)
                        .await?;
                } else {
                    let mut obj = VbsBackup::new(&name, spec.into());
                    obj.metadata.labels = labels;
                    Api::<VbsBackup>::namespaced(client, &ns)
                        .create(&params, &obj)
                        .await?;
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(started.elapsed())
}

/// The state of the fleet as a watch sees it: per object, the backup status and whether Synced.
#[derive(Default)]
struct Seen {
    status: HashMap<String, (Option<String>, bool)>,
    /// When each object was first seen with a given backup status.
    changed_at: HashMap<(String, String), Instant>,
}

fn watch_fleet(client: &Client, run: &Run) -> Arc<Mutex<Seen>> {
    if run.cbr() {
        watch_fleet_of::<CbrBackup>(client, run)
    } else {
        watch_fleet_of::<VbsBackup>(client, run)
    }
}

fn watch_fleet_of<K: BackupKind>(client: &Client, run: &Run) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let api: Api<K> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("bench-run={}", run.label()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(Ok(obj)) = events.next().await {
            let key = format!(
                "{}/{}",
                obj.meta().namespace.clone().unwrap_or_default(),
                obj.meta().name.clone().unwrap_or_default()
            );
            let status = obj.current_status();
            let state = status.and_then(|s| s.backup_status().map(str::to_string));
            let synced = status.is_some_and(|s| {
                s.conditions()
                    .iter()
                    .any(|c| c.type_ == "Synced" && c.status == "True")
            });
            let mut seen = record.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = &state {
                seen.changed_at
                    .entry((key.clone(), state.clone()))
                    .or_insert_with(Instant::now);
            }
            seen.status.insert(key, (state, synced));
        }
    });
    seen
}

fn synced(seen: &Mutex<Seen>) -> usize {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .status
        .values()
        .filter(|(_, s)| *s)
        .count()
}

struct Operator {
    child: Child,
    metrics: String,
}

impl Operator {
    fn start(run: &Run, log: PathBuf) -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let file = std::fs::File::create(log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_vbs-operator"))
            .args([
                "run",
                "--log-level",
                "warn",
                "--poll-interval",
                POLL,
                "--fast-poll-interval",
                FAST_POLL,
            ])
            .args([
                "--kinds",
                if run.cbr() { "cbrbackup" } else { "vbsbackup" },
                "--refresh",
                run.refresh(),
                "--selector",
                &format!("bench-run={}", run.label()),
            ])
            .args([
                "--cloud-qps",
                "2000",
                "--cloud-burst",
                "2000",
                "--concurrency",
                "64",
                "--concurrency-per-host",
                "64",
            ])
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Operator {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    async fn metric(&self, series: &str) -> f64 {
        let body = match reqwest::get(&self.metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        vbs_operator::metrics::sample(&body, series).unwrap_or(0.0)
    }

    /// Peak RSS (MiB) and CPU seconds so far.
    fn resources(&self) -> (f64, f64) {
        let pid = self.child.id().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (hwm, ticks / 100.0)
    }
}

async fn wait_until(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<Duration, Error> {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > deadline {
            return Err(format!("timed out after {deadline:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Changes `PROBES` backups of a kind in the simulator, spread over `spread`, and returns how long
/// each took to show in its VbsBackup.
async fn change_to_status(
    sim: &Sim,
    run: &Run,
    seen: &Arc<Mutex<Seen>>,
    transitional: bool,
    spread: Duration,
) -> Result<Vec<f64>, Error> {
    let picks: Vec<usize> = (0..run.n)
        .filter(|j| (run.initial_status(*j) != "available") == transitional)
        .take(PROBES)
        .collect();
    let to = if transitional { "available" } else { "error" };
    let mut changed = Vec::new();
    for (k, j) in picks.iter().enumerate() {
        tokio::time::sleep(spread / PROBES as u32).await;
        sim.set_status(run, &project(run.set_of(*j)), &backup_id(run.index, *j), to)
            .await?;
        changed.push((k, *j, Instant::now()));
    }
    let key = |j: usize| format!("{}/b{j:05}", run.namespace(j % NAMESPACES));
    wait_until(
        "the probes to show their change",
        Duration::from_secs(600),
        || {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            changed
                .iter()
                .all(|(_, j, _)| s.changed_at.contains_key(&(key(*j), to.to_string())))
        },
    )
    .await?;
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies: Vec<f64> = changed
        .iter()
        .filter_map(|(_, j, at)| {
            s.changed_at
                .get(&(key(*j), to.to_string()))
                .map(|seen_at| seen_at.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// The API server's own limit: N status patches of this run's objects from a minimal client, at
/// the best of a few concurrencies. Returns (seconds, concurrency).
async fn raw_patch_limit(client: &Client, run: &Run) -> Result<(f64, usize), Error> {
    let resource = if run.cbr() {
        kube::api::ApiResource::erase::<CbrBackup>(&())
    } else {
        kube::api::ApiResource::erase::<VbsBackup>(&())
    };
    let mut best = (f64::MAX, 0);
    for (round, concurrency) in [16usize, 32, 64].into_iter().enumerate() {
        let started = Instant::now();
        futures::stream::iter(0..run.n)
            .map(|j| {
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(client.clone(), &run.namespace(j % NAMESPACES), &resource);
                async move {
                    let patch = json!({"status": {"name": format!("raw-{round}")}});
                    api.patch_status(
                        &format!("b{j:05}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        let secs = started.elapsed().as_secs_f64();
        if secs < best.0 {
            best = (secs, concurrency);
        }
    }
    Ok(best)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    vbs_operator::install_crypto_provider();
    let sizes: Vec<usize> = std::env::var("VBS_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let steady = Duration::from_secs(
        std::env::var("VBS_BENCH_STEADY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let client = Client::try_default().await?;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for crd in [VbsBackup::crd(), CbrBackup::crd()] {
        if let Err(e) = crds.create(&PostParams::default(), &crd).await {
            eprintln!("bench: CRD: {e} (continuing)");
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let modes: Vec<&'static str> = match std::env::var("VBS_BENCH_MODES") {
        Ok(list) => ["batch", "single", "cbr-batch"]
            .into_iter()
            .filter(|m| list.split(',').any(|w| w.trim() == *m))
            .collect(),
        Err(_) => vec!["batch", "single", "cbr-batch"],
    };
    let mut runs = Vec::new();
    for &n in &sizes {
        for mode in &modes {
            runs.push(Run {
                index: runs.len(),
                n,
                mode,
            });
        }
    }
    let dir = tempfile::tempdir()?;
    let sim = Sim::start(&runs, dir.path()).await?;
    eprintln!(
        "bench: simulator at {} with {} backups",
        sim.url,
        runs.iter().map(|r| r.n).sum::<usize>()
    );

    let mut rows = Vec::new();
    let mut limits: HashMap<usize, (f64, usize)> = HashMap::new();
    for run in &runs {
        let created = create_fleet(&client, &sim, run).await?;
        eprintln!(
            "bench: {}: created {} {} in {:.1}s",
            run.label(),
            run.n,
            if run.cbr() { "CbrBackups" } else { "VbsBackups" },
            created.as_secs_f64()
        );
        let seen = watch_fleet(&client, run);
        wait_until("the watch to list the fleet", Duration::from_secs(300), || {
            seen.lock().unwrap_or_else(|e| e.into_inner()).status.len() == run.n
        })
        .await?;
        let before = sim.calls().await?;
        let operator = Operator::start(run, dir.path().join(format!("{}.log", run.label())))?;
        let converge = wait_until("every VbsBackup Synced", Duration::from_secs(1800), || {
            synced(&seen) == run.n
        })
        .await?;
        let after = sim.calls().await?;
        let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let [list, show, auth] = run.calls();
        let refresh_calls = format!("{} list, {} show, {} auth", delta(list), delta(show), delta(auth));
        eprintln!(
            "bench: {}: all Synced in {:.1}s ({refresh_calls})",
            run.label(),
            converge.as_secs_f64()
        );

        // Steady state: the poll interval passes several times; meanwhile the probes change.
        let (writes0, reads0) = (
            operator.metric("vbs_status_writes_total").await,
            operator.metric("vbs_secret_reads_total").await,
        );
        let calls0 = sim.calls().await?;
        let probe_window = steady.min(Duration::from_secs(120));
        let settled = change_to_status(&sim, run, &seen, false, probe_window / 2);
        let transitional = change_to_status(&sim, run, &seen, true, probe_window / 2);
        let (settled, transitional) = tokio::join!(settled, transitional);
        let (settled, transitional) = (settled?, transitional?);
        let started_steady = Instant::now();
        // The steady window starts after the probes settled; their 2 x 20 writes are subtracted.
        tokio::time::sleep(steady.saturating_sub(started_steady.elapsed())).await;
        let writes = operator.metric("vbs_status_writes_total").await - writes0 - (2 * PROBES) as f64;
        let reads = operator.metric("vbs_secret_reads_total").await - reads0;
        let calls1 = sim.calls().await?;
        let steady_calls: u64 = run
            .calls()
            .iter()
            .map(|k| calls1.get(*k).copied().unwrap_or(0) - calls0.get(*k).copied().unwrap_or(0))
            .sum();
        let (rss, cpu) = operator.resources();
        let events = format!(
            "{} / {}",
            operator.metric("vbs_events_total").await,
            operator.metric("vbs_events_dropped_total").await
        );
        drop(operator);
        let limit = match limits.get(&run.n) {
            Some(l) => *l,
            None => {
                let l = raw_patch_limit(&client, run).await?;
                limits.insert(run.n, l);
                l
            }
        };
        let ms = |v: f64| format!("{:.1}", v);
        rows.push(format!(
            "| {} | {} | {:.1} | {:.1} (x{}) | {:.2} | {refresh_calls} | {} | {} | {steady_calls} | {:.0} | {:.1} | {} / {} | {} / {} | {events} |",
            run.n, run.mode, converge.as_secs_f64(), limit.0, limit.1, converge.as_secs_f64() / limit.0,
            writes.max(0.0), reads, rss, cpu,
            ms(percentile(&settled, 0.5)), ms(percentile(&settled, 0.99)),
            ms(percentile(&transitional, 0.5)), ms(percentile(&transitional, 0.99)),
        ));
        eprintln!("bench: {}", rows.last().map(String::as_str).unwrap_or(""));
    }
    println!();
    println!(
        "Fleet benchmark: {NAMESPACES} namespaces, {CREDENTIAL_SETS} credential sets (projects), {LATENCY_MS} ms per cloud call, poll {POLL} (transitional {FAST_POLL}), steady window {}s",
        steady.as_secs()
    );
    println!();
    println!(
        "| N | refresh | all Synced (s) | raw patch limit (s, best concurrency) | ratio | cloud calls to converge | status writes, steady | Secret GETs, steady | cloud calls, steady | peak RSS (MiB) | CPU (s) | change→status settled p50 / p99 (s) | transitional p50 / p99 (s) | Events published / dropped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
