//! The controllers: one per backup kind and watched scope, sharing one Secret watch per scope,
//! one cloud client, one set of limits and one profile cache.

pub mod events;
#[cfg(test)]
mod mock_tests;
mod reconcile;
pub mod requeue;
pub mod secrets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::{ResetTimerBackoff, predicates};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Semaphore;

use crate::cloud::{BatchOptions, Batcher, VbsClient};
use crate::crd::{CbrBackup, VbsBackup};
use crate::kind::BackupKind;
use crate::metrics::{Metrics, WatchedObject};
use crate::status::BackupStatus;
pub use events::EventQueue;
pub use reconcile::{Error, FIELD_MANAGER, guard_panics};
pub use requeue::PollPolicy;
pub use secrets::{CLOUDS_YAML_KEY, Secrets};

/// How long reconciles in flight may take to finish after a shutdown signal (Kubernetes gives a
/// pod 30 s by default before it kills it).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Entries of the generation filter not refreshed for this long are dropped (memory hygiene).
const GENERATION_FILTER_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long Events still queued at shutdown may take to be published, after the reconciles.
const EVENTS_GRACE: Duration = Duration::from_secs(5);

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Most Kubernetes API calls (Secret reads, status writes) of reconciles in flight. (Events
    /// have publishers of their own: [`EventQueue`].)
    pub kube_concurrency: usize,
    /// Most reconciles in flight (each waiting reconcile costs memory: at 10,000 VbsBackups an
    /// unbounded start-up held about 200 MiB of them).
    pub max_reconciles: u16,
    pub poll: PollPolicy,
    /// Reported in Events as the reporting instance (the pod name in a cluster).
    pub instance: Option<String>,
    /// Reconcile only VbsBackups with these labels (a label selector, for sharding a fleet across
    /// replicas); all when `None`.
    pub selector: Option<String>,
    /// How settled backups are refreshed.
    pub refresh: Refresh,
    pub batch: BatchOptions,
    /// The kinds to reconcile (both by default; a cluster without one's CRD can leave it out).
    pub kinds: Vec<Kind>,
}

/// The backup kinds the operator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(name = "vbsbackup")]
    VbsBackup,
    #[value(name = "cbrbackup")]
    CbrBackup,
}

/// How backups are read from the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Refresh {
    /// Backups of one endpoint, project and credential set that fall due together are read with
    /// the list call; a lone, new-and-alone or transitional backup gets a single GET.
    Batch,
    /// One GET per backup per poll.
    Single,
}

/// State shared by all reconciles of all kinds.
pub struct Context {
    pub client: Client,
    pub cloud: Arc<VbsClient>,
    pub events: EventQueue,
    pub poll: PollPolicy,
    pub metrics: Arc<Metrics>,
    pub secrets: Arc<Secrets>,
    pub refresh: Refresh,
    pub batch: BatchOptions,
    /// Most reconciles in flight per watched scope and kind.
    pub max_reconciles: u16,
    /// Bounds the Kubernetes API calls of reconciles. (Reconciles themselves are not bounded: a
    /// reconcile waiting for a slow cloud must not hold a worker that another tenant needs; cloud
    /// calls are bounded by the cloud client, globally and per endpoint host.)
    pub kube_slots: Semaphore,
}

impl Context {
    pub fn new(client: Client, cloud: Arc<VbsClient>, metrics: Arc<Metrics>, settings: &Settings) -> Self {
        let reporter = Reporter {
            controller: "vbs-operator".into(),
            instance: settings.instance.clone(),
        };
        Context {
            events: EventQueue::start(client.clone(), reporter, metrics.clone()),
            client,
            cloud: cloud.clone(),
            poll: settings.poll.clone(),
            metrics,
            secrets: Arc::default(),
            refresh: settings.refresh,
            batch: settings.batch.clone(),
            kube_slots: Semaphore::new(settings.kube_concurrency.max(1)),
            max_reconciles: settings.max_reconciles.max(1),
        }
    }
}

/// What one kind's reconciles share: the common context and the kind's own batcher.
pub struct KindContext<K: BackupKind> {
    pub shared: Arc<Context>,
    /// Batches reads by list calls (`--refresh batch`); `None` for a GET per backup.
    pub batcher: Option<Batcher<K::Service>>,
}

impl<K: BackupKind> KindContext<K> {
    pub fn new(shared: Arc<Context>) -> Self {
        let batcher = (shared.refresh == Refresh::Batch)
            .then(|| Batcher::new(shared.cloud.clone(), shared.batch.clone()));
        KindContext { shared, batcher }
    }
}

/// One kind's watch cache, seen through what the per-resource metrics need.
trait Census: Send + Sync {
    fn census(&self) -> Vec<WatchedObject>;
}

impl<K: BackupKind> Census for Store<K> {
    fn census(&self) -> Vec<WatchedObject> {
        self.state()
            .iter()
            .map(|obj| WatchedObject {
                kind: K::KIND,
                namespace: obj.namespace().unwrap_or_default(),
                name: obj.name_any(),
                backup_status: obj
                    .current_status()
                    .and_then(|s| s.backup_status())
                    .map(str::to_string),
            })
            .collect()
    }
}

/// What the controllers watch, for readiness and for metrics computed at scrape time.
#[derive(Default)]
pub struct Watched {
    stores: Mutex<Vec<Box<dyn Census>>>,
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

    /// Every backup resource currently watched, of every kind.
    pub fn objects(&self) -> Vec<WatchedObject> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.iter().flat_map(|s| s.census()).collect()
    }

    fn add<K: BackupKind>(&self, store: Store<K>) {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(store));
    }
}

/// Runs one controller per kind and watched namespace (or per kind for the whole cluster) until
/// `shutdown` resolves. `watched` turns ready once every watch has listed its objects.
pub async fn run(
    client: Client,
    cloud: Arc<VbsClient>,
    metrics: Arc<Metrics>,
    watched: Arc<Watched>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context::new(client.clone(), cloud, metrics, &settings));
    let (vbs, cbr) = (
        Arc::new(KindContext::new(ctx.clone())),
        Arc::new(KindContext::new(ctx.clone())),
    );
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    // Ready once every scope's first list is done.
    watched.set_ready(false);
    let mut synced = Vec::new();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|namespace| {
            let scope = Scope {
                namespace,
                ctx: ctx.clone(),
                vbs: vbs.clone(),
                cbr: cbr.clone(),
                watched: watched.clone(),
                selector: settings.selector.clone(),
            };
            let (ready, scope_synced) = settings
                .kinds
                .iter()
                .map(|_| tokio::sync::oneshot::channel())
                .unzip::<_, _, Vec<_>, Vec<_>>();
            synced.extend(scope_synced);
            scope.run(settings.kinds.clone(), ready, shutdown.clone())
        })
        .collect();
    tokio::spawn(async move {
        if futures::future::join_all(synced).await.iter().all(Result::is_ok) {
            watched.set_ready(true);
            tracing::info!("watches synced; ready");
        }
    });
    futures::future::join_all(controllers).await;
    ctx.events.close(EVENTS_GRACE).await;
}

/// Watch retries: quick (a restarted API server is back in seconds) but never a tight loop.
fn watch_backoff() -> ResetTimerBackoff<watcher::ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

/// A watcher that starts over with a fresh list after any error, as client-go's reflector does.
/// kube's watcher would resume from its last resourceVersion; after an API server restart that
/// version is usually expired, and the new server holds such a watch for about ten seconds before
/// it answers 410, so new objects would go unseen meanwhile. A list is one request, like a watch.
fn relisting_watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    futures::stream::unfold(None, move |current| {
        let (api, config) = (api.clone(), config.clone());
        async move {
            let mut inner = current.unwrap_or_else(|| watcher(api, config).boxed());
            let event = inner.next().await?;
            let next = event.is_ok().then_some(inner);
            Some((event, next))
        }
    })
}

/// A watch stream with its errors logged for what they are. An expired resourceVersion (410) is a
/// normal event: the watch starts over with a list at once, so it is logged and dropped before the
/// backoff sees it. Other errors are retried with [`watch_backoff`].
fn logged<T>(
    kind: &'static str,
    events: impl Stream<Item = Result<T, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    T: Send + 'static,
{
    events
        .filter(move |event| {
            let keep = match event {
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::info!(kind, "watch expired (410 Gone); relisting");
                    false
                }
                Err(e) if is_forbidden(e) => {
                    tracing::error!(kind, error = %e, "the operator may not watch {kind}: it needs get, list and watch on them; retrying");
                    true
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying");
                    true
                }
                Ok(_) => true,
            };
            futures::future::ready(keep)
        })
        .backoff(watch_backoff())
}

fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// One watched namespace (or the whole cluster).
struct Scope {
    namespace: Option<String>,
    ctx: Arc<Context>,
    /// Each kind's context, shared by every scope: one batcher per kind, so that scopes whose
    /// resources use one project and credential set share its lists.
    vbs: Arc<KindContext<VbsBackup>>,
    cbr: Arc<KindContext<CbrBackup>>,
    watched: Arc<Watched>,
    selector: Option<String>,
}

impl Scope {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.ctx.client.clone(), ns),
            None => Api::all(self.ctx.client.clone()),
        }
    }

    /// Runs the scope's Secret watch and one controller per kind; `ready` holds one sender per
    /// kind, each told once its kind's first list is done.
    async fn run(
        self,
        kinds: Vec<Kind>,
        ready: Vec<tokio::sync::oneshot::Sender<()>>,
        shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
    ) {
        // Secrets: metadata only, so no Secret data enters the process from the watch. One watch
        // per scope, whose changes go to every kind's controller.
        let secret_events = logged(
            "secrets",
            relisting_watcher(self.api(), watcher::Config::default().any_semantic()),
        );
        let changes = secrets::changes(self.ctx.secrets.clone(), secret_events, self.namespace.clone());
        let (senders, receivers): (Vec<_>, Vec<_>) = kinds.iter().map(|_| mpsc::unbounded()).unzip();
        let fan_out = changes.for_each(move |changed| {
            let changed = Arc::new(changed);
            for tx in &senders {
                // A controller that stopped does not need to hear about Secrets any more.
                let _ = tx.unbounded_send(changed.clone());
            }
            futures::future::ready(())
        });
        let controllers =
            kinds
                .into_iter()
                .zip(ready)
                .zip(receivers)
                .map(|((kind, ready), secret_changes)| match kind {
                    Kind::VbsBackup => self
                        .run_kind(self.vbs.clone(), secret_changes, ready, shutdown.clone())
                        .boxed(),
                    Kind::CbrBackup => self
                        .run_kind(self.cbr.clone(), secret_changes, ready, shutdown.clone())
                        .boxed(),
                });
        let controllers = futures::future::join_all(controllers);
        tokio::select! {
            _ = controllers => {}
            _ = fan_out => {}
        }
    }

    async fn run_kind<K: BackupKind>(
        &self,
        ctx: Arc<KindContext<K>>,
        secret_changes: impl Stream<Item = Arc<Vec<secrets::SecretKey>>> + Send + 'static,
        synced: tokio::sync::oneshot::Sender<()>,
        shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
    ) {
        let mut watcher_config = watcher::Config::default().any_semantic();
        if let Some(selector) = &self.selector {
            watcher_config = watcher_config.labels(selector);
        }
        // The watch is built here rather than by Controller::new so that readiness can be read
        // off the watch events themselves. (Waiting on Store::wait_until_ready from a second task
        // would steal the controller's own wake-up: the store's readiness future wakes only its
        // latest poller, and a controller that misses it can hang at shutdown.)
        let (store, writer) = reflector::store();
        let mut synced = Some(synced);
        let objects = logged(K::PLURAL, relisting_watcher(self.api::<K>(), watcher_config))
            // The cache keeps what the operator reads: not managedFields, not labels and
            // annotations (kubectl's copy of the last-applied manifest among them). The label
            // selector is applied by the API server, and nothing reads either from the cache;
            // each object's maps cost more than half a KiB even with one short label (4 MiB at
            // 10,000 VbsBackups).
            .modify(|obj: &mut K| {
                let meta = obj.meta_mut();
                meta.managed_fields = None;
                meta.labels = None;
                meta.annotations = None;
            })
            .reflect(writer)
            .inspect(move |event| {
                if let Ok(watcher::Event::InitDone) = event
                    && let Some(synced) = synced.take()
                {
                    let _ = synced.send(());
                }
            })
            .applied_objects()
            // Only a new generation (a spec change) or a first sight starts a reconcile; the
            // operator's own status writes do not. The other causes are Secret changes and requeues.
            .predicate_filter(
                predicates::generation,
                kube::runtime::utils::PredicateConfig::default().ttl(GENERATION_FILTER_TTL),
            );
        self.watched.add(store.clone());
        let secret_triggers = secrets::triggers(secret_changes, store.clone());

        let grace_deadline = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
        };
        let running = Controller::for_stream(objects, store)
            // Many workers: what is scarce (cloud calls, Kubernetes calls) is bounded where it is
            // spent. A tenant whose cloud hangs holds at most per-host-limit calls, and its other
            // reconciles fail at once when the breaker opens, so it cannot keep workers from others.
            .with_config(controller::Config::default().concurrency(self.ctx.max_reconciles))
            .reconcile_on(secret_triggers)
            .graceful_shutdown_on(shutdown)
            .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
            .for_each(|result| async move {
                match result {
                    Ok(_) => {}
                    // Failed reconciles are logged by the error policy; watch errors where the
                    // watch is built.
                    Err(controller::Error::ReconcilerFailed(..)) | Err(controller::Error::QueueError(_)) => {}
                    Err(e) => tracing::warn!(error = %e, "controller error"),
                }
            });
        // A kube-runtime controller whose first list never succeeded (no CRD, no RBAC) does not
        // finish a graceful shutdown; in-flight reconciles get SHUTDOWN_GRACE, then it is dropped.
        tokio::select! {
            _ = running => {}
            _ = grace_deadline => tracing::warn!(kind = K::PLURAL, "controller did not stop within {SHUTDOWN_GRACE:?}; stopping it"),
        }
    }
}
