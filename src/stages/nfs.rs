//! Stage `nfs` (host): on the inventory's NFS server, the export directory, a managed block
//! in `/etc/exports` (template `storage/exports`: the export, open to the cluster's nodes
//! only) and `exportfs -ra` when the block changed or the export is not active.
//!
//! The server itself (nfs-kernel-server, with nfs-common, rpcbind and their dependencies)
//! comes from the bundle's packages for the `nfs` role (`packages/<os>/nfs/`, see the
//! `packages` stage), installed before this stage; the package enables and starts its
//! service. A host without `exportfs` fails here saying so, before anything is written.
//! Other hosts have nothing to do in this stage.

use crate::inventory::Inventory;
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::render::{Templates, context};
use crate::transport::shell::quote;

pub struct Nfs;

/// The file and the marker of gpuctl's block in it.
pub const EXPORTS: &str = "/etc/exports";
pub const MARKER: &str = "exports";

/// exportfs lives in /usr/sbin, which a login user's PATH may lack.
const SBIN: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"; export PATH; ";

impl Stage for Nfs {
    fn name(&self) -> &'static str {
        "nfs"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let Some(nfs) = &inv.storage.nfs else {
            return Ok(Vec::new());
        };
        if !inv.is_nfs_server(&hf.host) {
            return Ok(Vec::new());
        }
        let templates = Templates::load(None)?;
        let block = templates
            .render_one("storage/exports", &context(inv)?)?
            .map(|r| r.text)
            .unwrap_or_default();
        let export = nfs.export.display().to_string();
        let q = quote(&export);
        // The export is active: its path is the first field of a line of the table.
        let exported = format!("{SBIN}exportfs -s | awk '{{print $1}}' | grep -qxF -- {q}");
        Ok(vec![
            Op::Require {
                check: format!("{SBIN}command -v exportfs >/dev/null 2>&1"),
                message: format!(
                    "exportfs is missing on {}: the NFS server needs nfs-kernel-server; put it \
                     and its dependencies (apt-get download nfs-kernel-server nfs-common \
                     rpcbind keyutils libnfsidmap1 libevent-core-2.1-7 ...) into the \
                     bundle's packages/<os>/nfs/ so the packages stage installs them here",
                    hf.host.name
                ),
            },
            Op::Command {
                run: format!("mkdir -p -m 0755 {q}"),
                guard: format!("test -d {q}"),
                undo: None,
                rerun_on: Vec::new(),
            },
            // Before the block on purpose: install writes files before it runs commands
            // anyway, and reset, which undoes in reverse order, then takes the block out
            // (or the file it was alone in) before this withdraws the export.
            Op::Command {
                run: format!("{SBIN}exportfs -ra"),
                guard: exported.clone(),
                undo: Some(crate::plan::Undo {
                    run: format!("{SBIN}! command -v exportfs >/dev/null || exportfs -ra"),
                    guard: format!("{SBIN}! command -v exportfs >/dev/null || ! {{ {exported}; }}"),
                }),
                rerun_on: vec![EXPORTS.into()],
            },
            Op::Block {
                path: EXPORTS.into(),
                marker: MARKER.into(),
                content: block,
            },
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn with_nfs() -> Inventory {
        let yaml = sample::YAML.replace(
            "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n",
            "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n  nfs: { server: gpu1, export: /srv/nfs/share }\n",
        )
        .replace("    roles: [worker]\n    gpu: true", "    roles: [worker, nfs]\n    gpu: true");
        sample::load(&yaml)
    }

    #[test]
    fn only_the_nfs_server_exports_to_the_nodes() {
        let inv = with_nfs();
        assert!(
            Nfs.plan(&inv, &sample::facts(&inv, "cp1"))
                .unwrap()
                .is_empty()
        );
        let ops = Nfs.plan(&inv, &sample::facts(&inv, "gpu1")).unwrap();
        let [
            Op::Require { .. },
            Op::Command { run: mkdir, .. },
            Op::Command {
                run,
                guard,
                rerun_on,
                ..
            },
            Op::Block { content, .. },
        ] = &ops[..]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(mkdir, "mkdir -p -m 0755 /srv/nfs/share");
        assert!(
            content.starts_with("/srv/nfs/share 10.0.0.1(rw,"),
            "{content}"
        );
        assert!(run.ends_with("exportfs -ra"));
        assert!(guard.ends_with("grep -qxF -- /srv/nfs/share"), "{guard}");
        assert_eq!(rerun_on, &["/etc/exports".to_string()]);
    }
}
