//! Leader election on a coordination.k8s.io Lease, so that several replicas can run with one of
//! them active.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_secs: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_secs: u64,
}

/// A running lease manager: `is_leader` flips to true when this replica holds the Lease and back to
/// false if it loses it. Dropping the receiver releases the Lease.
pub struct Leadership {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

pub async fn start(client: Client, settings: &LeaseSettings) -> Result<Leadership, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, settings.name.clone())
        .with_namespace(settings.namespace.clone())
        .with_identity(settings.identity.clone())
        .with_duration(settings.duration_secs)
        .with_grace(settings.grace_secs)
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Leadership { is_leader, task })
}

/// An identity for this replica: the pod name when known, else the host name plus a random suffix.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "vbs-operator".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}
