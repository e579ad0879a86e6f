//! The simulator's world: users, access keys, tokens, backups, faults and request counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub const OWNER_KEYS: [&str; 3] = [
    "os-backup-project-attr:project_id",
    "os-backup-project-attr:tenant_id",
    "os-bak-tenant-attr:tenant_id",
];

/// Initial content, from `--seed FILE` (YAML or JSON).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Seed {
    /// Region of the catalog's block-storage endpoint (default `eu-de`).
    pub region: Option<String>,
    /// Lifetime of issued tokens in seconds (default 3600).
    pub token_ttl_secs: Option<u64>,
    pub users: Vec<SeedUser>,
    pub access_keys: Vec<SeedKey>,
    /// Backups: JSON objects in the API's own field names, plus `project_id` saying where they live.
    pub backups: Vec<Map<String, Value>>,
    /// CBR backups, likewise (CBR's own `project_id` field says where they live).
    pub cbr_backups: Vec<Map<String, Value>>,
}

impl Seed {
    /// A seed of one password user, `u` with password `pw` in domain `D`, whose token is scoped
    /// to `project_id`: the smallest world a client can log in to.
    pub fn one_user(project_id: &str) -> Self {
        Seed {
            users: vec![SeedUser {
                name: "u".into(),
                id: None,
                password: "pw".into(),
                domain: "D".into(),
                project_id: project_id.into(),
                project_name: None,
            }],
            ..Seed::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SeedUser {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    pub password: String,
    /// User (and project) domain name.
    pub domain: String,
    pub project_id: String,
    #[serde(default)]
    pub project_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SeedKey {
    pub ak: String,
    pub sk: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// Every API call (not the control API).
    #[default]
    Any,
    Auth,
    Show,
    List,
}

/// Which error-body family a fault answers with.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStyle {
    /// `{"serviceUnavailable": {"code": 503, "message": ...}}`
    #[default]
    Cinder,
    /// `{"error_code": "APIG.0308", "error_msg": ..., "request_id": ...}`
    Apigw,
    /// `{"error": {"code": "VBS.XXXX", "message": ...}}`
    Huawei,
}

/// An injected misbehaviour, matched against API calls in order of injection.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default)]
pub struct Fault {
    pub target: FaultTarget,
    /// Only calls about this backup (show) match; any call when unset.
    pub backup_id: Option<String>,
    /// HTTP status to answer with; 200 with `delay_ms` only adds latency, with `malformed` breaks the body.
    pub status: Option<u16>,
    /// `Retry-After` header value to send (seconds or HTTP date).
    pub retry_after: Option<String>,
    pub delay_ms: u64,
    /// Answer with a truncated, unparseable body.
    pub malformed: bool,
    pub style: ErrorStyle,
    /// How many calls it applies to; forever when unset.
    pub times: Option<u32>,
    /// Answer with a redirect (`status`, 307 by default) to this URL, as a misconfigured proxy or a
    /// hostile endpoint would.
    pub redirect_to: Option<String>,
    /// Answer 200 with a body of this many bytes (a JSON document padded with spaces), streamed.
    pub body_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub project_id: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Calls by kind: auth, show, list, plus `unauthorized` for refused credentials.
    pub requests: BTreeMap<String, u64>,
    /// Successful show calls per backup ID.
    pub shows_by_backup: BTreeMap<String, u64>,
    /// Every show call (answered or not) per backup ID, as Unix time in milliseconds; the most
    /// recent [`MAX_CALL_LOG`] per backup.
    pub show_times_ms: BTreeMap<String, Vec<u64>>,
}

/// Call times kept per backup.
pub const MAX_CALL_LOG: usize = 1000;

/// project_id -> backup_id -> backup object (API field names).
pub type Projects = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

/// Which service's backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Vbs,
    Cbr,
}

impl Service {
    /// A backup object with every documented key present, the caller's fields on top.
    pub fn with_defaults(self, project_id: &str, fields: Map<String, Value>) -> Map<String, Value> {
        match self {
            Service::Vbs => with_defaults(project_id, fields),
            Service::Cbr => cbr_with_defaults(project_id, fields),
        }
    }
}

#[derive(Debug, Default)]
pub struct World {
    pub region: String,
    pub token_ttl: Duration,
    pub users: Vec<SeedUser>,
    pub keys: Vec<SeedKey>,
    pub tokens: HashMap<String, IssuedToken>,
    /// project_id -> backup_id -> backup object (API field names).
    pub backups: Projects,
    /// The same for Cloud Backup and Recovery backups.
    pub cbr_backups: Projects,
    pub faults: Vec<Fault>,
    pub stats: Stats,
}

/// Shared simulator state.
pub struct Sim {
    world: Mutex<World>,
    /// Base URL the simulator advertises in catalogs and links.
    pub public_url: String,
}

/// The API's own time format: UTC without a zone, microseconds.
pub fn api_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6f").to_string()
}

impl Sim {
    pub fn new(seed: Seed, public_url: String) -> Self {
        let mut world = World {
            region: seed.region.unwrap_or_else(|| "eu-de".into()),
            token_ttl: Duration::from_secs(seed.token_ttl_secs.unwrap_or(3600)),
            users: seed.users,
            keys: seed.access_keys,
            ..World::default()
        };
        for mut b in seed.backups {
            let project = b
                .remove("project_id")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let id = b
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let full = with_defaults(&project, b);
            world.backups.entry(project).or_default().insert(id, full);
        }
        for b in seed.cbr_backups {
            let project = b
                .get("project_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let id = b
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let full = cbr_with_defaults(&project, b);
            world.cbr_backups.entry(project).or_default().insert(id, full);
        }
        Sim {
            world: Mutex::new(world),
            public_url: public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the backups of `service`.
    pub fn with_projects<T>(&self, service: Service, f: impl FnOnce(&mut Projects) -> T) -> T {
        let mut w = self.world();
        f(match service {
            Service::Vbs => &mut w.backups,
            Service::Cbr => &mut w.cbr_backups,
        })
    }

    /// Takes the first fault matching this call, counting it down.
    pub fn take_fault(&self, target: FaultTarget, backup_id: Option<&str>) -> Option<Fault> {
        let mut w = self.world();
        let idx = w.faults.iter().position(|f| {
            (f.target == FaultTarget::Any || f.target == target)
                && f.backup_id.as_deref().is_none_or(|want| Some(want) == backup_id)
                && f.times != Some(0)
        })?;
        let fault = w.faults[idx].clone();
        if let Some(n) = w.faults[idx].times.as_mut() {
            *n -= 1;
        }
        w.faults.retain(|f| f.times != Some(0));
        Some(fault)
    }

    /// Records a show call of `backup_id` at the current time.
    pub fn record_show(&self, backup_id: &str) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut w = self.world();
        let times = w.stats.show_times_ms.entry(backup_id.to_string()).or_default();
        if times.len() == MAX_CALL_LOG {
            times.remove(0);
        }
        times.push(at);
    }

    pub fn count(&self, kind: &str) {
        *self.world().stats.requests.entry(kind.to_string()).or_default() += 1;
    }
}

/// A backup object with every documented key present (null where unknown), the caller's fields
/// on top. An owner key given by the caller replaces the default spelling.
pub fn with_defaults(project_id: &str, fields: Map<String, Value>) -> Map<String, Value> {
    let now = api_time(Timestamp::now());
    let mut b = json!({
        "status": "available", "description": null, "availability_zone": null, "volume_id": null,
        "fail_reason": null, "size": 1, "object_count": null, "container": null, "name": null,
        "created_at": now, "updated_at": now, "data_timestamp": now,
        "has_dependent_backups": false, "is_incremental": false, "snapshot_id": null,
    });
    let map = b.as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut map = map;
    if !OWNER_KEYS.iter().any(|k| fields.contains_key(*k)) {
        map.insert(OWNER_KEYS[0].to_string(), Value::String(project_id.to_string()));
    }
    map.extend(fields);
    map
}

/// A CBR backup object with the fields a volume backup in a vault has, the caller's on top. Times
/// carry a zone, as CBR prints them.
pub fn cbr_with_defaults(project_id: &str, fields: Map<String, Value>) -> Map<String, Value> {
    let now = format!("{}+00:00", api_time(Timestamp::now()));
    let b = json!({
        "status": "available", "name": "manualbk", "description": "", "checkpoint_id": null,
        "vault_id": null, "parent_id": null, "project_id": project_id, "enterprise_project_id": "0",
        "provider_id": "d1603440-187d-4516-af25-121250c7cc97", "image_type": "backup",
        "resource_id": null, "resource_name": null, "resource_type": "OS::Cinder::Volume",
        "resource_az": "eu-de-01", "resource_size": 10, "created_at": now, "updated_at": now,
        "protected_at": now, "expired_at": null, "children": [], "incremental": false,
        "extend_info": {"auto_trigger": false, "bootable": false, "incremental": false},
    });
    let mut map = match b {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.extend(fields);
    map
}
