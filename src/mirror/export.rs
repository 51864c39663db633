//! `mirror-images export --format tar`: images of a bundle as one tarball that both
//! `docker load` and `ctr images import` (so k3s's `agent/images/` directory) accept, for
//! clusters without a registry.
//!
//! The tarball holds one platform of each image, from the same blobs twice described:
//!
//! ```text
//! oci-layout                {"imageLayoutVersion":"1.0.0"}
//! index.json                one entry per image: the platform manifest, named with
//!                           io.containerd.image.name and org.opencontainers.image.ref.name
//! manifest.json             Docker's: Config, RepoTags, Layers as blobs/sha256/<hex> paths
//! blobs/sha256/<hex>        manifests, configs and layers, each once
//! ```
//!
//! containerd reads `index.json` when `oci-layout` is there; Docker reads `manifest.json`.
//! Names are the upstream references of the lock (`docker.io/library/busybox:1.36`), so a
//! pod spec that names the upstream image finds it on the node. One platform per image,
//! because `manifest.json` has no platforms and a node runs one. Blobs are copied from
//! the bundle in pieces and hashed on the way; the tarball is written to a temp file
//! beside the target and renamed only when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

use crate::exit::BadInput;
use crate::registry::descriptor::image_blobs;
use crate::registry::digest::Hasher;
use crate::registry::{Descriptor, Digest, Manifest, Platform, Reference};

use super::layout::{Bundle, IndexEntry};
use super::lock::{LockFile, LockedImage};
use super::progress::{Transfer, human_bytes};
use crate::tar::TarWriter;

/// Image configs are small JSON; a larger one is a damaged bundle.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// What to export.
pub struct ExportOptions {
    pub bundle: PathBuf,
    pub out: PathBuf,
    /// Only these images of the lock (normalised references); empty: all of them.
    pub images: Vec<Reference>,
    pub platform: Platform,
}

/// One image in the tarball.
#[derive(Debug)]
pub struct ExportedImage {
    /// The name both tools give it (`docker.io/library/busybox:1.36`).
    pub name: String,
    pub platform: String,
    pub manifest: Digest,
    /// The config digest: Docker's image ID.
    pub config: Digest,
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportReport {
    pub images: Vec<ExportedImage>,
    pub blobs: usize,
    pub bytes: u64,
    pub out: PathBuf,
}

/// One chosen image: its platform manifest and what it lists.
struct Chosen {
    name: String,
    tagged: bool,
    platform: Platform,
    manifest: Manifest,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

pub fn export(options: &ExportOptions) -> anyhow::Result<ExportReport> {
    let bundle = Bundle::open(&options.bundle).map_err(BadInput)?;
    let lock = LockFile::read(&bundle.lock_path()).map_err(|e| {
        BadInput(format!(
            "{e}; run `gpuctl mirror-images pull --bundle {}` first",
            bundle.root().display()
        ))
    })?;
    let selected = select(&lock, &options.images)?;
    let mut chosen = Vec::new();
    for image in selected {
        chosen.push(choose(&bundle, image, &options.platform)?);
    }
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    for c in &chosen {
        blobs.insert(c.manifest.digest.clone(), c.manifest.bytes.len() as u64);
        for d in std::iter::once(&c.config).chain(&c.layers) {
            blobs.insert(d.digest.clone(), d.size);
        }
    }
    let index = index_json(&chosen)?;
    let docker = manifest_json(&chosen)?;
    write_tarball(&bundle, &options.out, &index, &docker, &blobs)?;
    Ok(ExportReport {
        images: chosen
            .iter()
            .map(|c| ExportedImage {
                name: c.name.clone(),
                platform: c.platform.to_string(),
                manifest: c.manifest.digest.clone(),
                config: c.config.digest.clone(),
            })
            .collect(),
        blobs: blobs.len(),
        bytes: blobs.values().sum(),
        out: options.out.clone(),
    })
}

/// The lock's images the filters name, in lock order; a filter that names nothing in the
/// bundle is an error listing what it holds.
fn select<'a>(lock: &'a LockFile, filters: &[Reference]) -> Result<Vec<&'a LockedImage>, BadInput> {
    if filters.is_empty() {
        if lock.images.is_empty() {
            return Err(BadInput(
                "the bundle's lock file lists no image; pull some first".to_string(),
            ));
        }
        return Ok(lock.images.iter().collect());
    }
    let wanted: Vec<String> = filters.iter().map(Reference::to_string).collect();
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| !lock.images.iter().any(|i| &i.reference == *w))
        .collect();
    if !unknown.is_empty() {
        let held: Vec<&str> = lock.images.iter().map(|i| i.reference.as_str()).collect();
        return Err(BadInput(format!(
            "not in the bundle: {}; it holds {}",
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            held.join(", ")
        )));
    }
    Ok(lock
        .images
        .iter()
        .filter(|i| wanted.contains(&i.reference))
        .collect())
}

/// The platform manifest of one image, read (and verified) from the bundle.
fn choose(bundle: &Bundle, image: &LockedImage, wanted: &Platform) -> anyhow::Result<Chosen> {
    let reference = image.reference().map_err(BadInput)?;
    let damaged = |p: super::layout::BlobProblem| {
        anyhow!(
            "{}: the bundle's blob {} ({}) {}; pull again to repair the bundle",
            image.reference,
            p.digest,
            p.path.display(),
            p.problem
        )
    };
    let (manifest, platform) = if image.platforms.is_empty() {
        let manifest = bundle
            .read_manifest(&image.digest, &image.media_type)
            .map_err(damaged)?;
        let platform = config_platform(bundle, &manifest)
            .with_context(|| format!("{}: cannot read its image config", image.reference))?;
        if !platform.satisfies(wanted) {
            return Err(BadInput(format!(
                "{} is a single-platform image for {platform}, not {wanted}; export with --platform {platform}",
                image.reference
            ))
            .into());
        }
        (manifest, platform)
    } else {
        let kept = image.platforms.iter().find(|p| {
            Platform::parse(&p.platform).is_ok_and(|platform| platform.satisfies(wanted))
        });
        let Some(kept) = kept else {
            return Err(missing_platform(image, wanted).into());
        };
        let manifest = bundle
            .read_manifest(&kept.digest, &kept.media_type)
            .map_err(damaged)?;
        (manifest, Platform::parse(&kept.platform).map_err(BadInput)?)
    };
    let mut listed = image_blobs(&manifest).map_err(|e| anyhow!("{}: {e}", image.reference))?;
    let config = listed.remove(0);
    // Docker's RepoTags hold name:tag only; an image locked by digest alone loads untagged.
    let mut named = reference.clone();
    let tagged = named.tag.is_some();
    if tagged {
        named.digest = None;
    }
    Ok(Chosen {
        name: named.to_string(),
        tagged,
        platform,
        manifest,
        config,
        layers: listed,
    })
}

fn missing_platform(image: &LockedImage, wanted: &Platform) -> BadInput {
    let kept: Vec<&str> = image
        .platforms
        .iter()
        .map(|p| p.platform.as_str())
        .collect();
    let left_out = image
        .skipped
        .iter()
        .any(|p| Platform::parse(&p.platform).is_ok_and(|platform| platform.satisfies(wanted)));
    let how = if left_out {
        format!("the pull left {wanted} out (--platform); pull again with --platform {wanted}")
    } else {
        format!("the image has no {wanted} variant")
    };
    BadInput(format!(
        "{}: platform {wanted} is not in the bundle (it holds {}); {how}, or export with --platform {}",
        image.reference,
        kept.join(", "),
        kept.first().copied().unwrap_or("OS/ARCH")
    ))
}

/// `os/architecture[/variant]` from an image config in the bundle.
fn config_platform(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<Platform> {
    #[derive(Deserialize)]
    struct Config {
        os: String,
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let config = image_blobs(manifest)
        .map_err(|e| anyhow!(e))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the manifest has no config"))?;
    if config.size > MAX_CONFIG_BYTES {
        return Err(anyhow!(
            "its config {} is {} bytes, more than an image config can be",
            config.digest,
            config.size
        ));
    }
    let path = bundle.blob_path(&config.digest);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !config.digest.matches(&bytes) {
        return Err(anyhow!(
            "{} does not match its digest {}; pull again to repair the bundle",
            path.display(),
            config.digest
        ));
    }
    let c: Config = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an image config", path.display()))?;
    Ok(Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant.filter(|v| !v.is_empty()),
    })
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// The OCI index: one single-platform entry per image.
fn index_json(chosen: &[Chosen]) -> anyhow::Result<Vec<u8>> {
    let entries: Vec<IndexEntry> = chosen
        .iter()
        .map(|c| IndexEntry {
            name: c.name.clone(),
            media_type: c.manifest.media_type.clone(),
            digest: c.manifest.digest.clone(),
            size: c.manifest.bytes.len() as u64,
            platform: Some(c.platform.clone()),
        })
        .collect();
    Ok(super::layout::index_json(&entries)?)
}

/// Docker's `manifest.json`: one entry per image (images with the same manifest share an
/// entry and list every name in RepoTags).
fn manifest_json(chosen: &[Chosen]) -> anyhow::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags")]
        repo_tags: Vec<String>,
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    let mut entries: Vec<(Digest, Entry)> = Vec::new();
    for c in chosen {
        let tags = if c.tagged {
            vec![c.name.clone()]
        } else {
            vec![]
        };
        match entries.iter_mut().find(|(d, _)| *d == c.manifest.digest) {
            Some((_, entry)) => entry.repo_tags.extend(tags),
            None => entries.push((
                c.manifest.digest.clone(),
                Entry {
                    config: blob_name(&c.config.digest),
                    repo_tags: tags,
                    layers: c.layers.iter().map(|l| blob_name(&l.digest)).collect(),
                },
            )),
        }
    }
    let entries: Vec<Entry> = entries.into_iter().map(|(_, e)| e).collect();
    Ok(serde_json::to_vec_pretty(&entries)?)
}

/// Streams the tarball into a temp file beside `out`, then renames it into place.
fn write_tarball(
    bundle: &Bundle,
    out: &Path,
    index: &[u8],
    docker: &[u8],
    blobs: &BTreeMap<Digest, u64>,
) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if out.is_dir() {
        return Err(BadInput(format!(
            "--out {} is a directory; give a file name such as {}/images.tar",
            out.display(),
            out.display()
        ))
        .into());
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(dir)
        .map_err(|e| {
            BadInput(format!(
                "cannot write in {} ({e}); give --out in a directory that exists and is writable",
                dir.display()
            ))
        })?;
    let total: u64 = blobs.values().sum();
    let progress = Transfer::start("exporting", total, blobs.len());
    let result = (|| -> anyhow::Result<()> {
        let mut tar = TarWriter::new(BufWriter::with_capacity(1024 * 1024, temp.as_file()));
        tar.append_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.append_bytes("index.json", index)?;
        tar.append_bytes("manifest.json", docker)?;
        let bytes = progress.bytes();
        for (digest, size) in blobs {
            copy_blob(bundle, &mut tar, digest, *size, &bytes)?;
            progress.done("exported", digest, *size, "");
        }
        let writer = tar.finish()?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(())
    })();
    progress.finish();
    result.with_context(|| format!("cannot write {}; nothing was written there", out.display()))?;
    set_readable(temp.as_file())?;
    temp.persist(out)
        .map_err(|e| anyhow!("cannot move the tarball to {}: {}", out.display(), e.error))?;
    Ok(())
}

/// One blob from the bundle into the archive, hashed as it passes; a damaged blob stops the
/// export (the temp file is dropped with it).
fn copy_blob(
    bundle: &Bundle,
    tar: &mut TarWriter<BufWriter<&File>>,
    digest: &Digest,
    size: u64,
    progress: &Option<crate::registry::ProgressFn>,
) -> anyhow::Result<()> {
    let path = bundle.blob_path(digest);
    let repair = "pull again to repair the bundle";
    let mut file = File::open(&path)
        .with_context(|| format!("blob {digest} is missing ({}); {repair}", path.display()))?;
    let len = file.metadata()?.len();
    if len != size {
        return Err(anyhow!(
            "{} has {len} bytes, its descriptor says {size}; {repair}",
            path.display()
        ));
    }
    let mut hasher = Hasher::for_digest(digest);
    let reader: &mut dyn Read = &mut file;
    tar.append_reader(&blob_name(digest), size, reader, &mut |piece: &[u8]| {
        hasher.update(piece);
        if let Some(p) = progress {
            p(piece.len() as u64);
        }
    })?;
    let actual = hasher.finish();
    if actual != *digest {
        return Err(anyhow!(
            "{} hashes to {actual}, not {digest}; {repair}",
            path.display()
        ));
    }
    Ok(())
}

/// Temp files are created 0600; a tarball of images is no secret and is often copied by
/// another user (into k3s's images directory, with sudo).
fn set_readable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

impl ExportReport {
    pub fn summary(&self) -> String {
        format!(
            "exported {} image{} ({} blobs, {}) to {}",
            self.images.len(),
            if self.images.len() == 1 { "" } else { "s" },
            self.blobs,
            human_bytes(self.bytes),
            self.out.display()
        )
    }
}
