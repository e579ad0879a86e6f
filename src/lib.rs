//! vbs-operator: mirrors cloud volume backups (OpenStack Cinder / Huawei Cloud VBS) into
//! `VbsBackup` resources.
//!
//! Data flows one way: watch -> [`controller`] -> [`cloud`] client -> pure [`status`] mapping ->
//! one server-side-apply status patch.

pub mod cloud;
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod sim;
pub mod status;
pub mod telemetry;

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed in `crds/vbsbackup.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let yaml = serde_saphyr::to_string(&crd::VbsBackup::crd())?;
    Ok(format!("---\n{}", yaml.trim_start_matches("---\n")))
}

/// Makes ring the process-wide rustls crypto provider (kube and reqwest then agree on it).
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
