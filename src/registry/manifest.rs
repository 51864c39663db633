//! Manifest media types: which ones we handle, and how to tell what a registry sent.
//!
//! The registry's `Content-Type` is trusted first; some registries send a generic type for
//! OCI content, so the document's own `mediaType` is the fallback. Docker schema 1 is
//! refused: it is signed JSON whose digest changes when re-serialised, and it has been
//! deprecated since 2017.

use bytes::Bytes;

use super::digest::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The four manifest types we accept, in the order the Accept header lists them.
pub const SUPPORTED: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// A manifest exactly as the registry sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    /// The bytes byte-for-byte: re-serialising would change the digest.
    pub bytes: Bytes,
    pub digest: Digest,
}

/// What a HEAD on a manifest tells without downloading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub media_type: Option<String>,
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

/// What kind of document a manifest reply holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Supported(String),
    Schema1(String),
    Unsupported(String),
}

/// Decides the media type from the `Content-Type` header and, failing that, the body.
pub fn classify(content_type: Option<&str>, body: &[u8]) -> Kind {
    let header = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or(ct)
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| !ct.is_empty());
    if let Some(kind) = header.as_deref().and_then(known) {
        return kind;
    }
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let peek = serde_json::from_slice::<Peek>(body).ok();
    if let Some(kind) = peek
        .as_ref()
        .and_then(|p| p.media_type.as_deref())
        .and_then(known)
    {
        return kind;
    }
    if peek.as_ref().and_then(|p| p.schema_version) == Some(1) {
        return Kind::Schema1(header.unwrap_or_else(|| DOCKER_SCHEMA1.to_string()));
    }
    Kind::Unsupported(header.unwrap_or_else(|| "(none given)".to_string()))
}

fn known(media_type: &str) -> Option<Kind> {
    if SUPPORTED.contains(&media_type) {
        Some(Kind::Supported(media_type.to_string()))
    } else if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
        Some(Kind::Schema1(media_type.to_string()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_header_then_body() {
        let s = |t: &str| Kind::Supported(t.to_string());
        let cases: Vec<(Option<&str>, &str, Kind)> = vec![
            (Some(DOCKER_MANIFEST), "{}", s(DOCKER_MANIFEST)),
            (
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                "{}",
                s(OCI_INDEX),
            ),
            (Some(DOCKER_MANIFEST_LIST), "", s(DOCKER_MANIFEST_LIST)),
            (
                Some("application/json"),
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                s(OCI_MANIFEST),
            ),
            (
                None,
                r#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                s(OCI_INDEX),
            ),
            (
                Some(DOCKER_SCHEMA1_SIGNED),
                "{}",
                Kind::Schema1(DOCKER_SCHEMA1_SIGNED.into()),
            ),
            (
                Some(DOCKER_SCHEMA1),
                "{}",
                Kind::Schema1(DOCKER_SCHEMA1.into()),
            ),
            (
                Some("application/json"),
                r#"{"schemaVersion":1,"name":"x"}"#,
                Kind::Schema1("application/json".into()),
            ),
            (
                Some("text/html"),
                "<html>",
                Kind::Unsupported("text/html".into()),
            ),
            (
                None,
                r#"{"schemaVersion":2}"#,
                Kind::Unsupported("(none given)".into()),
            ),
        ];
        for (ct, body, expected) in cases {
            assert_eq!(classify(ct, body.as_bytes()), expected, "{ct:?} {body}");
        }
    }
}
