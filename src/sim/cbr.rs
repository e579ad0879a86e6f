//! Cloud Backup and Recovery's read calls, as Huawei Cloud and Open Telekom Cloud serve them:
//! `GET /v3/{project_id}/backups/{backup_id}` and the offset-paged
//! `GET /v3/{project_id}/backups?limit=&offset=`, answering `{"backups", "count", "offset",
//! "limit"}`. The simulator serves them under `/cbr`, as if on a host of their own.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth;
use super::server::{apply_fault, find_for_show, refusal_response, request_id};
use super::state::{FaultTarget, Service, Sim};

/// CBR caps a page at 1000.
const MAX_LIMIT: usize = 1000;

/// CBR's own error body: the API gateway family with a `BackupService.*` code.
fn cbr_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error_code": code, "error_msg": message, "request_id": request_id()});
    (status, Json(body)).into_response()
}

pub async fn show_backup(
    State(sim): State<Arc<Sim>>,
    Path((project_id, backup_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ids = (project_id.as_str(), backup_id.as_str());
    match find_for_show(&sim, Service::Cbr, "cbr_show", ids, (&method, &uri, &headers)).await {
        Err(answer) => answer,
        Ok(Some(b)) => Json(json!({ "backup": b })).into_response(),
        Ok(None) => cbr_error(
            StatusCode::NOT_FOUND,
            "BackupService.6200",
            &format!("The backup {backup_id} does not exist."),
        ),
    }
}

pub async fn list_backups(
    State(sim): State<Arc<Sim>>,
    Path(project_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    sim.count("cbr_list");
    if let Err(refusal) = auth::check_call(&sim, &method, &uri, &headers, &project_id) {
        return refusal_response(&sim, refusal);
    }
    if let Some(resp) = apply_fault(&sim, FaultTarget::List, None).await {
        return resp;
    }
    let number = |key: &str, default: usize| match query.get(key) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| key.to_string()),
    };
    let (limit, offset) = match (number("limit", MAX_LIMIT), number("offset", 0)) {
        (Ok(l), Ok(o)) if (1..=MAX_LIMIT).contains(&l) => (l, o),
        _ => {
            return cbr_error(
                StatusCode::BAD_REQUEST,
                "BackupService.0001",
                "Invalid limit or offset.",
            );
        }
    };
    // The filters CBR documents that a reader of backups might send.
    let wanted = |b: &serde_json::Map<String, Value>| {
        ["resource_id", "vault_id", "status", "image_type"]
            .iter()
            .all(|key| {
                query
                    .get(*key)
                    .is_none_or(|v| b.get(*key).and_then(Value::as_str) == Some(v.as_str()))
            })
    };
    let w = sim.world();
    let all: Vec<&serde_json::Map<String, Value>> = w
        .cbr_backups
        .get(&project_id)
        .map(|p| p.values().filter(|b| wanted(b)).collect())
        .unwrap_or_default();
    let page: Vec<&serde_json::Map<String, Value>> = all.iter().skip(offset).take(limit).copied().collect();
    Json(json!({"backups": page, "count": all.len(), "offset": offset, "limit": limit})).into_response()
}
