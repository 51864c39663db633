//! Stage `facts`: what each host is — OS, kernel, CPUs, memory, GPUs (the same script
//! `gpuctl ping` uses) plus what later stages and preflight need: is it a container, which
//! swap is on, which required commands are missing, does its name resolve, how full are
//! the disks the cluster will fill.
//!
//! It makes no changes and has no Ops; the engine runs its script in the first round trip
//! to each host, together with taking the host lock and reading the host's journal, and
//! every later stage plans from the [`HostFacts`] it yields.

use std::path::PathBuf;

use crate::facts::{self, Facts};
use crate::inventory::{Host, Inventory};
use crate::plan::{DiskUse, HostFacts, Op, Scope, Stage};
use crate::transport::SudoMode;
use crate::transport::shell::quote;

pub struct FactsStage;

impl Stage for FactsStage {
    fn name(&self) -> &'static str {
        "facts"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, _inv: &Inventory, _host: &HostFacts) -> anyhow::Result<Vec<Op>> {
        Ok(Vec::new())
    }
    fn checkpointed(&self) -> bool {
        false
    }
}

/// Commands every node needs (kubelet and the CNI call them).
pub const REQUIRED_COMMANDS: [&str; 4] = ["ip", "iptables", "mount", "nsenter"];

/// The directories whose disks preflight checks: where images, volumes and the
/// distribution's data go.
pub fn watched_dirs(inv: &Inventory) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/var/lib")];
    dirs.extend(inv.cluster.data_dir.clone());
    dirs.extend(inv.storage.local_path.as_ref().map(|l| l.path.clone()));
    dirs
}

/// The facts script for `inv`'s hosts: `key=value` lines, read-only.
pub fn script(inv: &Inventory) -> String {
    // After facts::SCRIPT, which set `$hn` to the host name.
    let mut s = String::from(facts::SCRIPT);
    s.push_str(
        "if [ -f /.dockerenv ] || [ -f /run/.containerenv ] || grep -qa 'container=' /proc/1/environ 2>/dev/null; \
         then echo container=1; else echo container=0; fi\n\
         { read -r _; while read -r f _; do echo \"swap=$f\"; done; } 2>/dev/null </proc/swaps\n\
         if getent hosts \"$hn\" >/dev/null 2>&1; then echo resolves=1; else echo resolves=0; fi\n",
    );
    for c in REQUIRED_COMMANDS {
        s.push_str(&format!(
            "command -v {c} >/dev/null 2>&1 || echo missing={c}\n"
        ));
    }
    // One `df` for every watched directory; one that does not exist yet will live on its
    // nearest existing parent.
    let dirs: Vec<String> = watched_dirs(inv)
        .iter()
        .map(|d| quote(&d.display().to_string()))
        .collect();
    if !dirs.is_empty() {
        s.push_str("set --\n");
        for d in &dirs {
            s.push_str(&format!(
                "p={d}; while [ ! -e \"$p\" ]; do case $p in /*/*) p=${{p%/*}};; /*) p=/;; *) p=.;; esac; done; set -- \"$@\" \"$p\"\n"
            ));
        }
        s.push_str(&format!(
            "df -P \"$@\" 2>/dev/null | {{ read -r _; for d in {}; do read -r _ _ _ _ pct mnt || break; echo \"disk=$d $mnt ${{pct%\\%}}\"; done; }}\n",
            dirs.join(" ")
        ));
    }
    s
}

/// Reads the answer of [`script`].
pub fn parse(host: &Host, sudo: SudoMode, output: &str) -> HostFacts {
    let mut hf = HostFacts::bare(host);
    hf.facts = Facts::parse(output);
    hf.sudo = sudo;
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "container" => hf.container = value == "1",
            "swap" => hf.swaps.push(value.to_string()),
            "missing" => hf.missing_commands.push(value.to_string()),
            "resolves" => hf.hostname_resolves = value == "1",
            "disk" => {
                // `disk=<path> <mount> <percent>`; a path with spaces keeps them.
                let mut parts = value.rsplitn(3, ' ');
                let (Some(pct), Some(mount), Some(path)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if let Ok(used_percent) = pct.parse() {
                    hf.disks.push(DiskUse {
                        path: PathBuf::from(path),
                        mount: mount.to_string(),
                        used_percent,
                    });
                }
            }
            _ => {}
        }
    }
    hf
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn extra_facts_are_read() {
        let inv = super::super::sample::inventory();
        let out = "hostname=gpu1\ncpus=8\ncontainer=1\nswap=/swapfile\nmissing=nsenter\nresolves=0\n\
                   disk=/var/lib / 42\ndisk=/data/my dir /data 91\ndisk=broken\n";
        let hf = parse(&inv.hosts[0], SudoMode::NoPassword, out);
        assert!(hf.container);
        assert_eq!(hf.swaps, ["/swapfile"]);
        assert_eq!(hf.missing_commands, ["nsenter"]);
        assert!(!hf.hostname_resolves);
        assert_eq!(hf.facts.cpus, 8);
        assert_eq!(hf.disks.len(), 2);
        assert_eq!(hf.disks[1].path, PathBuf::from("/data/my dir"));
        assert_eq!(hf.disks[1].used_percent, 91);
        let s = script(&inv);
        assert!(s.contains("/home/data/k3s/var"), "{s}");
    }

    /// The script runs under this machine's `sh` and tells the truth about it.
    #[test]
    fn the_script_runs_under_sh() {
        let inv = super::super::sample::inventory();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&inv))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let hf = parse(&inv.hosts[0], SudoMode::NoPassword, &text);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(hf.facts.kernel, kernel.trim(), "{text}");
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hf.facts.hostname, name.trim(), "{text}");
        assert!(hf.facts.memory_mib > 0, "{text}");
        assert!(hf.facts.cpus > 0, "{text}");
        // Every watched directory, existing or not, has its disk.
        let dirs = watched_dirs(&inv);
        assert_eq!(hf.disks.len(), dirs.len(), "{text}");
        for (disk, dir) in hf.disks.iter().zip(&dirs) {
            assert_eq!(&disk.path, dir, "{text}");
            assert!(disk.mount.starts_with('/'), "{text}");
        }
        let swaps: Vec<String> = std::fs::read_to_string("/proc/swaps")
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        assert_eq!(hf.swaps, swaps, "{text}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
