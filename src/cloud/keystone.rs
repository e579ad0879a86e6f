//! Keystone / IAM password authentication: the request body, and the session a token gives.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::config::{DomainRef, PasswordAuth, ProjectScope, UserRef};
use super::endpoint::CatalogEndpoints;

/// A scoped token and what came with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: SecretString,
    pub project_id: String,
    /// The catalog's endpoints for the cloud's interface and region (services with an endpoint
    /// override do not look here).
    pub catalog: Arc<CatalogEndpoints>,
    /// When to fetch a new token: shortly before it expires.
    pub renew_at: Timestamp,
}

impl Session {
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.renew_at
    }
}

/// Renew a token 5 minutes before it expires, or after 4/5 of its life when it lives shorter
/// than 25 minutes.
pub fn renew_at(issued: Timestamp, expires_at: Timestamp) -> Timestamp {
    let life = expires_at.duration_since(issued);
    let margin = (life / 5)
        .min(jiff::SignedDuration::from_mins(5))
        .max(jiff::SignedDuration::ZERO);
    expires_at.checked_sub(margin).unwrap_or(issued)
}

/// Keystone prints `expires_at` with or without a zone; a zoneless one is UTC.
pub fn parse_expires_at(value: &str) -> Option<Timestamp> {
    value.parse::<Timestamp>().ok().or_else(|| {
        value
            .parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

fn domain_json(d: &DomainRef) -> Value {
    match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

/// `POST {auth_url}/auth/tokens` body: method `password`, scoped to the project.
pub fn password_request_body(auth: &PasswordAuth) -> Value {
    let user = match &auth.user {
        UserRef::Id(id) => json!({ "id": id, "password": auth.password.expose_secret() }),
        UserRef::Name { name, domain } => {
            json!({ "name": name, "domain": domain_json(domain), "password": auth.password.expose_secret() })
        }
    };
    let project = match &auth.scope {
        ProjectScope::Id(id) => json!({ "id": id }),
        ProjectScope::Name { name, domain } => {
            json!({ "name": name, "domain": domain_json(domain) })
        }
    };
    json!({
        "auth": {
            "identity": { "methods": ["password"], "password": { "user": user } },
            "scope": { "project": project }
        }
    })
}

/// Default lifetime assumed when a server omits a usable `expires_at`.
pub const FALLBACK_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::config::{Credentials, load_cloud};

    #[test]
    fn body_for_name_and_domain() {
        let yaml = "clouds: {c: {auth: {auth_url: 'https://iam/v3', username: u, password: pw, user_domain_name: D, project_id: p1}}}";
        let Credentials::Password(auth) = load_cloud(yaml, None).unwrap().credentials else {
            panic!()
        };
        assert_eq!(
            password_request_body(&auth),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "u", "domain": {"name": "D"}, "password": "pw"}}},
                "scope": {"project": {"id": "p1"}}
            }})
        );
    }

    #[test]
    fn body_for_project_name_scope() {
        let yaml = "clouds: {c: {auth: {auth_url: 'https://iam/v3', user_id: uid, password: pw, project_name: eu-de_x, project_domain_id: did}}}";
        let Credentials::Password(auth) = load_cloud(yaml, None).unwrap().credentials else {
            panic!()
        };
        let body = password_request_body(&auth);
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({"id": "uid", "password": "pw"})
        );
        assert_eq!(
            body["auth"]["scope"]["project"],
            json!({"name": "eu-de_x", "domain": {"id": "did"}})
        );
    }

    #[test]
    fn expiry_parsing_and_renewal() {
        let with_zone = parse_expires_at("2026-11-28T08:00:00.000000Z").unwrap();
        let without = parse_expires_at("2026-11-28T08:00:00.000000").unwrap();
        assert_eq!(with_zone, without);
        assert!(parse_expires_at("tomorrow").is_none());

        let issued: Timestamp = "2026-11-27T08:00:00Z".parse().unwrap();
        let day = issued + jiff::SignedDuration::from_hours(24);
        assert_eq!(renew_at(issued, day), day - jiff::SignedDuration::from_mins(5));
        let short = issued + jiff::SignedDuration::from_secs(100);
        assert_eq!(
            renew_at(issued, short),
            issued + jiff::SignedDuration::from_secs(80)
        );
    }
}
