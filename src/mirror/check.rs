//! `mirror-images check`: does the mirror serve every locked image, for every platform the
//! lock kept? Read-only: `HEAD` and `GET` only.
//!
//! Per image: the mirror reference (the same naming rule as push) must name the locked
//! digest; every platform manifest must be there by digest, and so must every blob those
//! manifests list (fetched from the mirror itself, verified against their digests).

use std::sync::Arc;

use anyhow::anyhow;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exit::BadInput;
use crate::registry::descriptor::image_blobs;
use crate::registry::{ClientOptions, Digest, RegistryClient};

use super::lock::{LockFile, LockedImage};
use super::naming::target_repository;
use super::push::tag_target;

/// What to check.
pub struct CheckOptions {
    pub lock: LockFile,
    /// Only these normalised references (empty: every image of the lock).
    pub only: Vec<String>,
    pub registry: String,
    pub prefix: Option<String>,
    pub client: ClientOptions,
    pub concurrency: usize,
}

/// The verdict on one image.
#[derive(Debug)]
pub struct ImageCheck {
    pub source: String,
    pub mirror: String,
    /// Empty when the mirror serves all of it.
    pub missing: Vec<String>,
}

pub async fn check(options: CheckOptions) -> anyhow::Result<Vec<ImageCheck>> {
    let mut images = Vec::new();
    for wanted in &options.only {
        if !options.lock.images.iter().any(|i| &i.reference == wanted) {
            return Err(BadInput(format!(
                "{wanted} is not in the lock file: pull it first (`gpuctl mirror-images pull`)"
            ))
            .into());
        }
    }
    for image in &options.lock.images {
        if options.only.is_empty() || options.only.contains(&image.reference) {
            images.push(image.clone());
        }
    }
    let client = Arc::new(RegistryClient::new(
        &options.registry,
        options.client.clone(),
    )?);
    client.ping().await?;
    let budget = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, image) in images.into_iter().enumerate() {
        let (client, budget) = (client.clone(), budget.clone());
        let (registry, prefix) = (options.registry.clone(), options.prefix.clone());
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            let result = check_image(&client, &registry, prefix.as_deref(), &image).await;
            (index, result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.map_err(|e| anyhow!("an image check failed: {e}"))?;
        results.push((index, result?));
    }
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

async fn check_image(
    client: &RegistryClient,
    registry: &str,
    prefix: Option<&str>,
    image: &LockedImage,
) -> anyhow::Result<ImageCheck> {
    let reference = image.reference().map_err(BadInput)?;
    let repository = target_repository(&reference, prefix);
    let tagged = tag_target(image);
    let at = reference.tag.clone().unwrap_or_else(|| tagged.to_string());
    let sep = if reference.tag.is_some() { ":" } else { "@" };
    let mut result = ImageCheck {
        source: image.source.clone(),
        mirror: format!("{registry}/{repository}{sep}{at}"),
        missing: Vec::new(),
    };
    match client.head_manifest(&repository, &at).await? {
        None => result.missing.push(format!("{at} (not in the mirror)")),
        Some(head) if head.digest.as_ref().is_some_and(|d| d != tagged) => {
            result.missing.push(format!(
                "{at} names {} in the mirror, the lock says {tagged}",
                head.digest.map(|d| d.to_string()).unwrap_or_default()
            ))
        }
        Some(_) => {}
    }
    let manifests: Vec<(String, &Digest)> = if image.platforms.is_empty() {
        vec![("image".to_string(), &image.digest)]
    } else {
        image
            .platforms
            .iter()
            .map(|p| (p.platform.clone(), &p.digest))
            .collect()
    };
    for (platform, digest) in manifests {
        if client
            .head_manifest(&repository, &digest.to_string())
            .await?
            .is_none()
        {
            result.missing.push(format!("{platform} manifest {digest}"));
            continue;
        }
        let manifest = client
            .get_manifest(&repository, &digest.to_string())
            .await?;
        for blob in image_blobs(&manifest).map_err(|e| anyhow!(e))? {
            if !client.blob_exists(&repository, &blob.digest).await? {
                result
                    .missing
                    .push(format!("{platform} blob {}", blob.digest));
            }
        }
    }
    Ok(result)
}
