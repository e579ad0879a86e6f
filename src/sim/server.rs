//! HTTP routes of the simulator: the cloud API and the `/sim` control API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::auth::{self, Refusal};
use super::cbr;
use super::state::{ErrorStyle, Fault, FaultTarget, SeedUser, Service, Sim, api_time};

type AppState = State<Arc<Sim>>;

/// The cloud API and the control API on one router.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v3/auth/tokens", post(create_token))
        .route("/v3/{project_id}/native/backups/detail", get(list_backups))
        .route("/v3/{project_id}/native/backups/{backup_id}", get(show_backup))
        .route("/v3/{project_id}/backups/detail", get(list_backups))
        .route("/v3/{project_id}/backups/{backup_id}", get(show_backup))
        .route("/v2/{project_id}/backups/detail", get(list_backups))
        .route("/v2/{project_id}/backups/{backup_id}", get(show_backup))
        .route("/cbr/v3/{project_id}/backups", get(cbr::list_backups))
        .route("/cbr/v3/{project_id}/backups/{backup_id}", get(cbr::show_backup))
        .route("/sim/health", get(|| async { "ok" }))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/tokens/revoke", post(revoke_tokens))
        .route("/sim/users/{name}", put(put_user))
        .route(
            "/sim/projects/{project_id}/backups/{backup_id}",
            put(|s, p, j| put_backup(s, p, j, Service::Vbs))
                .patch(|s, p, j| patch_backup(s, p, j, Service::Vbs))
                .delete(|s, p| delete_backup(s, p, Service::Vbs)),
        )
        .route(
            "/sim/projects/{project_id}/cbr-backups/{backup_id}",
            put(|s, p, j| put_backup(s, p, j, Service::Cbr))
                .patch(|s, p, j| patch_backup(s, p, j, Service::Cbr))
                .delete(|s, p| delete_backup(s, p, Service::Cbr)),
        )
        .with_state(sim)
}

/// Serves plain HTTP until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, sim: Arc<Sim>) -> std::io::Result<()> {
    axum::serve(listener, router(sim)).await
}

/// Serves HTTPS (HTTP/1.1) until the listener fails, for tests of private CAs (`cacert`).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    sim: Arc<Sim>,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(sim);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that refuses our certificate ends its handshake here; nothing to report.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

pub(super) fn request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn error_response(status: StatusCode, style: ErrorStyle, message: &str) -> Response {
    let body = match style {
        ErrorStyle::Cinder => {
            let fault = match status.as_u16() {
                400 => "badRequest",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "itemNotFound",
                405 => "badMethod",
                409 => "conflictingRequest",
                413 | 429 => "overLimit",
                503 => "serviceUnavailable",
                _ => "computeFault",
            };
            json!({ fault: { "code": status.as_u16(), "message": message } })
        }
        ErrorStyle::Apigw => {
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                "APIG.0308"
            } else {
                "APIG.0201"
            };
            json!({ "error_code": code, "error_msg": message, "request_id": request_id() })
        }
        ErrorStyle::Huawei => {
            json!({ "error": { "code": format!("VBS.{:04}", status.as_u16()), "message": message } })
        }
    };
    (status, Json(body)).into_response()
}

fn keystone_unauthorized() -> Response {
    let body = json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

pub(super) fn refusal_response(sim: &Sim, refusal: Refusal) -> Response {
    sim.count("unauthorized");
    match refusal {
        Refusal::Unauthenticated => keystone_unauthorized(),
        Refusal::Signature(why) => {
            let body = json!({"error_code": "APIGW.0301", "error_msg": format!("Incorrect IAM authentication information: {why}"), "request_id": request_id()});
            (StatusCode::UNAUTHORIZED, Json(body)).into_response()
        }
        Refusal::WrongProject => error_response(
            StatusCode::FORBIDDEN,
            ErrorStyle::Cinder,
            "Policy doesn't allow this operation on another project.",
        ),
    }
}

/// Applies an injected fault: `Some(response)` when the fault answers instead of the API.
pub(super) async fn apply_fault(sim: &Sim, target: FaultTarget, backup_id: Option<&str>) -> Option<Response> {
    let fault = sim.take_fault(target, backup_id)?;
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if let Some(location) = &fault.redirect_to {
        let status = fault
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_redirection)
            .unwrap_or(StatusCode::TEMPORARY_REDIRECT);
        let mut resp = status.into_response();
        if let Ok(v) = HeaderValue::from_str(location) {
            resp.headers_mut().insert("location", v);
        }
        return Some(resp);
    }
    if let Some(size) = fault.body_bytes {
        return Some(huge_body(backup_id.unwrap_or("x"), size));
    }
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = if fault.malformed {
        (
            status,
            [("content-type", "application/json")],
            "{\"backup\": {\"id\": \"trunc",
        )
            .into_response()
    } else if status.is_success() {
        return None;
    } else {
        error_response(status, fault.style, "injected fault")
    };
    if let Some(v) = fault
        .retry_after
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    Some(resp)
}

/// A 200 answer of `size` bytes: a valid backup document whose description is padding, streamed in
/// 64 KiB chunks so that the simulator itself stays small.
fn huge_body(backup_id: &str, size: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let head = format!(r#"{{"backup": {{"id": "{backup_id}", "status": "available", "description": ""#);
    let tail = "\"}}";
    let padding = size.saturating_sub((head.len() + tail.len()) as u64);
    let full_chunks = padding / CHUNK as u64;
    let rest = (padding % CHUNK as u64) as usize;
    let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
    let body = futures::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain(std::iter::repeat_n(chunk, full_chunks as usize))
            .chain(std::iter::once(bytes::Bytes::from(vec![b'x'; rest])))
            .chain(std::iter::once(bytes::Bytes::from_static(tail.as_bytes())))
            .map(Ok::<_, std::io::Error>),
    );
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn create_token(State(sim): AppState, Json(body): Json<Value>) -> Response {
    sim.count("auth");
    if let Some(resp) = apply_fault(&sim, FaultTarget::Auth, None).await {
        return resp;
    }
    let Some(user) = auth::check_password(&sim, &body) else {
        sim.count("unauthorized");
        return keystone_unauthorized();
    };
    let (token, issued) = auth::issue_token(&sim, &user);
    let region = sim.world().region.clone();
    let base = &sim.public_url;
    let pid = &user.project_id;
    let body = json!({"token": {
        "methods": ["password"],
        "expires_at": format!("{}Z", api_time(issued.expires_at)),
        "issued_at": format!("{}Z", api_time(Timestamp::now())),
        "user": {"name": user.name, "id": user.id, "domain": {"name": user.domain}},
        "project": {"id": pid, "name": user.project_name, "domain": {"name": user.domain}},
        "catalog": [
            {"type": "compute", "name": "nova", "endpoints": [
                {"interface": "public", "region": region, "region_id": region, "url": format!("{base}/compute/v2.1/{pid}")}]},
            {"type": "volumev3", "name": "cinderv3", "endpoints": [
                // A decoy in another region: a client that ignores region_name ends up here and fails.
                {"interface": "public", "region": "decoy-region", "region_id": "decoy-region", "url": format!("{base}/decoy-region/v3/{pid}")},
                {"interface": "public", "region": region, "region_id": region, "url": format!("{base}/v3/{pid}")}]},
            {"type": "cbr", "name": "cbr", "endpoints": [
                {"interface": "public", "region": region, "region_id": region, "url": format!("{base}/cbr/v3/{pid}")}]}
        ]
    }});
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

fn with_links(sim: &Sim, project_id: &str, backup: &Map<String, Value>) -> Value {
    let id = backup.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut b = backup.clone();
    b.insert(
        "links".into(),
        json!([
            {"href": format!("{}/v3/{project_id}/backups/{id}", sim.public_url), "rel": "self"},
            {"href": format!("{}/{project_id}/backups/{id}", sim.public_url), "rel": "bookmark"}
        ]),
    );
    Value::Object(b)
}

/// What both services' show calls do before they answer: count the call (as `counter`), check
/// its credentials, apply a fault, and look the backup up (counting a found one). `Err` is the
/// answer to send instead (a refusal or a fault); `Ok(None)` means there is no such backup.
pub(super) async fn find_for_show(
    sim: &Sim,
    service: Service,
    counter: &str,
    (project_id, backup_id): (&str, &str),
    request: (&Method, &Uri, &HeaderMap),
) -> Result<Option<Map<String, Value>>, Response> {
    sim.count(counter);
    sim.record_show(backup_id);
    let (method, uri, headers) = request;
    auth::check_call(sim, method, uri, headers, project_id)
        .map_err(|refusal| refusal_response(sim, refusal))?;
    if let Some(resp) = apply_fault(sim, FaultTarget::Show, Some(backup_id)).await {
        return Err(resp);
    }
    let found = sim.with_projects(service, |projects| {
        projects.get(project_id).and_then(|p| p.get(backup_id)).cloned()
    });
    if found.is_some() {
        *sim.world()
            .stats
            .shows_by_backup
            .entry(backup_id.to_string())
            .or_default() += 1;
    }
    Ok(found)
}

async fn show_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ids = (project_id.as_str(), backup_id.as_str());
    match find_for_show(&sim, Service::Vbs, "show", ids, (&method, &uri, &headers)).await {
        Err(answer) => answer,
        Ok(Some(b)) => Json(json!({ "backup": with_links(&sim, &project_id, &b) })).into_response(),
        Ok(None) => error_response(
            StatusCode::NOT_FOUND,
            ErrorStyle::Cinder,
            &format!("Backup {backup_id} could not be found."),
        ),
    }
}

/// Page size cap, as Huawei documents for the list calls.
const MAX_PAGE: usize = 1000;

async fn list_backups(
    State(sim): AppState,
    Path(project_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    sim.count("list");
    if let Err(refusal) = auth::check_call(&sim, &method, &uri, &headers, &project_id) {
        return refusal_response(&sim, refusal);
    }
    if let Some(resp) = apply_fault(&sim, FaultTarget::List, None).await {
        return resp;
    }
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => MAX_PAGE,
        Some(Ok(n)) => n.clamp(1, MAX_PAGE),
        Some(Err(_)) => {
            return error_response(StatusCode::BAD_REQUEST, ErrorStyle::Cinder, "Invalid limit");
        }
    };
    let offset = query
        .get("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let marker = query.get("marker");
    let w = sim.world();
    let all: Vec<&Map<String, Value>> = w
        .backups
        .get(&project_id)
        .map(|p| p.values().collect())
        .unwrap_or_default();
    let start = match marker {
        Some(m) => match all
            .iter()
            .position(|b| b.get("id").and_then(Value::as_str) == Some(m))
        {
            Some(i) => i + 1,
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorStyle::Cinder,
                    &format!("marker [{m}] not found"),
                );
            }
        },
        None => offset,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| with_links(&sim, &project_id, b))
        .collect();
    let mut body = json!({ "backups": page });
    if start + limit < all.len() {
        let last = all[start + limit - 1]
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let href = format!("{}{}?limit={limit}&marker={last}", sim.public_url, uri.path());
        body["backups_links"] = json!([{"rel": "next", "href": href}]);
    }
    Json(body).into_response()
}

async fn stats(State(sim): AppState) -> Response {
    Json(sim.world().stats.clone()).into_response()
}

async fn add_fault(State(sim): AppState, Json(fault): Json<Fault>) -> StatusCode {
    sim.world().faults.push(fault);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): AppState) -> StatusCode {
    sim.world().faults.clear();
    StatusCode::NO_CONTENT
}

async fn revoke_tokens(State(sim): AppState) -> StatusCode {
    sim.world().tokens.clear();
    StatusCode::NO_CONTENT
}

async fn put_user(
    State(sim): AppState,
    Path(name): Path<String>,
    Json(mut user): Json<SeedUser>,
) -> StatusCode {
    user.name = name;
    let mut w = sim.world();
    w.users.retain(|u| u.name != user.name);
    w.users.push(user);
    StatusCode::NO_CONTENT
}

async fn put_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    Json(mut fields): Json<Map<String, Value>>,
    service: Service,
) -> StatusCode {
    fields.insert("id".into(), Value::String(backup_id.clone()));
    let backup = service.with_defaults(&project_id, fields);
    sim.with_projects(service, |projects| {
        projects.entry(project_id).or_default().insert(backup_id, backup)
    });
    StatusCode::NO_CONTENT
}

async fn patch_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    Json(fields): Json<Map<String, Value>>,
    service: Service,
) -> StatusCode {
    let now = match service {
        Service::Vbs => api_time(Timestamp::now()),
        Service::Cbr => format!("{}+00:00", api_time(Timestamp::now())),
    };
    sim.with_projects(service, |projects| {
        let Some(b) = projects.get_mut(&project_id).and_then(|p| p.get_mut(&backup_id)) else {
            return StatusCode::NOT_FOUND;
        };
        b.insert("updated_at".into(), Value::String(now));
        b.extend(fields);
        StatusCode::NO_CONTENT
    })
}

async fn delete_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    service: Service,
) -> StatusCode {
    let removed = sim.with_projects(service, |projects| {
        projects.get_mut(&project_id).and_then(|p| p.remove(&backup_id))
    });
    if removed.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::signer::{self, SignableRequest};
    use crate::sim::{Seed, SeedKey};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const P: &str = "p1";

    fn sim() -> Arc<Sim> {
        let seed = Seed {
            access_keys: vec![SeedKey {
                ak: "AK".into(),
                sk: "SK".into(),
            }],
            backups: (1..=5)
                .map(|i| {
                    let mut m = Map::new();
                    m.insert("project_id".into(), json!(P));
                    m.insert("id".into(), json!(format!("b{i}")));
                    m
                })
                .collect(),
            ..Seed::one_user(P)
        };
        Arc::new(Sim::new(seed, "http://sim".into()))
    }

    async fn call(sim: &Arc<Sim>, req: Request<Body>) -> (StatusCode, Value) {
        let resp = router(sim.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn token(sim: &Arc<Sim>) -> String {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "u", "domain": {"name": "D"}, "password": "pw"}}}, "scope": {"project": {"id": P}}}});
        let req = Request::post("/v3/auth/tokens")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = router(sim.clone()).oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.headers()["x-subject-token"]
            .to_str()
            .expect("ascii")
            .to_string()
    }

    fn get(uri: &str, token: &str) -> Request<Body> {
        Request::get(uri)
            .header("x-auth-token", token)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn cbr_shows_pages_by_offset_and_answers_its_own_404() {
        let sim = sim();
        for i in 1..=3 {
            sim.with_projects(Service::Cbr, |p| {
                let b = crate::sim::cbr_with_defaults(
                    P,
                    json!({"id": format!("c{i}")})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                );
                p.entry(P.into()).or_default().insert(format!("c{i}"), b)
            });
        }
        let t = token(&sim).await;
        let (status, body) = call(&sim, get(&format!("/cbr/v3/{P}/backups/c2"), &t)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["backup"]["id"], "c2");
        assert_eq!(body["backup"]["resource_type"], "OS::Cinder::Volume");
        let (_, page) = call(&sim, get(&format!("/cbr/v3/{P}/backups?limit=2&offset=2"), &t)).await;
        assert_eq!(
            (page["count"].as_u64(), page["backups"].as_array().map(Vec::len)),
            (Some(3), Some(1))
        );
        let (status, body) = call(&sim, get(&format!("/cbr/v3/{P}/backups/nope"), &t)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error_code"], "BackupService.6200");
        let (status, _) = call(&sim, get(&format!("/cbr/v3/{P}/backups?limit=0"), &t)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&sim, get(&format!("/cbr/v3/{P}/backups/c1"), "forged")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn list_pages_with_limit_and_marker() {
        let sim = sim();
        let t = token(&sim).await;
        let (status, page) = call(&sim, get(&format!("/v3/{P}/native/backups/detail?limit=2"), &t)).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = page["backups"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|b| b["id"].as_str())
            .collect();
        assert_eq!(ids, ["b1", "b2"]);
        assert_eq!(page["backups_links"][0]["rel"], "next");
        assert!(
            page["backups_links"][0]["href"]
                .as_str()
                .expect("href")
                .ends_with("?limit=2&marker=b2")
        );
        let (_, last) = call(
            &sim,
            get(&format!("/v3/{P}/backups/detail?limit=2&marker=b4"), &t),
        )
        .await;
        assert_eq!(last["backups"].as_array().map(Vec::len), Some(1));
        assert!(
            last.get("backups_links").is_none(),
            "no next link on the last page"
        );
        let (status, err) = call(&sim, get(&format!("/v3/{P}/backups/detail?marker=nope"), &t)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            err["badRequest"]["message"]
                .as_str()
                .expect("message")
                .contains("marker")
        );
    }

    #[tokio::test]
    async fn tokens_are_checked_and_scoped() {
        let sim = sim();
        let (status, body) = call(&sim, get(&format!("/v3/{P}/native/backups/b1"), "bogus")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["title"], "Unauthorized");
        let t = token(&sim).await;
        let (status, _) = call(&sim, get("/v3/other-project/native/backups/b1", &t)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = call(&sim, get(&format!("/v2/{P}/backups/b1"), &t)).await;
        assert_eq!(
            (status, body["backup"]["id"].as_str()),
            (StatusCode::OK, Some("b1"))
        );
        let (status, body) = call(&sim, get(&format!("/v3/{P}/backups/missing"), &t)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["itemNotFound"]["code"], 404);
    }

    #[tokio::test]
    async fn aksk_signatures_are_verified() {
        let sim = sim();
        let path = format!("/v3/{P}/native/backups/b1");
        let date = Timestamp::now().strftime(signer::DATE_FORMAT).to_string();
        let headers = vec![
            ("host".to_string(), "sim".to_string()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let signable = SignableRequest {
            method: "GET",
            path: &path,
            query: &[],
            headers: &headers,
            body: b"",
        };
        let signed = |sk: &str| {
            Request::get(path.as_str())
                .header("host", "sim")
                .header("x-sdk-date", &date)
                .header("authorization", signer::sign(&signable, "AK", sk, &date))
                .body(Body::empty())
                .expect("request")
        };
        let (status, _) = call(&sim, signed("SK")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(&sim, signed("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error_code"], "APIGW.0301");
    }

    #[tokio::test]
    async fn faults_answer_in_the_chosen_style_and_run_out() {
        let sim = sim();
        let t = token(&sim).await;
        let fault = Fault {
            target: FaultTarget::Show,
            status: Some(429),
            style: ErrorStyle::Apigw,
            retry_after: Some("7".into()),
            times: Some(1),
            ..Fault::default()
        };
        sim.world().faults.push(fault);
        let resp = router(sim.clone())
            .oneshot(get(&format!("/v3/{P}/native/backups/b1"), &t))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "7");
        let (status, _) = call(&sim, get(&format!("/v3/{P}/native/backups/b1"), &t)).await;
        assert_eq!(status, StatusCode::OK, "the fault applied once");
    }
}
