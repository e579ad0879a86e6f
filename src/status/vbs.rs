//! The VbsBackup's status fields, mapped from a VBS / Cinder backup.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{BackupStatus, MAX_FIELD_BYTES, odd_timestamps, rfc3339_utc, truncate};
use crate::cloud::Backup;
use crate::crd::VbsBackupStatus;

impl BackupStatus for VbsBackupStatus {
    fn backup_status(&self) -> Option<&str> {
        self.backup_status.as_deref()
    }

    fn fail_reason(&self) -> Option<&str> {
        self.fail_reason.as_deref()
    }

    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn set_conditions(&mut self, conditions: Vec<Condition>) {
        self.conditions = conditions;
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }

    fn is_transitional(state: &str) -> bool {
        matches!(state, "creating" | "restoring" | "deleting")
    }
}

pub fn from_backup(b: &Backup) -> VbsBackupStatus {
    let text = |v: &Option<String>| v.as_deref().map(|t| truncate(t, MAX_FIELD_BYTES));
    let time = |v: &Option<String>| v.as_deref().and_then(rfc3339_utc);
    VbsBackupStatus {
        observed_generation: None,
        backup_status: text(&b.status),
        size: b.size,
        fail_reason: text(&b.fail_reason),
        has_dependent_backups: b.has_dependent_backups,
        is_incremental: b.is_incremental,
        volume_id: text(&b.volume_id),
        snapshot_id: text(&b.snapshot_id),
        container: text(&b.container),
        object_count: b.object_count,
        name: text(&b.name),
        description: text(&b.description),
        availability_zone: text(&b.availability_zone),
        project_id: text(&b.project_id),
        created_at: time(&b.created_at),
        updated_at: time(&b.updated_at),
        data_timestamp: time(&b.data_timestamp),
        conditions: Vec::new(),
    }
}

/// What in a cloud's answer was not what the API documents and was therefore left out of the
/// status, for the log: `(field, what was wrong)`.
pub fn anomalies(b: &Backup) -> Vec<(&'static str, &'static str)> {
    odd_timestamps(&[
        ("created_at", &b.created_at),
        ("updated_at", &b.updated_at),
        ("data_timestamp", &b.data_timestamp),
    ])
}
