//! The `VbsBackup` custom resource: types only. Doc comments here become `kubectl explain` text.

// kube-derive repeats `type_ = ...` across printcolumn attributes, which this lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Canonical UUID, as OpenStack prints backup IDs (any case).
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A Go-style duration such as `90s`, `10m` or `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Names one backup in a cloud's Volume Backup Service (VBS, OpenStack Cinder backups) and mirrors
/// its state into `.status`. Deleting a VbsBackup never touches the backup in the cloud.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vbs.io",
    version = "v1alpha1",
    kind = "VbsBackup",
    plural = "vbsbackups",
    shortname = "vbsb",
    namespaced,
    status = "VbsBackupStatus",
    derive = "PartialEq",
    doc = "A cloud volume backup (VBS / OpenStack Cinder) whose state the operator mirrors into .status",
    printcolumn(name = "Backup ID", type_ = "string", json_path = ".spec.backupId"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.backupStatus"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.size",
        description = "GiB"
    ),
    printcolumn(name = "Incremental", type_ = "boolean", json_path = ".status.isIncremental"),
    printcolumn(
        name = "Dependents",
        type_ = "boolean",
        json_path = ".status.hasDependentBackups"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Volume",
        type_ = "string",
        json_path = ".status.volumeId",
        priority = "1"
    ),
    printcolumn(
        name = "Fail Reason",
        type_ = "string",
        json_path = ".status.failReason",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VbsBackupSpec {
    /// ID (UUID) of the backup in the cloud's backup service. Immutable: to follow another backup,
    /// create another VbsBackup.
    #[schemars(regex(pattern = UUID_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("backupId is immutable"))]
    pub backup_id: String,

    /// Where the cloud credentials live.
    pub cloud_ref: CloudRef,

    /// How often a settled backup (available, error, ...) is polled, as a Go-style duration
    /// (`90s`, `10m`, `1h`). Defaults to the operator's `--poll-interval` (10m); values under 10s
    /// are raised to 10s, and the longest is 168h (7 days). Backups in a transitional state
    /// (creating, restoring, deleting) are always polled at the operator's fast interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('168h')").message("pollInterval must be at most 168h (7 days)"))]
    pub poll_interval: Option<String>,
}

/// Reference to a Secret in the VbsBackup's own namespace holding an OpenStack `clouds.yaml`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudRef {
    /// Name of the Secret (same namespace) whose key `clouds.yaml` holds the cloud credentials.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Entry of `clouds:` in clouds.yaml to use. Optional when the file holds exactly one cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cloud: Option<String>,
}

/// What the operator last learned about the backup. Fields the API returns as null are omitted.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VbsBackupStatus {
    /// The `.metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The backup's status as the API reports it, verbatim: available, creating, restoring,
    /// deleting, error, error_restoring, error_deleting, deleted, or any other string the cloud uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status: Option<String>,
    /// Size of the backup in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Why the backup failed, as the API reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// Whether other (incremental) backups depend on this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_dependent_backups: Option<bool>,
    /// Whether this is an incremental backup (reported verbatim; VBS gives it little meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_incremental: Option<bool>,
    /// ID of the volume (disk) the backup was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// ID of the snapshot the backup was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Object-storage container holding the backup data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Number of objects the backup data occupies in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<i64>,
    /// Name of the backup in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description of the backup in the cloud (verbatim; the VBS console may store JSON here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Availability zone of the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// ID of the project (tenant) owning the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// When the backup was created (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the backup was last updated in the cloud (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Point in time whose data the backup holds (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_timestamp: Option<String>,
    /// `Ready` (True iff backupStatus is available) and `Synced` (True iff the last query of the
    /// cloud API succeeded), as metav1.Condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_file_matches_generated_crd() {
        let generated = crate::crd_yaml().expect("CRD serializes");
        let committed = include_str!("../crds/vbsbackup.yaml");
        assert!(
            generated == committed,
            "crds/vbsbackup.yaml is stale: regenerate it with `cargo run -- crd > crds/vbsbackup.yaml`"
        );
    }

    #[test]
    fn helm_chart_carries_the_same_crd_and_version() {
        let generated = crate::crd_yaml().expect("CRD serializes");
        let in_chart = include_str!("../charts/vbs-operator/crds/vbsbackup.yaml");
        assert!(
            generated == in_chart,
            "charts/vbs-operator/crds/vbsbackup.yaml is stale: cp crds/vbsbackup.yaml charts/vbs-operator/crds/"
        );
        let chart = include_str!("../charts/vbs-operator/Chart.yaml");
        let app_version = format!("appVersion: \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            chart.lines().any(|l| l == app_version),
            "Chart.yaml must say {app_version}"
        );
    }

    #[test]
    fn crd_names_and_scope() {
        let crd = VbsBackup::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("vbsbackups.vbs.io"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["vbsb".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn crd_schema_validates_backup_id_and_secret_name() {
        let json = serde_json::to_value(VbsBackup::crd()).expect("CRD serializes");
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["backupId"]["pattern"], UUID_PATTERN);
        assert_eq!(
            spec["properties"]["backupId"]["x-kubernetes-validations"][0]["rule"],
            "self == oldSelf"
        );
        assert_eq!(
            spec["properties"]["cloudRef"]["properties"]["secretName"]["minLength"],
            1
        );
        let poll = &spec["properties"]["pollInterval"];
        assert_eq!(poll["maxLength"], 32);
        assert_eq!(
            poll["x-kubernetes-validations"][0]["rule"],
            "duration(self) <= duration('168h')"
        );
        let required = spec["required"].as_array().expect("required list");
        assert!(required.contains(&"backupId".into()) && required.contains(&"cloudRef".into()));
    }
}
