//! Everything about the cloud's backup API. Knows nothing of Kubernetes.

pub mod batch;
pub mod cbr;
pub mod client;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod keystone;
pub mod limits;
pub mod service;
pub mod signer;
pub mod vbs;
pub mod wire;

pub use batch::{BatchOptions, Batcher, Fetched};
pub use cbr::{Cbr, CbrBackup};
pub use client::{ApiObserver, ClientOptions, VbsClient};
pub use config::{CloudProfile, ConfigError, load_cloud};
pub use error::{CloudError, Operation};
pub use limits::CallLimits;
pub use service::BackupService;
pub use vbs::Vbs;
pub use wire::Backup;
