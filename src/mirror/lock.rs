//! The lock file, `<bundle>/images.lock.yaml`: what every image reference resolved to when
//! it was pulled. Per image: the reference as written, the resolved manifest or index
//! digest, and for an index the platform manifests in the bundle (and those left out by a
//! platform filter). A later pull keeps these pins; `push` reads only the lock and the
//! bundle, never the upstream registry, so what is pushed is what was locked.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::registry::{Digest, Reference};

use super::layout::write_atomic;

pub const LOCK_FILE: &str = "images.lock.yaml";

/// The lock file of an install bundle: `<bundle>/images/images.lock.yaml` (where
/// `mirror-images pull --bundle <bundle>/images` leaves it), else `<bundle>/images.lock.yaml`.
pub fn in_bundle(bundle: &std::path::Path) -> Option<std::path::PathBuf> {
    [bundle.join("images"), bundle.to_path_buf()]
        .into_iter()
        .map(|d| d.join(LOCK_FILE))
        .find(|p| p.is_file())
}
const VERSION: u32 = 1;
const HEADER: &str = "# Written by `gpuctl mirror-images pull`: every image pinned to the digest it had\n\
# when pulled. Delete an entry (or pull with --update) to resolve its tag again.\n";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    /// The `--platform` filter of the pull, empty for every platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform_filter: Vec<String>,
    pub images: Vec<LockedImage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The reference as the images file wrote it.
    pub source: String,
    /// The normalised reference (`docker.io/library/nginx:1.27`).
    pub reference: String,
    /// The digest the reference resolved to: an index or an image manifest.
    pub digest: Digest,
    pub media_type: String,
    /// For an index: the platform manifests whose blobs are in the bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<LockedPlatform>,
    /// For an index: the entries the platform filter left out (not in the bundle).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<LockedPlatform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlatform {
    /// `linux/amd64`, or `unknown` for an entry without a platform (attestations).
    pub platform: String,
    pub digest: Digest,
    pub media_type: String,
}

impl LockFile {
    pub fn new(platform_filter: Vec<String>, images: Vec<LockedImage>) -> LockFile {
        LockFile {
            version: VERSION,
            platform_filter,
            images,
        }
    }

    /// Reads a lock file; the error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<LockFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the lock file {}: {e}", path.display()))?;
        let lock: LockFile = serde_yaml::from_str(&text).map_err(|e| {
            format!(
                "the lock file {} is not valid: {e}; pull again to rewrite it",
                path.display()
            )
        })?;
        if lock.version != VERSION {
            return Err(format!(
                "the lock file {} has version {}, this gpuctl reads version {VERSION}; pull again with this gpuctl",
                path.display(),
                lock.version
            ));
        }
        for image in &lock.images {
            Reference::parse(&image.reference)
                .map_err(|e| format!("the lock file {}: {e}", path.display()))?;
        }
        Ok(lock)
    }

    /// Writes the lock file atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let yaml = serde_yaml::to_string(self).map_err(std::io::Error::other)?;
        write_atomic(path, format!("{HEADER}{yaml}").as_bytes())
    }

    /// The pinned digest of a normalised reference, if it is locked.
    pub fn pinned(&self, reference: &Reference) -> Option<&LockedImage> {
        let text = reference.to_string();
        self.images.iter().find(|i| i.reference == text)
    }
}

impl LockedImage {
    pub fn reference(&self) -> Result<Reference, String> {
        Reference::parse(&self.reference).map_err(|e| e.to_string())
    }

    /// Whether a platform filter left entries of this index out of the bundle.
    pub fn pruned(&self) -> bool {
        !self.skipped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: char) -> Digest {
        Digest::parse(&format!("sha256:{}", n.to_string().repeat(64)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sample() -> LockFile {
        LockFile::new(
            vec!["linux/amd64".into()],
            vec![
                LockedImage {
                    source: "nginx".into(),
                    reference: "docker.io/library/nginx:latest".into(),
                    digest: digest('a'),
                    media_type: crate::registry::manifest::OCI_INDEX.into(),
                    platforms: vec![LockedPlatform {
                        platform: "linux/amd64".into(),
                        digest: digest('b'),
                        media_type: crate::registry::manifest::OCI_MANIFEST.into(),
                    }],
                    skipped: vec![LockedPlatform {
                        platform: "linux/arm64/v8".into(),
                        digest: digest('c'),
                        media_type: crate::registry::manifest::OCI_MANIFEST.into(),
                    }],
                },
                LockedImage {
                    source: "ghcr.io/org/app:1.0".into(),
                    reference: "ghcr.io/org/app:1.0".into(),
                    digest: digest('d'),
                    media_type: crate::registry::manifest::DOCKER_MANIFEST.into(),
                    platforms: vec![],
                    skipped: vec![],
                },
            ],
        )
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(LOCK_FILE);
        let lock = sample();
        lock.write(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.starts_with("# Written by `gpuctl mirror-images pull`"),
            "{text}"
        );
        assert!(text.contains(&format!("digest: {}", digest('a'))), "{text}");
        // A single-manifest image has no empty platform lists cluttering the file.
        assert_eq!(text.matches("platforms:").count(), 1, "{text}");
        assert_eq!(LockFile::read(&path), Ok(lock.clone()));
        let reference = Reference::parse("nginx").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            lock.pinned(&reference).map(|i| &i.digest),
            Some(&digest('a'))
        );
        assert!(lock.images[0].pruned() && !lock.images[1].pruned());
    }

    #[test]
    fn bad_lock_files_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "version: 1\nimages:\n  - source: x\n    reference: x\n    digest: sha256:abc\n    media_type: m\n").unwrap_or_else(|e| panic!("{e}"));
        let err = LockFile::read(&path).err().unwrap_or_default();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("64"),
            "{err}"
        );
        std::fs::write(&path, "version: 9\nimages: []\n").unwrap_or_else(|e| panic!("{e}"));
        let err = LockFile::read(&path).err().unwrap_or_default();
        assert!(err.contains("version 9"), "{err}");
        let err = LockFile::read(&dir.path().join("none.yaml"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("cannot read the lock file"), "{err}");
    }
}
