//! A backup kind: the custom resource, the cloud service whose backups it mirrors, and the mapping
//! from one to the other. This is all a kind contributes; watching, Secrets, authentication,
//! polling, backoff, batching, rate limits, Events, metrics and status writes are shared.

use k8s_openapi::NamespaceResourceScope;
use kube::{CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cloud::{BackupService, Cbr, Vbs};
use crate::crd::{BackupSpec, CbrBackup, CbrBackupStatus, VbsBackup, VbsBackupStatus};
use crate::status::{self, BackupStatus};

/// The backup service's backup type of kind `K`.
pub type CloudBackup<K> = <<K as BackupKind>::Service as BackupService>::Backup;

pub trait BackupKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + CustomResourceExt
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Service: BackupService;
    type Status: BackupStatus + std::fmt::Debug;

    /// The kind's name, as in `kind: VbsBackup`: for metrics labels, logs and errors.
    const KIND: &'static str;
    /// Lower-case plural, as in `kubectl get vbsbackups`: for logs and watch errors.
    const PLURAL: &'static str;

    fn backup_spec(&self) -> &BackupSpec;
    fn current_status(&self) -> Option<&Self::Status>;
    /// The status fields for the cloud's answer (no conditions yet).
    fn to_status(backup: &CloudBackup<Self>) -> Self::Status;
    /// What in the answer was not as documented and left out of the status, for the log.
    fn anomalies(backup: &CloudBackup<Self>) -> Vec<(&'static str, &'static str)>;
}

impl BackupKind for VbsBackup {
    type Service = Vbs;
    type Status = VbsBackupStatus;
    const KIND: &'static str = "VbsBackup";
    const PLURAL: &'static str = "vbsbackups";

    fn backup_spec(&self) -> &BackupSpec {
        &self.spec.backup
    }

    fn current_status(&self) -> Option<&VbsBackupStatus> {
        self.status.as_ref()
    }

    fn to_status(backup: &CloudBackup<Self>) -> VbsBackupStatus {
        status::vbs::from_backup(backup)
    }

    fn anomalies(backup: &CloudBackup<Self>) -> Vec<(&'static str, &'static str)> {
        status::vbs::anomalies(backup)
    }
}

impl BackupKind for CbrBackup {
    type Service = Cbr;
    type Status = CbrBackupStatus;
    const KIND: &'static str = "CbrBackup";
    const PLURAL: &'static str = "cbrbackups";

    fn backup_spec(&self) -> &BackupSpec {
        &self.spec.backup
    }

    fn current_status(&self) -> Option<&CbrBackupStatus> {
        self.status.as_ref()
    }

    fn to_status(backup: &CloudBackup<Self>) -> CbrBackupStatus {
        status::cbr::from_backup(backup)
    }

    fn anomalies(backup: &CloudBackup<Self>) -> Vec<(&'static str, &'static str)> {
        status::cbr::anomalies(backup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_crds() {
        fn check<K: BackupKind>() {
            let crd = K::crd();
            assert_eq!(crd.spec.names.kind, K::KIND);
            assert_eq!(crd.spec.names.plural, K::PLURAL);
        }
        check::<VbsBackup>();
        check::<CbrBackup>();
    }
}
