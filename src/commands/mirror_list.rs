//! `gpuctl mirror-images list`: every image an install uses, found in an images file and
//! in manifests, printed one per line with where it was found, or written as an images
//! file for `mirror-images pull`. See `docs/mirror.md`, "Finding every image".

use std::path::PathBuf;

use crate::cli::{ListOutput, MirrorListArgs};
use crate::exit::BadInput;
use crate::inventory::{self, LoadOptions};
use crate::mirror::discover::{InMemory, discover, images_file_text};
use crate::render::Templates;
use crate::stages::cni;
use crate::stages::kubernetes::kubeadm;

pub fn list(args: &MirrorListArgs) -> anyhow::Result<()> {
    let mut manifests = args.manifests.clone();
    let mut rendered = Vec::new();
    if let Some(path) = &args.inventory {
        let inv = inventory::load(path, &LoadOptions::default())?;
        let templates =
            Templates::load(args.templates.as_deref()).map_err(|e| BadInput(e.to_string()))?;
        for r in templates
            .render_all(&inv)
            .map_err(|e| BadInput(e.to_string()))?
        {
            if r.name.ends_with(".yaml") {
                rendered.push(InMemory {
                    name: format!("template {}", r.name),
                    text: r.text,
                });
            }
        }
        manifests.extend(stack_manifests(&inv)?);
        if inv.cluster.distribution == inventory::Distribution::Kubeadm {
            let version = &inv.cluster.version;
            match kubeadm::images(version) {
                Some(images) => rendered.push(InMemory {
                    name: format!("kubeadm {version} (kubeadm config images list)"),
                    text: format!(
                        "images:\n{}",
                        images
                            .iter()
                            .map(|i| format!("- {i}\n"))
                            .collect::<String>()
                    ),
                }),
                None => eprintln!(
                    "warning: gpuctl does not know which etcd, CoreDNS and pause images kubeadm \
                     {version} uses; add the output of `kubeadm config images list \
                     --kubernetes-version {version}` to the --images file"
                ),
            }
        }
    }
    let found = discover(args.images.as_deref(), &manifests, &rendered).map_err(BadInput)?;
    if args.output == ListOutput::Images {
        if found.is_empty() {
            return Err(BadInput(
                "no images found, so there is no images file to write; check the --inventory, \
                 --manifests and --images paths"
                    .to_string(),
            )
            .into());
        }
        print!("{}", images_file_text(&found));
        return Ok(());
    }
    for image in &found {
        let Some(first) = image.places.first() else {
            continue;
        };
        if args.verbose {
            println!("{}", image.reference);
            for place in &image.places {
                println!("    {place}");
            }
            continue;
        }
        let more = image.places.len() - 1;
        if more == 0 {
            println!("{}  {first}", image.reference);
        } else {
            println!(
                "{}  {first}  (+{more} more place{})",
                image.reference,
                if more == 1 { "" } else { "s" }
            );
        }
    }
    eprintln!(
        "{} image{} found",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The manifest directory of every stack component the inventory names, and of kubeadm's
/// pod network, from its bundle. A directory that is missing is an error: install would
/// fail on it too.
fn stack_manifests(inv: &inventory::Inventory) -> anyhow::Result<Vec<PathBuf>> {
    let mut names = inv.stack.components.clone();
    if cni::applies(inv) {
        names.push(cni::component(inv).to_string());
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let Some(bundle) = &inv.bundle else {
        return Err(BadInput(format!(
            "{}: the install applies {} from the bundle (stack.components, and kubeadm's \
             cluster.cni) but the inventory names no bundle; add `bundle: DIR` (the manifests \
             are read from DIR/manifests/NAME/)",
            inv.path.display(),
            names.join(", ")
        ))
        .into());
    };
    let mut dirs = Vec::new();
    let mut missing = Vec::new();
    for c in &names {
        let dir = bundle.join("manifests").join(c);
        if dir.is_dir() {
            dirs.push(dir);
        } else {
            missing.push(dir.display().to_string());
        }
    }
    if !missing.is_empty() {
        return Err(BadInput(format!(
            "manifests missing from the bundle: {}; put each component's rendered manifests \
             there (or remove it from stack.components)",
            missing.join(", ")
        ))
        .into());
    }
    Ok(dirs)
}
