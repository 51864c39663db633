//! Stage `preflight`: the requirements a host must meet before anything is changed, all
//! of them checked and every failure listed at once (fixing one problem per run on fifty
//! hosts is how an afternoon disappears).
//!
//! It reads only the facts gathered in the first round trip, so it is a pure function
//! too: it has no Ops, fails with the list of problems, and reports what does not stop the
//! install as notes. Checks (ids from the doctor's catalogue):
//! - H1 root through sudo; a server has at least 2 CPUs and 1700 MiB of memory;
//! - H2 swap (the `os` stage turns it off, so only a note);
//! - H6 `ip`, `iptables`, `mount`, `nsenter` are installed;
//! - H7 the host name is a DNS-1123 name and resolves (notes: the node is registered under
//!   its inventory name, and the `os` stage adds the inventory names to `/etc/hosts`);
//! - H13 the disks the cluster fills are below 90% (80% is a note).

use anyhow::bail;

use crate::inventory::{Inventory, Role};
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::transport::SudoMode;

pub struct Preflight;

const MIN_SERVER_CPUS: u32 = 2;
const MIN_SERVER_MIB: u64 = 1700;
const DISK_FAIL: u32 = 90;
const DISK_NOTE: u32 = 80;

impl Stage for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, _inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let problems = problems(hf);
        if problems.is_empty() {
            return Ok(Vec::new());
        }
        let mut text = format!(
            "preflight found {} problem{} on {}:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            hf.host.name
        );
        for p in &problems {
            text.push_str("\n  - ");
            text.push_str(p);
        }
        bail!(text)
    }
    fn notes(&self, _inv: &Inventory, hf: &HostFacts) -> Vec<String> {
        let mut notes = Vec::new();
        if !hf.swaps.is_empty() {
            notes.push(if hf.container {
                format!(
                    "H2 swap is on ({}) in the machine under this container; the os stage \
                     comments it out of /etc/fstab, but turning it off is up to that machine",
                    hf.swaps.join(", ")
                )
            } else {
                format!(
                    "H2 swap is on ({}); the os stage turns it off and comments it out of /etc/fstab",
                    hf.swaps.join(", ")
                )
            });
        }
        let name = &hf.facts.hostname;
        if !name.is_empty() && crate::inventory::syntax::dns_name(name).is_err() {
            notes.push(format!(
                "H7 the host name {name:?} is not a DNS-1123 name; the node is registered as {:?} \
                 from the inventory",
                hf.host.name
            ));
        }
        if !hf.hostname_resolves {
            notes.push(format!(
                "H7 the host name {name:?} does not resolve on the host; the os stage adds the \
                 inventory's names to /etc/hosts"
            ));
        }
        for d in &hf.disks {
            if (DISK_NOTE..DISK_FAIL).contains(&d.used_percent) {
                notes.push(format!(
                    "H13 {} is on {}, which is {}% full",
                    d.path.display(),
                    d.mount,
                    d.used_percent
                ));
            }
        }
        notes
    }
    fn checkpointed(&self) -> bool {
        false
    }
}

/// Every failed check, each with what to do.
fn problems(hf: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    if hf.sudo == SudoMode::Unavailable {
        out.push(
            "H1 this login cannot become root: give it passwordless sudo, or put the sudo \
             password in ssh.sudo_password"
                .to_string(),
        );
    }
    if hf.host.roles.contains(&Role::Server) {
        let f = &hf.facts;
        // 0 means the host did not say; a missing fact is not a failed check.
        if f.cpus != 0 && f.cpus < MIN_SERVER_CPUS {
            out.push(format!(
                "H1 a server needs at least {MIN_SERVER_CPUS} CPUs; this one has {}",
                f.cpus
            ));
        }
        if f.memory_mib != 0 && f.memory_mib < MIN_SERVER_MIB {
            out.push(format!(
                "H1 a server needs at least {MIN_SERVER_MIB} MiB of memory; this one has {} MiB",
                f.memory_mib
            ));
        }
    }
    if !hf.missing_commands.is_empty() {
        out.push(format!(
            "H6 missing commands: {}; install them (Debian/Ubuntu packages iproute2, iptables, \
             mount, util-linux)",
            hf.missing_commands.join(", ")
        ));
    }
    for d in &hf.disks {
        if d.used_percent >= DISK_FAIL {
            out.push(format!(
                "H13 {} is on {}, which is {}% full; free space there or point the inventory's \
                 data directories at a bigger disk",
                d.path.display(),
                d.mount,
                d.used_percent
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::DiskUse;
    use crate::stages::sample;

    #[test]
    fn a_healthy_host_passes_with_no_ops() {
        let inv = sample::inventory();
        let hf = sample::facts(&inv, "cp1");
        assert!(Preflight.plan(&inv, &hf).unwrap().is_empty());
        assert!(Preflight.notes(&inv, &hf).is_empty());
    }

    #[test]
    fn every_failure_is_listed_at_once() {
        let inv = sample::inventory();
        let mut hf = sample::facts(&inv, "cp1");
        hf.sudo = SudoMode::Unavailable;
        hf.facts.cpus = 1;
        hf.facts.memory_mib = 1024;
        hf.missing_commands = vec!["nsenter".into(), "iptables".into()];
        hf.disks = vec![DiskUse {
            path: "/var/lib".into(),
            mount: "/".into(),
            used_percent: 95,
        }];
        hf.swaps = vec!["/swapfile".into()];
        let err = Preflight.plan(&inv, &hf).unwrap_err().to_string();
        insta::assert_snapshot!(err);
        let notes = Preflight.notes(&inv, &hf);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("the os stage turns it off"), "{notes:?}");
    }

    #[test]
    fn a_small_worker_is_fine() {
        let inv = sample::inventory();
        let mut hf = sample::facts(&inv, "gpu1");
        hf.facts.cpus = 1;
        hf.facts.memory_mib = 512;
        assert!(Preflight.plan(&inv, &hf).unwrap().is_empty());
    }
}
