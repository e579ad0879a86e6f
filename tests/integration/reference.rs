//! The API reference page's example, end to end through password auth and catalog discovery.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn reference_example_is_mirrored_into_status() {
    let env = TestEnv::running("reference", reference_backup()).await;
    env.create_backup("db-nightly", REFERENCE_ID, "pw").await;

    let obj = env
        .wait_status("db-nightly", "Synced=True", |s| {
            is(s, "Synced", ("True", "QuerySucceeded"))
        })
        .await;
    let s = obj.status.expect("status");
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.backup_status.as_deref(), Some("error"));
    assert_eq!(s.size, Some(1));
    assert_eq!(
        s.fail_reason.as_deref(),
        Some("Connection to swift failed: [Errno 111] ECONNREFUSED")
    );
    assert_eq!(s.has_dependent_backups, Some(false));
    assert_eq!(s.is_incremental, Some(false));
    assert_eq!(
        s.volume_id.as_deref(),
        Some("2748f2f2-4394-4e6e-af8d-8dd34496c024")
    );
    assert_eq!(
        s.snapshot_id.as_deref(),
        Some("66a574c0-4415-499e-b0b1-3f340d7f7932")
    );
    assert_eq!(s.container.as_deref(), Some("volumebackups"));
    assert_eq!(s.project_id.as_deref(), Some(PROJECT));
    assert_eq!(s.created_at.as_deref(), Some("2013-06-27T08:48:03Z"));
    assert_eq!(s.updated_at.as_deref(), Some("2019-03-27T12:36:17.596602Z"));
    assert_eq!(s.data_timestamp.as_deref(), Some("2019-03-16T11:56:00.917245Z"));
    assert_eq!(
        (s.name, s.description, s.availability_zone, s.object_count),
        (None, None, None, None)
    );
    let ready = condition_of(&env, "db-nightly").await;
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "Error"));
    assert!(
        ready.2.contains("ECONNREFUSED"),
        "Ready message carries fail_reason: {}",
        ready.2
    );

    // Null fields are omitted from the stored object, not written as null.
    let raw: serde_json::Value = env
        .backups()
        .get("db-nightly")
        .await
        .map(|b| serde_json::to_value(b).expect("json"))
        .expect("get");
    assert!(
        raw["status"].get("name").is_none() && raw["status"].get("objectCount").is_none(),
        "{}",
        raw["status"]
    );

    // The endpoint came from the catalog's eu-de entry (the decoy region would have failed).
    assert_eq!(env.sim.count("auth").await, 1);

    env.wait_event("db-nightly", "a Warning event carrying fail_reason", |t, r, n| {
        t == "Warning" && r == "BackupFailed" && n.contains("ECONNREFUSED")
    })
    .await;
}

async fn condition_of(env: &TestEnv, name: &str) -> (String, String, String) {
    let obj = env.backups().get(name).await.expect("get");
    let s = obj.status.expect("status");
    let c = condition(&s, "Ready").expect("Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn other_owner_key_spellings_and_nulls_are_read() {
    let mut env = TestEnv::new("owner-keys").await;
    let id = "0c7e5a9b-1111-4222-8333-944455556666";
    env.sim
        .put_backup(id, json!({"status": "available", "os-bak-tenant-attr:tenant_id": PROJECT, "object_count": 12, "name": "n1", "description": "{\"DESC\": \"nightly\", \"INC\": 1}"}))
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "")).await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("tenant-key", id, "pw").await;
    let obj = env
        .wait_status("tenant-key", "Ready=True", |s| {
            is(s, "Ready", ("True", "Available"))
        })
        .await;
    let s = obj.status.expect("status");
    assert_eq!(s.project_id.as_deref(), Some(PROJECT));
    assert_eq!(s.object_count, Some(12));
    assert_eq!(
        s.description.as_deref(),
        Some("{\"DESC\": \"nightly\", \"INC\": 1}")
    );
}
