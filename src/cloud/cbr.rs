//! Cloud Backup and Recovery (CBR), the successor of VBS on Huawei Cloud and Open Telekom Cloud:
//! `GET {cbr}/v3/{project_id}/backups/{backup_id}` and the offset-paged list
//! `GET {cbr}/v3/{project_id}/backups?limit=&offset=`.

use serde::Deserialize;

use super::config::CloudProfile;
use super::endpoint::ProjectBase;
use super::service::{BackupService, NextPage, Page};
use super::wire::lenient;

/// The CBR backup API.
pub struct Cbr;

/// Per-disk backups of a server backup kept at most; the rest are only counted.
pub const MAX_CHILDREN: usize = 64;

/// One CBR backup as the show and list calls return it. As with VBS, every field but `id` may be
/// missing, null or of an unexpected type: such a value is dropped instead of failing the answer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CbrBackup {
    #[serde(default, deserialize_with = "lenient::id")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub description: Option<String>,
    /// available, protecting, deleting, restoring, error, waiting_protect, waiting_delete,
    /// waiting_restore, or any other string.
    #[serde(default, deserialize_with = "lenient::text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub checkpoint_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub vault_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub parent_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub enterprise_project_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub provider_id: Option<String>,
    /// `backup` or `replication`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub image_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_name: Option<String>,
    /// `OS::Nova::Server`, `OS::Cinder::Volume`, `OS::Sfs::Turbo`, ...
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_az: Option<String>,
    /// GB; older answers send it as a string.
    #[serde(default, deserialize_with = "lenient::integer")]
    pub resource_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub updated_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub protected_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub expired_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub incremental: Option<bool>,
    #[serde(default)]
    pub children: Children,
    #[serde(default, deserialize_with = "lenient::object")]
    pub extend_info: Option<ExtendInfo>,
}

impl CbrBackup {
    /// Whether the backup is incremental: the top-level field, else `extend_info.incremental`.
    pub fn is_incremental(&self) -> Option<bool> {
        self.incremental
            .or_else(|| self.extend_info.as_ref().and_then(|e| e.incremental))
    }
}

/// The part of `extend_info` the operator reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ExtendInfo {
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub incremental: Option<bool>,
}

/// The per-disk backups of a server backup: the first [`MAX_CHILDREN`], and how many there are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Children {
    pub total: usize,
    pub first: Vec<CbrChild>,
}

impl<'de> Deserialize<'de> for Children {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let serde_json::Value::Array(items) = serde_json::Value::deserialize(d)? else {
            return Ok(Children::default());
        };
        let total = items.len();
        let first = items
            .into_iter()
            .filter_map(|v| serde_json::from_value::<CbrChild>(v).ok())
            .take(MAX_CHILDREN)
            .collect();
        Ok(Children { total, first })
    }
}

/// One per-disk backup of a server backup.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CbrChild {
    #[serde(default, deserialize_with = "lenient::id")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub resource_size: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ShowResponse {
    backup: CbrBackup,
}

/// One page of the list call: `{backups[], count, offset, limit}`.
#[derive(Debug, Deserialize)]
struct ListPage {
    #[serde(default)]
    backups: Vec<CbrBackup>,
    /// All backups matching the query (not only this page's).
    #[serde(default, deserialize_with = "lenient::integer")]
    count: Option<i64>,
}

impl BackupService for Cbr {
    type Backup = CbrBackup;

    const NAME: &'static str = "cbr";
    const DESCRIPTION: &'static str = "Cloud Backup and Recovery (cbr)";
    const CATALOG_TYPES: &'static [&'static str] = &["cbr"];
    const OVERRIDE_FIELD: &'static str = "cbr_endpoint_override";

    fn endpoint_override(cloud: &CloudProfile) -> Option<&str> {
        cloud.cbr_endpoint.as_deref()
    }

    fn show_url(base: &ProjectBase, _cloud: &CloudProfile, backup_id: &str) -> String {
        format!("{}/backups/{backup_id}", base.as_str())
    }

    fn list_url(base: &ProjectBase, _cloud: &CloudProfile, page_size: u32, offset: usize) -> String {
        format!("{}/backups?limit={page_size}&offset={offset}", base.as_str())
    }

    fn id(backup: &CbrBackup) -> &str {
        &backup.id
    }

    fn parse_show(body: &[u8]) -> Result<CbrBackup, serde_json::Error> {
        serde_json::from_slice::<ShowResponse>(body).map(|r| r.backup)
    }

    /// The next page starts after this one while `count` says more remain; without a usable
    /// `count`, while pages come back full.
    fn parse_page(body: &[u8], page_size: u32, offset: usize) -> Result<Page<CbrBackup>, serde_json::Error> {
        let page: ListPage = serde_json::from_slice(body)?;
        let after = offset.saturating_add(page.backups.len());
        let more = match page.count.and_then(|c| usize::try_from(c).ok()) {
            _ if page.backups.is_empty() => false,
            Some(count) => after < count,
            None => page.backups.len() >= page_size as usize,
        };
        Ok(Page {
            backups: page.backups,
            next: if more {
                NextPage::Offset(after)
            } else {
                NextPage::End
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the example of Huawei's "Querying a Specified Backup" page.
    pub const EXAMPLE: &str = r#"{
  "backup": {
    "provider_id": "0daac4c5-6707-4851-97ba-169e36266b66",
    "checkpoint_id": "8b0851a8-adf3-4f4c-a914-dead08bf9664",
    "enterprise_project_id": "0",
    "vault_id": "3b5816b5-f29c-4172-9d9a-76c719a659ce",
    "id": "6df2b54c-dd62-4059-a07c-1b8f24f2725d",
    "resource_az": "br-iaas-odin1a",
    "image_type": "backup",
    "resource_id": "94eba8b2-acc9-4d82-badc-127144cc5526",
    "resource_size": "40",
    "children": [
      {"id": "5a4a2b84-4f3b-4b4e-8e52-4e7d1bb0a0a5", "status": "available", "resource_id": "d1", "resource_name": "sys-disk", "resource_type": "OS::Cinder::Volume", "resource_size": 40}
    ],
    "extend_info": {"auto_trigger": true, "incremental": true, "bootable": true},
    "project_id": "4229d7a45436489f8c3dc2b1d35d4987",
    "status": "available",
    "resource_name": "ecs-1f0f-0002",
    "description": "",
    "expired_at": "2019-05-23T03:13:20.154+00:00",
    "name": "autobk_a61d",
    "created_at": "2019-05-21T03:13:20.154+00:00",
    "updated_at": "2019-05-21T09:10:05.453+00:00",
    "protected_at": "2019-05-21T03:13:30",
    "resource_type": "OS::Nova::Server"
  }
}"#;

    #[test]
    fn example_parses_with_string_size_and_children() {
        let b = Cbr::parse_show(EXAMPLE.as_bytes()).expect("parses");
        assert_eq!(b.id, "6df2b54c-dd62-4059-a07c-1b8f24f2725d");
        assert_eq!(b.resource_size, Some(40));
        assert_eq!(b.resource_type.as_deref(), Some("OS::Nova::Server"));
        assert_eq!(b.children.total, 1);
        assert_eq!(b.children.first[0].resource_name.as_deref(), Some("sys-disk"));
        assert_eq!(b.incremental, None);
        assert_eq!(b.is_incremental(), Some(true), "from extend_info");
    }

    #[test]
    fn odd_children_and_extend_info_are_dropped_not_fatal() {
        let many: Vec<serde_json::Value> = (0..100)
            .map(|i| serde_json::json!({"id": format!("c{i}")}))
            .collect();
        let body = serde_json::json!({"backup": {"id": "x", "children": many, "extend_info": "nope"}});
        let b = Cbr::parse_show(body.to_string().as_bytes()).expect("parses");
        assert_eq!((b.children.total, b.children.first.len()), (100, MAX_CHILDREN));
        assert_eq!(b.extend_info, None);
        let body = br#"{"backup": {"id": "x", "children": {"not": "a list"}, "resource_size": [1]}}"#;
        let b = Cbr::parse_show(body).expect("parses");
        assert_eq!((b.children.total, b.resource_size), (0, None));
    }

    #[test]
    fn pages_go_by_offset_and_count() {
        let page = |body: &str, offset| Cbr::parse_page(body.as_bytes(), 2, offset).expect("page").next;
        assert_eq!(
            page(r#"{"backups": [{"id": "a"}, {"id": "b"}], "count": 5}"#, 0),
            NextPage::Offset(2)
        );
        assert_eq!(
            page(r#"{"backups": [{"id": "e"}], "count": 5}"#, 4),
            NextPage::End
        );
        assert_eq!(
            page(r#"{"backups": [{"id": "a"}, {"id": "b"}], "count": 4}"#, 2),
            NextPage::End
        );
        // No usable count: more while pages are full.
        assert_eq!(
            page(r#"{"backups": [{"id": "a"}, {"id": "b"}], "count": "many"}"#, 0),
            NextPage::Offset(2)
        );
        assert_eq!(page(r#"{"backups": [{"id": "a"}]}"#, 2), NextPage::End);
        // A count promising more behind an empty page ends the list.
        assert_eq!(page(r#"{"backups": [], "count": 99}"#, 2), NextPage::End);
    }

    #[test]
    fn paths() {
        let base = ProjectBase::from_override("https://cbr.example", "p1");
        let cloud = crate::cloud::load_cloud(
            "clouds:\n  c:\n    auth_type: aksk\n    auth: {ak: A, sk: S, project_id: p1}\n    cbr_endpoint_override: https://cbr.example\n",
            None,
        )
        .expect("profile");
        assert_eq!(
            Cbr::show_url(&base, &cloud, "b1"),
            "https://cbr.example/v3/p1/backups/b1"
        );
        assert_eq!(
            Cbr::list_url(&base, &cloud, 1000, 2000),
            "https://cbr.example/v3/p1/backups?limit=1000&offset=2000"
        );
    }
}
