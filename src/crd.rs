//! The `VbsBackup` and `CbrBackup` custom resources: types only. Doc comments here become `kubectl
//! explain` text.

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
pub struct VbsBackupSpec {
    #[serde(flatten)]
    pub backup: BackupSpec,
}

impl From<BackupSpec> for VbsBackupSpec {
    fn from(backup: BackupSpec) -> Self {
        VbsBackupSpec { backup }
    }
}

impl From<BackupSpec> for CbrBackupSpec {
    fn from(backup: BackupSpec) -> Self {
        CbrBackupSpec { backup }
    }
}

/// The spec every backup kind shares: which backup, with which credentials, how often.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// ID (UUID) of the backup in the cloud's backup service. Immutable: to follow another backup,
    /// create another resource.
    #[schemars(regex(pattern = UUID_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("backupId is immutable"))]
    pub backup_id: String,

    /// Where the cloud credentials live.
    pub cloud_ref: CloudRef,

    /// How often a settled backup (available, error, ...) is polled, as a Go-style duration
    /// (`90s`, `10m`, `1h`). Defaults to the operator's `--poll-interval` (10m); values under 10s
    /// are raised to 10s, and the longest is 168h (7 days). Backups in a transitional state
    /// (creating, protecting, restoring, deleting, ...) are always polled at the operator's fast
    /// interval.
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

/// Names one backup in a cloud's Cloud Backup and Recovery service (CBR, the successor of VBS on
/// Huawei Cloud and Open Telekom Cloud) and mirrors its state into `.status`. Deleting a CbrBackup
/// never touches the backup in the cloud.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vbs.io",
    version = "v1alpha1",
    kind = "CbrBackup",
    plural = "cbrbackups",
    shortname = "cbrb",
    namespaced,
    status = "CbrBackupStatus",
    derive = "PartialEq",
    doc = "A Cloud Backup and Recovery (CBR) backup whose state the operator mirrors into .status",
    printcolumn(name = "Backup ID", type_ = "string", json_path = ".spec.backupId"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.backupStatus"),
    printcolumn(name = "Resource", type_ = "string", json_path = ".status.resourceName"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.resourceType"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.resourceSize",
        description = "GB"
    ),
    printcolumn(name = "Vault", type_ = "string", json_path = ".status.vaultId"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Checkpoint",
        type_ = "string",
        json_path = ".status.checkpointId",
        priority = "1"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiredAt",
        priority = "1"
    )
)]
pub struct CbrBackupSpec {
    #[serde(flatten)]
    pub backup: BackupSpec,
}

/// What the operator last learned about the CBR backup. Fields the API returns as null are omitted.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CbrBackupStatus {
    /// The `.metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The backup's status as the API reports it, verbatim: available, protecting, deleting,
    /// restoring, error, waiting_protect, waiting_delete, waiting_restore, or any other string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status: Option<String>,
    /// ID of the backed-up resource (server, volume, file system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Name of the backed-up resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Type of the backed-up resource: OS::Nova::Server, OS::Cinder::Volume, OS::Sfs::Turbo, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Size of the backed-up resource in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_size: Option<i64>,
    /// Availability zone of the backed-up resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_az: Option<String>,
    /// ID of the vault holding the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    /// ID of the restore point (checkpoint) the backup belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<String>,
    /// ID of the parent backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Whether this is an incremental backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<bool>,
    /// `backup`, or `replication` for a replica in another region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
    /// Name of the backup in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description of the backup in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ID of the project (tenant) owning the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// ID of the enterprise project of the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_project_id: Option<String>,
    /// ID of the backup provider (identifies the resource type's backup driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// How many per-disk backups a server backup has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_count: Option<i64>,
    /// The per-disk backups of a server backup (the first 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<CbrChildStatus>,
    /// When the backup was created (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the backup was last updated in the cloud (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Point in time whose data the backup holds (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_at: Option<String>,
    /// When the backup expires and the vault's policy deletes it (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    /// `Ready` (True iff backupStatus is available) and `Synced` (True iff the last query of the
    /// cloud API succeeded), as metav1.Condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One per-disk backup of a server backup.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CbrChildStatus {
    /// ID of the per-disk backup.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_size: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// Each kind's generated CRD, and its committed copies in `crds/` and in the chart.
    fn crds() -> [(&'static str, String, &'static str, &'static str); 2] {
        [
            (
                "vbsbackup",
                crate::crd_yaml::<VbsBackup>().expect("CRD serializes"),
                include_str!("../crds/vbsbackup.yaml"),
                include_str!("../charts/vbs-operator/crds/vbsbackup.yaml"),
            ),
            (
                "cbrbackup",
                crate::crd_yaml::<CbrBackup>().expect("CRD serializes"),
                include_str!("../crds/cbrbackup.yaml"),
                include_str!("../charts/vbs-operator/crds/cbrbackup.yaml"),
            ),
        ]
    }

    #[test]
    fn crd_files_match_generated_crds() {
        for (kind, generated, committed, _) in crds() {
            assert!(
                generated == committed,
                "crds/{kind}.yaml is stale: regenerate it with `cargo run -- crd {kind} > crds/{kind}.yaml`"
            );
        }
    }

    #[test]
    fn helm_chart_carries_the_same_crds_and_version() {
        for (kind, generated, _, in_chart) in crds() {
            assert!(
                generated == in_chart,
                "charts/vbs-operator/crds/{kind}.yaml is stale: cp crds/{kind}.yaml charts/vbs-operator/crds/"
            );
        }
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
    fn cbr_crd_names_and_columns() {
        let crd = CbrBackup::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("cbrbackups.vbs.io"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["cbrb".to_string()]));
        let columns: Vec<(String, Option<i32>)> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.to_uppercase(), c.priority))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "BACKUP ID",
                "STATUS",
                "RESOURCE",
                "TYPE",
                "SIZE",
                "VAULT",
                "SYNCED",
                "AGE",
                "CHECKPOINT",
                "EXPIRES"
            ]
        );
        assert!(columns[8..].iter().all(|(_, p)| *p == Some(1)), "-o wide only");
        // The same spec as VbsBackup, validation included.
        let spec = |crd| {
            let json = serde_json::to_value(crd).expect("CRD serializes");
            json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
        };
        let cbr = spec(CbrBackup::crd());
        let vbs = spec(VbsBackup::crd());
        assert_eq!(cbr["properties"], vbs["properties"]);
        assert_eq!(cbr["required"], vbs["required"]);
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
