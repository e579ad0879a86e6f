//! vbs-operator: mirrors cloud backups into Kubernetes resources: OpenStack Cinder / Huawei Cloud
//! VBS backups into `VbsBackup`s, Cloud Backup and Recovery backups into `CbrBackup`s.
//!
//! Data flows one way: watch -> [`controller`] -> [`cloud`] client -> pure [`status`] mapping ->
//! one server-side-apply status patch. A [`kind`] ties a resource to its cloud service.

pub mod cloud;
pub mod controller;
pub mod crd;
pub mod http;
pub mod kind;
pub mod leader;
pub mod metrics;
pub mod sim;
pub mod status;
pub mod telemetry;

use kube::CustomResourceExt;

/// The CRD of `K` as YAML, exactly as committed in `crds/` (`vbsbackup.yaml`, `cbrbackup.yaml`).
pub fn crd_yaml<K: CustomResourceExt>() -> Result<String, serde_saphyr::SerializeError> {
    let yaml = serde_saphyr::to_string(&K::crd())?;
    Ok(format!("---\n{}", yaml.trim_start_matches("---\n")))
}

/// Makes ring the process-wide rustls crypto provider (kube and reqwest then agree on it).
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
