//! Leader election on a coordination.k8s.io Lease, so that several replicas can run with one of
//! them active.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::time::Duration;
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

/// A running lease manager. Dropping it without `release` leaves the Lease to expire.
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    pub async fn start(client: Client, settings: &LeaseSettings) -> Result<Self, LeaseManagerError> {
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

    /// Waits until this replica holds the Lease; false if the lease manager stopped first.
    pub async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|leader| *leader).await.is_ok()
    }

    /// Resolves when this replica no longer holds the Lease.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut is_leader = self.is_leader.clone();
        async move {
            let _ = is_leader.wait_for(|leader| !*leader).await;
        }
    }

    /// Gives the Lease up, so that a standby takes over at once instead of after it expires, and
    /// waits up to `timeout` for that. Futures from `lost` must be dropped first.
    pub async fn release(self, timeout: Duration) {
        drop(self.is_leader);
        match tokio::time::timeout(timeout, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot release the leader lease"),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("the leader lease was not released in time; it will expire")
            }
        }
    }
}

/// An identity for this replica: the pod name when known, else the host name plus a random suffix.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "vbs-operator".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}
