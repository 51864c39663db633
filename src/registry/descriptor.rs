//! What a manifest points at: the children of an index (with their platforms) and the
//! config and layers of an image manifest. Read only to know what to fetch; the bytes
//! themselves are never re-serialised. Layer and config media types are opaque here.

use std::fmt;

use serde::Deserialize;

use super::digest::Digest;
use super::manifest::{DOCKER_MANIFEST_LIST, Manifest, OCI_INDEX};

/// A content descriptor: what a manifest says about one thing it references.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// `os/architecture[/variant]`, as an index entry gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/amd64` or `linux/arm64/v8`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let bad = || {
            format!(
                "platform \"{text}\" is not os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8"
            )
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(bad()),
        }
    }

    /// Whether this index entry is what `wanted` asks for. A wanted platform without a
    /// variant takes any variant (`linux/arm64` matches `linux/arm64/v8`).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || wanted.variant == self.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ImageDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Whether a manifest is an index (a list of per-platform manifests).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The entries of an index.
pub fn index_children(manifest: &Manifest) -> Result<Vec<Descriptor>, String> {
    serde_json::from_slice::<IndexDoc>(&manifest.bytes)
        .map(|d| d.manifests)
        .map_err(|e| format!("the index {} cannot be read: {e}", manifest.digest))
}

/// The config, then the layers, of an image manifest.
pub fn image_blobs(manifest: &Manifest) -> Result<Vec<Descriptor>, String> {
    let doc = serde_json::from_slice::<ImageDoc>(&manifest.bytes)
        .map_err(|e| format!("the image manifest {} cannot be read: {e}", manifest.digest))?;
    let mut blobs = vec![doc.config];
    blobs.extend(doc.layers);
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::OCI_MANIFEST;

    fn manifest(media_type: &str, json: &str) -> Manifest {
        Manifest {
            media_type: media_type.to_string(),
            bytes: bytes::Bytes::from(json.to_string()),
            digest: Digest::sha256_of(json.as_bytes()),
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn platforms_parse_print_and_match() {
        let amd = Platform::parse("linux/amd64").unwrap_or_else(|e| panic!("{e}"));
        let arm_v8 = Platform::parse("linux/arm64/v8").unwrap_or_else(|e| panic!("{e}"));
        let arm = Platform::parse("linux/arm64").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(arm_v8.to_string(), "linux/arm64/v8");
        assert!(arm_v8.satisfies(&arm));
        assert!(!arm.satisfies(&arm_v8));
        assert!(!amd.satisfies(&arm));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_index_children_and_image_blobs() {
        let index = manifest(
            OCI_INDEX,
            &format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":11,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
            ),
        );
        let children = index_children(&index).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(children.len(), 2);
        assert_eq!(
            children[1]
                .platform
                .as_ref()
                .map(|p| p.to_string())
                .as_deref(),
            Some("linux/arm64/v8")
        );
        let image = manifest(
            OCI_MANIFEST,
            &format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":2}},"layers":[{{"mediaType":"y","digest":"{D2}","size":3}}]}}"#
            ),
        );
        let blobs = image_blobs(&image).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(blobs.iter().map(|b| b.size).collect::<Vec<_>>(), vec![2, 3]);
        assert!(image_blobs(&manifest(OCI_MANIFEST, "{}")).is_err());
    }
}
