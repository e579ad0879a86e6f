//! Wire types of the backup API and of Keystone, and the error bodies the clouds answer with.

use serde::Deserialize;

/// One backup as the show and list-detail calls return it. Every field but `id` may be missing or
/// null on some cloud, so all are optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Backup {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub fail_reason: Option<String>,
    #[serde(default)]
    pub has_dependent_backups: Option<bool>,
    #[serde(default)]
    pub is_incremental: Option<bool>,
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub object_count: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// The owner appears under three spellings across clouds and API versions.
    #[serde(
        default,
        alias = "os-backup-project-attr:project_id",
        alias = "os-backup-project-attr:tenant_id",
        alias = "os-bak-tenant-attr:tenant_id"
    )]
    pub project_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub data_timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ShowBackupResponse {
    pub backup: Backup,
}

/// The error a cloud put in a non-2xx body, whichever family it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// `itemNotFound`, `APIGW.0301`, `VBS.0001`, `Unauthorized`, ...
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// Parses the error-body families clouds use:
/// - Cinder faults: `{"itemNotFound": {"code": 404, "message": "..."}}` (key named after the fault);
/// - Huawei API gateway: `{"error_code": "APIGW.0301", "error_msg": "...", "request_id": "..."}`;
/// - Huawei services and Keystone: `{"error": {"code": "VBS.0001" | 401, "message": "...", "title": ...}}`.
///
/// Anything else (HTML from a proxy, truncated JSON) yields `None`.
pub fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let text = |v: Option<&serde_json::Value>| match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if obj.contains_key("error_code") || obj.contains_key("error_msg") {
        return Some(ErrorBody {
            code: text(obj.get("error_code")),
            message: text(obj.get("error_msg")),
            request_id: text(obj.get("request_id")),
        });
    }
    if let Some(inner) = obj.get("error").and_then(|e| e.as_object()) {
        return Some(ErrorBody {
            code: text(inner.get("code")).or_else(|| text(inner.get("title"))),
            message: text(inner.get("message")),
            request_id: text(obj.get("request_id")),
        });
    }
    // A Cinder fault: exactly one key, whose value holds code and message.
    if obj.len() == 1 {
        let (fault, inner) = obj.iter().next()?;
        let inner = inner.as_object()?;
        if inner.contains_key("message") || inner.contains_key("code") {
            return Some(ErrorBody {
                code: Some(fault.clone()),
                message: text(inner.get("message")),
                request_id: None,
            });
        }
    }
    None
}

/// Keystone `POST /v3/auth/tokens` response body (the token itself is in `X-Subject-Token`).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub token: TokenBody,
}

#[derive(Debug, Deserialize)]
pub struct TokenBody {
    pub expires_at: String,
    #[serde(default)]
    pub project: Option<TokenProject>,
    #[serde(default)]
    pub catalog: Vec<CatalogService>,
}

#[derive(Debug, Deserialize)]
pub struct TokenProject {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogService {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference page's example response, verbatim.
    pub const REFERENCE_EXAMPLE: &str = r#"{
	"backup": {
		"status": "error",
		"description": null,
		"links": [{
			"href": "http://192.168.82.222:8776/v2/b23b579f08c84228b9b4673c46f0c442/backups/1d1139d8-8989-49d3-8aa1-83eb691e6db2",
			"rel": "self"
		},
		{
			"href": "http://192.168.82.222:8776/b23b579f08c84228b9b4673c46f0c442/backups/1d1139d8-8989-49d3-8aa1-83eb691e6db2",
			"rel": "bookmark"
		}],
		"availability_zone": null,
		"volume_id": "2748f2f2-4394-4e6e-af8d-8dd34496c024",
		"fail_reason": "Connection to swift failed: [Errno 111] ECONNREFUSED",
		"id": "1d1139d8-8989-49d3-8aa1-83eb691e6db2",
		"size": 1,
		"object_count": null,
		"container": "volumebackups",
		"name": null,
		"created_at": "2013-06-27T08:48:03.000000",
		"os-backup-project-attr:project_id": "b23b579f08c84228b9b4673c46f0c442",
		"snapshot_id": "66a574c0-4415-499e-b0b1-3f340d7f7932",
		"updated_at": "2019-03-27T12:36:17.596602",
		"data_timestamp": "2019-03-16T11:56:00.917245",
		"has_dependent_backups": false,
		"is_incremental": false
	}
}"#;

    #[test]
    fn reference_example_parses() {
        let b = serde_json::from_str::<ShowBackupResponse>(REFERENCE_EXAMPLE)
            .expect("parses")
            .backup;
        assert_eq!(b.id, "1d1139d8-8989-49d3-8aa1-83eb691e6db2");
        assert_eq!(b.status.as_deref(), Some("error"));
        assert_eq!(b.size, Some(1));
        assert_eq!(
            b.fail_reason.as_deref(),
            Some("Connection to swift failed: [Errno 111] ECONNREFUSED")
        );
        assert_eq!(b.project_id.as_deref(), Some("b23b579f08c84228b9b4673c46f0c442"));
        assert_eq!(
            (b.description, b.availability_zone, b.object_count, b.name),
            (None, None, None, None)
        );
        assert_eq!(b.has_dependent_backups, Some(false));
        assert_eq!(b.created_at.as_deref(), Some("2013-06-27T08:48:03.000000"));
    }

    #[test]
    fn all_owner_key_spellings_are_read() {
        for key in [
            "os-backup-project-attr:project_id",
            "os-backup-project-attr:tenant_id",
            "os-bak-tenant-attr:tenant_id",
        ] {
            let body = format!(r#"{{"backup": {{"id": "x", "{key}": "p1"}}}}"#);
            let b = serde_json::from_str::<ShowBackupResponse>(&body)
                .expect("parses")
                .backup;
            assert_eq!(b.project_id.as_deref(), Some("p1"), "{key}");
        }
    }

    #[test]
    fn error_body_families() {
        let cinder = br#"{"itemNotFound": {"code": 404, "message": "Backup X could not be found."}}"#;
        assert_eq!(
            parse_error_body(cinder),
            Some(ErrorBody {
                code: Some("itemNotFound".into()),
                message: Some("Backup X could not be found.".into()),
                request_id: None
            })
        );
        let apigw = br#"{"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information", "request_id": "r1"}"#;
        assert_eq!(
            parse_error_body(apigw),
            Some(ErrorBody {
                code: Some("APIGW.0301".into()),
                message: Some("Incorrect IAM authentication information".into()),
                request_id: Some("r1".into())
            })
        );
        let huawei = br#"{"error": {"code": "VBS.0001", "message": "bad"}}"#;
        assert_eq!(
            parse_error_body(huawei).and_then(|e| e.code),
            Some("VBS.0001".into())
        );
        let keystone = br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#;
        assert_eq!(
            parse_error_body(keystone).and_then(|e| e.code),
            Some("401".into())
        );
        assert_eq!(parse_error_body(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(parse_error_body(br#"{"backup": {"#), None);
    }
}
