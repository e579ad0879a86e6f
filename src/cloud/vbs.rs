//! Volume Backup Service (OpenStack Cinder backups): the native (`/native/backups`) and plain Cinder
//! (`/backups`) path families on the block-storage endpoint.

use super::config::{CloudProfile, VbsApi};
use super::endpoint::ProjectBase;
use super::service::{BackupService, NextPage, Page};
use super::wire::{Backup, ListBackupsPage, ShowBackupResponse};

/// The VBS / Cinder backup API.
pub struct Vbs;

impl BackupService for Vbs {
    type Backup = Backup;

    const NAME: &'static str = "vbs";
    const DESCRIPTION: &'static str = "block-storage (volumev3)";
    const CATALOG_TYPES: &'static [&'static str] = &["volumev3", "block-storage"];
    const OVERRIDE_FIELD: &'static str = "block_storage_endpoint_override";

    fn endpoint_override(cloud: &CloudProfile) -> Option<&str> {
        cloud.block_storage_endpoint.as_deref()
    }

    fn show_url(base: &ProjectBase, cloud: &CloudProfile, backup_id: &str) -> String {
        format!("{}/{}{backup_id}", base.as_str(), prefix(cloud.vbs_api))
    }

    fn list_url(base: &ProjectBase, cloud: &CloudProfile, page_size: u32, _offset: usize) -> String {
        format!(
            "{}/{}detail?limit={page_size}",
            base.as_str(),
            prefix(cloud.vbs_api)
        )
    }

    fn id(backup: &Backup) -> &str {
        &backup.id
    }

    fn parse_show(body: &[u8]) -> Result<Backup, serde_json::Error> {
        serde_json::from_slice::<ShowBackupResponse>(body).map(|r| r.backup)
    }

    fn parse_page(body: &[u8], _page_size: u32, _offset: usize) -> Result<Page<Backup>, serde_json::Error> {
        let page: ListBackupsPage = serde_json::from_slice(body)?;
        let next = page
            .next()
            .map_or(NextPage::End, |href| NextPage::Link(href.to_string()));
        Ok(Page {
            backups: page.backups,
            next,
        })
    }
}

fn prefix(api: VbsApi) -> &'static str {
    match api {
        VbsApi::Native => "native/backups/",
        VbsApi::Cinder => "backups/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::load_cloud;

    const P: &str = "b23b579f08c84228b9b4673c46f0c442";

    fn profile(vbs_api: &str) -> CloudProfile {
        let yaml = format!(
            "clouds:\n  c:\n    auth_type: aksk\n    auth: {{ak: A, sk: S, project_id: {P}}}\n    \
             block_storage_endpoint_override: https://evs.example\n    vbs_api: {vbs_api}\n"
        );
        load_cloud(&yaml, None).expect("profile")
    }

    #[test]
    fn paths_for_both_path_families() {
        let base = ProjectBase::from_override("https://evs.example", P);
        assert_eq!(
            Vbs::show_url(&base, &profile("native"), "id1"),
            format!("https://evs.example/v3/{P}/native/backups/id1")
        );
        assert_eq!(
            Vbs::show_url(&base, &profile("cinder"), "id1"),
            format!("https://evs.example/v3/{P}/backups/id1")
        );
        assert_eq!(
            Vbs::list_url(&base, &profile("native"), 1000, 0),
            format!("https://evs.example/v3/{P}/native/backups/detail?limit=1000")
        );
    }

    #[test]
    fn pages_follow_next_links() {
        let page = Vbs::parse_page(
            br#"{"backups": [{"id": "a"}], "backups_links": [{"rel": "next", "href": "https://e/next"}]}"#,
            1,
            0,
        )
        .expect("page");
        assert_eq!(page.backups.len(), 1);
        assert_eq!(page.next, NextPage::Link("https://e/next".into()));
        let last = Vbs::parse_page(br#"{"backups": []}"#, 1, 0).expect("page");
        assert_eq!(last.next, NextPage::End);
    }
}
