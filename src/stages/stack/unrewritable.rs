//! With the docker runtime, what gpuctl cannot send through the mirror. containerd pulls
//! every registry through the mirror (k3s `registries.yaml`, `hosts.toml`); docker's
//! `registry-mirrors` covers docker.io only, so any other image reaches the mirror only
//! where gpuctl rewrites its reference in a manifest. An image the bundle locked that no
//! manifest gpuctl applies names is one something picks at run time (a default compiled
//! into an operator, a setting an admin makes later): there is nothing to rewrite, and
//! docker would pull it from upstream, which an air-gapped cluster cannot reach. `plan`
//! and `install` name them, so the admin can point what uses them at the mirror.

use std::collections::BTreeSet;

use serde_yaml::Value;

use crate::bundle::Bundle;
use crate::inventory::{ContainerRuntime, Inventory};
use crate::mirror::lock::LockFile;
use crate::mirror::scan::scan;
use crate::registry::Reference;
use crate::registry::reference::DOCKER_HUB;

/// The locked images outside docker.io that no applied manifest names, when the runtime
/// is docker and there is a mirror; `docs` is every document gpuctl applies (rendered
/// templates and stack components, before the rewrite).
pub fn unrewritable(inv: &Inventory, lock: &LockFile, docs: &[Value]) -> Vec<String> {
    if inv.cluster.container_runtime != ContainerRuntime::Docker || inv.registry.is_none() {
        return Vec::new();
    }
    let mut named = BTreeSet::new();
    for doc in docs {
        for hit in scan(doc) {
            named.insert(key(&hit.reference));
            if let Some(digest) = &hit.reference.digest {
                named.insert(digest.to_string());
            }
        }
    }
    lock.images
        .iter()
        .filter_map(|locked| locked.reference().ok().map(|r| (locked, r)))
        .filter(|(locked, r)| {
            r.registry != DOCKER_HUB
                && !named.contains(&key(r))
                && !named.contains(&locked.digest.to_string())
        })
        .map(|(locked, _)| locked.reference.clone())
        .collect()
}

/// Registry, repository and tag: a manifest that adds a digest still names the image.
fn key(r: &Reference) -> String {
    format!(
        "{}/{}:{}",
        r.registry,
        r.repository,
        r.tag.as_deref().unwrap_or_default()
    )
}

/// Every document gpuctl applies for `inv`: its templates, rendered, and the manifests
/// of every stack component in the bundle.
pub fn applied_documents(inv: &Inventory, bundle: Option<&Bundle>) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for rendered in crate::render::Templates::load(None)?.render_all(inv)? {
        if rendered.name.ends_with(".yaml") {
            docs.extend(
                crate::mirror::discover::parse_yaml(&rendered.name, &rendered.text)
                    .map_err(anyhow::Error::msg)?,
            );
        }
    }
    if let Some(bundle) = bundle {
        for name in &inv.stack.components {
            docs.extend(
                super::documents(bundle, name)?
                    .into_iter()
                    .flat_map(|(_, d)| d),
            );
        }
    }
    Ok(docs)
}

/// The note `plan` shows, if there is anything to say.
pub fn note(inv: &Inventory, bundle: Option<&Bundle>) -> Option<String> {
    if inv.cluster.container_runtime != ContainerRuntime::Docker {
        return None;
    }
    let mirror = &inv.registry.as_ref()?.mirror;
    let lock = super::manifests::lock(inv).ok()??;
    let docs = match applied_documents(inv, bundle) {
        Ok(docs) => docs,
        Err(e) => return Some(format!("cannot list the images no manifest names: {e:#}")),
    };
    let images = unrewritable(inv, &lock, &docs);
    if images.is_empty() {
        return None;
    }
    Some(format!(
        "with the docker runtime these locked images cannot be rewritten to the mirror: no \
         manifest gpuctl applies names them, so whatever starts them (an operator's built-in \
         default, a setting made later) makes docker pull them from upstream, and docker's \
         registry-mirrors covers docker.io only: {}. Point what uses them at {mirror}/<same \
         path> (push puts them there), or use container_runtime: containerd, which pulls \
         every registry through the mirror",
        images.join(", ")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mirror::{LockFile, LockedImage};
    use crate::plan::Stage as _;
    use crate::registry::Digest;
    use crate::stages::sample;

    fn locked(reference: &str) -> LockedImage {
        LockedImage {
            source: reference.to_string(),
            reference: reference.to_string(),
            digest: Digest::sha256_of(reference.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            platforms: Vec::new(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn only_images_outside_docker_io_that_no_manifest_names_are_listed() {
        let with = |runtime: &str| {
            sample::load(&sample::YAML.replace(
                "  data_dir: /home/data/k3s/var\n",
                &format!(
                    "  data_dir: /home/data/k3s/var\n  container_runtime: {runtime}\nregistry: {{ mirror: \"registry.lab:5000\" }}\n"
                ),
            ))
        };
        let inv = with("docker");
        let lock = LockFile::new(
            Vec::new(),
            vec![
                locked("nvcr.io/nvidia/k8s-device-plugin:v0.17.0"),
                locked("quay.io/team/operator-default:1.0"),
                locked("docker.io/library/busybox:1.36.1"),
                locked("ghcr.io/team/pinned:2"),
            ],
        );
        let docs = crate::mirror::discover::parse_yaml(
            "t",
            "kind: Pod\nspec:\n  containers:\n  - image: nvcr.io/nvidia/k8s-device-plugin:v0.17.0\n  - image: ghcr.io/team/pinned:2@sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
        )
        .unwrap();
        // busybox is on docker.io: the daemon's registry-mirrors covers it.
        assert_eq!(
            unrewritable(&inv, &lock, &docs),
            ["quay.io/team/operator-default:1.0"]
        );
        assert!(unrewritable(&with("containerd"), &lock, &docs).is_empty());
    }

    #[test]
    fn the_stage_notes_them_for_plan() {
        let bundle = tempfile::tempdir().unwrap();
        LockFile::new(
            Vec::new(),
            vec![
                locked("nvcr.io/nvidia/k8s-device-plugin:v0.17.0"),
                locked("quay.io/team/operator-default:1.0"),
            ],
        )
        .write(&bundle.path().join(crate::mirror::lock::LOCK_FILE))
        .unwrap();
        let inv = sample::load(&sample::YAML.replace(
            "  data_dir: /home/data/k3s/var\n",
            &format!(
                "  data_dir: /home/data/k3s/var\n  container_runtime: docker\nregistry: {{ mirror: \"registry.lab:5000\" }}\nbundle: {}\n",
                bundle.path().display()
            ),
        ));
        let stage = super::super::StackStage { bundle: None };
        let notes = stage.notes(&inv, &sample::cluster_facts(&inv, "cp1"));
        // The device plugin's template names its image; the operator's default is named
        // nowhere.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("docker.io only: quay.io/team/operator-default:1.0.")
                && notes[0].contains("registry.lab:5000/<same path>"),
            "{notes:?}"
        );
    }
}
