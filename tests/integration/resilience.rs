//! The fault suite: each test injects one fault on the real control plane or the simulator, asserts
//! the counts a rate limiter or an etcd would see (cloud calls, status writes, Events, logins,
//! memory) and the final state, and adds a row to the report that `hack/test.sh` prints.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// Operator metrics, as they are named on /metrics.
const RECONCILES: &str = "vbs_reconciles_total";
const STATUS_WRITES: &str = "vbs_status_writes_total";
const SECRET_READS: &str = "vbs_secret_reads_total";
const EVENTS: &str = "vbs_events_total";
/// How long a test watches for work that must not happen. Not a synchronisation: proving that
/// nothing more happens takes a window of time.
const QUIET: Duration = Duration::from_secs(2);

fn backup_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

fn ready(s: &vbs_operator::crd::VbsBackupStatus) -> bool {
    is(s, "Ready", ("True", "Available"))
}

async fn wait_metric(op: &OperatorProcess, series: &str, at_least: f64) {
    eventually(&format!("{series} >= {at_least}"), || async {
        op.metric(series).await >= at_least
    })
    .await;
}

#[tokio::test]
async fn start_up_and_sigkill_restart_cost_one_read_each_and_no_churn() {
    const N: usize = 20;
    let mut env = TestEnv::new("startup").await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    for i in 0..N {
        env.sim
            .put_backup(&backup_id(i), json!({"status": "available"}))
            .await;
        env.create_backup(&format!("b{i}"), &backup_id(i), "pw").await;
    }
    let started = Instant::now();
    env.start_operator(OperatorOptions::default());
    for i in 0..N {
        env.wait_status(&format!("b{i}"), "Ready=True", ready).await;
    }
    let converged = started.elapsed();
    let op = env.operator.as_ref().expect("operator");
    wait_metric(op, STATUS_WRITES, N as f64).await;
    wait_metric(op, EVENTS, N as f64).await;
    tokio::time::sleep(QUIET).await;
    let (reconciles, writes) = (op.metric(RECONCILES).await, op.metric(STATUS_WRITES).await);
    let (secret_reads, events) = (op.metric(SECRET_READS).await, op.metric(EVENTS).await);
    // Batched (the default): the twenty came due together, so one list call read them all.
    let calls = (env.sim.count("list").await, env.sim.count("show").await);
    assert_eq!(calls, (1, 0), "(list, show) calls at start-up");
    assert_eq!(
        reconciles, N as f64,
        "one reconcile each, none from the operator's own writes"
    );
    assert_eq!(writes, N as f64, "one status write each");
    assert_eq!(secret_reads, 1.0, "one Secret read for {N} VbsBackups sharing it");
    assert_eq!(events, N as f64, "one Event each (backup status is available)");
    report(
        "start-up, 20 VbsBackups, one Secret",
        &format!(
            "all Ready in {:.1}s; cloud calls: 1 list for all 20; per VbsBackup: 1 reconcile, 1 status write, 1 Event; Secret reads: {secret_reads}",
            converged.as_secs_f64()
        ),
    );

    // SIGKILL, then a new process: it reads each backup once more and writes nothing.
    env.operator.as_mut().expect("operator").kill().await;
    let k8s_events = env.events_for("b0").await.len();
    env.start_operator(OperatorOptions::default());
    let op = env.operator.as_ref().expect("operator");
    wait_metric(op, RECONCILES, N as f64).await;
    tokio::time::sleep(QUIET).await;
    let calls = (env.sim.count("list").await, env.sim.count("show").await);
    assert_eq!(
        calls,
        (2, 0),
        "(list, show) calls after the restart: one more list"
    );
    let (writes, events) = (op.metric(STATUS_WRITES).await, op.metric(EVENTS).await);
    assert_eq!(
        (writes, events),
        (0.0, 0.0),
        "a restart rewrote statuses or repeated Events"
    );
    assert_eq!(env.events_for("b0").await.len(), k8s_events);
    report(
        "operator SIGKILLed and restarted",
        &format!("cloud calls: 1 list for all 20; status writes: {writes}; Events: {events}"),
    );
}

/// One backup throttled with 429 and `Retry-After`, the API gateway's body with a fresh request id
/// on every answer.
/// Every call after a 429 must come at least `min_gap_ms` after it, and not before `not_before_ms`
/// (Unix time) when the server named a date.
async fn throttled(label: &str, retry_after: String, times: u32, min_gap_ms: u64, not_before_ms: u64) {
    let mut env = TestEnv::new("throttle").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.sim
        .add_fault(json!({"target": "show", "status": 429, "style": "apigw", "retry_after": retry_after, "times": times}))
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("limited", REFERENCE_ID, "pw").await;
    env.wait_status("limited", "Ready=True after the throttling", ready)
        .await;
    let times_ms = env.sim.show_times(REFERENCE_ID).await;
    assert_eq!(times_ms.len(), times as usize + 1, "calls: {times_ms:?}");
    let gaps: Vec<u64> = times_ms.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        assert!(
            *gap >= min_gap_ms,
            "a call came {gap} ms after a 429 with Retry-After ({label}): {gaps:?}"
        );
    }
    assert!(
        times_ms[1] >= not_before_ms,
        "a call came before the Retry-After date"
    );
    let op = env.operator.as_ref().expect("operator");
    let writes = op.metric(STATUS_WRITES).await;
    assert_eq!(writes, 2.0, "one write for the throttling, one for the recovery");
    let timing = if not_before_ms > 0 {
        format!(
            "the call after the 429 came {} ms after the date",
            times_ms[1] - not_before_ms
        )
    } else {
        format!("gaps after a 429: {gaps:?} ms (Retry-After {min_gap_ms} ms)")
    };
    report(
        &format!("429 with Retry-After as {label}"),
        &format!("{} calls; {timing}; status writes: {writes}", times_ms.len()),
    );
}

#[tokio::test]
async fn throttling_in_seconds_is_honoured() {
    throttled("seconds (3)", "3".into(), 2, 3000, 0).await;
}

#[tokio::test]
async fn throttling_until_a_date_is_honoured() {
    let at = std::time::SystemTime::now() + Duration::from_secs(5);
    let date = httpdate::fmt_http_date(at);
    // The date has whole seconds: no call before that second began.
    let not_before = httpdate::parse_http_date(&date).expect("date");
    let not_before_ms = not_before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_millis() as u64;
    throttled("an HTTP date (+5s)", date, 1, 0, not_before_ms).await;
}

/// The calls a backoff of `initial` doubling to `max`, with -10 % jitter and the condition's
/// one-second timestamps, allows in an outage of `outage`.
fn allowed_calls(initial: f64, max: f64, outage: f64) -> usize {
    let (mut t, mut calls) = (0.0, 1);
    while t < outage {
        let failing_for = (t - 0.5_f64).max(0.0);
        t += failing_for.clamp(initial, max) * 0.9;
        calls += 1;
    }
    calls
}

#[tokio::test]
async fn an_outage_costs_what_the_backoff_allows() {
    const OUTAGE: Duration = Duration::from_secs(8);
    let mut env = TestEnv::new("outage").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    // 503 from the API gateway: a fresh request id in every body.
    env.sim
        .add_fault(json!({"target": "show", "status": 503, "style": "apigw"}))
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("down", REFERENCE_ID, "pw").await;
    env.wait_synced_false("down", "ApiError").await;
    tokio::time::sleep(OUTAGE).await; // the outage itself
    env.sim.clear_faults().await;
    let during = env.sim.show_times(REFERENCE_ID).await.len();
    env.wait_status("down", "Ready=True after the outage", ready)
        .await;
    // The harness runs the operator with a 200 ms initial and a 2 s maximum backoff.
    let allowed = allowed_calls(0.2, 2.0, OUTAGE.as_secs_f64() + 1.0);
    assert!(
        during <= allowed,
        "{during} calls in an {OUTAGE:?} outage; the backoff allows {allowed}"
    );
    let op = env.operator.as_ref().expect("operator");
    let writes = op.metric(STATUS_WRITES).await;
    assert_eq!(
        writes, 2.0,
        "one write when the sync broke, one when it recovered"
    );
    let events = env.wait_events("down", 3).await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(events.len(), 3, "ApiError, Available, SyncRecovered: {reasons:?}");
    report(
        "5xx outage, 8 s, fresh request id per answer",
        &format!(
            "{during} calls (backoff allows {allowed}); status writes: {writes}; Events: {}",
            reasons.join(", ")
        ),
    );
}

#[tokio::test]
async fn a_tarpit_endpoint_does_not_starve_other_namespaces() {
    let tarpit = Listener::start().await;
    let mut env = TestEnv::new("tarpit").await;
    let healthy = env.extra_namespace("tarpit-ok").await;
    let stuck = format!(
        "clouds:\n  aksk:\n    auth_type: aksk\n    auth: {{ak: {AK}, sk: {SK}, project_id: {PROJECT}}}\n    block_storage_endpoint_override: {}\n",
        tarpit.url
    );
    env.create_secret(&stuck).await;
    env.create_secret_in(&healthy, &env.sim.clouds_yaml(PASSWORD, ""))
        .await;
    for i in 0..10 {
        env.create_backup(&format!("hung{i}"), &backup_id(i), "aksk")
            .await;
    }
    for i in 0..5 {
        env.sim
            .put_backup(&backup_id(100 + i), json!({"status": "available"}))
            .await;
        env.create_backup_in(&healthy, &format!("ok{i}"), &backup_id(100 + i), "pw")
            .await;
    }
    let started = Instant::now();
    env.start_operator(OperatorOptions {
        namespaces: vec![env.ns.clone(), healthy.clone()],
        exact_args: Some(
            [
                "--log-level=info,vbs_operator=debug",
                "--poll-interval=1h",
                "--initial-backoff=200ms",
                "--max-backoff=2s",
                "--cloud-timeout=10s",
                "--concurrency=4",
                "--concurrency-per-host=2",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..Default::default()
    });
    for i in 0..5 {
        env.wait_status_in(&healthy, &format!("ok{i}"), "Ready=True", ready)
            .await;
    }
    let healthy_done = started.elapsed();
    assert!(
        healthy_done < Duration::from_secs(8),
        "the healthy namespace waited {healthy_done:?}, behind the tarpit's 10 s timeouts"
    );
    for i in 0..10 {
        env.wait_synced_false(&format!("hung{i}"), "ApiError").await;
    }
    let connections = tarpit.connections();
    // The ten share their project's list: one call, whose timeout all ten report, rather than
    // one timeout after another behind it (plus, at most, the first retry after the backoff).
    assert!(
        connections <= 2,
        "{connections} connections to the tarpit by the time all ten reported its timeout"
    );
    report(
        "tarpit endpoint (accepts, never answers) in one namespace",
        &format!(
            "other namespace all Ready {:.1}s after start (cloud timeout 10s); tarpit connections: {connections} for 10 VbsBackups",
            healthy_done.as_secs_f64()
        ),
    );
}

#[tokio::test]
async fn huge_and_malformed_bodies_keep_memory_bounded() {
    let mut env = TestEnv::new("bodies").await;
    let (huge, broken) = (backup_id(1), backup_id(2));
    for id in [&huge, &broken] {
        env.sim.put_backup(id, json!({"status": "available"})).await;
    }
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.sim
        .add_fault(json!({"target": "show", "backup_id": huge, "body_bytes": 50u64 * 1024 * 1024}))
        .await;
    env.sim
        .add_fault(json!({"target": "show", "backup_id": broken, "malformed": true}))
        .await;
    // One GET per backup: the faults target show calls.
    env.start_operator(OperatorOptions {
        extra_args: vec!["--refresh=single".into()],
        ..Default::default()
    });
    env.create_backup("huge", &huge, "pw").await;
    env.create_backup("broken", &broken, "pw").await;
    let obj = env.wait_synced_false("huge", "ApiError").await;
    assert!(
        synced_message(&obj).contains("larger than 1024 KiB"),
        "{}",
        synced_message(&obj)
    );
    let obj = env.wait_synced_false("broken", "ApiError").await;
    assert!(
        synced_message(&obj).contains("malformed"),
        "{}",
        synced_message(&obj)
    );
    // Let it retry the 50 MB answer a few times.
    eventually("several retries of the huge answer", || async {
        env.sim.show_times(&huge).await.len() >= 4
    })
    .await;
    let peak = env.operator.as_ref().expect("operator").peak_rss_mib();
    assert!(peak < 64.0, "peak RSS {peak:.1} MiB");
    report(
        "50 MB answer and a truncated JSON body",
        &format!(
            "both Synced=False ApiError; 50 MB answer read {} times; operator peak RSS {peak:.1} MiB",
            env.sim.show_times(&huge).await.len()
        ),
    );
}

#[tokio::test]
async fn redirects_reach_no_listener() {
    let listener = Listener::start().await;
    let mut env = TestEnv::new("redirect").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.sim
        .add_fault(json!({"target": "auth", "status": 307, "redirect_to": format!("{}/v3/auth/tokens", listener.url)}))
        .await;
    env.sim
        .add_fault(
            json!({"target": "show", "status": 308, "redirect_to": format!("{}/stolen", listener.url)}),
        )
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("login", REFERENCE_ID, "pw").await;
    env.create_backup("signed", REFERENCE_ID, "aksk").await;
    for name in ["login", "signed"] {
        let obj = env.wait_synced_false(name, "ApiError").await;
        assert!(
            synced_message(&obj).contains("redirects are not followed"),
            "{}",
            synced_message(&obj)
        );
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(listener.connections(), 0, "a redirect was followed");
    let log = env.operator.as_ref().expect("operator").log_text();
    assert!(
        !log.contains(PASSWORD) && !log.contains(SK),
        "a credential reached the log"
    );
    report(
        "307 on login, 308 on a signed query, to a recording listener",
        &format!(
            "both Synced=False ApiError; listener connections: {}, bytes: {}",
            listener.connections(),
            listener.received().len()
        ),
    );
}

#[tokio::test]
async fn hostile_clouds_yaml_is_refused_without_harm() {
    let mut env = TestEnv::new("hostile").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    let bomb = vbs_operator::sim::alias_bomb_clouds_yaml();
    let big = format!("clouds:\n  c: {{auth: {{}}}}\n# {}\n", "x".repeat(900 * 1024));
    let binary: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let wrong_types =
        "clouds: {c: {auth: {auth_url: [1, 2], password: {nested: s3cret-value}}, region_name: 5}}";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bomb", bomb.into_bytes()),
        ("big", big.into_bytes()),
        ("binary", binary),
        ("types", wrong_types.as_bytes().to_vec()),
        ("good", env.sim.clouds_yaml(PASSWORD, "").into_bytes()),
    ];
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    for (name, data) in &cases {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta {
                name: Some((*name).into()),
                ..Default::default()
            },
            data: Some([("clouds.yaml".to_string(), k8s_openapi::ByteString(data.clone()))].into()),
            ..Default::default()
        };
        secrets
            .create(&Default::default(), &secret)
            .await
            .expect("create secret");
        let spec = vbs_operator::crd::VbsBackupSpec::from(vbs_operator::crd::BackupSpec {
            backup_id: REFERENCE_ID.into(),
            cloud_ref: vbs_operator::crd::CloudRef {
                secret_name: (*name).into(),
                cloud: (*name == "good").then(|| "pw".into()),
            },
            poll_interval: None,
        });
        env.backups()
            .create(
                &Default::default(),
                &vbs_operator::crd::VbsBackup::new(name, spec),
            )
            .await
            .expect("create VbsBackup");
    }
    env.start_operator(OperatorOptions::default());
    env.wait_status("good", "Ready=True beside the hostile ones", ready)
        .await;
    let mut lengths = Vec::new();
    for name in ["bomb", "big", "binary", "types"] {
        let obj = env.wait_synced_false(name, "InvalidCloudConfig").await;
        let message = synced_message(&obj);
        assert!(
            message.len() < 1024 && !message.contains("s3cret") && !message.contains("xxxx"),
            "{message}"
        );
        lengths.push(format!("{name}: {} B", message.len()));
    }
    let op = env.operator.as_ref().expect("operator");
    assert!(op.child.id().is_some(), "the operator is still running");
    let peak = op.peak_rss_mib();
    assert!(peak < 64.0, "peak RSS {peak:.1} MiB");
    report(
        "hostile clouds.yaml: alias bomb, 900 KB, binary, wrong types",
        &format!(
            "each Synced=False InvalidCloudConfig (messages {}); a good Secret beside them Ready; peak RSS {peak:.1} MiB",
            lengths.join(", ")
        ),
    );
}

#[tokio::test]
async fn api_server_and_etcd_restarts_are_ridden_out() {
    let mut cluster = PrivateCluster::start().await;
    let sim = SimProcess::start(SimProcess::seed()).await;
    let mut env = TestEnv::on_cluster("restart", sim, cluster.kubeconfig.clone()).await;
    for i in 0..3 {
        env.sim
            .put_backup(&backup_id(i), json!({"status": "available"}))
            .await;
    }
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("before", &backup_id(0), "pw").await;
    env.wait_status("before", "Ready=True", ready).await;

    // kube-apiserver SIGKILLed and started again.
    cluster.kill("apiserver").await;
    cluster.restart("apiserver");
    cluster.wait_ready(&env.client).await;
    // The limit, measured beside the operator: a plain watch of this test's own, started now, and
    // the time it takes to see the new object at all.
    let seen_by_plain_watch = {
        let api = env.backups();
        tokio::spawn(async move {
            let started = Instant::now();
            let seen = kube::runtime::wait::await_condition(
                api,
                "after-apiserver",
                |o: Option<&vbs_operator::crd::VbsBackup>| o.is_some(),
            );
            tokio::time::timeout(DEADLINE, seen)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|_| started.elapsed())
        })
    };
    let created = Instant::now();
    env.create_backup("after-apiserver", &backup_id(1), "pw").await;
    env.wait_status("after-apiserver", "Ready=True", ready).await;
    let apiserver_latency = created.elapsed();
    let plain_watch = seen_by_plain_watch
        .await
        .expect("join")
        .expect("the plain watch saw the object");

    // etcd SIGKILLed, down for a moment, started again on its data.
    cluster.kill("etcd").await;
    tokio::time::sleep(QUIET).await; // the outage itself
    cluster.restart("etcd");
    cluster.wait_ready(&env.client).await;
    let created = Instant::now();
    env.create_backup("after-etcd", &backup_id(2), "pw").await;
    env.wait_status("after-etcd", "Ready=True", ready).await;
    let etcd_latency = created.elapsed();

    for (latency, what) in [(apiserver_latency, "kube-apiserver"), (etcd_latency, "etcd")] {
        assert!(
            latency < Duration::from_secs(15),
            "a VbsBackup created after the {what} restart got its status after {latency:?}"
        );
    }
    let op = env.operator.as_ref().expect("operator");
    assert_eq!(
        env.sim.shows_of(&backup_id(0)).await,
        1,
        "the settled VbsBackup was re-read"
    );
    let writes = op.metric(STATUS_WRITES).await;
    assert_eq!(writes, 3.0, "one status write per VbsBackup");
    let log = op.log_text();
    assert!(
        !log.contains("may not watch"),
        "a restart is not an RBAC problem:\n{log}"
    );
    report(
        "kube-apiserver SIGKILLed and restarted",
        &format!(
            "a VbsBackup created after the restart had its status in {:.1}s (a plain watch of the test's own saw the object after {:.1}s: the restarted server's custom-resource watch cache); the settled one was not re-read",
            apiserver_latency.as_secs_f64(),
            plain_watch.as_secs_f64()
        ),
    );
    report(
        "etcd SIGKILLed, restarted 2 s later",
        &format!(
            "a VbsBackup created after the restart had its status in {:.1}s; status writes overall: {writes} for 3 VbsBackups",
            etcd_latency.as_secs_f64()
        ),
    );
}

#[tokio::test]
async fn hostile_numbers_do_not_stop_the_operator() {
    let mut env = TestEnv::new("numbers").await;
    let (huge_poll, huge_retry, fine) = (backup_id(1), backup_id(2), backup_id(3));
    for id in [&huge_poll, &huge_retry, &fine] {
        env.sim.put_backup(id, json!({"status": "available"})).await;
    }
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    // A Retry-After that overflows any duration arithmetic.
    env.sim
        .add_fault(
            json!({"target": "show", "backup_id": huge_retry, "status": 429, "style": "apigw",
            "retry_after": "18446744073709551615"}),
        )
        .await;
    // One GET per backup: the faults target show calls.
    env.start_operator(OperatorOptions {
        extra_args: vec!["--refresh=single".into()],
        ..Default::default()
    });
    // A poll interval the CRD's pattern and length accept (the 1.20 test server does not run the
    // CEL rule that caps it at 168h).
    let spec = vbs_operator::crd::VbsBackupSpec::from(vbs_operator::crd::BackupSpec {
        backup_id: huge_poll.clone(),
        cloud_ref: vbs_operator::crd::CloudRef {
            secret_name: SECRET.into(),
            cloud: Some("pw".into()),
        },
        poll_interval: Some("99999999999999999999h".into()),
    });
    env.backups()
        .create(
            &Default::default(),
            &vbs_operator::crd::VbsBackup::new("forever", spec),
        )
        .await
        .expect("the schema accepts it");
    env.create_backup("throttled", &huge_retry, "pw").await;
    env.wait_status("forever", "Ready=True", ready).await;
    env.wait_synced_false("throttled", "ApiError").await;
    // Created last: the operator still serves everyone.
    env.create_backup("fine", &fine, "pw").await;
    env.wait_status("fine", "Ready=True", ready).await;
    tokio::time::sleep(QUIET).await;
    let op = env.operator.as_mut().expect("operator");
    assert!(
        op.child.try_wait().expect("try_wait").is_none(),
        "the operator exited:\n{}",
        op.log_text()
    );
    assert!(!op.log_text().contains("panicked"), "{}", op.log_text());
    let calls = env.sim.show_times(&huge_retry).await.len();
    assert_eq!(calls, 1, "Retry-After (capped at 1 h) was not honoured");
    report(
        "pollInterval 99999999999999999999h; Retry-After 18446744073709551615",
        &format!(
            "no panic, operator running; the interval is used as 168h, the Retry-After as 1h (calls to that backup: {calls})"
        ),
    );
}
