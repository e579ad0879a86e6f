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
use super::state::{ErrorStyle, Fault, FaultTarget, SeedUser, Sim, api_time, with_defaults};

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
        .route("/sim/health", get(|| async { "ok" }))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/tokens/revoke", post(revoke_tokens))
        .route("/sim/users/{name}", put(put_user))
        .route(
            "/sim/projects/{project_id}/backups/{backup_id}",
            put(put_backup).patch(patch_backup).delete(delete_backup),
        )
        .with_state(sim)
}

/// Serves until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, sim: Arc<Sim>) -> std::io::Result<()> {
    axum::serve(listener, router(sim)).await
}

fn request_id() -> String {
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

fn refusal_response(sim: &Sim, refusal: Refusal) -> Response {
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
async fn apply_fault(sim: &Sim, target: FaultTarget, backup_id: Option<&str>) -> Option<Response> {
    let fault = sim.take_fault(target, backup_id)?;
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
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
                {"interface": "public", "region": region, "region_id": region, "url": format!("{base}/v3/{pid}")}]}
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

async fn show_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    sim.count("show");
    if let Err(refusal) = auth::check_call(&sim, &method, &uri, &headers, &project_id) {
        return refusal_response(&sim, refusal);
    }
    if let Some(resp) = apply_fault(&sim, FaultTarget::Show, Some(&backup_id)).await {
        return resp;
    }
    let found = sim
        .world()
        .backups
        .get(&project_id)
        .and_then(|p| p.get(&backup_id))
        .cloned();
    match found {
        Some(b) => {
            *sim.world().stats.shows_by_backup.entry(backup_id).or_default() += 1;
            Json(json!({ "backup": with_links(&sim, &project_id, &b) })).into_response()
        }
        None => error_response(
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
) -> StatusCode {
    fields.insert("id".into(), Value::String(backup_id.clone()));
    let backup = with_defaults(&project_id, fields);
    sim.world()
        .backups
        .entry(project_id)
        .or_default()
        .insert(backup_id, backup);
    StatusCode::NO_CONTENT
}

async fn patch_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
    Json(fields): Json<Map<String, Value>>,
) -> StatusCode {
    let mut w = sim.world();
    let Some(b) = w.backups.get_mut(&project_id).and_then(|p| p.get_mut(&backup_id)) else {
        return StatusCode::NOT_FOUND;
    };
    b.insert("updated_at".into(), Value::String(api_time(Timestamp::now())));
    b.extend(fields);
    StatusCode::NO_CONTENT
}

async fn delete_backup(
    State(sim): AppState,
    Path((project_id, backup_id)): Path<(String, String)>,
) -> StatusCode {
    let removed = sim
        .world()
        .backups
        .get_mut(&project_id)
        .and_then(|p| p.remove(&backup_id));
    if removed.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
