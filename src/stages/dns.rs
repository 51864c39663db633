//! Stage `dns` (cluster): the inventory's `dns.hosts` answered by CoreDNS inside the
//! cluster, so pods resolve the lab's names (the registry, the NFS server, login hosts)
//! the way the nodes do through their `/etc/hosts` block.
//!
//! On k3s the entries go into the `coredns-custom` ConfigMap (template
//! `dns/coredns-custom.yaml`), which k3s's Corefile imports and which survives k3s restarts
//! and upgrades: edits to the `coredns` ConfigMap itself are overwritten by k3s. The
//! ConfigMap is applied server-side through [`super::manifests`], so a removed entry is
//! removed, nothing is duplicated, and keys the admin keeps in `coredns-custom` stay.
//!
//! CoreDNS's `reload` plugin watches the Corefile only, not the files it imports, so CoreDNS
//! is restarted — only when the ConfigMap changed — and the stage waits for the restart to
//! finish.

use super::manifests;
use super::ready::KUBECTL;
use crate::inventory::{Distribution, Inventory};
use crate::plan::{HostFacts, Op, Scope, Stage};

pub struct Dns;

/// The template holding the entries.
pub const TEMPLATE: &str = "dns/coredns-custom.yaml";

impl Stage for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        if inv.cluster.distribution != Distribution::K3s {
            anyhow::bail!(
                "cluster.distribution kubeadm is not supported by gpuctl yet: the CoreDNS \
                 entries (a managed block in the Corefile) are not written"
            );
        }
        let mut ops = manifests::ops(inv, &[TEMPLATE], KUBECTL)?;
        ops.push(Op::Command {
            run: format!(
                "{KUBECTL} -n kube-system rollout restart deployment/coredns && \
                 {KUBECTL} -n kube-system rollout status deployment/coredns --timeout=120s"
            ),
            // Nothing to probe: the restart is wanted only when the ConfigMap changed.
            guard: "true".into(),
            undo: None,
            rerun_on: vec![format!("{}/{TEMPLATE}", manifests::DIR)],
        });
        Ok(ops)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn the_entries_go_to_coredns_custom_and_coredns_restarts_when_they_change() {
        let inv = sample::inventory();
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Dns.plan(&inv, &hf).unwrap();
        let [
            Op::File { path, content, .. },
            Op::File { .. },
            Op::Command { .. },
            Op::Command { run, rerun_on, .. },
        ] = &ops[..]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(path, "/var/lib/gpuctl/manifests/dns/coredns-custom.yaml");
        assert!(
            content.contains("192.168.3.14 login.lab.example lab.example"),
            "{content}"
        );
        assert!(run.contains("rollout restart deployment/coredns"), "{run}");
        assert_eq!(rerun_on, std::slice::from_ref(path));
    }

    #[test]
    fn without_entries_gpuctl_key_is_taken_out_not_the_configmap() {
        let mut inv = sample::inventory();
        inv.dns.hosts.clear();
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Dns.plan(&inv, &hf).unwrap();
        let Op::File { content, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert!(content.contains("name: coredns-custom"), "{content}");
        assert!(!content.contains("\ndata:"), "{content}");
    }
}
