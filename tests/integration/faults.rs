//! Transient API failures: 503s and throttling are survived and reported, not fatal.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn transient_503s_are_survived() {
    let env = TestEnv::running("flaky", json!({"status": "available"})).await;
    // No VbsBackup exists yet, so the operator has made no query: the fault hits the first ones.
    env.sim
        .add_fault(json!({"target": "show", "status": 503, "times": 3}))
        .await;
    env.create_backup("flaky", REFERENCE_ID, "pw").await;
    env.wait_status("flaky", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    assert!(env.sim.count("show").await >= 4, "three failures, then success");
    env.wait_event("flaky", "an ApiError warning", |t, r, n| {
        t == "Warning" && r == "ApiError" && n.contains("HTTP 503")
    })
    .await;
    env.wait_event("flaky", "a SyncRecovered event", |_, r, _| r == "SyncRecovered")
        .await;
}

/// Injects `fault` until cleared; checks the Synced message, then that the operator recovers.
async fn reported_then_survived(fault: serde_json::Value, message_part: &str) {
    let env = TestEnv::running("fault", json!({"status": "available"})).await;
    env.sim.add_fault(fault).await;
    env.create_backup("hit", REFERENCE_ID, "pw").await;
    let obj = env.wait_synced_false("hit", "ApiError").await;
    let msg = synced_message(&obj);
    assert!(
        msg.contains(message_part),
        "{msg:?} should contain {message_part:?}"
    );
    assert_eq!(
        cond_state(obj.status.as_ref().expect("status"), "Ready"),
        Some(("Unknown".into(), "ApiError".into()))
    );
    env.sim.clear_faults().await;
    env.wait_status("hit", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
}

#[tokio::test]
async fn throttling_is_reported_then_survived() {
    let fault = json!({"target": "show", "status": 429, "style": "apigw", "retry_after": "1"});
    reported_then_survived(fault, "HTTP 429: APIG.0308").await;
}

#[tokio::test]
async fn malformed_bodies_are_reported_then_survived() {
    reported_then_survived(
        json!({"target": "show", "malformed": true}),
        "not what the API documents",
    )
    .await;
}

#[tokio::test]
async fn slow_api_times_out_and_recovers() {
    // The operator under test times out cloud calls after 5 s.
    reported_then_survived(
        json!({"target": "show", "delay_ms": 6000, "status": 200}),
        "timed out after 5s",
    )
    .await;
}
