//! Authentication: AK/SK signing, the Cinder path, wrong passwords, token renewal.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn aksk_signing_on_the_cinder_path() {
    let mut env = TestEnv::new("aksk").await;
    let id = "5f0e7c1a-3b9d-4e2a-9c61-0a7b2d4e8f13";
    env.sim
        .put_backup(
            id,
            json!({"status": "available", "size": 40, "has_dependent_backups": true}),
        )
        .await;
    env.create_secret(&env.sim.clouds_yaml(PASSWORD, "    vbs_api: cinder\n"))
        .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("web", id, "aksk").await;
    let obj = env
        .wait_status("web", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    let s = obj.status.expect("status");
    assert_eq!((s.size, s.has_dependent_backups), (Some(40), Some(true)));
    assert_eq!(env.sim.count("auth").await, 0, "AK/SK needs no token");
    assert_eq!(
        env.sim.count("unauthorized").await,
        0,
        "the simulator accepted every signature"
    );
}

#[tokio::test]
async fn wrong_password_is_reported_without_leaking_it() {
    let mut env = TestEnv::new("wrong-pw").await;
    env.sim.put_backup(REFERENCE_ID, reference_backup()).await;
    let wrong = "Wr0ng-Secret-Value";
    env.create_secret(&env.sim.clouds_yaml(wrong, "")).await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("denied", REFERENCE_ID, "pw").await;
    let obj = env.wait_synced_false("denied", "AuthenticationFailed").await;
    let s = obj.status.expect("status");
    let msg = &condition(&s, "Synced").expect("Synced").message;
    assert!(
        msg.contains("HTTP 401") && msg.contains("check the credentials"),
        "actionable message: {msg}"
    );
    assert_eq!(
        cond_state(&s, "Ready"),
        Some(("Unknown".into(), "AuthenticationFailed".into()))
    );

    env.wait_event("denied", "the AuthenticationFailed Event", |_, reason, _| {
        reason == "AuthenticationFailed"
    })
    .await;
    let everything = format!(
        "{}\n{:?}\n{}",
        serde_json::to_string(&s).expect("json"),
        env.events_for("denied").await,
        env.operator.as_ref().expect("operator").log_text()
    );
    assert!(
        !everything.contains(wrong),
        "the password leaked into status, events or logs"
    );
}

#[tokio::test]
async fn revoked_token_is_renewed_once() {
    let env = TestEnv::running("renew", json!({"status": "creating"})).await;
    env.create_backup("renew", REFERENCE_ID, "pw").await;
    env.wait_status("renew", "status creating", |s| {
        s.backup_status.as_deref() == Some("creating")
    })
    .await;
    assert_eq!(env.sim.count("auth").await, 1, "one token serves every poll");

    env.sim.revoke_tokens().await;
    env.sim
        .patch_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    let obj = env
        .wait_status("renew", "Ready=True", |s| is(s, "Ready", ("True", "Available")))
        .await;
    assert!(is(
        obj.status.as_ref().expect("status"),
        "Synced",
        ("True", "QuerySucceeded")
    ));
    assert_eq!(
        env.sim.count("auth").await,
        2,
        "exactly one new token after the 401"
    );
}

#[tokio::test]
async fn private_ca_is_trusted_through_cacert() {
    let mut env = TestEnv::with_sim("tls", SimProcess::start_tls(SimProcess::seed()).await).await;
    env.sim
        .put_backup(REFERENCE_ID, json!({"status": "available"}))
        .await;
    assert!(env.sim.url.starts_with("https://"), "{}", env.sim.url);
    let ca = env.sim.ca_pem.clone().expect("CA");
    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let auth = format!(
        "    auth:\n      auth_url: {}/v3\n      username: {USER}\n      password: {PASSWORD}\n      user_domain_name: {DOMAIN}\n      project_id: {PROJECT}\n    region_name: eu-de\n",
        env.sim.url
    );
    env.create_secret(&format!(
        "clouds:\n  trusted:\n{auth}    cacert: |\n{indented}  untrusted:\n{auth}"
    ))
    .await;
    env.start_operator(OperatorOptions::default());
    env.create_backup("trusted", REFERENCE_ID, "trusted").await;
    env.create_backup("untrusted", REFERENCE_ID, "untrusted").await;
    env.wait_status("trusted", "Ready=True over TLS", |s| {
        is(s, "Ready", ("True", "Available"))
    })
    .await;
    let obj = env.wait_synced_false("untrusted", "ApiError").await;
    let msg = synced_message(&obj);
    assert!(
        msg.contains("could not reach the cloud") && msg.to_lowercase().contains("certificate"),
        "{msg}"
    );
}
