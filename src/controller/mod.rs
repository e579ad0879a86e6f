//! The controller: watches VbsBackups and the Secrets they name, and reconciles each one.

mod reconcile;
pub mod requeue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;

use crate::cloud::VbsClient;
use crate::crd::VbsBackup;
use crate::metrics::Metrics;
pub use reconcile::{Error, FIELD_MANAGER};
pub use requeue::PollPolicy;

/// How long reconciles in flight may take to finish after a shutdown signal (Kubernetes gives a
/// pod 30 s by default before it kills it).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Most cloud queries in flight at once, across all namespaces.
    pub concurrency: u16,
    pub poll: PollPolicy,
    /// Reported in Events as the reporting instance (the pod name in a cluster).
    pub instance: Option<String>,
}

/// State shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub cloud: Arc<VbsClient>,
    pub recorder: Recorder,
    pub poll: PollPolicy,
    pub metrics: Arc<Metrics>,
    /// Bounds cloud calls across the controllers of all watched namespaces.
    pub cloud_slots: Semaphore,
    /// Failed queries in a row per VbsBackup, for backoff. Cleared on success.
    failures: Mutex<HashMap<ObjectRef<VbsBackup>, u32>>,
}

impl Context {
    /// Counts one more failed reconcile of `obj` in a row; returns the count.
    fn record_failure(&self, obj: &VbsBackup) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(ObjectRef::from_obj(obj)).or_default();
        *n = n.saturating_add(1);
        *n
    }
}

/// What the controllers watch, for readiness and for metrics computed at scrape time.
#[derive(Default)]
pub struct Watched {
    stores: Mutex<Vec<Store<VbsBackup>>>,
    ready: AtomicBool,
}

impl Watched {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// A replica waiting for the leader lease reports ready: it is healthy, and a rollout must not
    /// wait for it to become leader.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Every VbsBackup currently watched.
    pub fn objects(&self) -> Vec<Arc<VbsBackup>> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.iter().flat_map(|s| s.state()).collect()
    }

    fn add(&self, store: Store<VbsBackup>) {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
    }
}

/// Runs one controller per watched namespace (or one for the whole cluster) until `shutdown`
/// resolves. `watched` turns ready once every watch has listed its objects.
pub async fn run(
    client: Client,
    cloud: Arc<VbsClient>,
    metrics: Arc<Metrics>,
    watched: Arc<Watched>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: "vbs-operator".into(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        cloud,
        poll: settings.poll.clone(),
        metrics,
        cloud_slots: Semaphore::new(usize::from(settings.concurrency.max(1))),
        failures: Mutex::default(),
    });
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    watched.set_ready(false);
    let pending = Arc::new(AtomicUsize::new(scopes.len()));
    let controllers = scopes.into_iter().map(|ns| {
        let (backups, secrets): (Api<VbsBackup>, Api<Secret>) = match &ns {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        run_scope(
            backups,
            secrets,
            ctx.clone(),
            watched.clone(),
            pending.clone(),
            settings.concurrency,
            shutdown.clone(),
        )
    });
    futures::future::join_all(controllers).await;
}

async fn run_scope(
    backups: Api<VbsBackup>,
    secrets: Api<Secret>,
    ctx: Arc<Context>,
    watched: Arc<Watched>,
    pending: Arc<AtomicUsize>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    // The VbsBackup watch is built here rather than by Controller::new so that readiness can be
    // read off the watch events themselves. (Waiting on Store::wait_until_ready from a second
    // task would steal the controller's own wake-up: the store's readiness future wakes only its
    // latest poller, and a controller that misses it can hang at shutdown.)
    let (store, writer) = reflector::store();
    let mut pending_list = Some(pending);
    let readiness = watched.clone();
    let triggers = watcher(backups, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event
                && let Some(pending) = pending_list.take()
                && pending.fetch_sub(1, Ordering::AcqRel) == 1
            {
                readiness.set_ready(true);
                tracing::info!("watches synced; ready");
            }
        })
        .applied_objects();
    watched.add(store.clone());
    let controller = Controller::for_stream(triggers, store.clone());
    let grace_deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    let running = controller
        .with_config(controller::Config::default().concurrency(concurrency))
        // A Secret created or changed re-triggers the VbsBackups that name it. Only metadata of the
        // event is used; Secret data is never cached.
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret: Secret| {
                let (ns, name) = (secret.namespace(), secret.name_any());
                store
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == ns && b.spec.cloud_ref.secret_name == name)
                    .map(|b| ObjectRef::from_obj(&*b))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Failed reconciles are logged by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::QueueError(e)) => tracing::error!(
                    error = %e,
                    "cannot watch VbsBackups or Secrets (the operator needs get/list/watch on both); retrying"
                ),
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        });
    // A kube-runtime controller whose first list never succeeded (no CRD, no RBAC) does not finish
    // a graceful shutdown; in-flight reconciles get SHUTDOWN_GRACE, then the controller is dropped.
    tokio::select! {
        _ = running => {}
        _ = grace_deadline => tracing::warn!("controller did not stop within {SHUTDOWN_GRACE:?}; stopping it"),
    }
}
