//! Where a backup lives: the project-scoped block-storage base URL and the paths below it.

use super::config::VbsApi;
use super::error::CloudError;
use super::wire::CatalogService;

/// Catalog service types that serve the Cinder v3 API, in order of preference.
const BLOCK_STORAGE_TYPES: [&str; 2] = ["volumev3", "block-storage"];

/// The block-storage base for a project: `https://host[/prefix]/v3/{project_id}`, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectBase(String);

impl ProjectBase {
    /// From a `block_storage_endpoint_override`, which may be a bare host URL (`https://evs.example`),
    /// end in `/v3`, or already be project-scoped like a catalog entry (`.../v3/{project_id}`).
    pub fn from_override(endpoint: &str, project_id: &str) -> Self {
        let e = endpoint.trim_end_matches('/');
        if e.ends_with(&format!("/v3/{project_id}")) {
            ProjectBase(e.to_string())
        } else if e.ends_with("/v3") {
            ProjectBase(format!("{e}/{project_id}"))
        } else {
            ProjectBase(format!("{e}/v3/{project_id}"))
        }
    }

    /// From a catalog entry, which already ends in `/v3/{project_id}`.
    pub fn from_catalog(url: &str) -> Self {
        ProjectBase(url.trim_end_matches('/').to_string())
    }

    pub fn show_backup_url(&self, api: VbsApi, backup_id: &str) -> String {
        format!("{}/{}{backup_id}", self.0, prefix(api))
    }

    pub fn list_backups_url(&self, api: VbsApi) -> String {
        format!("{}/{}detail", self.0, prefix(api))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn prefix(api: VbsApi) -> &'static str {
    match api {
        VbsApi::Native => "native/backups/",
        VbsApi::Cinder => "backups/",
    }
}

/// Picks the block-storage endpoint for `interface` (and `region`, when set) from a token's catalog.
pub fn select_from_catalog(
    catalog: &[CatalogService],
    interface: &str,
    region: Option<&str>,
) -> Result<ProjectBase, CloudError> {
    BLOCK_STORAGE_TYPES
        .iter()
        .flat_map(|t| catalog.iter().filter(move |s| s.service_type == *t))
        .flat_map(|s| s.endpoints.iter())
        .find(|e| {
            e.interface == interface
                && region.is_none_or(|r| e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r))
        })
        .map(|e| ProjectBase::from_catalog(&e.url))
        .ok_or_else(|| CloudError::NoEndpoint {
            interface: interface.to_string(),
            region: region.map(|r| format!(" in region {r}")).unwrap_or_default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::wire::CatalogEndpoint;

    const P: &str = "b23b579f08c84228b9b4673c46f0c442";

    #[test]
    fn override_forms_all_reach_the_same_base() {
        for e in [
            "https://evs.example",
            "https://evs.example/",
            "https://evs.example/v3",
            &format!("https://evs.example/v3/{P}/"),
        ] {
            assert_eq!(
                ProjectBase::from_override(e, P).as_str(),
                format!("https://evs.example/v3/{P}"),
                "{e}"
            );
        }
    }

    #[test]
    fn paths_for_both_apis() {
        let base = ProjectBase::from_override("https://evs.example", P);
        assert_eq!(
            base.show_backup_url(VbsApi::Native, "id1"),
            format!("https://evs.example/v3/{P}/native/backups/id1")
        );
        assert_eq!(
            base.show_backup_url(VbsApi::Cinder, "id1"),
            format!("https://evs.example/v3/{P}/backups/id1")
        );
        assert_eq!(
            base.list_backups_url(VbsApi::Native),
            format!("https://evs.example/v3/{P}/native/backups/detail")
        );
    }

    fn endpoint(interface: &str, region: &str, url: &str) -> CatalogEndpoint {
        CatalogEndpoint {
            interface: interface.into(),
            region: Some(region.into()),
            region_id: None,
            url: url.into(),
        }
    }

    #[test]
    fn catalog_selection_is_region_and_interface_aware() {
        let catalog = vec![
            CatalogService {
                service_type: "compute".into(),
                endpoints: vec![endpoint("public", "eu-de", "https://ecs")],
            },
            CatalogService {
                service_type: "volumev3".into(),
                endpoints: vec![
                    endpoint("public", "eu-nl", "https://evs.eu-nl/v3/p"),
                    endpoint("internal", "eu-de", "https://evs-int.eu-de/v3/p"),
                    endpoint("public", "eu-de", "https://evs.eu-de/v3/p/"),
                ],
            },
        ];
        assert_eq!(
            select_from_catalog(&catalog, "public", Some("eu-de"))
                .unwrap()
                .as_str(),
            "https://evs.eu-de/v3/p"
        );
        assert_eq!(
            select_from_catalog(&catalog, "internal", Some("eu-de"))
                .unwrap()
                .as_str(),
            "https://evs-int.eu-de/v3/p"
        );
        assert_eq!(
            select_from_catalog(&catalog, "public", None).unwrap().as_str(),
            "https://evs.eu-nl/v3/p"
        );
        let err = select_from_catalog(&catalog, "public", Some("ap-1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the service catalog has no public block-storage (volumev3) endpoint in region ap-1; set block_storage_endpoint_override"
        );
        let block_storage = vec![CatalogService {
            service_type: "block-storage".into(),
            endpoints: vec![endpoint("public", "r", "https://bs/v3/p")],
        }];
        assert_eq!(
            select_from_catalog(&block_storage, "public", Some("r"))
                .unwrap()
                .as_str(),
            "https://bs/v3/p"
        );
    }
}
