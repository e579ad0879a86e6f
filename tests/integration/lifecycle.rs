//! Backups changing state, disappearing, Secrets arriving late, and quiet steady state.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn creating_turns_available() {
    let env = TestEnv::running("creating", json!({"status": "creating"})).await;
    env.create_backup("growing", REFERENCE_ID, "pw").await;
    let obj = env
        .wait_status("growing", "Ready=False Creating", |s| {
            is(s, "Ready", ("False", "Creating"))
        })
        .await;
    assert_eq!(
        obj.status.expect("status").backup_status.as_deref(),
        Some("creating")
    );

    // Settled polls are 1h apart here: only the fast interval for transitional backups can see this.
    env.sim
        .patch_backup(REFERENCE_ID, json!({"status": "available", "size": 8}))
        .await;
    let obj = env
        .wait_status("growing", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    assert_eq!(obj.status.expect("status").size, Some(8));
    env.wait_event("growing", "an Available event", |t, r, n| {
        t == "Normal" && r == "Available" && n == "backup status changed from creating to available"
    })
    .await;
}

#[tokio::test]
async fn missing_backup_is_reported() {
    let mut env = TestEnv::new("notfound").await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("ghost", "00000000-0000-4000-8000-000000000000", "pw")
        .await;
    let obj = env.wait_synced_false("ghost", "BackupNotFound").await;
    let s = obj.status.expect("status");
    assert_eq!(
        cond_state(&s, "Ready"),
        Some(("False".into(), "BackupNotFound".into()))
    );
    assert!(
        condition(&s, "Ready")
            .expect("Ready")
            .message
            .contains("could not be found")
    );
    assert_eq!(s.backup_status, None);
}

#[tokio::test]
async fn missing_secret_then_created_triggers_at_once() {
    let mut env = TestEnv::new("late-secret").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("waiting", REFERENCE_ID, "pw").await;
    let obj = env.wait_synced_false("waiting", "SecretNotFound").await;
    let msg = synced_message(&obj);
    assert!(
        msg.contains(&format!("Secret {}/{SECRET} does not exist", env.ns)),
        "{msg}"
    );

    // The next poll is an hour away: only the Secret watch can bring this in time.
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.wait_status("waiting", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
}

#[tokio::test]
async fn broken_clouds_yaml_is_reported() {
    let mut env = TestEnv::new("bad-yaml").await;
    env.create_secret("clouds:\n  pw:\n    auth:\n      password: [not, a, string]\n")
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("confused", REFERENCE_ID, "pw").await;
    let obj = env.wait_synced_false("confused", "InvalidCloudConfig").await;
    let msg = synced_message(&obj);
    assert!(
        msg.contains("not valid YAML") && !msg.contains("not, a, string"),
        "{msg}"
    );
}

#[tokio::test]
async fn steady_state_writes_nothing() {
    let mut env = TestEnv::new("steady").await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    // Poll settled backups every second so that several polls happen during the test.
    env.start_operator(OperatorOptions {
        poll_interval: Some("1s"),
        ..Default::default()
    });
    env.create_backup("quiet", REFERENCE_ID, "pw").await;
    let obj = env
        .wait_status("quiet", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    let version = obj.metadata.resource_version.clone();
    let polls = env.sim.shows_of(REFERENCE_ID).await;
    eventually("three more polls", || async {
        env.sim.shows_of(REFERENCE_ID).await >= polls + 3
    })
    .await;
    let now = env.backups().get("quiet").await.expect("get");
    assert_eq!(
        now.metadata.resource_version, version,
        "an unchanged backup must not be written"
    );
}
