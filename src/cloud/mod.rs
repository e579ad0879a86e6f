//! Everything about the cloud's backup API. Knows nothing of Kubernetes.

pub mod batch;
pub mod client;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod keystone;
pub mod limits;
pub mod signer;
pub mod wire;

pub use batch::{BatchOptions, Batcher, Fetched};
pub use client::{ApiObserver, ClientOptions, VbsClient};
pub use config::{CloudProfile, ConfigError, load_cloud};
pub use error::{CloudError, Operation};
pub use limits::CallLimits;
pub use wire::Backup;
