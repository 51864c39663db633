//! Manifests on the cluster: the one mechanism every cluster stage that creates Kubernetes
//! objects uses (`gpu` now; `dns`, `storage`, `users` and the stack are meant to follow).
//!
//! A template (`gpu/device-plugin.yaml`) is rendered for the inventory, its images are
//! rewritten to the mirror, and the result is written on the first server under
//! [`DIR`] and applied from there with server-side apply. Keeping the applied file on the
//! host is what makes the rest simple and idempotent:
//! - the File op's probe tells whether the manifest changed since it was last applied, and
//!   the apply command runs again only then ([`Op::Command`]'s `rerun_on`), or when an
//!   object it names is gone from the cluster (its guard, `kubectl get -f`);
//! - a component the inventory turns off renders to nothing: its file, still on the host,
//!   says what to delete (`kubectl delete -f`), and is removed after;
//! - the admin can read on the server exactly what gpuctl applied.

use std::path::Path;

use anyhow::Context as _;

use crate::inventory::Inventory;
use crate::mirror::lock::{LOCK_FILE, LockFile};
use crate::mirror::rewrite::Rewrite;
use crate::plan::{Op, Undo};
use crate::render::{Templates, context};
use crate::transport::shell::quote;

/// Where applied manifests are kept on the first server, by template name.
pub const DIR: &str = "/var/lib/gpuctl/manifests";

/// The field manager of gpuctl's server-side applies: `kubectl get -o yaml
/// --show-managed-fields` names it as the owner of what it set.
pub const FIELD_MANAGER: &str = "gpuctl";

/// The Ops that make the cluster hold exactly what `templates` (names without `.hbs`)
/// render to for `inv`, applied with `kubectl` (a command line, e.g. `k3s kubectl`).
pub fn ops(inv: &Inventory, templates: &[&str], kubectl: &str) -> anyhow::Result<Vec<Op>> {
    let set = Templates::load(None)?;
    let ctx = context(inv)?;
    let lock = lock(inv)?;
    let rewrite = inv.registry.as_ref().map(|r| Rewrite {
        mirror: &r.mirror,
        prefix: None,
        lock: lock.as_ref(),
    });
    let mut ops = Vec::new();
    for name in templates {
        let path = format!("{DIR}/{name}");
        let q = quote(&path);
        let exists = format!("{kubectl} get -f {q} -o name >/dev/null 2>&1");
        let delete = format!("{kubectl} delete --ignore-not-found -f {q}");
        match set.render_one(name, &ctx)? {
            Some(rendered) => {
                let text = match &rewrite {
                    Some(rw) => {
                        rw.text(&rendered.text)
                            .with_context(|| format!("template {name} is not valid YAML"))?
                            .0
                    }
                    None => rendered.text,
                };
                ops.push(Op::File {
                    path: path.clone(),
                    content: text,
                    mode: 0o600,
                    owner: "root:root".into(),
                    secret: false,
                });
                ops.push(Op::Command {
                    run: format!(
                        "{kubectl} apply --server-side --force-conflicts \
                         --field-manager={FIELD_MANAGER} -f {q}"
                    ),
                    guard: exists.clone(),
                    undo: Some(Undo {
                        run: format!("{delete} && rm -f {q}"),
                        guard: format!("test ! -e {q}"),
                    }),
                    rerun_on: vec![path],
                });
            }
            // Turned off: what was applied before goes, then its file.
            None => ops.push(Op::Command {
                run: format!("{delete} && rm -f {q}"),
                guard: format!("test ! -e {q}"),
                undo: None,
                rerun_on: Vec::new(),
            }),
        }
    }
    Ok(ops)
}

/// The image lock of the inventory's bundle (`<bundle>/images.lock.yaml`), when it has one:
/// images it pinned are applied by digest.
fn lock(inv: &Inventory) -> anyhow::Result<Option<LockFile>> {
    let Some(dir) = &inv.bundle else {
        return Ok(None);
    };
    let path = Path::new(dir).join(LOCK_FILE);
    if !path.exists() {
        return Ok(None);
    }
    LockFile::read(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn a_rendered_template_is_written_then_applied_again_only_when_it_changed() {
        let inv = sample::inventory();
        let ops = ops(&inv, &["gpu/runtimeclass.yaml"], "k3s kubectl").unwrap();
        let [
            Op::File { path, content, .. },
            Op::Command {
                run,
                guard,
                rerun_on,
                undo,
            },
        ] = &ops[..]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(path, "/var/lib/gpuctl/manifests/gpu/runtimeclass.yaml");
        assert!(content.contains("kind: RuntimeClass"), "{content}");
        assert_eq!(
            run,
            "k3s kubectl apply --server-side --force-conflicts --field-manager=gpuctl -f \
             /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml"
        );
        assert!(guard.contains("get -f /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml"));
        assert_eq!(rerun_on, std::slice::from_ref(path));
        assert!(
            undo.as_ref()
                .unwrap()
                .run
                .contains("delete --ignore-not-found")
        );
    }

    #[test]
    fn a_component_turned_off_is_deleted_by_its_last_file() {
        let mut inv = sample::inventory();
        inv.gpu.dcgm_exporter = false;
        let ops = ops(&inv, &["gpu/dcgm-exporter.yaml"], "kubectl").unwrap();
        let [Op::Command { run, guard, .. }] = &ops[..] else {
            panic!("{ops:?}")
        };
        assert_eq!(
            run,
            "kubectl delete --ignore-not-found -f /var/lib/gpuctl/manifests/gpu/dcgm-exporter.yaml \
             && rm -f /var/lib/gpuctl/manifests/gpu/dcgm-exporter.yaml"
        );
        assert_eq!(
            guard,
            "test ! -e /var/lib/gpuctl/manifests/gpu/dcgm-exporter.yaml"
        );
    }

    #[test]
    fn images_go_to_the_mirror_when_the_inventory_has_one() {
        let mut inv = sample::inventory();
        inv.registry = Some(crate::inventory::Registry {
            mirror: "registry.lab:5000".into(),
            insecure: true,
            ca_file: None,
            username: None,
            password: None,
        });
        let ops = ops(&inv, &["gpu/device-plugin.yaml"], "kubectl").unwrap();
        let Op::File { content, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert!(
            content.contains("image: registry.lab:5000/nvidia/k8s-device-plugin:v0.17.0"),
            "{content}"
        );
        assert!(!content.contains("nvcr.io"), "{content}");
    }
}
