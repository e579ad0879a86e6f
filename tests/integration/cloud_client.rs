//! The cloud client against the simulator over real HTTP, without Kubernetes: redirects, body caps,
//! tarpits and the circuit breaker, login memory, single-flight token refresh, session keys.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vbs_operator::cloud::{CallLimits, ClientOptions, CloudError, Vbs, VbsClient, load_cloud};
use vbs_operator::sim::{Fault, FaultTarget, Seed, Sim};

use crate::harness::{DOMAIN, Listener, PASSWORD, PROJECT, REFERENCE_ID, USER};

/// A simulator in this process, serving on a free loopback port.
async fn start_sim() -> (Arc<Sim>, String) {
    vbs_operator::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seed: Seed = serde_json::from_value(crate::harness::SimProcess::seed()).expect("seed");
    let sim = Arc::new(Sim::new(seed, url.clone()));
    tokio::spawn(vbs_operator::sim::serve(listener, sim.clone()));
    let mut backup = serde_json::Map::new();
    backup.insert("status".into(), json!("available"));
    backup.insert("id".into(), json!(REFERENCE_ID));
    sim.world().backups.entry(PROJECT.into()).or_default().insert(
        REFERENCE_ID.into(),
        vbs_operator::sim::with_defaults(PROJECT, backup),
    );
    (sim, url)
}

fn password_cloud(url: &str, password: &str, extra: &str) -> String {
    format!(
        "clouds:\n  pw:\n    auth:\n      auth_url: {url}/v3\n      username: {USER}\n      password: {password}\n      user_domain_name: {DOMAIN}\n      project_id: {PROJECT}\n    region_name: eu-de\n{extra}"
    )
}

fn client(timeout: Duration, limits: CallLimits) -> Arc<VbsClient> {
    Arc::new(
        VbsClient::new(ClientOptions {
            timeout,
            limits,
            ..ClientOptions::default()
        })
        .expect("client"),
    )
}

fn requests(sim: &Sim, kind: &str) -> u64 {
    sim.world().stats.requests.get(kind).copied().unwrap_or(0)
}

#[tokio::test]
async fn redirects_carry_no_credentials() {
    let (sim, url) = start_sim().await;
    let listener = Listener::start().await;
    let elsewhere = listener.url.clone();
    for (target, status) in [
        (FaultTarget::Auth, 307),
        (FaultTarget::Show, 308),
        (FaultTarget::Show, 302),
    ] {
        // A fresh client each time: a failed login is remembered for a while.
        let c = client(Duration::from_secs(5), CallLimits::default());
        sim.world().faults = vec![Fault {
            target,
            status: Some(status),
            redirect_to: Some(format!("{elsewhere}/v3/stolen")),
            ..Fault::default()
        }];
        let profile = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
        let err = c
            .show::<Vbs>(&profile, REFERENCE_ID)
            .await
            .expect_err("redirect refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("HTTP {status}")) && text.contains("redirects are not followed"),
            "{text}"
        );
    }
    // AK/SK too: its signature and security token must not travel.
    let aksk = format!(
        "clouds:\n  k:\n    auth_type: aksk\n    auth: {{ak: {ak}, sk: {sk}, project_id: {PROJECT}, security_token: TOKEN-s3cret}}\n    block_storage_endpoint_override: {url}\n",
        ak = crate::harness::AK,
        sk = crate::harness::SK
    );
    let profile = load_cloud(&aksk, None).expect("profile");
    let c = client(Duration::from_secs(5), CallLimits::default());
    let err = c
        .show::<Vbs>(&profile, REFERENCE_ID)
        .await
        .expect_err("redirect refused");
    assert!(err.to_string().contains("HTTP 302"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listener.connections(), 0, "nothing followed a redirect");
    assert!(listener.received().is_empty());
}

#[tokio::test]
async fn huge_answers_are_refused_at_the_cap() {
    let (sim, url) = start_sim().await;
    let c = Arc::new(
        VbsClient::new(ClientOptions {
            max_body_bytes: 64 * 1024,
            ..ClientOptions::default()
        })
        .expect("client"),
    );
    let profile = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
    sim.world().faults = vec![Fault {
        target: FaultTarget::Show,
        body_bytes: Some(50 * 1024 * 1024),
        ..Fault::default()
    }];
    let err = c
        .show::<Vbs>(&profile, REFERENCE_ID)
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    sim.world().faults.clear();
    c.show::<Vbs>(&profile, REFERENCE_ID)
        .await
        .expect("a normal answer still passes");
}

#[tokio::test]
async fn a_tarpit_costs_only_its_own_callers() {
    let (_sim, healthy) = start_sim().await;
    // Accepts connections, never answers.
    let listener = Listener::start().await;
    let tarpit = listener.url.clone();
    let limits = CallLimits {
        global: 4,
        per_host: 2,
        breaker_threshold: 2,
        breaker_open: Duration::from_secs(60),
        breaker_max_open: Duration::from_secs(60),
        ..CallLimits::default()
    };
    let c = client(Duration::from_secs(2), limits);
    let fine = load_cloud(&password_cloud(&healthy, PASSWORD, ""), None).expect("profile");
    let mut tarpit_calls = Vec::new();
    // Ten tenants (credential sets) behind one hanging endpoint.
    for i in 0..10 {
        let stuck = load_cloud(&password_cloud(&tarpit, &format!("pw-{i}"), ""), None).expect("profile");
        let c = c.clone();
        tarpit_calls.push(tokio::spawn(
            async move { c.show::<Vbs>(&stuck, REFERENCE_ID).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    c.show::<Vbs>(&fine, REFERENCE_ID)
        .await
        .expect("the healthy cloud answers");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the healthy cloud waited {:?} behind the tarpit",
        started.elapsed()
    );
    let mut timeouts = 0;
    let mut open = 0;
    for call in tarpit_calls {
        match call.await.expect("join") {
            Err(CloudError::Timeout { .. }) => timeouts += 1,
            Err(CloudError::CircuitOpen { .. }) => open += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The first calls (the per-host limit, plus one that may slip in while the first two finish)
    // waited out their timeout; that opened the breaker, and the rest were refused at once,
    // without a connection.
    assert!((2..=3).contains(&timeouts), "{timeouts} timeouts");
    assert_eq!(open, 10 - timeouts);
    assert_eq!(listener.connections(), timeouts, "connections to the tarpit");
}

#[tokio::test]
async fn a_wrong_password_costs_one_login_per_backoff_round() {
    let (sim, url) = start_sim().await;
    let c = client(Duration::from_secs(5), CallLimits::default());
    let profile = load_cloud(&password_cloud(&url, "Wr0ng", ""), None).expect("profile");
    let calls: Vec<_> = (0..25)
        .map(|_| {
            let (c, p) = (c.clone(), profile.clone());
            tokio::spawn(async move { c.show::<Vbs>(&p, REFERENCE_ID).await })
        })
        .collect();
    for call in calls {
        let err = call.await.expect("join").expect_err("refused");
        assert!(
            matches!(err, CloudError::Authentication { status: 401, .. }),
            "{err}"
        );
    }
    assert_eq!(requests(&sim, "auth"), 1, "one login attempt for 25 callers");
    c.show::<Vbs>(&profile, REFERENCE_ID)
        .await
        .expect_err("still refused");
    assert_eq!(requests(&sim, "auth"), 1, "the refusal is remembered");
    // A corrected password is another credential set: it logs in at once.
    let fixed = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
    c.show::<Vbs>(&fixed, REFERENCE_ID).await.expect("logged in");
    assert_eq!(requests(&sim, "auth"), 2);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_for_all_callers() {
    let (sim, url) = start_sim().await;
    let c = client(Duration::from_secs(5), CallLimits::default());
    let profile = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
    c.show::<Vbs>(&profile, REFERENCE_ID).await.expect("first call");
    assert_eq!(requests(&sim, "auth"), 1);
    sim.world().tokens.clear();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (c, p) = (c.clone(), profile.clone());
            tokio::spawn(async move { c.show::<Vbs>(&p, REFERENCE_ID).await })
        })
        .collect();
    for call in calls {
        call.await.expect("join").expect("answered after one refresh");
    }
    assert_eq!(requests(&sim, "auth"), 2, "exactly one new token for 20 callers");
}

#[tokio::test]
async fn two_entries_of_one_user_keep_their_own_sessions() {
    let (sim, url) = start_sim().await;
    let c = client(Duration::from_secs(5), CallLimits::default());
    let yaml = format!(
        "{}  override:\n    auth:\n      auth_url: {url}/v3\n      username: {USER}\n      password: {PASSWORD}\n      user_domain_name: {DOMAIN}\n      project_id: {PROJECT}\n    region_name: eu-de\n    block_storage_endpoint_override: {url}\n",
        password_cloud(&url, PASSWORD, "")
    );
    let with_override = load_cloud(&yaml, Some("override")).expect("profile");
    let from_catalog = load_cloud(&yaml, Some("pw")).expect("profile");
    // Whichever logs in first, the other must still work.
    c.show::<Vbs>(&with_override, REFERENCE_ID)
        .await
        .expect("override");
    c.show::<Vbs>(&from_catalog, REFERENCE_ID).await.expect("catalog");
    c.show::<Vbs>(&with_override, REFERENCE_ID)
        .await
        .expect("override again");
    assert_eq!(requests(&sim, "auth"), 2, "one session each");
}

#[tokio::test]
async fn failed_logins_of_many_credential_sets_stay_bounded() {
    let (sim, url) = start_sim().await;
    let unthrottled = CallLimits {
        qps: 100_000.0,
        burst: 100_000,
        ..CallLimits::default()
    };
    let c = client(Duration::from_secs(5), unthrottled);
    // More credential sets than the cache keeps, each with a wrong password.
    for i in 0..1100 {
        let profile = load_cloud(&password_cloud(&url, &format!("wrong-{i}"), ""), None).expect("profile");
        c.show::<Vbs>(&profile, REFERENCE_ID).await.expect_err("refused");
    }
    assert_eq!(requests(&sim, "auth"), 1100);
    assert_eq!(
        c.remembered_sessions(),
        1024,
        "the least recently used are let go"
    );
}

#[tokio::test]
async fn a_non_json_error_body_is_never_quoted() {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let proxy = axum::Router::new().fallback(get(|| async {
        (
            axum::http::StatusCode::BAD_GATEWAY,
            [("content-type", "text/html")],
            "<html>secret-internal-hostname.corp</html>",
        )
    }));
    tokio::spawn(async move { axum::serve(listener, proxy).await });
    let aksk = format!(
        "clouds:\n  k:\n    auth_type: aksk\n    auth: {{ak: AK, sk: SK, project_id: {PROJECT}}}\n    block_storage_endpoint_override: {url}\n"
    );
    let c = client(Duration::from_secs(5), CallLimits::default());
    let err = c
        .show::<Vbs>(&load_cloud(&aksk, None).expect("profile"), REFERENCE_ID)
        .await
        .expect_err("502");
    assert_eq!(
        err.to_string(),
        "query of the backup failed with HTTP 502 (a text/html body, not shown)"
    );
}

fn seed_backups(sim: &Sim, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{i:08x}-0000-4000-8000-00000000000a"))
        .collect();
    let mut w = sim.world();
    let project = w.backups.entry(PROJECT.into()).or_default();
    for id in &ids {
        let mut b = serde_json::Map::new();
        b.insert("id".into(), json!(id));
        b.insert("status".into(), json!("available"));
        project.insert(id.clone(), vbs_operator::sim::with_defaults(PROJECT, b));
    }
    ids
}

#[tokio::test]
async fn a_list_follows_its_pages() {
    let (sim, url) = start_sim().await;
    seed_backups(&sim, 24);
    let c = client(Duration::from_secs(5), CallLimits::default());
    let profile = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
    let all = c.list::<Vbs>(&profile, 10).await.expect("list");
    assert_eq!(all.len(), 25, "24 seeded and the reference backup");
    assert_eq!(requests(&sim, "list"), 3, "pages of 10");
}

#[tokio::test]
async fn batched_reads_share_one_list() {
    use vbs_operator::cloud::{BatchOptions, Batcher};
    let (sim, url) = start_sim().await;
    let ids = seed_backups(&sim, 40);
    let c = client(Duration::from_secs(5), CallLimits::default());
    let batcher = Arc::new(Batcher::<Vbs>::new(c, BatchOptions::default()));
    let profile = load_cloud(&password_cloud(&url, PASSWORD, ""), None).expect("profile");
    let reads: Vec<_> = ids
        .iter()
        .map(|id| {
            let (b, p, id) = (batcher.clone(), profile.clone(), id.clone());
            tokio::spawn(async move { b.read(&p, &id, Duration::from_secs(60)).await })
        })
        .collect();
    for read in reads {
        let fetched = read.await.expect("join").expect("read");
        assert!(fetched.listed_at.is_some(), "served from the list");
    }
    assert_eq!(
        (requests(&sim, "list"), requests(&sim, "show")),
        (1, 0),
        "40 reads, one list"
    );
    // A backup the list does not hold gets its own GET (and the API's own answer).
    let err = batcher
        .read(
            &profile,
            "ffffffff-0000-4000-8000-00000000000a",
            Duration::from_secs(60),
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, CloudError::NotFound { .. }), "{err}");
    assert_eq!(requests(&sim, "show"), 1);
    // A lone read after the list went stale: one GET, not a whole list.
    let fetched = batcher
        .read(&profile, &ids[0], Duration::ZERO)
        .await
        .expect("read");
    assert!(fetched.listed_at.is_none());
    assert_eq!((requests(&sim, "list"), requests(&sim, "show")), (1, 2));
}
