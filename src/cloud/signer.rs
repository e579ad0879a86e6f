//! Huawei Cloud / Open Telekom Cloud API-gateway request signing, algorithm `SDK-HMAC-SHA256`.
//!
//! Pure functions: the client signs outgoing requests with them and the simulator verifies
//! incoming ones, so both sides agree on one definition, which the tests pin to Huawei's own
//! published examples.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub const DATE_HEADER: &str = "X-Sdk-Date";
/// `X-Sdk-Date` format: `20191115T033655Z`.
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The parts of an HTTP request that the signature covers.
#[derive(Debug, Clone)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// The path as it goes on the wire (percent-encoded or not: it is normalised either way).
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    /// The headers to sign, names in any case. Must include `X-Sdk-Date`.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Each path segment decoded and re-encoded with RFC 3986 rules; always ends in `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut uri = path
        .split('/')
        .map(|seg| encode(&percent_decode_str(seg).decode_utf8_lossy()))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Parameters sorted by encoded name, then value; `name=value` joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercased, sorted header names and their trimmed values.
fn normalised_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    out.sort();
    out
}

/// The `SignedHeaders` list: lowercase names joined by `;`.
pub fn signed_headers(headers: &[(String, String)]) -> String {
    normalised_headers(headers)
        .into_iter()
        .map(|(k, _)| k)
        .collect::<Vec<_>>()
        .join(";")
}

pub fn canonical_request(req: &SignableRequest<'_>) -> String {
    let headers = normalised_headers(req.headers);
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        signed_headers(req.headers),
        hex_sha256(req.body)
    )
}

pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

/// Lowercase hex HMAC-SHA256 of the string to sign, keyed by the secret key.
pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn authorization(access_key: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}")
}

/// Signs a request: returns the `Authorization` header value. `req.headers` must already hold the
/// `X-Sdk-Date` header whose value is `sdk_date`.
pub fn sign(req: &SignableRequest<'_>, access_key: &str, secret_key: &str, sdk_date: &str) -> String {
    let sts = string_to_sign(&canonical_request(req), sdk_date);
    authorization(
        access_key,
        &signed_headers(req.headers),
        &signature(secret_key, &sts),
    )
}

/// A parsed `Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let (mut access_key, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Access" => access_key = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.split(';').map(str::to_string).collect()),
            "Signature" => signature = Some(v.to_string()),
            _ => {}
        }
    }
    Some(ParsedAuthorization {
        access_key: access_key?,
        signed_headers: signed?,
        signature: signature?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Huawei's signing guide (devg-apisign, api-sign-algorithm-002..005) works this request through.
    #[test]
    fn huawei_signing_guide_example() {
        let query = pairs(&[("limit", "2"), ("marker", "13551d6b-755d-4757-b956-536f674975c0")]);
        let headers = pairs(&[
            ("Content-Type", "application/json"),
            ("Host", "service.region.example.com"),
            ("X-Sdk-Date", "20191115T033655Z"),
        ]);
        let req = SignableRequest {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n\
             content-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n\n\
             content-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        let sts = string_to_sign(&canonical, "20191115T033655Z");
        assert_eq!(
            sts,
            "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        assert_eq!(
            sign(
                &req,
                "QTWAOYTTINDUT2QVKYUC",
                "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
                "20191115T033655Z"
            ),
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, \
             Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    /// huaweicloud-sdk-go-v3 core/auth/signer/signer_test.go, test1 (signs x-sdk-date only).
    #[test]
    fn huawei_go_sdk_vector() {
        let query = pairs(&[("limit", "1")]);
        let headers = pairs(&[("X-Sdk-Date", "20060102T150405Z")]);
        let req = SignableRequest {
            method: "GET",
            path: "/path",
            query: &query,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            sign(&req, "AccessKey", "SecretKey", "20060102T150405Z"),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, \
             Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"
        );
    }

    /// huaweicloud-sdk-python-v3 huaweicloud-sdk-core/tests/test_signer.py, test_signer1 and 2.
    #[test]
    fn huawei_python_sdk_vectors() {
        let query = pairs(&[("size", "1")]);
        let headers = pairs(&[
            ("Host", "service.endpoint.myhuaweicloud.com"),
            ("X-Sdk-Date", "20200608T023900Z"),
        ]);
        let get = SignableRequest {
            method: "GET",
            path: "/resources",
            query: &query,
            headers: &headers,
            body: b"",
        };
        assert!(sign(&get, "AccessKey", "SecretKey", "20200608T023900Z")
            .ends_with("SignedHeaders=host;x-sdk-date, Signature=cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842"));
        let post = SignableRequest {
            method: "POST",
            body: br#"{"name":"test","id":1}"#,
            ..get
        };
        assert!(
            sign(&post, "AccessKey", "SecretKey", "20200608T023900Z")
                .ends_with("Signature=436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f")
        );
    }

    /// huaweicloud-sdk-java-v3 AKSKSignerTest.testAKSKSigner and the SDKs' shared query test.
    #[test]
    fn huawei_java_sdk_vector_and_query_rules() {
        let query = pairs(&[("limit", "2"), ("marker", "13551d6b-755d-4757-b956-536f674975c0")]);
        let headers = pairs(&[
            ("Host", "service.region.example.com"),
            ("X-Sdk-Date", "20191115T033655Z"),
        ]);
        let req = SignableRequest {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            query: &query,
            headers: &headers,
            body: b"",
        };
        assert!(
            sign(&req, "AccessKey", "SecretKey", "20191115T033655Z")
                .ends_with("Signature=fd95e7da6f695cfb4cabbb9d6b0968aec155bc576b064835282473539ae9ea1d")
        );
        let q = pairs(&[
            ("limit", "1"),
            ("enable", "true"),
            ("test", "\u{4e00} (&=?!#%.*)"),
            ("path", "/tmp/123"),
            ("multi", "3"),
            ("multi", "1"),
            ("multi", "2"),
        ]);
        assert_eq!(
            canonical_query(&q),
            "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
        );
    }

    #[test]
    fn canonical_uri_always_ends_in_slash_and_encodes_segments() {
        assert_eq!(
            canonical_uri("/v3/p/native/backups/abc"),
            "/v3/p/native/backups/abc/"
        );
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a b/c%20d/"), "/a%20b/c%20d/");
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        let q = vec![
            ("marker".to_string(), "x y".to_string()),
            ("limit".into(), "2".into()),
            ("a".into(), "".into()),
        ];
        assert_eq!(canonical_query(&q), "a=&limit=2&marker=x%20y");
    }

    #[test]
    fn authorization_header_round_trips() {
        let h = authorization("AK", "host;x-sdk-date", "abc123");
        assert_eq!(
            h,
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc123"
        );
        let p = parse_authorization(&h).expect("parses");
        assert_eq!(p.access_key, "AK");
        assert_eq!(p.signed_headers, vec!["host", "x-sdk-date"]);
        assert_eq!(p.signature, "abc123");
        assert!(parse_authorization("Bearer xyz").is_none());
    }
}
