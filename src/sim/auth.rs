//! The simulator's side of authentication: issuing Keystone tokens and checking tokens and AK/SK
//! signatures on API calls.

use axum::http::{HeaderMap, Method, Uri};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::state::{IssuedToken, SeedUser, Sim};
use crate::cloud::signer::{self, SignableRequest};

/// How far `X-Sdk-Date` may be from the simulator's clock.
const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(15);

/// Why a call was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or an unknown or expired token: Keystone-style 401.
    Unauthenticated,
    /// AK/SK problems: API-gateway-style 401 with this message.
    Signature(&'static str),
    /// Valid credentials for another project: 403.
    WrongProject,
}

/// Checks a call's credentials against the project in its path.
pub fn check_call(
    sim: &Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    project_id: &str,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("x-auth-token") {
        let w = sim.world();
        let issued = w.tokens.get(token).ok_or(Refusal::Unauthenticated)?;
        if issued.expires_at <= Timestamp::now() {
            return Err(Refusal::Unauthenticated);
        }
        return if issued.project_id == project_id {
            Ok(())
        } else {
            Err(Refusal::WrongProject)
        };
    }
    let Some(auth) = header("authorization") else {
        return Err(Refusal::Unauthenticated);
    };
    let parsed =
        signer::parse_authorization(auth).ok_or(Refusal::Signature("malformed Authorization header"))?;
    let sk = {
        let w = sim.world();
        w.keys
            .iter()
            .find(|k| k.ak == parsed.access_key)
            .map(|k| k.sk.clone())
    }
    .ok_or(Refusal::Signature("the access key does not exist"))?;
    if !parsed.signed_headers.iter().any(|h| h == "x-sdk-date") {
        return Err(Refusal::Signature("x-sdk-date is not signed"));
    }
    let date = header("x-sdk-date").ok_or(Refusal::Signature("X-Sdk-Date is missing"))?;
    let when = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date)
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .ok_or(Refusal::Signature("X-Sdk-Date is not YYYYMMDDTHHMMSSZ"))?
        .timestamp();
    if Timestamp::now().duration_since(when).abs() > MAX_CLOCK_SKEW {
        return Err(Refusal::Signature(
            "the request has expired (X-Sdk-Date is off by more than 15 minutes)",
        ));
    }
    let mut signed = Vec::new();
    for name in &parsed.signed_headers {
        let value = header(name).ok_or(Refusal::Signature("a signed header is missing"))?;
        signed.push((name.clone(), value.to_string()));
    }
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let req = SignableRequest {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        headers: &signed,
        body: b"",
    };
    let expected = signer::signature(
        &sk,
        &signer::string_to_sign(&signer::canonical_request(&req), date),
    );
    if expected != parsed.signature {
        return Err(Refusal::Signature("verify aksk signature fail"));
    }
    match header("x-project-id") {
        Some(p) if p != project_id => Err(Refusal::WrongProject),
        _ => Ok(()),
    }
}

/// Checks a Keystone password-auth body; returns the user it names when the password is right
/// and the scope is the user's project.
pub fn check_password(sim: &Sim, body: &Value) -> Option<SeedUser> {
    let user = &body["auth"]["identity"]["password"]["user"];
    let scope = &body["auth"]["scope"]["project"];
    let password = user["password"].as_str()?;
    let w = sim.world();
    w.users
        .iter()
        .find(|u| {
            let who = match (user["id"].as_str(), user["name"].as_str()) {
                (Some(id), _) => u.id.as_deref() == Some(id),
                (None, Some(name)) => name == u.name && domain_matches(&user["domain"], &u.domain),
                _ => false,
            };
            let project = match (scope["id"].as_str(), scope["name"].as_str()) {
                (Some(id), _) => id == u.project_id,
                (None, Some(name)) => {
                    Some(name) == u.project_name.as_deref() && domain_matches(&scope["domain"], &u.domain)
                }
                _ => false,
            };
            who && project && u.password == password
        })
        .cloned()
}

fn domain_matches(given: &Value, domain: &str) -> bool {
    given["name"].as_str() == Some(domain) || given["id"].as_str() == Some(domain)
}

/// Issues a token for the user's project.
pub fn issue_token(sim: &Sim, user: &SeedUser) -> (String, IssuedToken) {
    let token = format!("gAAAA{}", hex::encode(rand::random::<[u8; 24]>()));
    let mut w = sim.world();
    let ttl = SignedDuration::try_from(w.token_ttl).unwrap_or(SignedDuration::from_hours(1));
    let issued = IssuedToken {
        project_id: user.project_id.clone(),
        expires_at: Timestamp::now() + ttl,
    };
    w.tokens.insert(token.clone(), issued.clone());
    (token, issued)
}
