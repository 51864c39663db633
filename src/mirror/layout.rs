//! The bundle on disk: one OCI image layout shared by every image.
//!
//! ```text
//! <bundle>/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! <bundle>/index.json            one entry per image (its index or manifest), named
//! <bundle>/blobs/sha256/<hex>    manifests, configs and layers, each stored once
//! <bundle>/images.lock.yaml      what every reference resolved to (see `lock`)
//! <bundle>/.incomplete/          blobs being downloaded, kept for resume
//! ```
//!
//! A file appears under `blobs/` only by rename, after its digest was checked, so a blob
//! under its final name is whole. Push still re-hashes every blob before sending anything:
//! a bundle crosses an air gap on disks and media that corrupt.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use crate::registry::digest::Hasher;
use crate::registry::manifest::OCI_INDEX;
use crate::registry::{Digest, Manifest, Platform};

const OCI_LAYOUT: &str = "oci-layout";
const INDEX_JSON: &str = "index.json";
const INCOMPLETE: &str = ".incomplete";
/// containerd's name for an image in an OCI layout, then the OCI spec's own.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A bundle directory.
#[derive(Clone, Debug)]
pub struct Bundle {
    root: PathBuf,
}

/// What is wrong with one blob of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobProblem {
    pub digest: Digest,
    pub path: PathBuf,
    pub problem: String,
}

/// One image in `index.json`.
pub struct IndexEntry {
    pub name: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Set for a single-platform entry (an exported tarball); an index entry has none.
    pub platform: Option<Platform>,
}

/// `index.json` of an OCI layout: one descriptor per image, named for containerd
/// (`io.containerd.image.name`) and OCI tools (`org.opencontainers.image.ref.name`). The
/// bundle and the exported tarball both write it, so both are read the same way.
pub fn index_json(entries: &[IndexEntry]) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Index<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        manifests: Vec<Entry<'a>>,
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        digest: &'a Digest,
        size: u64,
        annotations: std::collections::BTreeMap<&'a str, &'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        platform: Option<EntryPlatform<'a>>,
    }
    #[derive(Serialize)]
    struct EntryPlatform<'a> {
        architecture: &'a str,
        os: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        variant: Option<&'a str>,
    }
    let index = Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: entries
            .iter()
            .map(|e| Entry {
                media_type: &e.media_type,
                digest: &e.digest,
                size: e.size,
                annotations: [
                    (CONTAINERD_NAME, e.name.as_str()),
                    (OCI_REF_NAME, e.name.as_str()),
                ]
                .into_iter()
                .collect(),
                platform: e.platform.as_ref().map(|p| EntryPlatform {
                    architecture: &p.architecture,
                    os: &p.os,
                    variant: p.variant.as_deref(),
                }),
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&index)
}

impl Bundle {
    /// Creates the directories and `oci-layout` when missing.
    pub fn create(root: &Path) -> std::io::Result<Bundle> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        std::fs::create_dir_all(root.join(INCOMPLETE))?;
        let marker = root.join(OCI_LAYOUT);
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Bundle {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing bundle; the error says what is missing.
    pub fn open(root: &Path) -> Result<Bundle, String> {
        if !root.join(OCI_LAYOUT).is_file() {
            return Err(format!(
                "{} is not an image bundle (no {OCI_LAYOUT} file); give the directory `gpuctl mirror-images pull --bundle` wrote",
                root.display()
            ));
        }
        Ok(Bundle {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join(super::lock::LOCK_FILE)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Where a download in progress lives; left in place by a failed run for resume.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(INCOMPLETE)
            .join(format!("{}-{}", digest.algorithm(), digest.hex()))
    }

    /// Whether the blob is in the bundle (with the expected size, when given).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(meta) => meta.is_file() && size.is_none_or(|s| s == meta.len()),
            Err(_) => false,
        }
    }

    /// Stores small content (a manifest) after checking it against its digest.
    pub fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        if !digest.matches(bytes) {
            return Err(std::io::Error::other(format!(
                "content does not match {digest}"
            )));
        }
        let path = self.blob_path(digest);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&path, bytes)
    }

    /// Reads a manifest from the bundle and checks it against its digest.
    pub fn read_manifest(
        &self,
        digest: &Digest,
        media_type: &str,
    ) -> Result<Manifest, BlobProblem> {
        let path = self.blob_path(digest);
        let problem = |problem: String| BlobProblem {
            digest: digest.clone(),
            path: path.clone(),
            problem,
        };
        let bytes = std::fs::read(&path).map_err(|e| problem(format!("cannot read it: {e}")))?;
        if !digest.matches(&bytes) {
            return Err(problem(format!(
                "its content hashes to {}",
                Digest::sha256_of(&bytes)
            )));
        }
        Ok(Manifest {
            media_type: media_type.to_string(),
            bytes: Bytes::from(bytes),
            digest: digest.clone(),
        })
    }

    /// Re-hashes a blob and checks its size.
    pub fn verify_blob(&self, digest: &Digest, size: u64) -> Result<(), BlobProblem> {
        let path = self.blob_path(digest);
        let problem = |problem: String| BlobProblem {
            digest: digest.clone(),
            path: path.clone(),
            problem,
        };
        let mut file = std::fs::File::open(&path).map_err(|e| problem(format!("missing: {e}")))?;
        let mut hasher = Hasher::for_digest(digest);
        let mut buf = vec![0u8; 1024 * 1024];
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| problem(format!("cannot read it: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(&buf[..n]);
        }
        if total != size {
            return Err(problem(format!(
                "it has {total} bytes, its descriptor says {size}"
            )));
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(problem(format!("its content hashes to {actual}")));
        }
        Ok(())
    }

    /// Writes `index.json` (see [`index_json`]).
    pub fn write_index(&self, entries: &[IndexEntry]) -> std::io::Result<()> {
        let json = index_json(entries).map_err(std::io::Error::other)?;
        write_atomic(&self.root.join(INDEX_JSON), &json)
    }
}

pub use crate::state::atomic::write as write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_verified_and_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bundle = Bundle::create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(Bundle::open(dir.path()).is_ok());
        let data = b"{\"schemaVersion\":2}";
        let digest = Digest::sha256_of(data);
        assert!(
            bundle
                .write_blob(&Digest::sha256_of(b"other"), data)
                .is_err()
        );
        bundle
            .write_blob(&digest, data)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(bundle.has_blob(&digest, Some(data.len() as u64)));
        assert!(!bundle.has_blob(&digest, Some(1)));
        assert_eq!(bundle.verify_blob(&digest, data.len() as u64), Ok(()));

        std::fs::write(bundle.blob_path(&digest), b"{\"schemaVersion\":3}")
            .unwrap_or_else(|e| panic!("{e}"));
        let problem = bundle.verify_blob(&digest, data.len() as u64).err();
        assert!(problem.is_some_and(|p| p.problem.contains("hashes to")));
        assert!(bundle.read_manifest(&digest, OCI_INDEX).is_err());
        let missing = Digest::sha256_of(b"missing");
        assert!(
            bundle
                .verify_blob(&missing, 1)
                .is_err_and(|p| p.problem.starts_with("missing"))
        );
    }

    #[test]
    fn a_directory_without_oci_layout_is_not_a_bundle() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = Bundle::open(dir.path()).err().unwrap_or_default();
        assert!(err.contains("not an image bundle"), "{err}");
    }
}
