//! `clouds.yaml` (the OpenStack client convention) parsed into a validated [`CloudProfile`].
//!
//! Errors never quote values from the file: a password in a mistyped field must not end up in a
//! condition message or a log line. The only text from the file an error shows is entry names
//! (the keys under `clouds:`), sanitised and capped. The file is tenant input: its size, alias
//! expansion and the number of names an error lists are bounded.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

/// Which path family serves backups on the block-storage endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VbsApi {
    /// `/v3/{project_id}/native/backups/{id}` (Huawei Cloud / Open Telekom Cloud native OpenStack API).
    #[default]
    Native,
    /// `/v3/{project_id}/backups/{id}` (plain OpenStack Cinder).
    Cinder,
}

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Keystone / IAM password authentication (`POST {auth_url}/auth/tokens`).
    Password(PasswordAuth),
    /// Huawei API gateway AK/SK request signing (`SDK-HMAC-SHA256`).
    AkSk(AkSkAuth),
}

#[derive(Clone, Debug)]
pub struct PasswordAuth {
    pub auth_url: String,
    pub user: UserRef,
    pub password: SecretString,
    pub scope: ProjectScope,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProjectScope {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Clone, Debug)]
pub struct AkSkAuth {
    pub access_key: String,
    pub secret_key: SecretString,
    /// Temporary credentials come with a security token, sent as `X-Security-Token`.
    pub security_token: Option<SecretString>,
}

/// One cloud of clouds.yaml, checked and ready to use.
#[derive(Clone, Debug)]
pub struct CloudProfile {
    /// The entry's name in clouds.yaml.
    pub name: String,
    pub credentials: Credentials,
    /// Known up front for AK/SK and for password auth scoped by project ID; learned from the token
    /// otherwise.
    pub project_id: Option<String>,
    pub region: Option<String>,
    /// Keystone catalog interface to use (`public` unless set).
    pub interface: String,
    /// `block_storage_endpoint_override`: where VBS is served, instead of the catalog.
    pub block_storage_endpoint: Option<String>,
    /// `cbr_endpoint_override`: where CBR is served, instead of the catalog.
    pub cbr_endpoint: Option<String>,
    pub vbs_api: VbsApi,
    /// PEM bundle trusted in addition to the system roots.
    pub ca_cert_pem: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("clouds.yaml is larger than {max} KiB", max = MAX_CLOUDS_YAML_BYTES / 1024)]
    TooLarge,
    #[error("clouds.yaml is not valid YAML or has a value of the wrong type{location}")]
    Syntax { location: String },
    #[error("clouds.yaml has no `clouds:` entries")]
    NoClouds,
    #[error("clouds.yaml holds {count} clouds ({names}); set spec.cloudRef.cloud to pick one")]
    AmbiguousCloud { count: usize, names: String },
    #[error("cloud `{wanted}` is not in clouds.yaml (it has: {names})")]
    UnknownCloud { wanted: String, names: String },
    #[error("cloud `{cloud}`: missing `{field}`")]
    Missing { cloud: String, field: &'static str },
    #[error("cloud `{cloud}`: unsupported `auth_type` (supported: password, v3password, aksk)")]
    UnsupportedAuthType { cloud: String },
    #[error("cloud `{cloud}`: unsupported `vbs_api` (supported: native, cinder)")]
    UnsupportedVbsApi { cloud: String },
    #[error("cloud `{cloud}`: `{field}` must be an http(s) URL")]
    BadUrl { cloud: String, field: &'static str },
    #[error("cloud `{cloud}`: `cacert` must hold PEM text (-----BEGIN CERTIFICATE-----...)")]
    BadCaCert { cloud: String },
    #[error(
        "cloud `{cloud}`: AK/SK signing needs `block_storage_endpoint_override` (for VbsBackups) or \
         `cbr_endpoint_override` (for CbrBackups): there is no catalog without a token"
    )]
    AkSkNeedsAnEndpoint { cloud: String },
    #[error("cloud `{cloud}`: AK/SK signing needs `{field}` (there is no catalog without a token)")]
    AkSkNeedsEndpoint { cloud: String, field: &'static str },
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, RawCloud>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCloud {
    auth_type: Option<String>,
    auth: RawAuth,
    region_name: Option<String>,
    interface: Option<String>,
    block_storage_endpoint_override: Option<String>,
    cbr_endpoint_override: Option<String>,
    vbs_api: Option<String>,
    cacert: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAuth {
    auth_url: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    password: Option<SecretString>,
    user_domain_name: Option<String>,
    user_domain_id: Option<String>,
    domain_name: Option<String>,
    domain_id: Option<String>,
    project_id: Option<String>,
    tenant_id: Option<String>,
    project_name: Option<String>,
    tenant_name: Option<String>,
    project_domain_name: Option<String>,
    project_domain_id: Option<String>,
    ak: Option<String>,
    access_key: Option<String>,
    sk: Option<SecretString>,
    secret_key: Option<SecretString>,
    security_token: Option<SecretString>,
}

/// Largest clouds.yaml accepted (a Secret may hold 1 MiB; a real clouds.yaml is a few KiB).
pub const MAX_CLOUDS_YAML_BYTES: usize = 256 * 1024;
/// Most aliases (`*ref`) replayed while parsing: enough for any hand-written file, far too few for
/// an alias bomb ("billion laughs").
const MAX_ALIAS_REPLAYED_EVENTS: usize = 10_000;
/// Entry names an error lists at most; the rest are counted.
const MAX_LISTED_NAMES: usize = 10;
/// Longest entry name an error shows.
const MAX_NAME_CHARS: usize = 64;

/// Parses `clouds.yaml` text and returns the cloud named `wanted`, or the only cloud when `wanted`
/// is `None`.
pub fn load_cloud(clouds_yaml: &str, wanted: Option<&str>) -> Result<CloudProfile, ConfigError> {
    if clouds_yaml.len() > MAX_CLOUDS_YAML_BYTES {
        return Err(ConfigError::TooLarge);
    }
    let options = serde_saphyr::options! {
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAYED_EVENTS,
        },
    };
    let parsed = serde_saphyr::from_str_with_options(clouds_yaml, options);
    let file: CloudsFile = parsed.map_err(|e| ConfigError::Syntax {
        location: e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default(),
    })?;
    let mut clouds = file.clouds;
    let names = || clouds_names(&clouds);
    let name = match wanted {
        Some(w) if clouds.contains_key(w) => w.to_string(),
        Some(w) => {
            return Err(ConfigError::UnknownCloud {
                wanted: crate::cloud::error::sanitize(w, MAX_NAME_CHARS),
                names: names(),
            });
        }
        None => match clouds.len() {
            0 => return Err(ConfigError::NoClouds),
            1 => clouds.keys().next().cloned().unwrap_or_default(),
            count => {
                return Err(ConfigError::AmbiguousCloud {
                    count,
                    names: names(),
                });
            }
        },
    };
    let raw = clouds.remove(&name).unwrap_or_default();
    validate(name, raw)
}

fn clouds_names(clouds: &BTreeMap<String, RawCloud>) -> String {
    if clouds.is_empty() {
        return "none".into();
    }
    let mut names: Vec<String> = clouds
        .keys()
        .take(MAX_LISTED_NAMES)
        .map(|n| format!("`{}`", crate::cloud::error::sanitize(n, MAX_NAME_CHARS)))
        .collect();
    if clouds.len() > MAX_LISTED_NAMES {
        names.push(format!("and {} more", clouds.len() - MAX_LISTED_NAMES));
    }
    names.join(", ")
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn validate(name: String, raw: RawCloud) -> Result<CloudProfile, ConfigError> {
    let name = crate::cloud::error::sanitize(&name, MAX_NAME_CHARS);
    let missing = |field| ConfigError::Missing {
        cloud: name.clone(),
        field,
    };
    let a = raw.auth;
    let project_id = non_empty(a.project_id).or(non_empty(a.tenant_id));

    let block_storage_endpoint = non_empty(raw.block_storage_endpoint_override)
        .map(|u| check_url(&name, "block_storage_endpoint_override", u))
        .transpose()?;
    let cbr_endpoint = non_empty(raw.cbr_endpoint_override)
        .map(|u| check_url(&name, "cbr_endpoint_override", u))
        .transpose()?;
    let vbs_api = match non_empty(raw.vbs_api).as_deref() {
        None | Some("native") => VbsApi::Native,
        Some("cinder") => VbsApi::Cinder,
        Some(_) => {
            return Err(ConfigError::UnsupportedVbsApi { cloud: name.clone() });
        }
    };
    let ca_cert_pem = match non_empty(raw.cacert) {
        Some(pem) if pem.starts_with("-----BEGIN") => Some(pem),
        Some(_) => {
            return Err(ConfigError::BadCaCert { cloud: name.clone() });
        }
        None => None,
    };

    let auth_type = non_empty(raw.auth_type).unwrap_or_else(|| "password".into());
    let credentials = match auth_type.as_str() {
        "password" | "v3password" => {
            let auth_url = non_empty(a.auth_url).ok_or_else(|| missing("auth.auth_url"))?;
            let auth_url = check_url(&name, "auth.auth_url", auth_url)?;
            let shared_domain = || domain(non_empty(a.domain_id.clone()), non_empty(a.domain_name.clone()));
            let user = match (non_empty(a.user_id), non_empty(a.username)) {
                (Some(id), _) => UserRef::Id(id),
                (None, Some(name)) => UserRef::Name {
                    name,
                    domain: domain(non_empty(a.user_domain_id), non_empty(a.user_domain_name))
                        .or_else(shared_domain)
                        .ok_or_else(|| missing("auth.user_domain_name (or user_domain_id)"))?,
                },
                (None, None) => return Err(missing("auth.username (or user_id)")),
            };
            let password = a.password.ok_or_else(|| missing("auth.password"))?;
            let scope = match (
                &project_id,
                non_empty(a.project_name).or(non_empty(a.tenant_name)),
            ) {
                (Some(id), _) => ProjectScope::Id(id.clone()),
                (None, Some(name)) => ProjectScope::Name {
                    name,
                    domain: domain(non_empty(a.project_domain_id), non_empty(a.project_domain_name))
                        .or_else(shared_domain)
                        .ok_or_else(|| missing("auth.project_domain_name (or project_domain_id)"))?,
                },
                (None, None) => return Err(missing("auth.project_id (or project_name)")),
            };
            Credentials::Password(PasswordAuth {
                auth_url,
                user,
                password,
                scope,
            })
        }
        "aksk" => {
            let access_key = non_empty(a.ak)
                .or(non_empty(a.access_key))
                .ok_or_else(|| missing("auth.ak"))?;
            let secret_key = a.sk.or(a.secret_key).ok_or_else(|| missing("auth.sk"))?;
            if project_id.is_none() {
                return Err(missing("auth.project_id"));
            }
            // Each kind checks for its own override when it calls; one of them must be there.
            if block_storage_endpoint.is_none() && cbr_endpoint.is_none() {
                return Err(ConfigError::AkSkNeedsAnEndpoint { cloud: name });
            }
            Credentials::AkSk(AkSkAuth {
                access_key,
                secret_key,
                security_token: a.security_token,
            })
        }
        _ => {
            return Err(ConfigError::UnsupportedAuthType { cloud: name.clone() });
        }
    };

    Ok(CloudProfile {
        name,
        credentials,
        project_id,
        region: non_empty(raw.region_name),
        interface: non_empty(raw.interface).unwrap_or_else(|| "public".into()),
        block_storage_endpoint,
        cbr_endpoint,
        vbs_api,
        ca_cert_pem,
    })
}

fn domain(id: Option<String>, name: Option<String>) -> Option<DomainRef> {
    id.map(DomainRef::Id).or(name.map(DomainRef::Name))
}

fn check_url(cloud: &str, field: &'static str, value: String) -> Result<String, ConfigError> {
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(ConfigError::BadUrl {
            cloud: cloud.into(),
            field,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const TWO_CLOUDS: &str = r#"
clouds:
  otc:
    auth:
      auth_url: https://iam.example/v3/
      username: svc-backup
      password: s3cret
      user_domain_name: Example
      project_id: b23b579f08c84228b9b4673c46f0c442
    region_name: eu-de
  otc-aksk:
    auth_type: aksk
    auth: {ak: AKEXAMPLE, sk: SKEXAMPLE, project_id: b23b579f08c84228b9b4673c46f0c442}
    block_storage_endpoint_override: https://evs.example
    vbs_api: cinder
"#;

    #[test]
    fn password_cloud_is_parsed() {
        let c = load_cloud(TWO_CLOUDS, Some("otc")).expect("valid");
        assert_eq!(c.project_id.as_deref(), Some("b23b579f08c84228b9b4673c46f0c442"));
        assert_eq!(c.region.as_deref(), Some("eu-de"));
        assert_eq!(c.vbs_api, VbsApi::Native);
        assert_eq!(c.interface, "public");
        let Credentials::Password(p) = c.credentials else {
            panic!("expected password auth")
        };
        assert_eq!(p.auth_url, "https://iam.example/v3", "trailing slash trimmed");
        assert_eq!(
            p.user,
            UserRef::Name {
                name: "svc-backup".into(),
                domain: DomainRef::Name("Example".into())
            }
        );
        assert_eq!(p.password.expose_secret(), "s3cret");
        assert_eq!(
            p.scope,
            ProjectScope::Id("b23b579f08c84228b9b4673c46f0c442".into())
        );
    }

    #[test]
    fn aksk_cloud_is_parsed() {
        let c = load_cloud(TWO_CLOUDS, Some("otc-aksk")).expect("valid");
        assert_eq!(c.vbs_api, VbsApi::Cinder);
        assert_eq!(c.block_storage_endpoint.as_deref(), Some("https://evs.example"));
        let Credentials::AkSk(k) = c.credentials else {
            panic!("expected aksk")
        };
        assert_eq!(k.access_key, "AKEXAMPLE");
        assert_eq!(k.secret_key.expose_secret(), "SKEXAMPLE");
    }

    #[test]
    fn cloud_selection() {
        let err = load_cloud(TWO_CLOUDS, None).unwrap_err();
        assert_eq!(
            err,
            ConfigError::AmbiguousCloud {
                count: 2,
                names: "`otc`, `otc-aksk`".into()
            }
        );
        let err = load_cloud(TWO_CLOUDS, Some("nope")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`nope` is not in clouds.yaml (it has: `otc`, `otc-aksk`)")
        );
        assert_eq!(load_cloud("clouds: {}", None).unwrap_err(), ConfigError::NoClouds);
        let one = "clouds:\n  only:\n    auth: {auth_url: 'http://x/v3', user_id: u, password: p, project_name: p1, domain_name: D}\n";
        let c = load_cloud(one, None).expect("the only cloud is picked");
        assert_eq!(c.name, "only");
        let Credentials::Password(p) = c.credentials else {
            panic!()
        };
        assert_eq!(
            p.scope,
            ProjectScope::Name {
                name: "p1".into(),
                domain: DomainRef::Name("D".into())
            }
        );
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let cases = [
            (
                "clouds: {c: {auth: {username: u, password: p, user_domain_name: d, project_id: x}}}",
                "missing `auth.auth_url`",
            ),
            (
                "clouds: {c: {auth: {auth_url: 'https://i/v3', username: u, password: p, project_id: x}}}",
                "missing `auth.user_domain_name (or user_domain_id)`",
            ),
            (
                "clouds: {c: {auth: {auth_url: 'https://i/v3', username: u, user_domain_id: d, project_id: x}}}",
                "missing `auth.password`",
            ),
            (
                "clouds: {c: {auth: {auth_url: 'https://i/v3', username: u, password: p, user_domain_id: d}}}",
                "missing `auth.project_id (or project_name)`",
            ),
            (
                "clouds: {c: {auth: {auth_url: 'iam.example', username: u, password: p, user_domain_id: d, project_id: x}}}",
                "`auth.auth_url` must be an http(s) URL",
            ),
            (
                "clouds: {c: {auth_type: token, auth: {}}}",
                "unsupported `auth_type`",
            ),
            (
                "clouds: {c: {auth_type: aksk, auth: {ak: a, sk: s, project_id: x}}}",
                "needs `block_storage_endpoint_override`",
            ),
            (
                "clouds: {c: {auth_type: aksk, vbs_api: v2, auth: {ak: a, sk: s, project_id: x}}}",
                "unsupported `vbs_api`",
            ),
            (
                "clouds: {c: {cacert: /etc/ssl/ca.pem, auth_type: aksk, auth: {}}}",
                "`cacert` must hold PEM text",
            ),
        ];
        for (yaml, want) in cases {
            let err = load_cloud(yaml, None).expect_err(yaml).to_string();
            assert!(err.contains(want), "{yaml}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn errors_never_quote_secret_values() {
        let broken = [
            "clouds:\n  c:\n    auth:\n      password: [s3cret-in-a-list]\n",
            "clouds:\n  c:\n    auth:\n      password: s3cret\n     bad_indent: s3cret\n",
            "clouds: s3cret",
        ];
        for yaml in broken {
            let err = load_cloud(yaml, None).expect_err(yaml).to_string();
            assert!(err.starts_with("clouds.yaml is not valid YAML"), "{err}");
            assert!(!err.contains("s3cret"), "secret leaked into {err:?}");
        }
    }

    #[test]
    fn errors_never_quote_field_values() {
        let cases = [
            "clouds: {c: {auth_type: s3cret-type, auth: {}}}",
            "clouds: {c: {vbs_api: s3cret-api, auth_type: aksk, auth: {}}}",
            "clouds: {c: {auth: {auth_url: s3cret-url, username: u, password: p, user_domain_id: d, project_id: x}}}",
        ];
        for yaml in cases {
            let err = load_cloud(yaml, None).expect_err(yaml).to_string();
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn many_entries_give_a_short_message() {
        let mut yaml = String::from("clouds:\n");
        for i in 0..5000 {
            yaml.push_str(&format!("  cloud-{i:05}: {{auth: {{}}}}\n"));
        }
        let err = load_cloud(&yaml, Some("missing"))
            .expect_err("unknown")
            .to_string();
        assert!(err.len() < 400, "{} bytes: {err}", err.len());
        assert!(err.ends_with("and 4990 more)"), "{err}");
    }

    #[test]
    fn hostile_files_are_refused_quickly() {
        let bomb = crate::sim::alias_bomb_clouds_yaml();
        let started = std::time::Instant::now();
        let err = load_cloud(&bomb, None).expect_err("bomb");
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let big = format!("clouds: {{}}\n#{}\n", "x".repeat(MAX_CLOUDS_YAML_BYTES));
        assert_eq!(load_cloud(&big, None).unwrap_err(), ConfigError::TooLarge);

        let wrong_types = "clouds: {c: {auth: {auth_url: [1, 2], password: {a: b}}, region_name: 5}}";
        assert!(matches!(
            load_cloud(wrong_types, None),
            Err(ConfigError::Syntax { .. })
        ));
        let binary = String::from_utf8_lossy(&[0xff, 0x00, 0x1b, 0x7f, b':', b'\n']).into_owned();
        assert!(load_cloud(&binary, None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in ".{0,400}", wanted in proptest::option::of(".{0,20}")) {
            let _ = load_cloud(&text, wanted.as_deref());
        }

        #[test]
        fn parser_never_panics_on_yamlish_input(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "clouds:", "\n", "  ", "c:", "auth:", "{", "}", "[", "]", "&a", "*a", "auth_url: 'https://x/v3'",
                "password: p", "user_id: u", "project_id: x", "auth_type: aksk", "cacert: ", "- ", ": ", "'", "\"",
                "block_storage_endpoint_override: http://e", "!!binary", "<<: *a", "~", "0x1F",
            ]), 0..60)
        ) {
            let text: String = parts.concat();
            let _ = load_cloud(&text, None);
            let _ = load_cloud(&text, Some("c"));
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = load_cloud(TWO_CLOUDS, Some("otc")).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        let c = load_cloud(TWO_CLOUDS, Some("otc-aksk")).expect("valid");
        assert!(!format!("{c:?}").contains("SKEXAMPLE"));
    }
}
