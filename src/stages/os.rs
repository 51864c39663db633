//! Stage `os`: the operating-system settings every Kubernetes node needs.
//!
//! - swap off: swap lines in `/etc/fstab` commented out (so it stays off after a reboot)
//!   and `swapoff -a` now;
//! - kernel modules `overlay` and `br_netfilter`, persisted in
//!   `/etc/modules-load.d/gpuctl.conf` and loaded;
//! - sysctls for pod networking (`net.ipv4.ip_forward`, `net.bridge.bridge-nf-call-*`)
//!   and for the many file watches kubelet and ML tooling open (`fs.inotify.*`), persisted
//!   in `/etc/sysctl.d/90-gpuctl.conf` and applied;
//! - a managed block in `/etc/hosts` naming every inventory node by its internal address,
//!   plus the inventory's `dns.hosts` entries, so nodes find each other without a DNS
//!   server that knows them;
//! - the data directories the inventory names (`cluster.data_dir`,
//!   `storage.local_path.path`).
//!
//! On a container (a test lab, an LXC "VM") swap, modules and live sysctls belong to the
//! machine underneath: the persisted files are still written — they are the contract —
//! but `swapoff` is not attempted and failing live changes are warnings.

use crate::inventory::Inventory;
use crate::plan::{HostFacts, LineState, Op, Scope, Stage};
use crate::transport::shell::quote;

pub struct Os;

/// An fstab line whose third field (the type) is `swap`.
pub const FSTAB_SWAP: &str = r"^\s*\S+\s+\S+\s+swap(\s|$)";

pub const MODULES: [&str; 2] = ["overlay", "br_netfilter"];

pub const SYSCTLS: [(&str, &str); 5] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "655360"),
];

impl Stage for Os {
    fn name(&self) -> &'static str {
        "os"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let mut ops = vec![Op::Line {
            path: "/etc/fstab".into(),
            matching: FSTAB_SWAP.into(),
            state: LineState::Commented,
        }];
        if !hf.container {
            ops.push(Op::Command {
                run: "swapoff -a".into(),
                guard: "[ \"$(awk 'NR>1' /proc/swaps | wc -l)\" -eq 0 ]".into(),
                undo: None,
                rerun_on: Vec::new(),
            });
        }
        ops.extend(MODULES.iter().map(|m| Op::Module {
            name: (*m).to_string(),
        }));
        ops.extend(SYSCTLS.iter().map(|(k, v)| Op::Sysctl {
            key: (*k).to_string(),
            value: (*v).to_string(),
        }));
        ops.push(Op::Block {
            path: "/etc/hosts".into(),
            marker: "hosts".into(),
            content: hosts_block(inv),
        });
        for dir in data_dirs(inv) {
            let q = quote(&dir);
            ops.push(Op::Command {
                run: format!("mkdir -p -m 0755 {q}"),
                guard: format!("test -d {q}"),
                undo: None,
                rerun_on: Vec::new(),
            });
        }
        Ok(ops)
    }
    fn notes(&self, inv: &Inventory, hf: &HostFacts) -> Vec<String> {
        let mut notes = Vec::new();
        let unnamed: Vec<&str> = inv
            .hosts
            .iter()
            .filter(|h| h.internal_address.is_none())
            .map(|h| h.name.as_str())
            .collect();
        if !unnamed.is_empty() {
            notes.push(format!(
                "not in /etc/hosts (no internal_address; they must resolve by DNS): {}",
                unnamed.join(", ")
            ));
        }
        if hf.container {
            notes.push(
                "this host is a container: swap, kernel modules and live sysctls belong to the \
                 machine underneath; their files are written, live changes may be refused"
                    .into(),
            );
        }
        notes
    }
}

/// `<ip> <name>` for every node with an internal address, then the `dns.hosts` entries.
fn hosts_block(inv: &Inventory) -> String {
    let mut s = String::new();
    for h in &inv.hosts {
        if let Some(ip) = h.internal_address {
            s.push_str(&format!("{ip} {}\n", h.name));
        }
    }
    for d in &inv.dns.hosts {
        s.push_str(&format!("{} {}\n", d.ip, d.names.join(" ")));
    }
    s
}

/// The directories the inventory wants on every node, without duplicates.
fn data_dirs(inv: &Inventory) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    let wanted = [
        inv.cluster.data_dir.as_ref(),
        inv.storage.local_path.as_ref().map(|l| &l.path),
    ];
    for d in wanted.into_iter().flatten() {
        let d = d.display().to_string();
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::digest::digest;
    use crate::stages::sample;

    #[test]
    fn ops_for_a_plain_host() {
        let inv = sample::inventory();
        let ops = Os.plan(&inv, &sample::facts(&inv, "cp1")).unwrap();
        insta::assert_yaml_snapshot!(ops);
        let notes = Os.notes(&inv, &sample::facts(&inv, "cp1"));
        assert_eq!(
            notes,
            ["not in /etc/hosts (no internal_address; they must resolve by DNS): far"]
        );
    }

    #[test]
    fn a_container_gets_the_files_but_no_swapoff() {
        let inv = sample::inventory();
        let mut hf = sample::facts(&inv, "gpu1");
        hf.container = true;
        let ops = Os.plan(&inv, &hf).unwrap();
        assert!(
            !ops.iter()
                .any(|op| matches!(op, Op::Command { run, .. } if run == "swapoff -a"))
        );
        assert!(ops.iter().any(|op| matches!(op, Op::Line { .. })));
        assert_eq!(
            ops.iter()
                .filter(|op| matches!(op, Op::Sysctl { .. }))
                .count(),
            5
        );
    }

    #[test]
    fn every_host_gets_the_same_ops_and_an_inventory_change_changes_the_digest() {
        let inv = sample::inventory();
        let a = Os.plan(&inv, &sample::facts(&inv, "cp1")).unwrap();
        let b = Os.plan(&inv, &sample::facts(&inv, "gpu1")).unwrap();
        assert_eq!(digest(&a), digest(&b));
        let mut changed = inv.clone();
        changed.cluster.data_dir = Some("/srv/k3s".into());
        let c = Os.plan(&changed, &sample::facts(&changed, "cp1")).unwrap();
        assert_ne!(digest(&a), digest(&c));
        // Re-planning the same inventory is stable.
        assert_eq!(
            digest(&a),
            digest(&Os.plan(&inv, &sample::facts(&inv, "cp1")).unwrap())
        );
    }
}
