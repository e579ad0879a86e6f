//! Running the operator: metrics and health endpoints, JSON logs, several namespaces, leader
//! election, and the GitOps conventions (kubectl wait, server-side apply without drift).

use crate::harness::*;
use serde_json::json;

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn metrics_health_and_json_logs() {
    let mut env = TestEnv::new("metrics").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    // One GET per backup, so that the show_backup series below are certain to exist.
    env.start_operator(OperatorOptions {
        extra_args: vec!["--log-format".into(), "json".into(), "--refresh=single".into()],
        ..Default::default()
    });
    env.create_backup("scraped", REFERENCE_ID, "pw").await;
    env.create_backup("ghost", "00000000-0000-4000-8000-000000000000", "pw")
        .await;
    env.wait_status("scraped", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    env.wait_synced_false("ghost", "BackupNotFound").await;

    let base = env.operator.as_ref().expect("operator").http_url.clone();
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    eventually("/readyz answers 200", || async {
        get(&format!("{base}/readyz")).await.0 == 200
    })
    .await;
    let (code, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    for needle in [
        "vbs_reconciles_total{kind=\"VbsBackup\"} ",
        "vbs_reconcile_failures_total{kind=\"VbsBackup\",reason=\"BackupNotFound\"}",
        "vbs_reconcile_duration_seconds_count{kind=\"VbsBackup\"} ",
        "vbs_cloud_requests_total{service=\"vbs\",operation=\"show_backup\",code=\"200\"}",
        "vbs_cloud_requests_total{service=\"vbs\",operation=\"show_backup\",code=\"404\"}",
        "vbs_cloud_requests_total{service=\"keystone\",operation=\"authenticate\",code=\"201\"}",
        "vbs_cloud_request_duration_seconds_count{service=\"vbs\",operation=\"show_backup\"} ",
        "vbs_token_refreshes_total 1",
        "vbs_backups{kind=\"VbsBackup\",backup_status=\"available\"} 1",
        "vbs_backups{kind=\"VbsBackup\",backup_status=\"none\"} 1",
        "# EOF",
    ] {
        assert!(body.contains(needle), "/metrics lacks {needle:?}:\n{body}");
    }
    let sync_line = format!(
        "vbs_last_successful_sync_timestamp_seconds{{kind=\"VbsBackup\",namespace=\"{}\",name=\"scraped\"}}",
        env.ns
    );
    assert!(body.contains(&sync_line), "{body}");

    // Deleted resources leave the per-resource series.
    env.backups()
        .delete("scraped", &Default::default())
        .await
        .expect("delete");
    eventually("the deleted VbsBackup's series to go", || async {
        !get(&format!("{base}/metrics")).await.1.contains(&sync_line)
    })
    .await;

    // JSON logs: one object per line, the resource and backup ID on reconcile lines.
    let log = env.operator.as_ref().expect("operator").log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let updates: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "status updated")
        .collect();
    assert!(updates.len() >= 2, "{log}");
    for line in &updates {
        assert!(
            line["span"]["resource"].is_string() && line["span"]["backup_id"].is_string(),
            "{line}"
        );
    }
    assert!(
        updates
            .iter()
            .any(|l| l["span"]["resource"] == "scraped" && l["span"]["backup_id"] == REFERENCE_ID),
        "{log}"
    );

    // SIGTERM stops it cleanly and quickly.
    let operator = env.operator.as_mut().expect("operator");
    let status = operator.terminate(std::time::Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn watched_namespaces_share_their_project_lists() {
    const PER_NAMESPACE: usize = 8;
    let mut env = TestEnv::new("shared-lists").await;
    let other = env.extra_namespace("shared-lists-b").await;
    let clouds = env.sim.clouds_yaml(PASSWORD, "");
    for (n, ns) in [&env.ns, &other].into_iter().enumerate() {
        env.create_secret_in(ns, &clouds).await;
        for i in 0..PER_NAMESPACE {
            let id = format!("00000000-0000-4000-8000-{n:06}{i:06}");
            env.sim.put_backup(&id, json!({"status": "available"})).await;
            env.create_backup_in(ns, &format!("b{i}"), &id, "pw").await;
        }
    }
    env.start_operator(OperatorOptions {
        namespaces: vec![env.ns.clone(), other.clone()],
        ..Default::default()
    });
    for ns in [&env.ns, &other] {
        for i in 0..PER_NAMESPACE {
            env.wait_status_in(ns, &format!("b{i}"), "Ready=True", |s| {
                is(s, "Ready", ("True", "Available"))
            })
            .await;
        }
    }
    // One batcher per kind for every scope: the two namespaces' backups (one project, one
    // credential set) are read by the same list, not one list per namespace.
    let (lists, shows) = (env.sim.count("list").await, env.sim.count("show").await);
    assert_eq!(
        lists, 1,
        "{lists} lists and {shows} shows for 2 x {PER_NAMESPACE} backups of one project"
    );
    assert!(shows <= 2, "{shows} shows");
}

#[tokio::test]
async fn watches_only_the_given_namespaces() {
    let mut env = TestEnv::new("scope").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    let other = env.extra_namespace("scope-b").await;
    let ignored = env.extra_namespace("scope-c").await;
    let ignored_id = "0c7e5a9b-1111-4222-8333-944455556666";
    env.sim
        .put_backup(ignored_id, json!({"status": "available"}))
        .await;
    let clouds = env.sim.clouds_yaml(PASSWORD, "");
    for (ns, id) in [
        (&env.ns, REFERENCE_ID),
        (&other, REFERENCE_ID),
        (&ignored, ignored_id),
    ] {
        env.create_secret_in(ns, &clouds).await;
        env.create_backup_in(ns, "bk", id, "pw").await;
    }
    env.start_operator(OperatorOptions {
        namespaces: vec![env.ns.clone(), other.clone()],
        ..Default::default()
    });
    for ns in [&env.ns, &other] {
        env.wait_status_in(ns, "bk", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
            .await;
    }
    // Both watched namespaces are done; the third was never looked at.
    assert!(
        env.backup_in(&ignored, "bk").await.status.is_none(),
        "{ignored} is not watched"
    );
    assert_eq!(
        env.sim.shows_of(ignored_id).await,
        0,
        "the unwatched namespace's backup was queried"
    );
}

#[tokio::test]
async fn one_leader_at_a_time_and_failover() {
    let env = TestEnv::new("leader").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    let elect = || OperatorOptions {
        // A short lease, so that failover fits the test's deadline on a loaded machine.
        extra_args: [
            "--leader-election",
            "--leader-election-namespace",
            &env.ns,
            "--leader-election-lease-duration",
            "4s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut first = env.spawn_operator(elect());
    env.create_backup("one", REFERENCE_ID, "pw").await;
    env.wait_status("one", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    let mut second = env.spawn_operator(elect());
    eventually("the standby to report ready", || async {
        get(&format!("{}/readyz", second.http_url)).await.0 == 200
    })
    .await;
    assert!(
        second.log_text().contains("waiting for the leader lease"),
        "{}",
        second.log_text()
    );
    assert!(
        !second.log_text().contains("acquired the leader lease"),
        "two leaders: {}",
        second.log_text()
    );

    // The leader dies without releasing the lease; the standby takes over once it expires.
    first.child.kill().await.expect("kill leader");
    let killed = std::time::Instant::now();
    env.create_backup("two", REFERENCE_ID, "pw").await;
    env.wait_status("two", "Ready=True from the new leader", |s| {
        is(s, "Ready", ("True", "Available"))
    })
    .await;
    let failover = killed.elapsed();
    assert!(second.log_text().contains("acquired the leader lease"));
    // The new leader reads both backups once and writes only the new one's status: no churn.
    eventually("the new leader to reconcile both VbsBackups", || async {
        second.metric("vbs_reconciles_total").await >= 2.0
    })
    .await;
    let writes = second.metric("vbs_status_writes_total").await;
    assert_eq!(writes, 1.0, "the existing VbsBackup's status was rewritten");
    report(
        "leader SIGKILLed (2 replicas, lease 4s)",
        &format!(
            "standby served a new VbsBackup {:.1}s after the kill; its status writes: {writes} (the new VbsBackup only)",
            failover.as_secs_f64()
        ),
    );

    // A leader stopped by SIGTERM hands the lease over instead of leaving it to expire.
    let status = second.terminate(std::time::Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        second.log_text().contains("released the leader lease"),
        "{}",
        second.log_text()
    );
}

#[tokio::test]
async fn gitops_conventions() {
    let env = TestEnv::running("gitops", json!({"status": "creating"})).await;
    let manifest = format!(
        "apiVersion: vbs.io/v1alpha1\nkind: VbsBackup\nmetadata:\n  name: managed\n  namespace: {}\nspec:\n  backupId: {REFERENCE_ID}\n  cloudRef:\n    secretName: {SECRET}\n    cloud: pw\n  pollInterval: 30m\n",
        env.ns
    );
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.yaml", env.ns));
    std::fs::write(&path, &manifest).expect("write manifest");
    let path = path.to_string_lossy().to_string();
    kubectl(&["apply", "--server-side", "-f", &path]).expect("first apply");
    let obj = env
        .wait_status("managed", "Reconciling=True", |s| {
            is(s, "Reconciling", ("True", "Creating"))
        })
        .await;
    assert!(
        obj.status
            .as_ref()
            .is_some_and(|s| condition(s, "Stalled").is_none())
    );

    // Re-applying the same manifest changes nothing: the operator owns only .status.
    let version = env
        .backups()
        .get("managed")
        .await
        .expect("get")
        .metadata
        .resource_version;
    kubectl(&["apply", "--server-side", "-f", &path]).expect("second apply");
    kubectl(&["diff", "--server-side", "-f", &path]).expect("no diff after apply");
    assert_eq!(
        env.backups()
            .get("managed")
            .await
            .expect("get")
            .metadata
            .resource_version,
        version
    );

    env.sim
        .patch_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=30s",
        "-n",
        &env.ns,
        "vbsbackup/managed",
    ])
    .expect("kubectl wait");
    let s = env
        .backups()
        .get("managed")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(
        condition(&s, "Reconciling").is_none() && condition(&s, "Stalled").is_none(),
        "{:?}",
        s.conditions
    );
}

fn kubectl(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test]
async fn a_label_selector_shards_the_fleet() {
    let mut env = TestEnv::new("shard").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    for (name, shard) in [("mine", "a"), ("theirs", "b")] {
        let spec = vbs_operator::crd::VbsBackupSpec::from(vbs_operator::crd::BackupSpec {
            backup_id: REFERENCE_ID.into(),
            cloud_ref: vbs_operator::crd::CloudRef {
                secret_name: SECRET.into(),
                cloud: Some("pw".into()),
            },
            poll_interval: None,
        });
        let mut obj = vbs_operator::crd::VbsBackup::new(name, spec);
        obj.metadata.labels = Some([("shard".to_string(), shard.to_string())].into());
        env.backups()
            .create(&Default::default(), &obj)
            .await
            .expect("create VbsBackup");
    }
    env.start_operator(OperatorOptions {
        extra_args: vec!["--selector=shard=a".into()],
        ..Default::default()
    });
    env.wait_status("mine", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    let op = env.operator.as_ref().expect("operator");
    eventually("the operator to have reconciled its shard", || async {
        op.metric("vbs_reconciles_total").await >= 1.0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        env.backup_in(&env.ns, "theirs").await.status.is_none(),
        "a VbsBackup outside the selector was reconciled"
    );
    assert_eq!(op.metric("vbs_reconciles_total").await, 1.0);
}
