//! CbrBackups: Cloud Backup and Recovery backups mirrored on the same machinery as VbsBackups,
//! through catalog discovery (service type `cbr`) and the `cbr_endpoint_override` of AK/SK clouds.

use crate::harness::*;
use serde_json::json;

pub const SERVER_BACKUP: &str = "6df2b54c-dd62-4059-a07c-1b8f24f2725d";
const VAULT: &str = "3b5816b5-f29c-4172-9d9a-76c719a659ce";
const CHECKPOINT: &str = "8b0851a8-adf3-4f4c-a914-dead08bf9664";

/// A server backup shaped like the example of Huawei's "Querying a Specified Backup" page.
pub fn server_backup() -> serde_json::Value {
    json!({
        "status": "available", "name": "autobk_a61d", "vault_id": VAULT, "checkpoint_id": CHECKPOINT,
        "resource_id": "94eba8b2-acc9-4d82-badc-127144cc5526", "resource_name": "ecs-1f0f-0002",
        "resource_type": "OS::Nova::Server", "resource_size": "40", "image_type": "backup",
        "project_id": PROJECT, "created_at": "2019-05-21T03:13:20.154+00:00",
        "protected_at": "2019-05-21T03:13:30", "expired_at": "2019-05-23T05:13:20.154+02:00",
        "incremental": null, "extend_info": {"incremental": true},
        "children": [
            {"id": "5a4a2b84-4f3b-4b4e-8e52-4e7d1bb0a0a5", "status": "available", "resource_id": "d1",
             "resource_name": "sys-disk", "resource_type": "OS::Cinder::Volume", "resource_size": 40},
            {"id": "9c1f7e3a-52d4-4e1b-9a0e-3f1b2c4d5e6f", "status": "available", "resource_id": "d2",
             "resource_name": "data-disk", "resource_type": "OS::Cinder::Volume", "resource_size": 100}
        ]
    })
}

fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} in {}: {}",
        env.ns,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn a_server_backup_is_mirrored_and_shown_by_kubectl() {
    let mut env = TestEnv::new("cbr-show").await;
    env.sim.put_cbr_backup(SERVER_BACKUP, server_backup()).await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.start_operator(OperatorOptions::default());
    env.create_cbr_backup("web-server", SERVER_BACKUP, "pw").await;

    let obj = env
        .wait_cbr_status("web-server", "Ready=True", |s| {
            is(s, "Ready", ("True", "Available"))
        })
        .await;
    let s = obj.status.expect("status");
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.backup_status.as_deref(), Some("available"));
    assert_eq!(s.resource_type.as_deref(), Some("OS::Nova::Server"));
    assert_eq!(s.resource_name.as_deref(), Some("ecs-1f0f-0002"));
    assert_eq!(s.resource_size, Some(40), "a string size is read as a number");
    assert_eq!(
        (s.vault_id.as_deref(), s.checkpoint_id.as_deref()),
        (Some(VAULT), Some(CHECKPOINT))
    );
    assert_eq!(s.incremental, Some(true), "from extend_info");
    assert_eq!(s.image_type.as_deref(), Some("backup"));
    assert_eq!(s.child_count, Some(2));
    assert_eq!(s.children[1].resource_name.as_deref(), Some("data-disk"));
    assert_eq!(s.children[1].backup_status.as_deref(), Some("available"));
    assert_eq!(s.created_at.as_deref(), Some("2019-05-21T03:13:20.154Z"));
    assert_eq!(s.protected_at.as_deref(), Some("2019-05-21T03:13:30Z"));
    assert_eq!(s.expired_at.as_deref(), Some("2019-05-23T03:13:20.154Z"));
    assert!(is(&s, "Synced", ("True", "QuerySucceeded")));

    let table = kubectl(&env, &["get", "cbrbackups", "-n", &env.ns]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "BACKUP", "ID", "STATUS", "RESOURCE", "TYPE", "SIZE", "VAULT", "SYNCED", "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..8],
        [
            "web-server",
            SERVER_BACKUP,
            "available",
            "ecs-1f0f-0002",
            "OS::Nova::Server",
            "40",
            VAULT,
            "True"
        ]
    );
    let wide = kubectl(&env, &["get", "cbrb", "-o", "wide", "-n", &env.ns]);
    let header = wide.lines().next().expect("header");
    assert!(
        header.contains("CHECKPOINT") && header.contains("EXPIRES"),
        "{header}"
    );
    assert!(
        wide.contains(CHECKPOINT) && wide.contains("2019-05-23T03:13:20.154Z"),
        "{wide}"
    );
    let all = kubectl(&env, &["get", "cbrbackups", "-A"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with(&env.ns) && l.contains("web-server")),
        "{all}"
    );
}

#[tokio::test]
async fn transitions_missing_backups_and_aksk_go_as_for_vbs() {
    let mut env = TestEnv::new("cbr-life").await;
    let protecting = "0b7f0c3e-2222-4333-8444-955566667777";
    env.sim
        .put_cbr_backup(
            protecting,
            json!({"status": "protecting", "resource_name": "vol-1"}),
        )
        .await;
    // An AK/SK entry with only a VBS endpoint: fine for VbsBackups, a clear error for CbrBackups.
    let extra = format!(
        "  vbs-only:\n    auth_type: aksk\n    auth: {{ak: {AK}, sk: {SK}, project_id: {PROJECT}}}\n    \
         block_storage_endpoint_override: {}\n",
        env.sim.url
    );
    let yaml = env.sim.clouds_yaml(PASSWORD, "") + &extra;
    env.create_secret(&yaml).await;
    env.start_operator(OperatorOptions::default());

    env.create_cbr_backup("growing", protecting, "aksk").await;
    env.create_cbr_backup("gone", "ffffffff-0000-4000-8000-000000000000", "pw")
        .await;
    env.create_cbr_backup("no-endpoint", protecting, "vbs-only").await;

    env.wait_cbr_status("growing", "Reconciling while protecting", |s| {
        s.backup_status.as_deref() == Some("protecting") && is(s, "Reconciling", ("True", "Protecting"))
    })
    .await;
    env.sim
        .patch_cbr_backup(protecting, json!({"status": "available"}))
        .await;
    // Transitional backups are polled at the fast interval (1 s in tests).
    env.wait_cbr_status("growing", "Ready=True after protecting", |s| {
        is(s, "Ready", ("True", "Available"))
    })
    .await;
    env.wait_event("growing", "an Event for the transition", |t, r, n| {
        t == "Normal" && r == "Available" && n.contains("from protecting to available")
    })
    .await;

    let gone = env
        .wait_cbr_status("gone", "BackupNotFound", |s| {
            is(s, "Synced", ("False", "BackupNotFound"))
        })
        .await;
    let message = &condition(gone.status.as_ref().expect("status"), "Synced")
        .expect("Synced")
        .message;
    assert!(message.contains("BackupService.6200"), "{message}");

    let broken = env
        .wait_cbr_status("no-endpoint", "InvalidCloudConfig", |s| {
            is(s, "Synced", ("False", "InvalidCloudConfig"))
        })
        .await;
    let message = &condition(broken.status.as_ref().expect("status"), "Synced")
        .expect("Synced")
        .message;
    assert!(message.contains("cbr_endpoint_override"), "{message}");
    assert!(!message.contains(SK), "no secret in messages: {message}");
}

#[tokio::test]
async fn both_kinds_share_one_login_one_secret_read_and_one_list_per_service() {
    const N: usize = 12;
    let mut env = TestEnv::new("cbr-shared").await;
    for i in 0..N {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        env.sim
            .put_cbr_backup(&id, json!({"resource_name": format!("vol-{i}")}))
            .await;
        env.sim.put_backup(&id, json!({"status": "available"})).await;
    }
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.start_operator(OperatorOptions::default());
    for i in 0..N {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        env.create_cbr_backup(&format!("cbr-{i}"), &id, "pw").await;
        env.create_backup(&format!("vbs-{i}"), &id, "pw").await;
    }
    eventually("every resource of both kinds Ready", || async {
        let cbr = env.cbr_backups().list(&Default::default()).await.expect("list");
        let vbs = env.backups().list(&Default::default()).await.expect("list");
        cbr.items.len() == N
            && vbs.items.len() == N
            && cbr.items.iter().all(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| is(s, "Ready", ("True", "Available")))
            })
            && vbs.items.iter().all(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| is(s, "Ready", ("True", "Available")))
            })
    })
    .await;
    let op = env.operator.as_ref().expect("operator");
    let (auth, secret_reads) = (
        env.sim.count("auth").await,
        op.metric("vbs_secret_reads_total").await,
    );
    let (cbr_lists, cbr_shows) = (env.sim.count("cbr_list").await, env.sim.count("cbr_show").await);
    let (lists, shows) = (env.sim.count("list").await, env.sim.count("show").await);
    assert_eq!(auth, 1, "one token serves both services");
    assert_eq!(secret_reads, 1.0, "one Secret read for both kinds");
    assert!(
        cbr_lists + cbr_shows <= 4,
        "CBR: {cbr_lists} lists + {cbr_shows} shows for {N}"
    );
    assert!(lists + shows <= 4, "VBS: {lists} lists + {shows} shows for {N}");
    let writes = op.metric("vbs_status_writes_total{kind=\"CbrBackup\"}").await;
    assert_eq!(writes, N as f64, "one status write per CbrBackup");
    report(
        &format!("{N} CbrBackups and {N} VbsBackups created together, one Secret"),
        &format!(
            "1 login, {secret_reads} Secret read; CBR {cbr_lists} list + {cbr_shows} show, VBS {lists} list + {shows} show; {writes} CbrBackup status writes"
        ),
    );
}

#[tokio::test]
async fn cbr_throttling_is_honoured_not_hammered() {
    let mut env = TestEnv::new("cbr-429").await;
    env.sim.put_cbr_backup(SERVER_BACKUP, server_backup()).await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    // Every CBR show answers 429 with Retry-After: 3 for the first three calls.
    env.sim
        .add_fault(json!({"target": "show", "backup_id": SERVER_BACKUP, "status": 429, "retry_after": "3", "style": "apigw", "times": 3}))
        .await;
    env.start_operator(OperatorOptions {
        extra_args: vec!["--refresh=single".into()],
        ..Default::default()
    });
    let started = std::time::Instant::now();
    env.create_cbr_backup("throttled", SERVER_BACKUP, "aksk").await;
    env.wait_cbr_status("throttled", "Synced=False ApiError", |s| {
        is(s, "Synced", ("False", "ApiError"))
    })
    .await;
    let obj = env
        .wait_cbr_status("throttled", "Ready=True after the throttling", |s| {
            is(s, "Ready", ("True", "Available"))
        })
        .await;
    let elapsed = started.elapsed();
    let shows = env.sim.show_times(SERVER_BACKUP).await;
    assert_eq!(
        shows.len(),
        4,
        "3 throttled calls and the one that succeeded: {shows:?}"
    );
    for pair in shows.windows(2) {
        assert!(
            pair[1] - pair[0] >= 2_900,
            "a retry came before Retry-After: {shows:?}"
        );
    }
    assert!(elapsed.as_secs() >= 9, "{elapsed:?}");
    let message = &condition(obj.status.as_ref().expect("status"), "Synced")
        .expect("Synced")
        .message;
    assert!(
        message.contains("answers again") || message.contains("answered"),
        "{message}"
    );
    report(
        "CBR answers 429 with Retry-After: 3 three times (AK/SK)",
        &format!(
            "{} show calls, each at least 3 s apart; Ready after {:.1}s",
            shows.len(),
            elapsed.as_secs_f64()
        ),
    );
}
