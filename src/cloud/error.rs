//! Errors of the cloud client, classified the way the controller reports and retries them.

use std::time::Duration;

use super::config::ConfigError;
use super::wire::ErrorBody;

/// What went wrong talking to the cloud. Messages name the operation and what the cloud said;
/// they never carry credentials, tokens or signatures.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{operation} was refused with HTTP {status}{detail}: check the credentials in clouds.yaml")]
    Authentication {
        operation: Operation,
        status: u16,
        detail: String,
    },

    #[error("backup {backup_id} does not exist in project {project_id}{detail}")]
    NotFound {
        backup_id: String,
        project_id: String,
        detail: String,
    },

    #[error("{operation} failed with HTTP {status}{detail}")]
    Api {
        operation: Operation,
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },

    #[error("{operation} timed out after {after:?}")]
    Timeout { operation: Operation, after: Duration },

    #[error("{operation} could not reach the cloud: {detail}")]
    Transport { operation: Operation, detail: String },

    #[error("{operation} returned a body that is not what the API documents: {detail}")]
    Decode { operation: Operation, detail: String },

    #[error(
        "the service catalog has no {interface} block-storage (volumev3) endpoint{region}; set block_storage_endpoint_override"
    )]
    NoEndpoint { interface: String, region: String },
}

/// The kinds of call the client makes, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Authenticate,
    ShowBackup,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Authenticate => "authenticate",
            Operation::ShowBackup => "show_backup",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Authenticate => "authentication (POST /auth/tokens)",
            Operation::ShowBackup => "query of the backup",
        })
    }
}

impl CloudError {
    /// The server's advice on when to try again (`Retry-After`), if it gave any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Longest part of a server's error message kept in ours.
const MAX_DETAIL: usize = 300;

/// `": <code>: <message> (request <id>)"` from a parsed error body, or `""`.
pub fn describe(body: Option<&ErrorBody>) -> String {
    let Some(body) = body else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(code) = &body.code {
        out.push_str(": ");
        out.push_str(code);
    }
    if let Some(msg) = &body.message {
        out.push_str(": ");
        out.extend(msg.chars().take(MAX_DETAIL));
    }
    if let Some(id) = &body.request_id {
        out.push_str(&format!(" (request {id})"));
    }
    out
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn describe_error_bodies() {
        let body = ErrorBody {
            code: Some("itemNotFound".into()),
            message: Some("gone".into()),
            request_id: Some("r1".into()),
        };
        assert_eq!(describe(Some(&body)), ": itemNotFound: gone (request r1)");
        assert_eq!(describe(None), "");
        let long = ErrorBody {
            message: Some("x".repeat(1000)),
            ..Default::default()
        };
        assert_eq!(describe(Some(&long)).len(), 2 + MAX_DETAIL);
    }

    #[test]
    fn messages_are_actionable() {
        let e = CloudError::Authentication {
            operation: Operation::Authenticate,
            status: 401,
            detail: ": 401: The request you have made requires authentication.".into(),
        };
        assert_eq!(
            e.to_string(),
            "authentication (POST /auth/tokens) was refused with HTTP 401: 401: The request you have made requires authentication.: check the credentials in clouds.yaml"
        );
    }
}
