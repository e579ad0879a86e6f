//! The HTTP client for the backup API: authentication (Keystone tokens or AK/SK signing), endpoint
//! discovery, one call per backup, and the classification of what comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::config::{AkSkAuth, CloudProfile, ConfigError, Credentials, PasswordAuth};
use super::endpoint::{ProjectBase, select_from_catalog};
use super::error::{CloudError, Operation, describe, parse_retry_after};
use super::keystone::{self, Session};
use super::signer::{self, SignableRequest};
use super::wire::{Backup, ShowBackupResponse, TokenResponse, parse_error_body};

/// Limits applied to every call.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Hooks for metrics; the client itself knows nothing of how they are exported.
pub trait ApiObserver: Send + Sync {
    /// One HTTP exchange ended: `status` is `None` when no response arrived.
    fn request_finished(&self, _operation: Operation, _status: Option<u16>, _elapsed: Duration) {}
    /// A Keystone token was fetched (first use, renewal before expiry, or after a 401).
    fn token_fetched(&self) {}
}

struct NoObserver;
impl ApiObserver for NoObserver {}

type SessionSlot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// Talks to any number of clouds. Cheap to share (`Arc`); caches tokens per credential set and one
/// HTTP client per extra CA bundle.
pub struct VbsClient {
    options: ClientOptions,
    default_http: reqwest::Client,
    ca_http: Mutex<HashMap<[u8; 32], reqwest::Client>>,
    sessions: Mutex<HashMap<[u8; 32], SessionSlot>>,
    observer: Arc<dyn ApiObserver>,
}

impl VbsClient {
    pub fn new(options: ClientOptions) -> Result<Self, reqwest::Error> {
        Ok(VbsClient {
            default_http: build_http(&options, None)?,
            options,
            ca_http: Mutex::default(),
            sessions: Mutex::default(),
            observer: Arc::new(NoObserver),
        })
    }

    pub fn with_observer(mut self, observer: Arc<dyn ApiObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// `GET .../backups/{backup_id}` on the cloud's native (default) or Cinder path.
    pub async fn show_backup(&self, cloud: &CloudProfile, backup_id: &str) -> Result<Backup, CloudError> {
        let op = Operation::ShowBackup;
        let http = self.http_for(cloud)?;
        let (resp, project_id) = match &cloud.credentials {
            Credentials::Password(auth) => {
                let mut session = self.session(&http, cloud, auth, false).await?;
                let mut renewed = false;
                loop {
                    let url = base_for(cloud, &session)?.show_backup_url(cloud.vbs_api, backup_id);
                    let req = http
                        .get(&url)
                        .header("X-Auth-Token", session.token.expose_secret());
                    let resp = self.send(op, req).await?;
                    // A token can be revoked before it expires: authenticate again, once.
                    if resp.status() == StatusCode::UNAUTHORIZED && !renewed {
                        session = self.session(&http, cloud, auth, true).await?;
                        renewed = true;
                        continue;
                    }
                    break (resp, session.project_id);
                }
            }
            Credentials::AkSk(keys) => {
                let project_id = cloud.project_id.clone().unwrap_or_default();
                let endpoint = cloud.endpoint_override.as_deref().unwrap_or_default();
                let url = ProjectBase::from_override(endpoint, &project_id)
                    .show_backup_url(cloud.vbs_api, backup_id);
                let req = signed_get(&http, &url, keys, &project_id, Timestamp::now())?;
                (self.send(op, req).await?, project_id)
            }
        };
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = self.read_body(op, resp).await?;
        if status.is_success() {
            return serde_json::from_slice::<ShowBackupResponse>(&body)
                .map(|r| r.backup)
                .map_err(|e| CloudError::Decode {
                    operation: op,
                    detail: e.to_string(),
                });
        }
        let parsed = parse_error_body(&body);
        let detail = describe(parsed.as_ref());
        match status {
            StatusCode::NOT_FOUND if parsed.is_some() => Err(CloudError::NotFound {
                backup_id: backup_id.to_string(),
                project_id,
                detail,
            }),
            _ => Err(http_error(op, status, detail, retry_after)),
        }
    }

    fn http_for(&self, cloud: &CloudProfile) -> Result<reqwest::Client, CloudError> {
        let Some(pem) = &cloud.ca_cert_pem else {
            return Ok(self.default_http.clone());
        };
        let key: [u8; 32] = Sha256::digest(pem.as_bytes()).into();
        let mut cache = self.ca_http.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = cache.get(&key) {
            return Ok(client.clone());
        }
        let client = build_http(&self.options, Some(pem)).map_err(|_| {
            CloudError::Config(ConfigError::BadCaCert {
                cloud: cloud.name.clone(),
            })
        })?;
        cache.insert(key, client.clone());
        Ok(client)
    }

    /// The cached session for these credentials, fetching a token when there is none, it is due
    /// for renewal, or `force` says the server refused it.
    async fn session(
        &self,
        http: &reqwest::Client,
        cloud: &CloudProfile,
        auth: &PasswordAuth,
        force: bool,
    ) -> Result<Session, CloudError> {
        let slot = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            sessions.entry(session_key(cloud, auth)).or_default().clone()
        };
        // Holding the slot's lock while authenticating makes concurrent reconciles share one token
        // request instead of stampeding Keystone.
        let mut guard = slot.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| !force && s.is_fresh(Timestamp::now())) {
            return Ok(s.clone());
        }
        let fresh = self.authenticate(http, cloud, auth).await?;
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    async fn authenticate(
        &self,
        http: &reqwest::Client,
        cloud: &CloudProfile,
        auth: &PasswordAuth,
    ) -> Result<Session, CloudError> {
        let op = Operation::Authenticate;
        let req = http
            .post(format!("{}/auth/tokens", auth.auth_url))
            .json(&keystone::password_request_body(auth));
        let issued = Timestamp::now();
        let resp = self.send(op, req).await?;
        self.observer.token_fetched();
        let status = resp.status();
        let token = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = retry_after(&resp);
        let body = self.read_body(op, resp).await?;
        if !status.is_success() {
            let detail = describe(parse_error_body(&body).as_ref());
            // Keystone answers 400 to an auth request it cannot use (e.g. a user without domain).
            if status == StatusCode::BAD_REQUEST {
                return Err(CloudError::Authentication {
                    operation: op,
                    status: 400,
                    detail,
                });
            }
            return Err(http_error(op, status, detail, retry_after));
        }
        let token = token.ok_or_else(|| CloudError::Decode {
            operation: op,
            detail: "the response has no X-Subject-Token header".into(),
        })?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| CloudError::Decode {
            operation: op,
            detail: e.to_string(),
        })?;
        let fallback = || issued + keystone::FALLBACK_TOKEN_LIFETIME;
        let expires_at = keystone::parse_expires_at(&parsed.token.expires_at).unwrap_or_else(fallback);
        let project_id = parsed
            .token
            .project
            .map(|p| p.id)
            .or_else(|| cloud.project_id.clone())
            .ok_or_else(|| CloudError::Decode {
                operation: op,
                detail: "the token is not scoped to a project".into(),
            })?;
        let catalog_base = match cloud.endpoint_override {
            Some(_) => None,
            None => Some(select_from_catalog(
                &parsed.token.catalog,
                &cloud.interface,
                cloud.region.as_deref(),
            )?),
        };
        Ok(Session {
            token: SecretString::from(token),
            project_id,
            catalog_base,
            renew_at: keystone::renew_at(issued, expires_at),
        })
    }

    async fn send(&self, op: Operation, req: RequestBuilder) -> Result<Response, CloudError> {
        let started = std::time::Instant::now();
        let result = req.send().await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        self.observer.request_finished(op, status, started.elapsed());
        result.map_err(|e| self.transport_error(op, e))
    }

    async fn read_body(&self, op: Operation, resp: Response) -> Result<bytes::Bytes, CloudError> {
        resp.bytes().await.map_err(|e| self.transport_error(op, e))
    }

    fn transport_error(&self, operation: Operation, e: reqwest::Error) -> CloudError {
        if e.is_timeout() {
            return CloudError::Timeout {
                operation,
                after: self.options.timeout,
            };
        }
        CloudError::Transport {
            operation,
            detail: error_chain(&e.without_url()),
        }
    }
}

/// A non-success answer: refused credentials, or any other API error.
fn http_error(
    operation: Operation,
    status: StatusCode,
    detail: String,
    retry_after: Option<Duration>,
) -> CloudError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CloudError::Authentication {
            operation,
            status: status.as_u16(),
            detail,
        },
        _ => CloudError::Api {
            operation,
            status: status.as_u16(),
            detail,
            retry_after,
        },
    }
}

fn build_http(
    options: &ClientOptions,
    extra_ca_pem: Option<&str>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!("vbs-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?);
    }
    builder.build()
}

fn base_for(cloud: &CloudProfile, session: &Session) -> Result<ProjectBase, CloudError> {
    match (&cloud.endpoint_override, &session.catalog_base) {
        (Some(e), _) => Ok(ProjectBase::from_override(e, &session.project_id)),
        (None, Some(base)) => Ok(base.clone()),
        (None, None) => Err(CloudError::NoEndpoint {
            interface: cloud.interface.clone(),
            region: String::new(),
        }),
    }
}

/// Tokens are cached per credential set, so a changed password or scope gets a new token.
fn session_key(cloud: &CloudProfile, auth: &PasswordAuth) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        auth.auth_url.as_str(),
        &format!("{:?}", auth.user),
        &format!("{:?}", auth.scope),
        auth.password.expose_secret(),
        cloud.region.as_deref().unwrap_or(""),
        &cloud.interface,
        cloud.ca_cert_pem.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// A GET signed with AK/SK (`SDK-HMAC-SHA256`); signs `host`, `x-sdk-date`, `x-project-id` and,
/// for temporary keys, `x-security-token`.
fn signed_get(
    http: &reqwest::Client,
    url: &str,
    keys: &AkSkAuth,
    project_id: &str,
    now: Timestamp,
) -> Result<RequestBuilder, CloudError> {
    let parsed = url::Url::parse(url).map_err(|_| {
        CloudError::Config(ConfigError::BadUrl {
            cloud: String::new(),
            field: "block_storage_endpoint_override",
        })
    })?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => String::new(),
    };
    let date = now.strftime(signer::DATE_FORMAT).to_string();
    let mut headers = vec![
        ("Host".to_string(), host),
        (signer::DATE_HEADER.to_string(), date.clone()),
        ("X-Project-Id".to_string(), project_id.to_string()),
    ];
    if let Some(token) = &keys.security_token {
        headers.push(("X-Security-Token".to_string(), token.expose_secret().to_string()));
    }
    let query: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let authorization = signer::sign(
        &SignableRequest {
            method: "GET",
            path: parsed.path(),
            query: &query,
            headers: &headers,
            body: b"",
        },
        &keys.access_key,
        keys.secret_key.expose_secret(),
        &date,
    );
    // reqwest derives the same Host value from the URL; every other signed header goes as is.
    let mut req = http.get(parsed.as_str()).header("Authorization", authorization);
    for (name, value) in headers.into_iter().filter(|(n, _)| n != "Host") {
        req = req.header(name, value);
    }
    Ok(req)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
