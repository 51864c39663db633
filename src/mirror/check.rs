//! `mirror-images check`: does the mirror serve every locked image, for every platform the
//! lock kept, and for every platform the nodes run? Read-only: `HEAD` and `GET` only.
//!
//! Per image: the mirror reference (the same naming rule as push) must name the locked
//! digest; every platform manifest must be there by digest, and so must every blob those
//! manifests list (fetched from the mirror itself, verified against their digests). Then,
//! for each wanted platform (the nodes' architectures): an index must list it among the
//! platforms the bundle kept; a single image's config must name it. An image a node cannot
//! run fails there, not as an `exec format error` on the node after install.

use std::sync::Arc;

use anyhow::anyhow;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exit::BadInput;
use crate::registry::descriptor::image_blobs;
use crate::registry::{ClientOptions, Digest, Platform, RegistryClient};

use super::lock::{LockFile, LockedImage, LockedPlatform};
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
    /// Platforms every image must offer (the nodes'); empty: only what the lock kept.
    pub platforms: Vec<Platform>,
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
        let wanted = options.platforms.clone();
        tasks.spawn(async move {
            let _permit = budget.acquire_owned().await;
            let result = check_image(&client, &registry, prefix.as_deref(), &image, &wanted).await;
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
    wanted: &[Platform],
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
    let mut single_platform = None;
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
        let blobs = image_blobs(&manifest).map_err(|e| anyhow!(e))?;
        for blob in &blobs {
            if !client.blob_exists(&repository, &blob.digest).await? {
                result
                    .missing
                    .push(format!("{platform} blob {}", blob.digest));
            }
        }
        if image.platforms.is_empty()
            && !wanted.is_empty()
            && let Some(config) = blobs.first()
            && client.blob_exists(&repository, &config.digest).await?
        {
            let bytes = client.get_small_blob(&repository, &config.digest).await?;
            single_platform = Some(config_platform(&bytes).map_err(|e| {
                anyhow!(
                    "{}: the image config {}: {e}",
                    image.reference,
                    config.digest
                )
            })?);
        }
    }
    result
        .missing
        .extend(platforms_missing(image, single_platform.as_ref(), wanted));
    Ok(result)
}

/// The wanted platforms the image does not offer, each with why. An index answers from
/// the lock (kept platforms, and those the pull's filter left out); a single image from its
/// config (`None` when the config could not be read: its absence is reported already).
fn platforms_missing(
    image: &LockedImage,
    single: Option<&Platform>,
    wanted: &[Platform],
) -> Vec<String> {
    let offers = |list: &[LockedPlatform], want: &Platform| {
        list.iter()
            .any(|p| Platform::parse(&p.platform).is_ok_and(|p| p.satisfies(want)))
    };
    let mut missing = Vec::new();
    for want in wanted {
        if image.platforms.is_empty() && image.skipped.is_empty() {
            if let Some(platform) = single
                && !platform.satisfies(want)
            {
                missing.push(format!(
                    "{want}: a node runs {want}, the image is built for {platform} only"
                ));
            }
        } else if offers(&image.skipped, want) && !offers(&image.platforms, want) {
            missing.push(format!(
                "{want}: a node runs {want}, and the pull's --platform left it out of the bundle; pull again with {want} in --platform, then push"
            ));
        } else if !offers(&image.platforms, want) {
            let has: Vec<&str> = image
                .platforms
                .iter()
                .map(|p| p.platform.as_str())
                .filter(|p| *p != "unknown")
                .collect();
            missing.push(format!(
                "{want}: a node runs {want}, the image offers only {}",
                has.join(", ")
            ));
        }
    }
    missing
}

/// The platform an image config names (`os`, `architecture`, `variant`).
fn config_platform(bytes: &[u8]) -> Result<Platform, String> {
    #[derive(serde::Deserialize)]
    struct Config {
        os: String,
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let c: Config = serde_json::from_slice(bytes).map_err(|e| format!("cannot be read: {e}"))?;
    Ok(Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant,
    })
}

/// The OCI platform of a node from its `uname -m`, as images name it.
pub fn node_platform(machine: &str) -> Option<Platform> {
    let (architecture, variant) = match machine.trim() {
        "x86_64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armv7l" | "armv7" => ("arm", Some("v7")),
        "armv6l" => ("arm", Some("v6")),
        "i386" | "i686" => ("386", None),
        "ppc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        _ => return None,
    };
    Some(Platform {
        os: "linux".to_string(),
        architecture: architecture.to_string(),
        variant: variant.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(platforms: &[&str], skipped: &[&str]) -> LockedImage {
        let entry = |p: &&str| LockedPlatform {
            platform: p.to_string(),
            digest: Digest::sha256_of(p.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        };
        LockedImage {
            source: "app:1".to_string(),
            reference: "docker.io/library/app:1".to_string(),
            digest: Digest::sha256_of(b"index"),
            media_type: "application/vnd.oci.image.index.v1+json".to_string(),
            platforms: platforms.iter().map(entry).collect(),
            skipped: skipped.iter().map(entry).collect(),
        }
    }

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_index_must_keep_every_node_platform() {
        let image = locked(&["linux/amd64", "unknown"], &["linux/arm64/v8"]);
        let wanted = [platform("linux/amd64"), platform("linux/arm64")];
        let missing = platforms_missing(&image, None, &wanted);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("linux/arm64: "), "{missing:?}");
        assert!(missing[0].contains("--platform left it out"), "{missing:?}");

        let image = locked(&["linux/amd64", "unknown"], &[]);
        let missing = platforms_missing(&image, None, &[platform("linux/s390x")]);
        assert_eq!(
            missing,
            ["linux/s390x: a node runs linux/s390x, the image offers only linux/amd64"]
        );
    }

    #[test]
    fn a_single_image_answers_with_its_config() {
        let image = LockedImage {
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            ..locked(&[], &[])
        };
        let config = br#"{"os":"linux","architecture":"amd64","rootfs":{}}"#;
        let own = config_platform(config).unwrap_or_else(|e| panic!("{e}"));
        let wanted = [platform("linux/amd64"), platform("linux/arm64")];
        let missing = platforms_missing(&image, Some(&own), &wanted);
        assert_eq!(
            missing,
            ["linux/arm64: a node runs linux/arm64, the image is built for linux/amd64 only"]
        );
        assert!(config_platform(b"{}").is_err());
    }

    #[test]
    fn node_machines_map_to_image_platforms() {
        for (machine, want) in [
            ("x86_64\n", "linux/amd64"),
            ("aarch64", "linux/arm64"),
            ("armv7l", "linux/arm/v7"),
        ] {
            assert_eq!(
                node_platform(machine).map(|p| p.to_string()),
                Some(want.to_string())
            );
        }
        assert!(node_platform("vax").is_none());
    }
}
