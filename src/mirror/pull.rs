//! `mirror-images pull`: every image of an images file into one bundle.
//!
//! Two phases under one concurrency budget (a semaphore shared by all images):
//! 1. resolve: each reference to a digest (a tag already in the lock keeps its pin), its
//!    manifests fetched byte-for-byte into the bundle, the platform filter applied to an
//!    index's entries; the lock is written as soon as this is done;
//! 2. fetch: the blobs of all images, deduplicated, each downloaded once, resumed from a
//!    partial file left by an earlier run, verified while streaming.
//!
//! An index is never rebuilt: with a platform filter its upstream bytes are kept and only
//! the chosen entries' manifests and blobs are fetched; the lock lists what was left out.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::registry::descriptor::{image_blobs, index_children, is_index};
use crate::registry::{
    ClientOptions, Credentials, Descriptor, Digest, Manifest, Platform, RegistryClient,
};

use super::images_file::ImageLine;
use super::layout::{Bundle, IndexEntry};
use super::lock::{LockFile, LockedImage, LockedPlatform};
use super::progress::{Transfer, human_bytes};

/// What to pull, and how.
pub struct PullOptions {
    pub images: Vec<ImageLine>,
    pub bundle: PathBuf,
    /// Keep only these platforms of multi-platform images (empty: all).
    pub platforms: Vec<Platform>,
    pub concurrency: usize,
    /// Resolve tags again instead of keeping the lock's pins.
    pub update: bool,
    /// Registries (host[:port]) spoken to in plain HTTP.
    pub insecure_registries: Vec<String>,
    pub ca_file: Option<PathBuf>,
    /// Credentials for source registries that need them, by registry (`host[:port]`).
    pub credentials: HashMap<String, Credentials>,
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct PullReport {
    pub images: usize,
    pub manifests_fetched: usize,
    pub blobs_downloaded: usize,
    pub bytes_downloaded: u64,
    pub blobs_resumed: usize,
    pub blobs_present: usize,
    pub lock_path: PathBuf,
    /// Images that could not be resolved or fetched, with why.
    pub failures: Vec<String>,
}

/// One image after phase 1.
struct Resolved {
    locked: LockedImage,
    registry: String,
    repository: String,
    blobs: Vec<Descriptor>,
    manifests_fetched: usize,
    top_size: u64,
}

pub async fn pull(options: PullOptions) -> anyhow::Result<PullReport> {
    let bundle = Bundle::create(&options.bundle)
        .with_context(|| format!("cannot create the bundle in {}", options.bundle.display()))?;
    let old_lock = match bundle.lock_path().exists() {
        true => Some(LockFile::read(&bundle.lock_path()).map_err(|e| anyhow!(e))?),
        false => None,
    };
    let clients = clients(&options)?;
    let budget = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let platforms = Arc::new(options.platforms.clone());
    let mut report = PullReport {
        images: options.images.len(),
        lock_path: bundle.lock_path(),
        ..PullReport::default()
    };

    // Phase 1: resolve every image.
    let mut tasks = JoinSet::new();
    for (index, image) in options.images.iter().enumerate() {
        let pinned = match (&image.reference.digest, &old_lock, options.update) {
            (None, Some(lock), false) => lock.pinned(&image.reference).cloned(),
            _ => None,
        };
        let client = Arc::clone(&clients[&image.reference.registry]);
        let (bundle, budget, platforms) = (bundle.clone(), budget.clone(), platforms.clone());
        let image = image.clone();
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            let result = resolve(&client, &bundle, &image, pinned.as_ref(), &platforms).await;
            (index, image, pinned.is_some(), result)
        });
    }
    let mut resolved: Vec<Option<Resolved>> = (0..options.images.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, image, pinned, result) = joined.context("an image resolution task failed")?;
        match result {
            Ok(r) => {
                eprintln!(
                    "{} {} → {}{}",
                    if pinned { "pinned" } else { "resolved" },
                    image.source,
                    r.locked.digest,
                    platform_note(&r.locked)
                );
                resolved[index] = Some(r);
            }
            Err(e) => report
                .failures
                .push(format!("{} (line {}): {e:#}", image.source, image.line)),
        }
    }
    write_lock(&bundle, &options, &resolved, old_lock.as_ref())?;

    // Phase 2: fetch each blob once, for all images together.
    let mut wanted: BTreeMap<Digest, (u64, String, String)> = BTreeMap::new();
    for r in resolved.iter().flatten() {
        report.manifests_fetched += r.manifests_fetched;
        for blob in &r.blobs {
            wanted
                .entry(blob.digest.clone())
                .or_insert_with(|| (blob.size, r.registry.clone(), r.repository.clone()));
        }
    }
    wanted.retain(|digest, (size, _, _)| {
        let present = bundle.has_blob(digest, Some(*size));
        report.blobs_present += usize::from(present);
        !present
    });
    let total: u64 = wanted.values().map(|(size, _, _)| size).sum();
    let progress = Transfer::start("downloading", total, wanted.len());
    let mut tasks = JoinSet::new();
    for (digest, (size, registry, repository)) in wanted {
        let client = Arc::clone(&clients[&registry]);
        let (bundle, budget, progress) = (bundle.clone(), budget.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            let result = client
                .download_blob(
                    &repository,
                    &digest,
                    Some(size),
                    &bundle.partial_path(&digest),
                    &bundle.blob_path(&digest),
                    progress.bytes(),
                )
                .await;
            if result.is_ok() {
                progress.done(
                    "fetched",
                    &digest,
                    size,
                    &format!("{registry}/{repository}"),
                );
            }
            result
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a blob download task failed")? {
            Ok(done) => {
                report.blobs_downloaded += 1;
                report.bytes_downloaded += done.transferred;
                report.blobs_resumed += usize::from(done.resumed_from > 0);
            }
            Err(e) => report.failures.push(e.to_string()),
        }
    }
    progress.finish();
    if report.failures.is_empty() {
        let entries: Vec<IndexEntry> = resolved.iter().flatten().map(index_entry).collect();
        bundle
            .write_index(&entries)
            .with_context(|| format!("cannot write index.json in {}", bundle.root().display()))?;
    }
    Ok(report)
}

/// One client per source registry, shared by all its images.
fn clients(options: &PullOptions) -> anyhow::Result<HashMap<String, Arc<RegistryClient>>> {
    let mut clients = HashMap::new();
    for image in &options.images {
        let registry = &image.reference.registry;
        if clients.contains_key(registry) {
            continue;
        }
        let client = RegistryClient::new(
            registry,
            ClientOptions {
                insecure: options.insecure_registries.iter().any(|r| r == registry),
                ca_file: options.ca_file.clone(),
                credentials: options.credentials.get(registry).cloned(),
                ..ClientOptions::default()
            },
        )?;
        clients.insert(registry.clone(), Arc::new(client));
    }
    Ok(clients)
}

/// Resolves one image and stores its manifests in the bundle.
async fn resolve(
    client: &RegistryClient,
    bundle: &Bundle,
    image: &ImageLine,
    pinned: Option<&LockedImage>,
    platforms: &[Platform],
) -> anyhow::Result<Resolved> {
    let reference = &image.reference;
    let repository = &reference.repository;
    let mut fetched = 0;
    let top = match pinned {
        Some(pin) => {
            let (m, f) = manifest(client, bundle, repository, &pin.digest, &pin.media_type).await?;
            fetched += f;
            m
        }
        None => {
            let m = client
                .get_manifest(repository, &reference.manifest_reference())
                .await?;
            bundle
                .write_blob(&m.digest, &m.bytes)
                .with_context(|| format!("cannot store manifest {} in the bundle", m.digest))?;
            fetched += 1;
            m
        }
    };
    let top_size = top.bytes.len() as u64;
    let mut locked = LockedImage {
        source: image.source.clone(),
        reference: reference.to_string(),
        digest: top.digest.clone(),
        media_type: top.media_type.clone(),
        platforms: Vec::new(),
        skipped: Vec::new(),
    };
    let mut images = Vec::new();
    if is_index(&top.media_type) {
        for child in index_children(&top).map_err(|e| anyhow!(e))? {
            let name = child
                .platform
                .as_ref()
                .map_or_else(|| "unknown".to_string(), |p| p.to_string());
            let entry = LockedPlatform {
                platform: name,
                digest: child.digest.clone(),
                media_type: child.media_type.clone(),
            };
            let chosen = platforms.is_empty()
                || child
                    .platform
                    .as_ref()
                    .is_some_and(|p| platforms.iter().any(|w| p.satisfies(w)));
            if !chosen {
                locked.skipped.push(entry);
                continue;
            }
            if is_index(&child.media_type) {
                return Err(anyhow!(
                    "index {} lists another index ({}); nested indexes are not supported",
                    top.digest,
                    child.digest
                ));
            }
            let (m, f) =
                manifest(client, bundle, repository, &child.digest, &child.media_type).await?;
            fetched += f;
            images.push(m);
            locked.platforms.push(entry);
        }
        if locked.platforms.is_empty() {
            let offered: Vec<&str> = locked.skipped.iter().map(|p| p.platform.as_str()).collect();
            return Err(anyhow!(
                "no entry of its index matches the platforms asked for; it offers {}",
                offered.join(", ")
            ));
        }
    } else {
        images.push(top);
    }
    let mut blobs = Vec::new();
    for m in &images {
        blobs.extend(image_blobs(m).map_err(|e| anyhow!(e))?);
    }
    Ok(Resolved {
        locked,
        registry: reference.registry.clone(),
        repository: repository.clone(),
        blobs,
        manifests_fetched: fetched,
        top_size,
    })
}

/// A manifest by digest: from the bundle when it is there, else from the registry (then
/// stored). The second value is 1 when it was fetched.
async fn manifest(
    client: &RegistryClient,
    bundle: &Bundle,
    repository: &str,
    digest: &Digest,
    media_type: &str,
) -> anyhow::Result<(Manifest, usize)> {
    if let Ok(m) = bundle.read_manifest(digest, media_type) {
        return Ok((m, 0));
    }
    let m = client.get_manifest(repository, &digest.to_string()).await?;
    bundle
        .write_blob(&m.digest, &m.bytes)
        .with_context(|| format!("cannot store manifest {} in the bundle", m.digest))?;
    Ok((m, 1))
}

/// The lock: resolved images in file order; an image that failed keeps its old pin.
fn write_lock(
    bundle: &Bundle,
    options: &PullOptions,
    resolved: &[Option<Resolved>],
    old: Option<&LockFile>,
) -> anyhow::Result<()> {
    let images = options
        .images
        .iter()
        .zip(resolved)
        .filter_map(|(image, r)| match r {
            Some(r) => Some(r.locked.clone()),
            None => old.and_then(|l| l.pinned(&image.reference).cloned()),
        })
        .collect();
    let filter = options.platforms.iter().map(|p| p.to_string()).collect();
    LockFile::new(filter, images)
        .write(&bundle.lock_path())
        .with_context(|| format!("cannot write {}", bundle.lock_path().display()))
}

fn index_entry(r: &Resolved) -> IndexEntry {
    // Named by tag when there is one (what `ctr images import` shows), else by digest.
    let name = match r.locked.reference() {
        Ok(mut reference) if reference.tag.is_some() => {
            reference.digest = None;
            reference.to_string()
        }
        _ => r.locked.reference.clone(),
    };
    IndexEntry {
        name,
        media_type: r.locked.media_type.clone(),
        digest: r.locked.digest.clone(),
        size: r.top_size,
        platform: None,
    }
}

fn platform_note(locked: &LockedImage) -> String {
    match (locked.platforms.len(), locked.skipped.len()) {
        (0, _) => String::new(),
        (n, 0) => format!(" ({n} platforms)"),
        (n, s) => format!(" ({n} platforms kept, {s} left out)"),
    }
}

impl PullReport {
    /// The summary line.
    pub fn summary(&self) -> String {
        format!(
            "{} images: {} blobs downloaded ({}{}), {} already in the bundle; {} manifests fetched; lock: {}",
            self.images,
            self.blobs_downloaded,
            human_bytes(self.bytes_downloaded),
            if self.blobs_resumed > 0 {
                format!(", {} resumed", self.blobs_resumed)
            } else {
                String::new()
            },
            self.blobs_present,
            self.manifests_fetched,
            self.lock_path.display()
        )
    }
}
