//! Errors of the cloud client, classified the way the controller reports and retries them.
//!
//! Everything a cloud sends is hostile input: only a JSON error body's code and message are ever
//! quoted, both sanitised and capped; request ids and clock times stay out of messages (they would
//! make every answer's message differ, and a status that differs on every answer is a write).

use std::time::{Duration, SystemTime};

use super::config::ConfigError;
use super::wire::ErrorBody;

/// What went wrong talking to the cloud. Messages name the operation and what the cloud said;
/// they never carry credentials, tokens, signatures, request ids or times.
#[derive(Debug, Clone, thiserror::Error)]
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
        "{operation} was not sent: {endpoint} did not answer several calls in a row (timeouts or connection failures), so calls to it pause for a while (circuit breaker)"
    )]
    CircuitOpen { operation: Operation, endpoint: String },

    #[error("the service catalog has no {interface} {service} endpoint{region}; set {override_field}")]
    NoEndpoint {
        service: &'static str,
        override_field: &'static str,
        interface: String,
        region: String,
    },
}

/// The kinds of call the client makes, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Authenticate,
    ShowBackup,
    ListBackups,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Authenticate => "authenticate",
            Operation::ShowBackup => "show_backup",
            Operation::ListBackups => "list_backups",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Authenticate => "authentication (POST /auth/tokens)",
            Operation::ShowBackup => "query of the backup",
            Operation::ListBackups => "list of the project's backups",
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

    /// Whether this failure says the endpoint does not answer at all (a timeout or a connection
    /// failure), which is what the circuit breaker counts: such calls hold their slots for the
    /// whole timeout. Any HTTP answer, 5xx included, comes back quickly and is left to the
    /// per-VbsBackup backoff.
    pub fn is_outage(&self) -> bool {
        matches!(self, CloudError::Timeout { .. } | CloudError::Transport { .. })
    }
}

/// Longest error code of a server's error body kept in our messages.
pub const MAX_CODE: usize = 64;
/// Longest part of a server's error message kept in our messages.
pub const MAX_DETAIL: usize = 300;
/// Longest `Retry-After` honoured; a server asking for more is waited on for this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `": <code>: <message>"` from a parsed error body, or `""`. Both parts are sanitised (control
/// characters dropped) and capped; request ids are deliberately left out.
pub fn describe(body: Option<&ErrorBody>) -> String {
    let Some(body) = body else {
        return String::new();
    };
    let mut out = String::new();
    for (part, cap) in [(&body.code, MAX_CODE), (&body.message, MAX_DETAIL)] {
        if let Some(text) = part
            .as_deref()
            .map(|t| sanitize(t, cap))
            .filter(|t| !t.is_empty())
        {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// At most `max` characters of `text` with control characters removed and whitespace runs folded.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for c in text.trim().chars() {
        if count == max {
            out.push('…');
            break;
        }
        let c = if c.is_whitespace() { ' ' } else { c };
        if c.is_control() || (c == ' ' && last_space) {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.len() > 64 {
        return None;
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 means "a very long time".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn retry_after_is_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for huge in ["18446744073709551615", "99999999999999999999999999", "86400"] {
            assert_eq!(parse_retry_after(huge, now), Some(MAX_RETRY_AFTER), "{huge}");
        }
        let far = httpdate::fmt_http_date(now + Duration::from_secs(10 * 365 * 86400));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn describe_error_bodies_without_request_ids() {
        let body = ErrorBody {
            code: Some("itemNotFound".into()),
            message: Some("gone".into()),
            request_id: Some("r1".into()),
        };
        assert_eq!(describe(Some(&body)), ": itemNotFound: gone");
        assert_eq!(describe(None), "");
        let long = ErrorBody {
            message: Some("x".repeat(1000)),
            code: Some("\u{1b}[31mC\nODE".into()),
            ..Default::default()
        };
        let d = describe(Some(&long));
        assert!(d.starts_with(": [31mC ODE: xxx"), "{d}");
        assert_eq!(
            d.chars().count(),
            ": [31mC ODE: ".chars().count() + MAX_DETAIL + 1
        );
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

    proptest! {
        #[test]
        fn retry_after_never_panics_and_stays_capped(value in ".{0,80}", secs in 0u64..u64::MAX) {
            let now = UNIX_EPOCH + Duration::from_secs(secs % 4_000_000_000);
            if let Some(d) = parse_retry_after(&value, now) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
            prop_assert!(parse_retry_after(&secs.to_string(), now).is_some_and(|d| d <= MAX_RETRY_AFTER));
        }

        #[test]
        fn describe_is_bounded(code in ".{0,500}", message in ".{0,2000}", id in ".{0,100}") {
            let body = ErrorBody { code: Some(code), message: Some(message), request_id: Some(id) };
            let d = describe(Some(&body));
            prop_assert!(d.chars().count() <= 4 + MAX_CODE + 1 + MAX_DETAIL + 1);
            prop_assert!(!d.chars().any(char::is_control));
        }
    }
}
