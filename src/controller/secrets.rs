//! The Secrets that backup resources name: which exist and at which resourceVersion (from a
//! metadata-only watch, so no Secret data enters the process but that of named Secrets), the
//! parsed cloud profile per (Secret, resourceVersion, cloud entry), and the reconciles a Secret
//! change triggers.
//!
//! A reconcile reads a Secret through the API only when the watch says it changed since the cached
//! profile was parsed (or when nothing is cached): an unchanged Secret costs no GET.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use lru::LruCache;
use tracing::info;

use crate::cloud::{CloudProfile, load_cloud};
use crate::kind::BackupKind;
use crate::status::{FailureReason, SyncFailure};

/// The Secret key holding clouds.yaml.
pub const CLOUDS_YAML_KEY: &str = "clouds.yaml";
/// Parsed profiles kept at most (one per Secret and cloud entry in use).
const MAX_PROFILES: usize = 4096;

/// A Secret's namespace and name.
pub type SecretKey = (String, String);

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ProfileKey {
    namespace: String,
    secret: String,
    cloud: Option<String>,
}

struct CachedProfile {
    resource_version: String,
    parsed: Result<Arc<CloudProfile>, SyncFailure>,
}

type ProfileSlot = Arc<tokio::sync::Mutex<Option<CachedProfile>>>;

/// Why no profile could be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A state to report on the resource (missing Secret, no RBAC, broken clouds.yaml).
    #[error("{}", .0.message)]
    Reported(SyncFailure),
    /// The Kubernetes API failed; the reconcile is retried.
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Shared by every reconcile and every scope's Secret watch.
pub struct Secrets {
    /// resourceVersion of each Secret as the metadata watches last saw it.
    versions: Mutex<HashMap<SecretKey, String>>,
    profiles: Mutex<LruCache<ProfileKey, ProfileSlot>>,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            versions: Mutex::default(),
            profiles: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_PROFILES).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl Secrets {
    /// The cloud profile `cloud` of Secret `namespace/name`, from the cache while the Secret's
    /// resourceVersion is the one it was parsed from; otherwise read (`on_read` is called) and
    /// parsed once, however many reconciles ask at the same time.
    pub async fn profile(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        cloud: Option<&str>,
        on_read: impl FnOnce(),
    ) -> Result<Arc<CloudProfile>, ProfileError> {
        let key = ProfileKey {
            namespace: namespace.to_string(),
            secret: name.to_string(),
            cloud: cloud.map(str::to_string),
        };
        let slot = {
            let mut profiles = self.profiles.lock().unwrap_or_else(PoisonError::into_inner);
            profiles.get_or_insert(key, ProfileSlot::default).clone()
        };
        let mut cached = slot.lock().await;
        let watched = self.version_of(namespace, name);
        if let Some(c) = cached.as_ref()
            && watched.as_ref().is_none_or(|rv| *rv == c.resource_version)
        {
            return c.parsed.clone().map_err(ProfileError::Reported);
        }
        on_read();
        let reported = |reason, message: String| Err(ProfileError::Reported(SyncFailure { reason, message }));
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = match api.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                *cached = None;
                return reported(
                    FailureReason::SecretNotFound,
                    format!(
                        "Secret {namespace}/{name} does not exist: create it with a `{CLOUDS_YAML_KEY}` key"
                    ),
                );
            }
            // Missing RBAC is a state for the user to see on the resource, not a crash loop.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                *cached = None;
                return reported(
                    FailureReason::SecretForbidden,
                    format!(
                        "the operator may not read Secret {namespace}/{name} ({}): grant it get, list and watch \
                         on secrets in this namespace",
                        status.message
                    ),
                );
            }
            Err(source) => {
                return Err(ProfileError::Kube {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    source,
                });
            }
        };
        let parsed = parse(&secret, namespace, name, cloud).map(Arc::new);
        *cached = Some(CachedProfile {
            resource_version: secret.resource_version().unwrap_or_default(),
            parsed: parsed.clone(),
        });
        parsed.map_err(ProfileError::Reported)
    }

    fn version_of(&self, namespace: &str, name: &str) -> Option<String> {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Records a Secret's resourceVersion; true when it differs from the one known before.
    fn observe(&self, key: SecretKey, resource_version: String) -> bool {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions.insert(key, resource_version.clone()).as_ref() != Some(&resource_version)
    }

    /// Forgets a Secret that is gone: its version and every profile parsed from it.
    fn forget(&self, key: &SecretKey) {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        let mut profiles = self.profiles.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<ProfileKey> = profiles
            .iter()
            .filter(|(k, _)| k.namespace == key.0 && k.secret == key.1)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            profiles.pop(&k);
        }
    }

    /// Secrets known in `namespace` (all when `None`).
    fn known_in(&self, namespace: Option<&str>) -> Vec<SecretKey> {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|want| ns == want))
            .cloned()
            .collect()
    }

    /// Parsed profiles held (for tests of the bound).
    pub fn cached_profiles(&self) -> usize {
        self.profiles.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

fn parse(
    secret: &Secret,
    namespace: &str,
    name: &str,
    cloud: Option<&str>,
) -> Result<CloudProfile, SyncFailure> {
    let invalid = |message: String| SyncFailure {
        reason: FailureReason::InvalidCloudConfig,
        message,
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(CLOUDS_YAML_KEY))
        .ok_or_else(|| {
            invalid(format!(
                "Secret {namespace}/{name} has no `{CLOUDS_YAML_KEY}` key"
            ))
        })?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| {
        invalid(format!(
            "Secret {namespace}/{name}: `{CLOUDS_YAML_KEY}` is not UTF-8 text"
        ))
    })?;
    load_cloud(text, cloud).map_err(|e| invalid(format!("Secret {namespace}/{name}: {e}")))
}

/// What one scope's Secret watch has seen since its current (re)list began.
#[derive(Default)]
struct WatchState {
    listed_once: bool,
    relisting: Option<HashSet<SecretKey>>,
}

/// The Secrets whose change calls for reconciles, from a metadata-only watch of Secrets in one
/// scope (`namespace`, or the whole cluster): each item lists Secrets created, changed (new
/// resourceVersion) or deleted. The first list yields nothing (every resource is reconciled at
/// start anyway); a relist after a watch expiry yields only what changed meanwhile.
pub fn changes(
    secrets: Arc<Secrets>,
    events: impl Stream<Item = Result<Event<PartialObjectMeta<Secret>>, watcher::Error>> + Send + 'static,
    namespace: Option<String>,
) -> impl Stream<Item = Vec<SecretKey>> + Send + 'static {
    let mut state = WatchState::default();
    events.filter_map(move |event| {
        let changed = match event {
            Ok(e) => handle(&secrets, &mut state, namespace.as_deref(), e),
            // Logged where the watch is built.
            Err(_) => Vec::new(),
        };
        futures::future::ready((!changed.is_empty()).then_some(changed))
    })
}

/// The resources of kind `K` (in `store`) that name a changed Secret.
pub fn triggers<K: BackupKind>(
    changes: impl Stream<Item = Arc<Vec<SecretKey>>> + Send + 'static,
    store: Store<K>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    changes.flat_map(move |changed| {
        let refs: Vec<ObjectRef<K>> = store
            .state()
            .into_iter()
            .filter(|obj| {
                let secret = &obj.backup_spec().cloud_ref.secret_name;
                changed
                    .iter()
                    .any(|(ns, name)| obj.namespace().as_deref() == Some(ns.as_str()) && secret == name)
            })
            .map(|obj| ObjectRef::from_obj(&*obj))
            .collect();
        futures::stream::iter(refs)
    })
}

fn key_of(meta: &PartialObjectMeta<Secret>) -> SecretKey {
    (meta.namespace().unwrap_or_default(), meta.name_any())
}

/// Applies one watch event; returns the Secrets whose change should trigger reconciles.
fn handle(
    secrets: &Secrets,
    state: &mut WatchState,
    namespace: Option<&str>,
    event: Event<PartialObjectMeta<Secret>>,
) -> Vec<SecretKey> {
    match event {
        Event::Init => {
            state.relisting = Some(HashSet::new());
            Vec::new()
        }
        Event::InitApply(meta) => {
            let key = key_of(&meta);
            if let Some(seen) = state.relisting.as_mut() {
                seen.insert(key.clone());
            }
            let changed = secrets.observe(key.clone(), meta.resource_version().unwrap_or_default());
            if changed && state.listed_once {
                vec![key]
            } else {
                Vec::new()
            }
        }
        Event::InitDone => {
            let seen = state.relisting.take().unwrap_or_default();
            let gone: Vec<SecretKey> = secrets
                .known_in(namespace)
                .into_iter()
                .filter(|k| !seen.contains(k))
                .collect();
            for key in &gone {
                secrets.forget(key);
            }
            if state.listed_once {
                info!(secrets = seen.len(), "Secret watch relisted");
            }
            state.listed_once = true;
            gone
        }
        Event::Apply(meta) => {
            let key = key_of(&meta);
            if secrets.observe(key.clone(), meta.resource_version().unwrap_or_default()) {
                vec![key]
            } else {
                Vec::new()
            }
        }
        Event::Delete(meta) => {
            let key = key_of(&meta);
            secrets.forget(&key);
            vec![key]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn meta(ns: &str, name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn key(ns: &str, name: &str) -> SecretKey {
        (ns.into(), name.into())
    }

    #[test]
    fn first_list_triggers_nothing_and_changes_trigger_once() {
        let secrets = Secrets::default();
        let mut state = WatchState::default();
        let mut run = |e| handle(&secrets, &mut state, Some("a"), e);
        assert!(run(Event::Init).is_empty());
        assert!(run(Event::InitApply(meta("a", "s", "1"))).is_empty());
        assert!(run(Event::InitApply(meta("a", "t", "1"))).is_empty());
        assert!(run(Event::InitDone).is_empty());
        assert!(
            run(Event::Apply(meta("a", "s", "1"))).is_empty(),
            "same version: no trigger"
        );
        assert_eq!(run(Event::Apply(meta("a", "s", "2"))), vec![key("a", "s")]);
        assert_eq!(run(Event::Apply(meta("a", "new", "5"))), vec![key("a", "new")]);
        // A relist after a watch expiry: unchanged Secrets are quiet, changed and vanished ones not.
        assert!(run(Event::Init).is_empty());
        assert!(run(Event::InitApply(meta("a", "s", "2"))).is_empty());
        assert_eq!(
            run(Event::InitApply(meta("a", "new", "6"))),
            vec![key("a", "new")]
        );
        assert_eq!(run(Event::InitDone), vec![key("a", "t")]);
        assert_eq!(secrets.version_of("a", "t"), None);
        assert_eq!(run(Event::Delete(meta("a", "s", "3"))), vec![key("a", "s")]);
        assert_eq!(secrets.version_of("a", "s"), None);
    }
}
