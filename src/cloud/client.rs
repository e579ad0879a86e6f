//! The HTTP client for the backup API: authentication (Keystone tokens or AK/SK signing), endpoint
//! discovery, one call per backup, and the classification of what comes back.
//!
//! Every answer is hostile input: bodies are read up to a cap, redirects are never followed (they
//! would carry credentials to another host), credential headers are marked sensitive, and calls go
//! through the [`Limiter`] (global and per-host bounds, circuit breaker).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use jiff::Timestamp;
use lru::LruCache;
use reqwest::header::HeaderValue;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::config::{AkSkAuth, CloudProfile, ConfigError, Credentials, PasswordAuth};
use super::endpoint::{CatalogEndpoints, ProjectBase, base_of};
use super::error::{CloudError, Operation, describe, parse_retry_after};
use super::keystone::{self, Session};
use super::limits::{CallLimits, Limiter};
use super::service::{BackupService, NextPage};
use super::signer::{self, SignableRequest};
use super::wire::{TokenResponse, parse_error_body};

/// Limits applied to every call.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest response body read; a larger answer is an error (1 MiB holds a large catalog).
    pub max_body_bytes: usize,
    /// Largest page of a list read (a page holds up to 1000 backups of about 1 KiB).
    pub max_list_body_bytes: usize,
    pub limits: CallLimits,
    /// After a refused login (wrong credentials): no new attempt with the same credentials for this
    /// long, doubling per refusal in a row up to `max_login_backoff`.
    pub refused_login_backoff: Duration,
    /// After a login that failed otherwise (timeout, 5xx): no new attempt for this long, doubling.
    pub failed_login_backoff: Duration,
    pub max_login_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_list_body_bytes: 8 * 1024 * 1024,
            limits: CallLimits::default(),
            refused_login_backoff: Duration::from_secs(60),
            failed_login_backoff: Duration::from_secs(5),
            max_login_backoff: Duration::from_secs(3600),
        }
    }
}

/// Hooks for metrics; the client itself knows nothing of how they are exported.
pub trait ApiObserver: Send + Sync {
    /// One HTTP exchange with `service` (`keystone`, or a backup service's name) ended: `status` is
    /// `None` when no response arrived.
    fn request_finished(
        &self,
        _service: &'static str,
        _operation: Operation,
        _status: Option<u16>,
        _elapsed: Duration,
    ) {
    }
    /// A Keystone token was fetched (first use, renewal before expiry, or after a 401).
    fn token_fetched(&self) {}
}

struct NoObserver;
impl ApiObserver for NoObserver {}

/// Most pages one list follows (a million backups at 1000 a page).
pub const MAX_LIST_PAGES: usize = 1000;

/// Credential sets whose sessions are kept; the least recently used beyond this are dropped.
const MAX_SESSIONS: usize = 1024;
/// Distinct `cacert` bundles whose HTTP clients are kept.
const MAX_CA_CLIENTS: usize = 32;

/// What is known about one credential set: its token, or its last failed login.
#[derive(Default)]
struct SessionState {
    session: Option<Session>,
    failure: Option<LoginFailure>,
}

struct LoginFailure {
    error: CloudError,
    retry_at: Instant,
    in_a_row: u32,
}

type SessionSlot = Arc<tokio::sync::Mutex<SessionState>>;

/// An HTTP answer, read whole (up to the cap) while the call still held its slot.
struct Answer {
    status: StatusCode,
    /// `Content-Type`, sanitised; said (never the body) when an error body is not JSON.
    content_type: Option<String>,
    retry_after: Option<Duration>,
    subject_token: Option<String>,
    body: Bytes,
}

fn lru<K: std::hash::Hash + Eq, V>(cap: usize) -> Mutex<LruCache<K, V>> {
    Mutex::new(LruCache::new(NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN)))
}

/// Talks to any number of clouds. Cheap to share (`Arc`); caches tokens per credential set and one
/// HTTP client per extra CA bundle, both bounded.
pub struct VbsClient {
    options: ClientOptions,
    default_http: reqwest::Client,
    ca_http: Mutex<LruCache<[u8; 32], reqwest::Client>>,
    sessions: Mutex<LruCache<[u8; 32], SessionSlot>>,
    limiter: Limiter,
    observer: Arc<dyn ApiObserver>,
}

impl VbsClient {
    pub fn new(options: ClientOptions) -> Result<Self, reqwest::Error> {
        Ok(VbsClient {
            default_http: build_http(&options, None)?,
            limiter: Limiter::new(options.limits.clone()),
            options,
            ca_http: lru(MAX_CA_CLIENTS),
            sessions: lru(MAX_SESSIONS),
            observer: Arc::new(NoObserver),
        })
    }

    pub fn with_observer(mut self, observer: Arc<dyn ApiObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Credential sets whose session (or failed login) is remembered, for tests of the bound.
    pub fn remembered_sessions(&self) -> usize {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The backup `backup_id` of service `S` (the show call). A 404 with an error body is
    /// [`CloudError::NotFound`]; an answer about another ID is refused.
    pub async fn show<S: BackupService>(
        &self,
        cloud: &CloudProfile,
        backup_id: &str,
    ) -> Result<S::Backup, CloudError> {
        let op = Operation::ShowBackup;
        let (answer, project_id, _) = self
            .authorized_get::<S>(op, cloud, |base| S::show_url(base, cloud, backup_id))
            .await?;
        if answer.status.is_success() {
            let backup = S::parse_show(&answer.body).map_err(|e| decode_error(op, &e))?;
            if !S::id(&backup).eq_ignore_ascii_case(backup_id) {
                return Err(CloudError::Decode {
                    operation: op,
                    detail: "the answer describes another backup than the one asked for".into(),
                });
            }
            return Ok(backup);
        }
        let parsed = parse_error_body(&answer.body);
        let detail = error_detail(parsed.as_ref(), &answer);
        match answer.status {
            StatusCode::NOT_FOUND if parsed.is_some() => Err(CloudError::NotFound {
                backup_id: backup_id.to_string(),
                project_id,
                detail,
            }),
            status => Err(http_error(op, status, detail, answer.retry_after)),
        }
    }

    /// Every backup of service `S` in the cloud's project, page by page (`page_size` each) by
    /// `next` links or offsets as the service pages. Only links to the same endpoint and path are
    /// followed, and at most [`MAX_LIST_PAGES`] pages. Entries without an `id` are skipped.
    pub async fn list<S: BackupService>(
        &self,
        cloud: &CloudProfile,
        page_size: u32,
    ) -> Result<Vec<S::Backup>, CloudError> {
        let op = Operation::ListBackups;
        let page_size = page_size.clamp(1, 1000);
        let mut next = NextPage::Offset(0);
        let mut backups = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let offset = match &next {
                NextPage::Offset(n) => *n,
                _ => 0,
            };
            let (answer, _, base) = self
                .authorized_get::<S>(op, cloud, |base| match &next {
                    NextPage::Link(url) => url.clone(),
                    _ => S::list_url(base, cloud, page_size, offset),
                })
                .await?;
            if !answer.status.is_success() {
                let detail = error_detail(parse_error_body(&answer.body).as_ref(), &answer);
                return Err(http_error(op, answer.status, detail, answer.retry_after));
            }
            let page = S::parse_page(&answer.body, page_size, offset).map_err(|e| decode_error(op, &e))?;
            let before = backups.len();
            backups.extend(page.backups.into_iter().filter(|b| !S::id(b).is_empty()));
            next = match page.next {
                NextPage::End => return Ok(backups),
                _ if backups.len() == before => {
                    return Err(CloudError::Decode {
                        operation: op,
                        detail: "a page without backups says more follow".into(),
                    });
                }
                NextPage::Link(href) => NextPage::Link(same_endpoint(op, &base, &href)?),
                offset => offset,
            };
        }
        Err(CloudError::Decode {
            operation: op,
            detail: format!("the list has more than {MAX_LIST_PAGES} pages"),
        })
    }

    /// An authenticated GET of `url(base)` within the project base of `cloud`: with a Keystone token
    /// (renewed once if the server refuses it) or signed with AK/SK. Returns the answer, the project
    /// ID and the base.
    async fn authorized_get<S: BackupService>(
        &self,
        op: Operation,
        cloud: &CloudProfile,
        url: impl Fn(&ProjectBase) -> String,
    ) -> Result<(Answer, String, ProjectBase), CloudError> {
        let http = self.http_for(cloud)?;
        match &cloud.credentials {
            Credentials::Password(auth) => {
                let mut session = self.session(&http, cloud, auth, None).await?;
                let mut renewed = false;
                loop {
                    let base = base_of::<S>(cloud, &session.project_id, &session.catalog)?;
                    let req = http
                        .get(url(&base))
                        .header("X-Auth-Token", sensitive(session.token.expose_secret(), op)?);
                    let answer = self.exchange(S::NAME, op, req).await?;
                    // A token can be revoked before it expires: authenticate again, once.
                    if answer.status == StatusCode::UNAUTHORIZED && !renewed {
                        session = self.session(&http, cloud, auth, Some(&session.token)).await?;
                        renewed = true;
                        continue;
                    }
                    return Ok((answer, session.project_id, base));
                }
            }
            Credentials::AkSk(keys) => {
                let project_id = cloud.project_id.clone().unwrap_or_default();
                let endpoint = S::endpoint_override(cloud).ok_or_else(|| {
                    CloudError::Config(ConfigError::AkSkNeedsEndpoint {
                        cloud: cloud.name.clone(),
                        field: S::OVERRIDE_FIELD,
                    })
                })?;
                let base = ProjectBase::from_override(endpoint, &project_id);
                let req = signed_get(&http, &url(&base), keys, &project_id, Timestamp::now(), op)?;
                Ok((self.exchange(S::NAME, op, req).await?, project_id, base))
            }
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
        cache.put(key, client.clone());
        Ok(client)
    }

    /// The cached session for these credentials. A token is fetched when there is none or it is due
    /// for renewal, or when `rejected` (a token the server refused) is still the cached one; a
    /// concurrent caller that already replaced it gets the new one. Only one login per credential
    /// set runs at a time, and a failed login is remembered for a backoff period, during which
    /// callers get the same error without a new attempt.
    async fn session(
        &self,
        http: &reqwest::Client,
        cloud: &CloudProfile,
        auth: &PasswordAuth,
        rejected: Option<&SecretString>,
    ) -> Result<Session, CloudError> {
        let slot = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            sessions
                .get_or_insert(session_key(cloud, auth), SessionSlot::default)
                .clone()
        };
        let mut state = slot.lock().await;
        if let Some(s) = &state.session {
            let refused = rejected.is_some_and(|r| r.expose_secret() == s.token.expose_secret());
            if !refused && s.is_fresh(Timestamp::now()) {
                return Ok(s.clone());
            }
        }
        if let Some(f) = state.failure.as_ref().filter(|f| Instant::now() < f.retry_at) {
            debug!(cloud = %cloud.name, "not logging in again yet after a failed login");
            return Err(f.error.clone());
        }
        match self.authenticate(http, cloud, auth).await {
            Ok(fresh) => {
                *state = SessionState {
                    session: Some(fresh.clone()),
                    failure: None,
                };
                Ok(fresh)
            }
            Err(error) => {
                let in_a_row = state.failure.as_ref().map_or(0, |f| f.in_a_row).saturating_add(1);
                let first = match error {
                    CloudError::Authentication { .. } => self.options.refused_login_backoff,
                    _ => self.options.failed_login_backoff,
                };
                let wait = first
                    .saturating_mul(1u32 << (in_a_row - 1).min(16))
                    .min(self.options.max_login_backoff);
                state.session = None;
                state.failure = Some(LoginFailure {
                    error: error.clone(),
                    retry_at: Instant::now() + wait,
                    in_a_row,
                });
                Err(error)
            }
        }
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
        let answer = self.exchange("keystone", op, req).await?;
        self.observer.token_fetched();
        if !answer.status.is_success() {
            let detail = error_detail(parse_error_body(&answer.body).as_ref(), &answer);
            // Keystone answers 400 to an auth request it cannot use (e.g. a user without domain).
            if answer.status == StatusCode::BAD_REQUEST {
                return Err(CloudError::Authentication {
                    operation: op,
                    status: 400,
                    detail,
                });
            }
            return Err(http_error(op, answer.status, detail, answer.retry_after));
        }
        let token = answer.subject_token.ok_or_else(|| CloudError::Decode {
            operation: op,
            detail: "the response has no usable X-Subject-Token header".into(),
        })?;
        let parsed: TokenResponse = serde_json::from_slice(&answer.body).map_err(|e| decode_error(op, &e))?;
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
        let catalog =
            CatalogEndpoints::select(&parsed.token.catalog, &cloud.interface, cloud.region.as_deref());
        Ok(Session {
            token: SecretString::from(token),
            project_id,
            catalog: Arc::new(catalog),
            renew_at: keystone::renew_at(issued, expires_at),
        })
    }

    /// Sends one request within the call limits and reads its answer, body capped. The host's
    /// circuit breaker learns whether the host answered.
    async fn exchange(
        &self,
        service: &'static str,
        op: Operation,
        req: RequestBuilder,
    ) -> Result<Answer, CloudError> {
        let (http, request) = req.build_split();
        let request = request.map_err(|e| self.transport_error(op, e))?;
        let endpoint = origin(request.url());
        let permit = self
            .limiter
            .acquire(&endpoint)
            .await
            .map_err(|_| CloudError::CircuitOpen {
                operation: op,
                endpoint: endpoint.clone(),
            })?;
        let started = std::time::Instant::now();
        let result = self.send_and_read(op, &http, request).await;
        let status = result.as_ref().ok().map(|a| a.status.as_u16());
        self.observer
            .request_finished(service, op, status, started.elapsed());
        match &result {
            Ok(a) if a.status == StatusCode::TOO_MANY_REQUESTS => permit.throttled(a.retry_after),
            _ => permit.finish(result.as_ref().is_err_and(CloudError::is_outage)),
        }
        result
    }

    async fn send_and_read(
        &self,
        op: Operation,
        http: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<Answer, CloudError> {
        let mut resp = http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(op, e))?;
        let status = resp.status();
        let headers = resp.headers();
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let subject_token = headers
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .map(str::to_string);
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| super::error::sanitize(v, 64));
        let request_id = headers
            .get("X-Request-Id")
            .or_else(|| headers.get("X-Openstack-Request-Id"))
            .and_then(|v| v.to_str().ok())
            .map(|v| super::error::sanitize(v, 64));
        if !status.is_success() {
            // Request ids help the cloud's support; they go to the log, never into a status.
            debug!(
                operation = op.as_str(),
                status = status.as_u16(),
                request_id,
                "the cloud answered with an error"
            );
        }
        let limit = match op {
            Operation::ListBackups => self.options.max_list_body_bytes,
            _ => self.options.max_body_bytes,
        };
        let too_large = || CloudError::Decode {
            operation: op,
            detail: format!("the answer is larger than {} KiB", limit / 1024),
        };
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(op, e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            retry_after,
            subject_token,
            body: body.freeze(),
        })
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
            detail: super::error::sanitize(&error_chain(&e.without_url()), 300),
        }
    }
}

/// What an error answer says: a JSON error body's code and message, or for any other body only
/// its content type (the body itself, a proxy's HTML page say, is never quoted).
fn error_detail(parsed: Option<&super::wire::ErrorBody>, answer: &Answer) -> String {
    match parsed {
        Some(body) => describe(Some(body)),
        None if answer.body.is_empty() => String::new(),
        None => format!(
            " (a {} body, not shown)",
            answer.content_type.as_deref().unwrap_or("non-JSON")
        ),
    }
}

/// A `next` link, accepted only when it stays on the project base the list started from (same
/// scheme, host, port and path prefix): a link elsewhere would carry the credentials with it.
fn same_endpoint(operation: Operation, base: &ProjectBase, href: &str) -> Result<String, CloudError> {
    let refuse = || CloudError::Decode {
        operation,
        detail: "a next link points outside the endpoint; it is not followed".into(),
    };
    let (base_url, next) = (
        url::Url::parse(base.as_str()).map_err(|_| refuse())?,
        url::Url::parse(href).map_err(|_| refuse())?,
    );
    let same = next.origin() == base_url.origin() && next.path().starts_with(base_url.path());
    if same { Ok(next.to_string()) } else { Err(refuse()) }
}

/// `scheme://host:port` of a URL: the unit of the per-host limits.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// A credential as a header value that HTTP tooling must not log.
fn sensitive(value: &str, operation: Operation) -> Result<HeaderValue, CloudError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| CloudError::Decode {
        operation,
        detail: "a credential is not a valid HTTP header value".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A JSON decoding failure, described by its kind and position only: serde's own message may quote
/// the offending value, which is the cloud's (untrusted, unbounded) text.
fn decode_error(operation: Operation, e: &serde_json::Error) -> CloudError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof => "the JSON is malformed or truncated",
        Category::Data => "a required field is missing or has the wrong type",
        Category::Io => "the body could not be read",
    };
    CloudError::Decode {
        operation,
        detail: format!("{what} (line {}, column {})", e.line(), e.column()),
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
        s if s.is_redirection() => CloudError::Api {
            operation,
            status: s.as_u16(),
            detail: ": redirects are not followed (they would carry credentials elsewhere); set the endpoint to the final URL".into(),
            retry_after,
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
        // A redirect would carry X-Auth-Token, X-Security-Token or the login body to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vbs-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?);
    }
    builder.build()
}

/// Tokens are cached per credential set and per everything that shapes the session (endpoint
/// discovery, region, interface, CA), so a changed password or scope gets a new token and two
/// clouds.yaml entries of one user never share a session meant for the other.
fn session_key(cloud: &CloudProfile, auth: &PasswordAuth) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        cloud.block_storage_endpoint.as_deref().unwrap_or("<catalog>"),
        cloud.cbr_endpoint.as_deref().unwrap_or("<catalog>"),
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

/// What a call's answers depend on: the service, its endpoint (override or catalog, region,
/// interface, API path family, CA) and the credentials (Keystone user, scope and password, or
/// AK/SK). Calls with the same key see the same backups; list results are shared only within one key.
pub fn group_key<S: BackupService>(cloud: &CloudProfile) -> [u8; 32] {
    let mut h = Sha256::new();
    let vbs_api = format!("{:?}", cloud.vbs_api);
    let credentials = match &cloud.credentials {
        Credentials::Password(auth) => session_key(cloud, auth).to_vec(),
        Credentials::AkSk(keys) => {
            let mut k = Sha256::new();
            for part in [
                keys.access_key.as_str(),
                keys.secret_key.expose_secret(),
                keys.security_token.as_ref().map_or("", |t| t.expose_secret()),
            ] {
                k.update(part.as_bytes());
                k.update([0]);
            }
            k.finalize().to_vec()
        }
    };
    for part in [
        S::NAME.as_bytes(),
        S::endpoint_override(cloud).unwrap_or("<catalog>").as_bytes(),
        cloud.project_id.as_deref().unwrap_or("").as_bytes(),
        vbs_api.as_bytes(),
        &credentials,
    ] {
        h.update(part);
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
    op: Operation,
) -> Result<RequestBuilder, CloudError> {
    let parsed = url::Url::parse(url).map_err(|_| {
        CloudError::Config(ConfigError::BadUrl {
            cloud: String::new(),
            field: "endpoint override",
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
    let mut req = http
        .get(parsed.as_str())
        .header("Authorization", sensitive(&authorization, op)?);
    for (name, value) in headers.into_iter().filter(|(n, _)| n != "Host") {
        let value = if name == "X-Security-Token" {
            sensitive(&value, op)?
        } else {
            HeaderValue::from_str(&value).map_err(|_| CloudError::Decode {
                operation: op,
                detail: "a signed header is not a valid HTTP header value".into(),
            })?
        };
        req = req.header(name, value);
    }
    Ok(req)
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
