//! Reconcile against a mocked Kubernetes API server (tower-test, as kube-rs/controller-rs does),
//! where every request the reconcile makes can be seen and counted, and the simulator in this
//! process as the cloud.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::reconcile::reconcile;
use super::{Context, KindContext, Settings};
use crate::cloud::{ClientOptions, VbsClient};
use crate::crd::{CloudRef, VbsBackup, VbsBackupSpec};
use crate::metrics::Metrics;
use crate::sim::{Seed, Sim};

const NS: &str = "tenant";
const PROJECT: &str = "p1";
const ID: &str = "1d1139d8-8989-49d3-8aa1-83eb691e6db2";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

async fn start_sim() -> (Arc<Sim>, String) {
    crate::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sim = Arc::new(Sim::new(Seed::one_user(PROJECT), url.clone()));
    tokio::spawn(crate::sim::serve(listener, sim.clone()));
    set_backup(&sim, "available");
    (sim, url)
}

fn set_backup(sim: &Sim, status: &str) {
    let mut b = serde_json::Map::new();
    b.insert("id".into(), json!(ID));
    b.insert("status".into(), json!(status));
    b.insert("created_at".into(), json!("2026-11-27T10:00:00.000000"));
    sim.world()
        .backups
        .entry(PROJECT.into())
        .or_default()
        .insert(ID.into(), crate::sim::with_defaults(PROJECT, b));
}

fn context(handle_client: Client) -> Arc<KindContext<VbsBackup>> {
    let cloud = VbsClient::new(ClientOptions::default()).expect("cloud client");
    let settings = Settings {
        namespaces: vec![NS.into()],
        kube_concurrency: 4,
        max_reconciles: 16,
        poll: super::PollPolicy::default(),
        instance: None,
        selector: None,
        refresh: super::Refresh::Single,
        batch: Default::default(),
        kinds: vec![super::Kind::VbsBackup],
    };
    let shared = Arc::new(Context::new(
        handle_client,
        Arc::new(cloud),
        Arc::new(Metrics::default()),
        &settings,
    ));
    Arc::new(KindContext::new(shared))
}

fn backup() -> VbsBackup {
    let mut b = VbsBackup::new(
        "web",
        VbsBackupSpec::from(crate::crd::BackupSpec {
            backup_id: ID.into(),
            cloud_ref: CloudRef {
                secret_name: "creds".into(),
                cloud: None,
            },
            poll_interval: None,
        }),
    );
    b.meta_mut().namespace = Some(NS.into());
    b.meta_mut().generation = Some(1);
    b.meta_mut().uid = Some("uid-1".into());
    b
}

fn secret_json(sim_url: &str) -> Value {
    let yaml = format!(
        "clouds:\n  c:\n    auth:\n      auth_url: {sim_url}/v3\n      username: u\n      password: pw\n      user_domain_name: D\n      project_id: {PROJECT}\n    region_name: eu-de\n"
    );
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("creds".into()),
            namespace: Some(NS.into()),
            resource_version: Some("7".into()),
            ..Default::default()
        },
        data: Some(
            [(
                "clouds.yaml".to_string(),
                k8s_openapi::ByteString(yaml.into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let mut value = serde_json::to_value(secret).expect("secret json");
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Secret");
    value
}

/// What the reconciles asked of the API server.
#[derive(Debug, Default)]
struct Seen {
    /// (method, path) of every request, in order.
    requests: Vec<(String, String)>,
    /// The `status` of the last status patch.
    patched_status: Option<Value>,
}

/// A mocked API server that answers the Secret, status patches (echoing the patch onto the
/// object) and Events, and records every request. Anything else fails the test.
fn mock_api(secret: Value, obj: VbsBackup) -> (Client, Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().to_string(), request.uri().path().to_string());
            let body = request.into_body().collect_bytes().await.expect("request body");
            let answer = if path.ends_with("/secrets/creds") {
                secret.clone()
            } else if path.ends_with("/status") {
                let patch: Value = serde_json::from_slice(&body).expect("patch json");
                record.lock().expect("lock").patched_status = Some(patch["status"].clone());
                let mut o = serde_json::to_value(&obj).expect("obj json");
                o["status"] = patch["status"].clone();
                o
            } else if path.contains("/events") {
                serde_json::from_slice::<Value>(&body).expect("event json")
            } else {
                panic!("unexpected request {method} {path}");
            };
            record.lock().expect("lock").requests.push((method.clone(), path));
            send.send_response(
                Response::builder()
                    .status(if method == "POST" { 201 } else { 200 })
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response"),
            );
        }
    });
    (Client::new(service, NS), seen, task)
}

/// Runs one reconcile (which awaits every call it makes but its Events) and returns the requests
/// it made, once its `events` Events were published (they are queued and published apart).
async fn requests_of(
    ctx: &Arc<KindContext<VbsBackup>>,
    seen: &Mutex<Seen>,
    obj: &VbsBackup,
    events: usize,
) -> Vec<String> {
    let before = seen.lock().expect("lock").requests.len();
    reconcile(Arc::new(obj.clone()), ctx.clone())
        .await
        .expect("reconcile");
    let made = || -> Vec<String> {
        let seen = seen.lock().expect("lock");
        seen.requests[before..]
            .iter()
            .map(|(m, p)| format!("{m} {}", p.rsplit('/').next().unwrap_or_default()))
            .collect()
    };
    let published = async {
        while made().iter().filter(|r| r.as_str() == "POST events").count() < events {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), published)
        .await
        .unwrap_or_else(|_| panic!("{events} Events were not published: {:?}", made()));
    made()
}

#[tokio::test]
async fn one_write_per_real_change_and_nothing_when_unchanged() {
    let (sim, url) = start_sim().await;
    let (client, seen, server) = mock_api(secret_json(&url), backup());
    let ctx = context(client);

    // First sight: the Secret is read once, the status written once, one Event published.
    let first = requests_of(&ctx, &seen, &backup(), 1).await;
    assert_eq!(first, ["GET creds", "PATCH status", "POST events"]);
    let written = seen
        .lock()
        .expect("lock")
        .patched_status
        .clone()
        .expect("status written");
    assert_eq!(written["backupStatus"], "available");
    assert_eq!(written["createdAt"], "2026-11-27T10:00:00Z");

    // The same answer again, with the written status on the object: not a single API call.
    let mut current = backup();
    current.status = Some(serde_json::from_value(written).expect("status"));
    let again = requests_of(&ctx, &seen, &current, 0).await;
    assert!(again.is_empty(), "an unchanged answer cost {again:?}");

    // A real change: exactly one status write and one Event, still no Secret read.
    set_backup(&sim, "error");
    let changed = requests_of(&ctx, &seen, &current, 1).await;
    assert_eq!(changed, ["PATCH status", "POST events"]);
    assert_eq!(sim.world().stats.shows_by_backup.get(ID).copied(), Some(3));
    assert_eq!(
        sim.world().stats.requests.get("auth").copied(),
        Some(1),
        "one token for all"
    );
    server.abort();
}
