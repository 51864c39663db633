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
use super::ready::kubectl;
use crate::inventory::{Distribution, Inventory};
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::transport::shell::quote;

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
        if inv.cluster.distribution == Distribution::Kubeadm {
            return corefile_ops(inv);
        }
        let kubectl = kubectl(inv);
        let mut ops = manifests::ops(inv, &[TEMPLATE], kubectl)?;
        ops.push(Op::Command {
            run: format!(
                "{kubectl} -n kube-system rollout restart deployment/coredns && \
                 {kubectl} -n kube-system rollout status deployment/coredns --timeout=120s"
            ),
            // Nothing to probe: the restart is wanted only when the ConfigMap changed.
            guard: "true".into(),
            undo: None,
            rerun_on: vec![format!("{}/{TEMPLATE}", manifests::DIR)],
        });
        Ok(ops)
    }
}

/// The server block of `dns.hosts`, kept on the first server for kubeadm's Corefile.
pub const BLOCK: &str = "dns/hosts.server";
/// The lines around gpuctl's block in kubeadm's Corefile.
const BEGIN: &str = "# BEGIN gpuctl dns.hosts";
const END: &str = "# END gpuctl dns.hosts";

/// The lines of a Corefile's managed block (without its marker lines), `None` when it has
/// none: what doctor compares with `dns.hosts` on kubeadm.
pub fn managed_block(corefile: &str) -> Option<String> {
    let mut lines = corefile.lines().skip_while(|l| *l != BEGIN);
    lines.next()?;
    let inner: Vec<&str> = lines.take_while(|l| *l != END).collect();
    Some(inner.join("\n"))
}

/// kubeadm: the block rendered from `dns/hosts.server` kept as a file on the first server,
/// and one command that makes the Corefile's managed block exactly that file (appended
/// between [`BEGIN`] and [`END`] lines; removed when the file is empty) and restarts
/// CoreDNS. It runs when the file changed, or when its guard (the block in the cluster
/// compared with the file) finds that someone edited the block; never otherwise.
fn corefile_ops(inv: &Inventory) -> anyhow::Result<Vec<Op>> {
    let kubectl = kubectl(inv);
    let set = crate::render::Templates::load(None)?;
    let ctx = crate::render::context(inv)?;
    let block = set
        .render_one(BLOCK, &ctx)?
        .map(|r| r.text)
        .unwrap_or_default();
    // Whole lines only: the block is cat between two marker lines.
    let mut block = block.trim_matches('\n').to_string();
    if !block.is_empty() {
        block.push('\n');
    }
    let file = format!("{}/{BLOCK}", manifests::DIR);
    let f = quote(&file);
    let get = format!(
        "{kubectl} -n kube-system get configmap coredns -o jsonpath='{{.data.Corefile}}' \
         --request-timeout=10s"
    );
    let (begin, end) = (BEGIN, END);
    let between = format!("sed -n '/^{begin}$/,/^{end}$/p' | sed '1d;$d'");
    let run = format!(
        "set -e; t=$(mktemp -d); trap 'rm -rf \"$t\"' EXIT; \
         {get} > \"$t/old\"; \
         sed '/^{begin}$/,/^{end}$/d' \"$t/old\" > \"$t/Corefile\"; \
         if [ -n \"$(tail -c1 \"$t/Corefile\")\" ]; then echo >> \"$t/Corefile\"; fi; \
         if [ -s {f} ]; then {{ echo '{begin}'; cat {f}; echo '{end}'; }} >> \"$t/Corefile\"; fi; \
         {kubectl} -n kube-system create configmap coredns --from-file=Corefile=\"$t/Corefile\" \
         --dry-run=client -o yaml | {kubectl} apply --server-side --force-conflicts \
         --field-manager={fm} -f - >/dev/null; \
         {kubectl} -n kube-system rollout restart deployment/coredns >/dev/null; \
         {kubectl} -n kube-system rollout status deployment/coredns --timeout=120s",
        fm = manifests::FIELD_MANAGER,
    );
    let guard = format!("{get} | {between} | cmp -s - {f}");
    Ok(vec![
        Op::File {
            path: file.clone(),
            content: block,
            mode: 0o644,
            owner: "root:root".into(),
            secret: false,
        },
        Op::Command {
            run,
            guard,
            undo: None,
            // The guard is probed before the file is written: a new file runs it too.
            rerun_on: vec![file],
        },
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn the_managed_block_is_read_back_between_its_markers() {
        let corefile = format!(
            ".:53 {{\n    forward . /etc/resolv.conf\n}}\n{BEGIN}\nhosts {{\n  10.0.0.1 a.example\n}}\n{END}\n"
        );
        assert_eq!(
            managed_block(&corefile).as_deref(),
            Some("hosts {\n  10.0.0.1 a.example\n}")
        );
        assert_eq!(managed_block(".:53 {\n}\n"), None);
    }

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

    #[test]
    fn kubeadm_keeps_the_block_beside_the_corefile_and_replaces_it_there_on_change() {
        let mut inv = sample::inventory();
        inv.cluster.distribution = Distribution::Kubeadm;
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Dns.plan(&inv, &hf).unwrap();
        let [
            Op::File { path, content, .. },
            Op::Command {
                run,
                guard,
                rerun_on,
                ..
            },
        ] = &ops[..]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(path, "/var/lib/gpuctl/manifests/dns/hosts.server");
        assert!(
            content.contains("192.168.3.14 login.lab.example lab.example"),
            "{content}"
        );
        assert!(
            content.ends_with("}\n") && !content.starts_with('\n'),
            "{content:?}"
        );
        assert!(run.contains("/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf"));
        assert!(run.contains("rollout restart deployment/coredns"), "{run}");
        assert!(guard.contains("cmp -s - /var/lib/gpuctl/manifests/dns/hosts.server"));
        assert_eq!(rerun_on, std::slice::from_ref(path));

        // No entries: an empty file, which takes the block out.
        inv.dns.hosts.clear();
        let ops = Dns.plan(&inv, &hf).unwrap();
        assert!(
            matches!(&ops[0], Op::File { content, .. } if content.is_empty()),
            "{ops:?}"
        );
    }
}
