//! What distinguishes one backup service from another: where it lives (its catalog types and its
//! clouds.yaml endpoint override), its paths and its wire format. Everything else (authentication,
//! limits, body caps, error classification, batching) is shared by the client.

use super::config::CloudProfile;
use super::endpoint::ProjectBase;

/// One backup service's read API. Implemented by [`Vbs`](super::vbs::Vbs) and
/// [`Cbr`](super::cbr::Cbr).
pub trait BackupService: Send + Sync + 'static {
    /// One backup as the show and list calls answer it.
    type Backup: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;

    /// Short name: the `service` label of metrics, logs, and part of the batching group key.
    const NAME: &'static str;
    /// What the service is called in messages, e.g. `block-storage (volumev3)`.
    const DESCRIPTION: &'static str;
    /// Keystone catalog service types serving it, in order of preference.
    const CATALOG_TYPES: &'static [&'static str];
    /// The clouds.yaml key that sets its endpoint instead of the catalog.
    const OVERRIDE_FIELD: &'static str;

    /// The endpoint override for this service in `cloud`, if any.
    fn endpoint_override(cloud: &CloudProfile) -> Option<&str>;

    /// URL of the show call for `backup_id`.
    fn show_url(base: &ProjectBase, cloud: &CloudProfile, backup_id: &str) -> String;

    /// URL of the list call's page starting at `offset` (services that page by links ask only for
    /// offset 0 and follow `next` links from there).
    fn list_url(base: &ProjectBase, cloud: &CloudProfile, page_size: u32, offset: usize) -> String;

    /// The ID the answer gives (empty when it gives none).
    fn id(backup: &Self::Backup) -> &str;

    /// A show call's body.
    fn parse_show(body: &[u8]) -> Result<Self::Backup, serde_json::Error>;

    /// A list call's page, asked for with `page_size` at `offset`.
    fn parse_page(
        body: &[u8],
        page_size: u32,
        offset: usize,
    ) -> Result<Page<Self::Backup>, serde_json::Error>;
}

/// One page of a list call.
#[derive(Debug)]
pub struct Page<B> {
    pub backups: Vec<B>,
    pub next: NextPage,
}

/// Where the rest of a list is.
#[derive(Debug, PartialEq, Eq)]
pub enum NextPage {
    /// This was the last page.
    End,
    /// A `next` link to follow (Cinder's `backups_links`).
    Link(String),
    /// The page starting at this offset (CBR's `offset` and `count`).
    Offset(usize),
}
