//! `gpuctl render`: every template rendered with the inventory, written under `--out`.
//!
//! The same rendering the cluster stages apply, so what an admin reviews (or commits to a
//! GitOps repository) is what install would send.

use crate::cli::RenderArgs;
use crate::exit::BadInput;
use crate::inventory::{self, LoadOptions};
use crate::render::{Source, Templates};

pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let inv = inventory::load(&args.inventory.inventory, &LoadOptions::default())?;
    for w in &inv.warnings {
        eprintln!("warning: {w}");
    }
    let templates =
        Templates::load(args.templates.as_deref()).map_err(|e| BadInput(e.to_string()))?;
    let rendered = templates
        .render_all(&inv)
        .map_err(|e| BadInput(e.to_string()))?;
    // Everything is rendered before anything is written: a template error leaves the
    // output directory as it was.
    for r in &rendered {
        let path = args.out.join(&r.name);
        crate::state::atomic::write(&path, r.text.as_bytes()).map_err(|e| {
            BadInput(format!(
                "cannot write {}: {e}; check that --out {} is a writable directory",
                path.display(),
                args.out.display()
            ))
        })?;
        let from = match templates.sources().get(&format!("{}.hbs", r.name)) {
            Some(Source::Override(p)) => format!("  (template {})", p.display()),
            _ => String::new(),
        };
        println!("{}{from}", path.display());
    }
    let mut overlays = stack_overlays(&inv)?;
    // containerd's per-registry mirror files, for a containerd gpuctl does not configure.
    for (path, text) in crate::stages::kubernetes::k3s::containerd_hosts(&inv).unwrap_or_default() {
        overlays.push((format!("containerd/certs.d/{path}"), text));
    }
    overlays.extend(kubeadm_files(&inv));
    for (path, text) in &overlays {
        let path = args.out.join(path);
        crate::state::atomic::write(&path, text.as_bytes())
            .map_err(|e| BadInput(format!("cannot write {}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    let skipped = templates.sources().len() - rendered.len();
    let written = rendered.len() + overlays.len();
    eprintln!(
        "{} file{} written to {}{}",
        written,
        if written == 1 { "" } else { "s" },
        args.out.display(),
        if skipped > 0 {
            format!("; {skipped} template(s) turned off by the inventory rendered nothing")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// With kubeadm, the files the runtime and kubernetes stages generate rather than render
/// from a template: the first server's `kubeadm/init.yaml` and containerd's
/// `config.toml` for nodes without and with GPUs. (`join.yaml` holds the join token, which
/// only the first server has: it is not rendered.)
fn kubeadm_files(inv: &crate::inventory::Inventory) -> Vec<(String, String)> {
    use crate::stages::kubernetes::kubeadm;
    use crate::stages::runtime::containerd;
    if inv.cluster.distribution != inventory::Distribution::Kubeadm {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(first) = inv.servers().next() {
        out.push(("kubeadm/init.yaml".into(), kubeadm::init_config(inv, first)));
    }
    if inv.cluster.container_runtime == inventory::ContainerRuntime::Containerd {
        out.push((
            "containerd/config.toml".into(),
            containerd::config_toml(inv, false, None),
        ));
        out.push((
            "containerd/config-gpu-nodes.toml".into(),
            containerd::config_toml(inv, true, None),
        ));
    }
    out
}

/// Per stack component, `stack/<name>/kustomization.yaml` and the bundle's files under
/// `stack/<name>/upstream/` (see `stages::stack::overlay`), as (path under --out, text).
/// Built before anything is written, like the templates.
fn stack_overlays(inv: &crate::inventory::Inventory) -> anyhow::Result<Vec<(String, String)>> {
    use crate::stages::stack;
    if inv.stack.components.is_empty() {
        return Ok(Vec::new());
    }
    let Some(bundle) = &inv.bundle else {
        return Err(BadInput(
            "stack.components are read from the bundle's manifests/<component>/ and the \
             inventory names no bundle: add `bundle: DIR`"
                .into(),
        )
        .into());
    };
    let lock = crate::stages::manifests::lock(inv)?;
    let rewrite = inv
        .registry
        .as_ref()
        .map(|r| crate::mirror::rewrite::Rewrite {
            mirror: &r.mirror,
            prefix: None,
            lock: lock.as_ref(),
        });
    let mut out = Vec::new();
    for name in &inv.stack.components {
        let files = stack::files_on_disk(bundle, name).map_err(|e| BadInput(format!("{e:#}")))?;
        for f in stack::overlay::overlay(name, &files, rewrite.as_ref()).map_err(BadInput)? {
            out.push((format!("stack/{name}/{}", f.path), f.text));
        }
    }
    Ok(out)
}
