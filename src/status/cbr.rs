//! The CbrBackup's status fields, mapped from a Cloud Backup and Recovery backup.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{BackupStatus, MAX_FIELD_BYTES, odd_timestamps, rfc3339_utc, truncate};
use crate::cloud::CbrBackup;
use crate::crd::{CbrBackupStatus, CbrChildStatus};

impl BackupStatus for CbrBackupStatus {
    fn backup_status(&self) -> Option<&str> {
        self.backup_status.as_deref()
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

    /// Every documented state but `available` and `error` is one CBR moves out of by itself.
    fn is_transitional(state: &str) -> bool {
        matches!(
            state,
            "protecting"
                | "deleting"
                | "restoring"
                | "waiting_protect"
                | "waiting_delete"
                | "waiting_restore"
        )
    }
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref().map(|t| truncate(t, MAX_FIELD_BYTES))
}

pub fn from_backup(b: &CbrBackup) -> CbrBackupStatus {
    let time = |v: &Option<String>| v.as_deref().and_then(rfc3339_utc);
    CbrBackupStatus {
        observed_generation: None,
        backup_status: text(&b.status),
        resource_id: text(&b.resource_id),
        resource_name: text(&b.resource_name),
        resource_type: text(&b.resource_type),
        resource_size: b.resource_size,
        resource_az: text(&b.resource_az),
        vault_id: text(&b.vault_id),
        checkpoint_id: text(&b.checkpoint_id),
        parent_id: text(&b.parent_id),
        incremental: b.is_incremental(),
        image_type: text(&b.image_type),
        name: text(&b.name),
        description: text(&b.description),
        project_id: text(&b.project_id),
        enterprise_project_id: text(&b.enterprise_project_id),
        provider_id: text(&b.provider_id),
        child_count: (b.children.total > 0).then(|| i64::try_from(b.children.total).unwrap_or(i64::MAX)),
        children: b
            .children
            .first
            .iter()
            .map(|c| CbrChildStatus {
                id: truncate(&c.id, MAX_FIELD_BYTES),
                backup_status: text(&c.status),
                resource_id: text(&c.resource_id),
                resource_name: text(&c.resource_name),
                resource_type: text(&c.resource_type),
                resource_size: c.resource_size,
            })
            .collect(),
        created_at: time(&b.created_at),
        updated_at: time(&b.updated_at),
        protected_at: time(&b.protected_at),
        expired_at: time(&b.expired_at),
        conditions: Vec::new(),
    }
}

/// What in a cloud's answer was left out of the status, for the log: `(field, what was wrong)`.
pub fn anomalies(b: &CbrBackup) -> Vec<(&'static str, &'static str)> {
    odd_timestamps(&[
        ("created_at", &b.created_at),
        ("updated_at", &b.updated_at),
        ("protected_at", &b.protected_at),
        ("expired_at", &b.expired_at),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{BackupService, Cbr};
    use crate::status::{READY, RECONCILING, SyncOutcome, desired_status};

    const EXAMPLE: &str = r#"{"backup": {"id": "6df2b54c-dd62-4059-a07c-1b8f24f2725d", "status": "available",
        "resource_id": "94eba8b2", "resource_name": "ecs-1f0f-0002", "resource_type": "OS::Nova::Server",
        "resource_size": "40", "vault_id": "v1", "checkpoint_id": "c1", "image_type": "backup",
        "children": [{"id": "k1", "status": "available", "resource_name": "sys-disk"}, {"id": "k2", "status": "available"}],
        "extend_info": {"incremental": false},
        "created_at": "2019-05-21T03:13:20.154+00:00", "protected_at": "2019-05-21T03:13:30",
        "expired_at": "2019-05-23T05:13:20.154+02:00", "updated_at": 1558409405}}"#;

    #[test]
    fn example_maps_to_status() {
        let backup = Cbr::parse_show(EXAMPLE.as_bytes()).expect("parses");
        let now = "2026-11-28T10:00:00Z".parse().expect("time");
        let s = desired_status(None, &SyncOutcome::observed(from_backup(&backup)), Some(2), now);
        assert_eq!(s.backup_status.as_deref(), Some("available"));
        assert_eq!(s.resource_size, Some(40));
        assert_eq!(s.incremental, Some(false));
        assert_eq!(s.child_count, Some(2));
        assert_eq!(s.children[0].resource_name.as_deref(), Some("sys-disk"));
        assert_eq!(s.created_at.as_deref(), Some("2019-05-21T03:13:20.154Z"));
        assert_eq!(
            s.protected_at.as_deref(),
            Some("2019-05-21T03:13:30Z"),
            "zoneless is UTC"
        );
        assert_eq!(
            s.expired_at.as_deref(),
            Some("2019-05-23T03:13:20.154Z"),
            "converted to UTC"
        );
        assert_eq!(s.updated_at, None);
        assert_eq!(
            anomalies(&backup),
            vec![(
                "updated_at",
                "not a timestamp in one of the API's formats; left out"
            )]
        );
        let ready = s.conditions.iter().find(|c| c.type_ == READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Available")
        );
    }

    #[test]
    fn waiting_and_protecting_are_transitional() {
        for state in [
            "protecting",
            "waiting_protect",
            "waiting_delete",
            "waiting_restore",
            "restoring",
            "deleting",
        ] {
            assert!(CbrBackupStatus::is_transitional(state), "{state}");
            let fields = CbrBackupStatus {
                backup_status: Some(state.into()),
                ..Default::default()
            };
            let now = "2026-11-28T10:00:00Z".parse().expect("time");
            let s = desired_status(None, &SyncOutcome::observed(fields), None, now);
            assert!(s.conditions.iter().any(|c| c.type_ == RECONCILING), "{state}");
        }
        for state in ["available", "error"] {
            assert!(!CbrBackupStatus::is_transitional(state), "{state}");
        }
    }
}
