//! Wire types of the backup API and of Keystone, and the error bodies the clouds answer with.

use serde::Deserialize;

/// One backup as the show and list-detail calls return it. Every field but `id` may be missing,
/// null or of an unexpected type on some cloud: such a value is dropped (as if it were null)
/// rather than failing the whole answer, and nothing is trusted further than its type.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Backup {
    /// Empty when the answer has none (or not a string): such an entry is skipped in lists, and a
    /// show answer without it is refused as describing another backup.
    #[serde(default, deserialize_with = "lenient::id")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub fail_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub has_dependent_backups: Option<bool>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub is_incremental: Option<bool>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub volume_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub snapshot_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub container: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub object_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub availability_zone: Option<String>,
    /// The owner appears under three spellings across clouds and API versions.
    #[serde(
        default,
        deserialize_with = "lenient::text",
        alias = "os-backup-project-attr:project_id",
        alias = "os-backup-project-attr:tenant_id",
        alias = "os-bak-tenant-attr:tenant_id"
    )]
    pub project_id: Option<String>,
    /// Times as the cloud sent them (strings; a number is kept as its text so that the status
    /// mapping can see and report that it is not one of the API's formats).
    #[serde(default, deserialize_with = "lenient::text")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub updated_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub data_timestamp: Option<String>,
}

/// Deserializers that take any JSON value and keep it only when it has the expected shape.
pub(crate) mod lenient {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// An object of type `T`; anything that does not parse as one is dropped.
    pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
        Ok(serde_json::from_value(Value::deserialize(d)?).ok())
    }

    /// A string; a number or boolean as its text; anything else is dropped.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// A string, or empty.
    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => s,
            _ => String::new(),
        })
    }

    /// An integer, or a string holding one (some clouds quote numbers).
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }

    /// A boolean, or the strings `true`/`false`.
    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => Some(b),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct ShowBackupResponse {
    pub backup: Backup,
}

/// One page of `GET .../backups/detail`. Every field is lenient, so one odd entry (no `id`, say)
/// cannot fail the page; entries without an `id` are skipped by the caller.
#[derive(Debug, Deserialize)]
pub struct ListBackupsPage {
    #[serde(default)]
    pub backups: Vec<Backup>,
    #[serde(default)]
    pub backups_links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub rel: String,
    #[serde(default)]
    pub href: String,
}

impl ListBackupsPage {
    /// The `next` link, if the server says more results remain.
    pub fn next(&self) -> Option<&str> {
        self.backups_links
            .iter()
            .find(|l| l.rel == "next" && !l.href.is_empty())
            .map(|l| l.href.as_str())
    }
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
    fn odd_field_types_are_dropped_not_fatal() {
        let body = r#"{"backup": {"id": "x", "size": "12", "status": ["available"], "is_incremental": "true",
            "has_dependent_backups": 1, "data_timestamp": 1552737360, "updated_at": "", "object_count": 1.5,
            "name": {"nested": true}}}"#;
        let b = serde_json::from_str::<ShowBackupResponse>(body)
            .expect("parses")
            .backup;
        assert_eq!(b.size, Some(12));
        assert_eq!(b.status, None);
        assert_eq!(b.is_incremental, Some(true));
        assert_eq!(b.has_dependent_backups, None);
        assert_eq!(b.data_timestamp.as_deref(), Some("1552737360"));
        assert_eq!(b.updated_at.as_deref(), Some(""));
        assert_eq!((b.object_count, b.name), (None, None));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), text in ".{0,300}") {
            let _ = parse_error_body(&body);
            let _ = parse_error_body(text.as_bytes());
            let _ = serde_json::from_slice::<ShowBackupResponse>(&body);
            let _ = serde_json::from_str::<ShowBackupResponse>(&text);
            let _ = serde_json::from_str::<TokenResponse>(&text);
        }

        #[test]
        fn any_json_value_in_a_field_is_accepted(value in json_value()) {
            let body = serde_json::json!({"backup": {"id": "x", "size": value, "status": value, "created_at": value,
                "is_incremental": value}});
            let parsed = serde_json::from_value::<ShowBackupResponse>(body);
            proptest::prop_assert!(parsed.is_ok());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,5}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
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
