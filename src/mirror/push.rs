//! `mirror-images push`: every locked image of a bundle into a registry.
//!
//! 1. read: every image's manifests come from the bundle, each re-hashed;
//! 2. skip what is whole: an image whose tag already names our digest in the mirror, with
//!    every platform manifest there by digest, is complete (a registry accepts a manifest
//!    only once every blob it lists is in the repository), so none of its blobs is read or
//!    asked for again: a no-op re-push of a large bundle costs a few requests per image;
//! 3. verify: every blob of the images still to push is re-hashed; any problem is reported
//!    (all of them) and nothing is sent;
//! 4. blobs: each distinct blob once per target repository, under one concurrency budget:
//!    `HEAD` skips what is there, a blob already pushed to another repository of the set is
//!    mounted from it, the rest is uploaded (monolithic, or chunked above the chunk size);
//! 5. manifests: per image, platform manifests by digest, then the index (or the single
//!    manifest) by tag, each with its original bytes; the registry's digest must be ours.
//!
//! Nothing here talks to the upstream registry: what is pushed is what the lock pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exit::BadInput;
use crate::registry::descriptor::image_blobs;
use crate::registry::{
    BlobFile, ClientOptions, Digest, HarborProjects, Manifest, Mount, RegistryClient, projects_of,
};

use super::layout::{BlobProblem, Bundle};
use super::lock::{LockFile, LockedImage};
use super::naming::target_repository;
use super::progress::{Transfer, human_bytes, short};

/// Where to push, and how.
pub struct PushOptions {
    pub bundle: PathBuf,
    /// The mirror registry, `host[:port]`.
    pub registry: String,
    pub prefix: Option<String>,
    pub client: ClientOptions,
    pub concurrency: usize,
    /// Blobs larger than this are sent in chunks of this size.
    pub chunk_size: u64,
    /// The registry is Harbor: create the projects the push needs that do not exist.
    pub create_projects: bool,
}

/// What a push did. Blob counts are per (blob, repository) pair.
#[derive(Debug, Default)]
pub struct PushReport {
    pub images: usize,
    /// Images the mirror already held whole: nothing of them was read or sent.
    pub images_complete: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub manifests_pushed: usize,
    pub manifests_present: usize,
    /// `mirror reference → digest` for every image pushed.
    pub pushed: Vec<(String, Digest)>,
    pub failures: Vec<String>,
    /// With `create_projects`: what Harbor had and what was made.
    pub harbor: Option<HarborProjects>,
}

/// One image, ready to push: everything read from the bundle and verified.
struct Planned {
    locked: LockedImage,
    repository: String,
    tag: Option<String>,
    top: Manifest,
    children: Vec<Manifest>,
}

#[derive(Default)]
struct Counts {
    uploaded: usize,
    bytes: u64,
    mounted: usize,
    present: usize,
}

pub async fn push(options: PushOptions) -> anyhow::Result<PushReport> {
    let bundle = Bundle::open(&options.bundle).map_err(BadInput)?;
    let lock = LockFile::read(&bundle.lock_path()).map_err(|e| {
        BadInput(format!(
            "{e}; run `gpuctl mirror-images pull --bundle {}` first",
            bundle.root().display()
        ))
    })?;
    let budget = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let (images, problems) = read_images(&bundle, &lock, options.prefix.as_deref())?;
    if !problems.is_empty() {
        // The registry is not asked anything: list every damaged blob at once.
        return Err(damaged(&bundle, problems, &images, &budget).await?);
    }
    check_collisions(&images, &options.registry)?;

    let client = Arc::new(RegistryClient::new(
        &options.registry,
        options.client.clone(),
    )?);
    client.ping().await?;

    let mut report = PushReport {
        images: images.len(),
        ..PushReport::default()
    };
    if options.create_projects {
        let projects = projects_of(images.iter().map(|i| i.repository.as_str()))
            .map_err(|e| BadInput(format!("--create-projects: {e}")))?;
        report.harbor = Some(client.ensure_harbor_projects(&projects).await?);
    }
    let images = skip_complete(&client, &options.registry, images, &budget, &mut report).await?;
    let blobs = blobs_of(&images)?;
    let problems = verify(&bundle, &blobs, &budget).await?;
    if !problems.is_empty() {
        return Err(damaged(&bundle, problems, &[], &budget).await?);
    }

    // Blobs: each distinct digest once, into every repository that needs it.
    let total: u64 = blobs.values().map(|(size, _)| size).sum();
    let progress = Transfer::start("checking, then pushing as needed,", total, blobs.len());
    let mut tasks = JoinSet::new();
    // Largest first: the longest upload starts at once and the small ones fill the other
    // slots around it, instead of one huge blob running alone at the end. (The budget's
    // semaphore is fair, so tasks take their turns in this order.)
    let large = Arc::new(Semaphore::new(large_streams(options.concurrency)));
    for (digest, (size, repositories)) in largest_first(blobs) {
        let blob = BlobFile {
            path: bundle.blob_path(&digest),
            digest,
            size,
        };
        let (client, budget, progress) = (client.clone(), budget.clone(), progress.clone());
        let large = (size >= LARGE_BLOB).then(|| large.clone());
        let chunk = options.chunk_size;
        tasks.spawn(async move {
            // Always `large` before `budget`: a large blob waiting for its turn holds no
            // budget permit, so the small ones go on meanwhile.
            let _large = match large {
                Some(l) => Some(l.acquire_owned().await),
                None => None,
            };
            let _permit = budget.acquire_owned().await;
            push_blob(&client, &blob, &repositories, chunk, &progress).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a blob upload task failed")? {
            Ok(c) => {
                report.blobs_uploaded += c.uploaded;
                report.bytes_uploaded += c.bytes;
                report.blobs_mounted += c.mounted;
                report.blobs_present += c.present;
            }
            Err(e) => report.failures.push(e.to_string()),
        }
    }
    progress.finish();
    if !report.failures.is_empty() {
        return Ok(report);
    }

    // Manifests: per image, children by digest first, then the tag.
    let mut tasks = JoinSet::new();
    for image in images {
        let (client, budget) = (client.clone(), budget.clone());
        let registry = options.registry.clone();
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            push_manifests(&client, &registry, &image).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a manifest push task failed")? {
            Ok((pushed, present, done)) => {
                report.manifests_pushed += pushed;
                report.manifests_present += present;
                report.pushed.push(done);
            }
            Err(e) => report.failures.push(format!("{e:#}")),
        }
    }
    report.pushed.sort();
    Ok(report)
}

/// Reads every image's manifests from the bundle, each re-hashed; the problems are
/// returned beside the images that could be read.
fn read_images(
    bundle: &Bundle,
    lock: &LockFile,
    prefix: Option<&str>,
) -> anyhow::Result<(Vec<Planned>, Vec<BlobProblem>)> {
    let mut problems: Vec<BlobProblem> = Vec::new();
    let mut images = Vec::new();
    for locked in &lock.images {
        let reference = locked.reference().map_err(BadInput)?;
        let repository = target_repository(&reference, prefix);
        let top = match bundle.read_manifest(&locked.digest, &locked.media_type) {
            Ok(m) => m,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let mut children = Vec::new();
        for platform in &locked.platforms {
            match bundle.read_manifest(&platform.digest, &platform.media_type) {
                Ok(m) => children.push(m),
                Err(p) => problems.push(p),
            }
        }
        images.push(Planned {
            locked: locked.clone(),
            tag: reference.tag.clone(),
            repository,
            top,
            children,
        });
    }
    Ok((images, problems))
}

/// Every blob the images' manifests list: digest → (size, repositories that need it).
fn blobs_of(images: &[Planned]) -> anyhow::Result<BTreeMap<Digest, (u64, BTreeSet<String>)>> {
    let mut blobs: BTreeMap<Digest, (u64, BTreeSet<String>)> = BTreeMap::new();
    for image in images {
        let manifests = if image.locked.platforms.is_empty() {
            std::slice::from_ref(&image.top)
        } else {
            image.children.as_slice()
        };
        for m in manifests {
            for blob in image_blobs(m).map_err(|e| anyhow!("{}: {e}", image.locked.reference))? {
                let entry = blobs
                    .entry(blob.digest)
                    .or_insert_with(|| (blob.size, BTreeSet::new()));
                entry.1.insert(image.repository.clone());
            }
        }
    }
    Ok(blobs)
}

/// Re-hashes every blob (on the blocking pool, under the budget); returns the problems.
async fn verify(
    bundle: &Bundle,
    blobs: &BTreeMap<Digest, (u64, BTreeSet<String>)>,
    budget: &Arc<Semaphore>,
) -> anyhow::Result<Vec<BlobProblem>> {
    let mut problems = Vec::new();
    let mut checks = JoinSet::new();
    for (digest, (size, _)) in largest_first(blobs.clone()) {
        let bundle = bundle.clone();
        let budget = budget.clone();
        checks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            tokio::task::spawn_blocking(move || bundle.verify_blob(&digest, size)).await
        });
    }
    while let Some(joined) = checks.join_next().await {
        if let Err(p) = joined
            .context("a blob check failed")?
            .context("a blob check failed")?
        {
            problems.push(p);
        }
    }
    Ok(problems)
}

/// A blob this large is sent at the speed of a core (file reading, TLS, the registry's
/// hashing of its one stream), not at the speed of a round trip.
const LARGE_BLOB: u64 = 32 * 1024 * 1024;

/// How many large blobs are in flight at once: no more than this machine has cores, and
/// no more than the budget. More streams than cores do not move the bytes faster; they
/// only share the cores, so every large blob finishes later (the biggest last of all, and
/// an interrupted push has more half-sent blobs to start again). Small blobs, mounts and
/// manifests, which wait on round trips, keep the whole `--concurrency`.
fn large_streams(concurrency: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.max(2).min(concurrency.max(1))
}

/// Blobs ordered by size, largest first.
fn largest_first<T>(blobs: BTreeMap<Digest, (u64, T)>) -> Vec<(Digest, (u64, T))> {
    let mut blobs: Vec<_> = blobs.into_iter().collect();
    blobs.sort_by_key(|(_, (size, _))| std::cmp::Reverse(*size));
    blobs
}

/// The error for a damaged bundle: these problems, plus those of the blobs of `readable`
/// (images whose manifests were fine), so one run lists everything to fix.
async fn damaged(
    bundle: &Bundle,
    mut problems: Vec<BlobProblem>,
    readable: &[Planned],
    budget: &Arc<Semaphore>,
) -> anyhow::Result<anyhow::Error> {
    problems.extend(verify(bundle, &blobs_of(readable)?, budget).await?);
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems.dedup_by(|a, b| a.path == b.path);
    let mut text = format!(
        "the bundle {} has {} damaged or missing blob{}; nothing was pushed:",
        bundle.root().display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in &problems {
        text.push_str(&format!(
            "\n  {} ({}): {}",
            p.path.display(),
            p.digest,
            p.problem
        ));
    }
    text.push_str("\nrun `gpuctl mirror-images pull` again on the connected side and carry the bundle over again");
    Ok(anyhow!(text))
}

/// Drops the images the mirror already holds whole (see the module comment), counting
/// them in the report; returns the rest.
async fn skip_complete(
    client: &Arc<RegistryClient>,
    registry: &str,
    images: Vec<Planned>,
    budget: &Arc<Semaphore>,
    report: &mut PushReport,
) -> anyhow::Result<Vec<Planned>> {
    let mut tasks = JoinSet::new();
    for (index, image) in images.iter().enumerate() {
        let (client, budget) = (client.clone(), budget.clone());
        let (repository, children, (reference, tagged)) = (
            image.repository.clone(),
            image
                .children
                .iter()
                .map(|c| c.digest.to_string())
                .collect::<Vec<_>>(),
            tag_reference(image),
        );
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            let there = client.head_manifest(&repository, &reference).await?;
            if there.and_then(|h| h.digest).as_ref() != Some(&tagged) {
                return anyhow::Ok((index, None));
            }
            for child in &children {
                if client.head_manifest(&repository, child).await?.is_none() {
                    return Ok((index, None));
                }
            }
            Ok((index, Some(children.len() + 1)))
        });
    }
    let mut complete = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let (index, Some(manifests)) = joined.context("a manifest check failed")?? {
            complete.insert(index, manifests);
        }
    }
    let mut rest = Vec::new();
    for (index, image) in images.into_iter().enumerate() {
        match complete.get(&index) {
            Some(manifests) => {
                report.images_complete += 1;
                report.manifests_present += manifests;
                report.pushed.push(mirror_reference(registry, &image));
            }
            None => rest.push(image),
        }
    }
    Ok(rest)
}

/// Two upstream images that would land on the same mirror reference with different
/// content (`docker.io/x/app:1` and `quay.io/x/app:1`) are refused before anything moves.
fn check_collisions(images: &[Planned], registry: &str) -> Result<(), BadInput> {
    let mut seen: BTreeMap<(String, String), &Planned> = BTreeMap::new();
    for image in images {
        let key = (
            image.repository.clone(),
            image
                .tag
                .clone()
                .unwrap_or_else(|| image.locked.digest.to_string()),
        );
        if let Some(other) = seen.get(&key)
            && other.locked.digest != image.locked.digest
        {
            return Err(BadInput(format!(
                "{} and {} would both be pushed as {registry}/{}:{} with different content; use --prefix or remove one from the images file",
                other.locked.reference, image.locked.reference, key.0, key.1
            )));
        }
        seen.insert(key, image);
    }
    Ok(())
}

/// One blob into every repository that needs it: HEAD, then mount from a repository
/// that has it, else upload.
async fn push_blob(
    client: &RegistryClient,
    blob: &BlobFile,
    repositories: &BTreeSet<String>,
    chunk_size: u64,
    progress: &Transfer,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let mut have: Vec<&String> = Vec::new();
    let mut missing = Vec::new();
    for repository in repositories {
        if client.blob_exists(repository, &blob.digest).await? {
            have.push(repository);
        } else {
            missing.push(repository);
        }
    }
    counts.present = have.len();
    for repository in missing {
        let session = match have.first() {
            Some(from) => match client.mount_blob(repository, &blob.digest, from).await? {
                Mount::Mounted => {
                    counts.mounted += 1;
                    progress.note(&format!(
                        "  mounted {} into {repository} from {from}",
                        short(&blob.digest)
                    ));
                    have.push(repository);
                    continue;
                }
                Mount::Upload(session) => Some(session),
            },
            None => None,
        };
        let sent = client
            .upload_blob(repository, blob, chunk_size, session, progress.bytes())
            .await?;
        counts.uploaded += 1;
        counts.bytes += sent;
        progress.done("pushed", &blob.digest, blob.size, repository);
        have.push(repository);
    }
    Ok(counts)
}

/// The manifests of one image: (pushed, already there, mirror reference and digest).
async fn push_manifests(
    client: &RegistryClient,
    registry: &str,
    image: &Planned,
) -> anyhow::Result<(usize, usize, (String, Digest))> {
    let (mut pushed, mut present) = (0, 0);
    let repository = &image.repository;
    for child in &image.children {
        let digest = child.digest.to_string();
        if client.head_manifest(repository, &digest).await?.is_some() {
            present += 1;
        } else {
            client.put_manifest(repository, &digest, child).await?;
            pushed += 1;
        }
    }
    let tagged = tagged_manifest(image);
    let (reference, _) = tag_reference(image);
    let there = client.head_manifest(repository, &reference).await?;
    if there.and_then(|h| h.digest).as_ref() == Some(&tagged.digest) {
        present += 1;
    } else {
        client
            .put_manifest(repository, &reference, tagged)
            .await
            .with_context(|| match image.locked.pruned() {
                true => format!(
                    "{}: the bundle holds only some platforms of this index (pulled with --platform) and the registry wants all of them; pull it without --platform, or with one platform",
                    image.locked.reference
                ),
                false => image.locked.reference.clone(),
            })?;
        pushed += 1;
    }
    Ok((pushed, present, mirror_reference(registry, image)))
}

/// The manifest the mirror's tag names (see [`tag_target`]).
fn tagged_manifest(image: &Planned) -> &Manifest {
    let target = tag_target(&image.locked);
    image
        .children
        .iter()
        .find(|c| &c.digest == target)
        .unwrap_or(&image.top)
}

/// What the image is pushed as in its repository (its tag, else the digest), and the
/// digest that reference must name.
fn tag_reference(image: &Planned) -> (String, Digest) {
    let tagged = tagged_manifest(image).digest.clone();
    let reference = image.tag.clone().unwrap_or_else(|| tagged.to_string());
    (reference, tagged)
}

/// The full mirror reference and its digest, as the push reports it.
fn mirror_reference(registry: &str, image: &Planned) -> (String, Digest) {
    let (reference, digest) = tag_reference(image);
    let sep = if image.tag.is_some() { ":" } else { "@" };
    (
        format!("{registry}/{}{sep}{reference}", image.repository),
        digest,
    )
}

/// What the mirror's tag names: the locked digest, except for an index filtered down to
/// one platform, where it is that platform's manifest (upstream bytes, upstream digest):
/// the index itself would point at content the mirror does not have.
pub fn tag_target(image: &LockedImage) -> &Digest {
    match (image.pruned(), image.platforms.as_slice()) {
        (true, [only]) => &only.digest,
        _ => &image.digest,
    }
}

impl PushReport {
    pub fn summary(&self, registry: &str) -> String {
        format!(
            "{} images to {registry} ({} already complete there): {} blobs uploaded ({}), {} mounted, {} already present; {} manifests pushed, {} already present",
            self.images,
            self.images_complete,
            self.blobs_uploaded,
            human_bytes(self.bytes_uploaded),
            self.blobs_mounted,
            self.blobs_present,
            self.manifests_pushed,
            self.manifests_present
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blobs_get_at_least_two_streams_and_never_more_than_the_budget() {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(large_streams(64), cores.max(2));
        assert_eq!(large_streams(1), 1);
        assert_eq!(large_streams(2), 2);
    }

    #[test]
    fn blobs_are_sent_largest_first() {
        let blobs: BTreeMap<Digest, (u64, ())> = [10u64, 300, 20]
            .into_iter()
            .map(|size| (Digest::sha256_of(&size.to_le_bytes()), (size, ())))
            .collect();
        let sizes: Vec<u64> = largest_first(blobs)
            .into_iter()
            .map(|(_, (s, _))| s)
            .collect();
        assert_eq!(sizes, [300, 20, 10]);
    }
}
