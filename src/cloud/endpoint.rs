//! Where a backup service lives: the project-scoped base URL, from an override or the catalog.

use super::config::CloudProfile;
use super::error::CloudError;
use super::service::BackupService;
use super::wire::CatalogService;

/// The base of a service for a project: `https://host[/prefix]/v3/{project_id}`, no trailing slash.
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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most catalog endpoints a session keeps (a catalog is the cloud's input, of any size).
const MAX_ENDPOINTS: usize = 256;

/// The endpoints of a token's catalog for one interface and region: all a session needs to find
/// any service's base later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogEndpoints(Vec<(String, String)>);

impl CatalogEndpoints {
    /// Keeps the catalog's endpoints for `interface` (and `region`, when set).
    pub fn select(catalog: &[CatalogService], interface: &str, region: Option<&str>) -> Self {
        let endpoints = catalog
            .iter()
            .flat_map(|s| s.endpoints.iter().map(move |e| (s, e)))
            .filter(|(_, e)| {
                e.interface == interface
                    && region
                        .is_none_or(|r| e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r))
            })
            .map(|(s, e)| (s.service_type.clone(), e.url.clone()))
            .take(MAX_ENDPOINTS)
            .collect();
        CatalogEndpoints(endpoints)
    }

    /// The base of the first of `service_types` the catalog has, in their order of preference.
    pub fn base(&self, service_types: &[&str]) -> Option<ProjectBase> {
        service_types.iter().find_map(|t| {
            self.0
                .iter()
                .find(|(service_type, _)| service_type == t)
                .map(|(_, url)| ProjectBase::from_catalog(url))
        })
    }
}

/// The base of `S` for `cloud`: its endpoint override, else its entry in the session's catalog.
pub fn base_of<S: BackupService>(
    cloud: &CloudProfile,
    project_id: &str,
    catalog: &CatalogEndpoints,
) -> Result<ProjectBase, CloudError> {
    if let Some(endpoint) = S::endpoint_override(cloud) {
        return Ok(ProjectBase::from_override(endpoint, project_id));
    }
    catalog
        .base(S::CATALOG_TYPES)
        .ok_or_else(|| CloudError::NoEndpoint {
            service: S::DESCRIPTION,
            override_field: S::OVERRIDE_FIELD,
            interface: cloud.interface.clone(),
            region: cloud
                .region
                .as_deref()
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default(),
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
            CatalogService {
                service_type: "cbr".into(),
                endpoints: vec![endpoint("public", "eu-de", "https://cbr.eu-de/v3/p")],
            },
        ];
        let vbs = crate::cloud::Vbs::CATALOG_TYPES;
        let base = |interface, region| CatalogEndpoints::select(&catalog, interface, region).base(vbs);
        assert_eq!(
            base("public", Some("eu-de")).unwrap().as_str(),
            "https://evs.eu-de/v3/p"
        );
        assert_eq!(
            base("internal", Some("eu-de")).unwrap().as_str(),
            "https://evs-int.eu-de/v3/p"
        );
        assert_eq!(base("public", None).unwrap().as_str(), "https://evs.eu-nl/v3/p");
        assert_eq!(base("public", Some("ap-1")), None);
        let eu_de = CatalogEndpoints::select(&catalog, "public", Some("eu-de"));
        assert_eq!(
            eu_de.base(crate::cloud::Cbr::CATALOG_TYPES).unwrap().as_str(),
            "https://cbr.eu-de/v3/p"
        );
        let block_storage = vec![CatalogService {
            service_type: "block-storage".into(),
            endpoints: vec![endpoint("public", "r", "https://bs/v3/p")],
        }];
        assert_eq!(
            CatalogEndpoints::select(&block_storage, "public", Some("r"))
                .base(vbs)
                .unwrap()
                .as_str(),
            "https://bs/v3/p"
        );
    }

    #[test]
    fn a_missing_service_names_its_override() {
        let cloud = crate::cloud::load_cloud(
            "clouds:\n  c:\n    auth: {auth_url: https://iam, username: u, password: p, user_domain_name: d, project_id: p1}\n    region_name: ap-1\n",
            None,
        )
        .expect("profile");
        let err = base_of::<crate::cloud::Cbr>(&cloud, "p1", &CatalogEndpoints::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the service catalog has no public Cloud Backup and Recovery (cbr) endpoint in region ap-1; set cbr_endpoint_override"
        );
    }
}
