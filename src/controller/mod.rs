//! The controller: watches VbsBackups and the Secrets they name, and reconciles each one.

mod reconcile;
pub mod requeue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::cloud::VbsClient;
use crate::crd::VbsBackup;
pub use reconcile::{Error, FIELD_MANAGER};
pub use requeue::PollPolicy;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Most reconciles in flight at once.
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
    /// Failed queries in a row per VbsBackup, for backoff. Cleared on success.
    failures: Mutex<HashMap<ObjectRef<VbsBackup>, u32>>,
}

impl Context {
    pub fn new(client: Client, cloud: Arc<VbsClient>, poll: PollPolicy, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "vbs-operator".into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            cloud,
            poll,
            failures: Mutex::default(),
        }
    }
}

/// Runs the controller until a shutdown signal (SIGTERM, Ctrl-C).
pub async fn run(client: Client, cloud: Arc<VbsClient>, settings: Settings) {
    let (backups, secrets): (Api<VbsBackup>, Api<Secret>) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let ctx = Arc::new(Context::new(
        client,
        cloud,
        settings.poll.clone(),
        settings.instance.clone(),
    ));

    let controller = Controller::new(backups, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .with_config(controller::Config::default().concurrency(settings.concurrency))
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
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}
