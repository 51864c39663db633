//! Doctor: read-only health checks → findings (stable id, severity, evidence, fix).
//!
//! Gathering and judging are apart. One script per host ([`evidence`]) reads everything
//! in one round trip; the check families are pure functions from that evidence (and the
//! inventory's intent) to [`Finding`]s: [`host`] (H*), [`boot`] (what breaks after a
//! reboot: sysctl.d, modules-load.d, fstab), [`host_net`] (ports, firewall, proxies),
//! [`gpu`] and [`gpu_health`] (G*), [`runtime`] and [`containerd`] (R*, M2), [`mirror`]
//! (M1, M3), and across hosts [`compare`] (the odd one out, clock skew, duplicate
//! hostnames) and [`network`] (peer ports). The script's inventory-dependent parts are in
//! [`reads`]. [`cluster`] reads the cluster once through the first server (K, S, A, N5).

pub mod boot;
pub mod bundle;
pub mod calico;
pub mod certificates;
pub mod cluster;
pub mod compare;
pub mod containerd;
pub mod distro;
pub mod evidence;
pub mod gpu;
pub mod gpu_health;
pub mod host;
pub mod host_net;
pub mod local_path;
pub mod mirror;
pub mod network;
pub mod nfs;
pub mod node_runtime;
pub mod pod_images;
pub mod reads;
pub mod render;
pub mod runtime;
pub mod runtime_class;
pub mod services;
pub mod smoke;
pub mod taints;
pub mod webhooks;

use serde::{Deserialize, Serialize};

use crate::inventory::{Cluster, Host};
use crate::transport::SudoMode;
pub use evidence::Evidence;

/// How bad a finding is. Ordered: `Error` is the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The check passed.
    Ok,
    /// The check does not apply (yet): the reason is the title.
    Skip,
    /// Worth knowing; nothing to fix.
    Info,
    /// Works now, but is fragile or below what is recommended.
    Warn,
    /// Broken, or breaks at the next reboot. Makes doctor exit 1.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Skip => "skip",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// Which part of the stack a check is about (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Host,
    Gpu,
    Runtime,
    Mirror,
    Kubernetes,
    Network,
    Storage,
    Stack,
}

impl Layer {
    pub const ALL: &[Layer] = &[
        Layer::Host,
        Layer::Gpu,
        Layer::Runtime,
        Layer::Mirror,
        Layer::Kubernetes,
        Layer::Network,
        Layer::Storage,
        Layer::Stack,
    ];
    /// Whether a check of this layer reads the cluster through the first server.
    pub fn reads_cluster(self) -> bool {
        cluster::IDS
            .iter()
            .any(|id| catalog(id).is_some_and(|c| c.layer == self))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Host => "host",
            Layer::Gpu => "gpu",
            Layer::Runtime => "runtime",
            Layer::Mirror => "mirror",
            Layer::Kubernetes => "kubernetes",
            Layer::Network => "network",
            Layer::Storage => "storage",
            Layer::Stack => "stack",
        }
    }

    pub fn parse(text: &str) -> Option<Layer> {
        Layer::ALL.iter().copied().find(|l| l.as_str() == text)
    }
}

/// One check as the catalog (and `docs/doctor.md`) names it.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub id: &'static str,
    pub layer: Layer,
    pub name: &'static str,
}

const fn check(id: &'static str, layer: Layer, name: &'static str) -> Check {
    Check { id, layer, name }
}

/// Every check id doctor can report. Ids are stable: a check that goes away leaves a gap.
pub const CHECKS: &[Check] = &[
    check("H0", Layer::Host, "reachable over SSH"),
    check("H1", Layer::Host, "privileges and size"),
    check("H2", Layer::Host, "swap off, and off after a reboot"),
    check("H3", Layer::Host, "kernel version and config"),
    check("H4", Layer::Host, "cgroups"),
    check(
        "H5",
        Layer::Host,
        "forwarding and bridge netfilter, live and persisted",
    ),
    check("H6", Layer::Host, "required binaries, iptables"),
    check("H7", Layer::Host, "hostname: DNS-1123, resolves, unique"),
    check(
        "H8",
        Layer::Host,
        "cluster ports free before install; firewall",
    ),
    check(
        "H9",
        Layer::Host,
        "proxy settings spare the cluster (NO_PROXY)",
    ),
    check(
        "H10",
        Layer::Host,
        "routes overlapping the pod/service CIDRs",
    ),
    check("H11", Layer::Host, "kernel limits (keys, inotify)"),
    check("H12", Layer::Host, "time sync and clock skew"),
    check("H13", Layer::Host, "disk usage"),
    check("G1", Layer::Gpu, "NVIDIA GPUs on the PCI bus"),
    check("G2", Layer::Gpu, "nouveau not loaded"),
    check(
        "G3",
        Layer::Gpu,
        "nvidia module loaded, built for this kernel",
    ),
    check("G4", Layer::Gpu, "Secure Boot does not refuse the module"),
    check("G5", Layer::Gpu, "nvidia-smi sees every GPU"),
    check(
        "G6",
        Layer::Gpu,
        "kernel module and user-space driver versions",
    ),
    check("G7", Layer::Gpu, "device nodes"),
    check("G8", Layer::Gpu, "/dev/char links under systemd cgroups"),
    check("G9", Layer::Gpu, "GPU health: XIDs, ECC, MIG"),
    check("R2", Layer::Runtime, "containerd's CRI plugin enabled"),
    check("R3", Layer::Runtime, "cgroup driver agrees across hosts"),
    check("R4", Layer::Runtime, "NVIDIA container runtime binary"),
    check(
        "R5",
        Layer::Runtime,
        "nvidia runtime registered (and default for docker)",
    ),
    check(
        "R7",
        Layer::Runtime,
        "sandbox (pause) image from the mirror",
    ),
    check(
        "M1",
        Layer::Mirror,
        "mirror reachable and trusted from the node",
    ),
    check("M2", Layer::Mirror, "registries.yaml parses"),
    check(
        "M3",
        Layer::Mirror,
        "every locked image in the mirror for the node's arch",
    ),
    check("C1", Layer::Host, "same kernel on every host"),
    check("C2", Layer::Host, "same cgroup version on every host"),
    check("C3", Layer::Host, "same kernel settings on every host"),
    check("C4", Layer::Host, "same iptables backend on every host"),
    check("C5", Layer::Gpu, "same GPU count on hosts of one GPU type"),
    check("C6", Layer::Gpu, "same driver version on every GPU host"),
    check("N3", Layer::Host, "same MTU on every host"),
    check("N4", Layer::Host, "peer ports reachable between nodes"),
    check(
        "K2",
        Layer::Kubernetes,
        "the node's Kubernetes unit and its container runtime enabled and active",
    ),
    check(
        "K4",
        Layer::Kubernetes,
        "no files of an earlier Kubernetes install (before install)",
    ),
    check("K5", Layer::Kubernetes, "the API server answers /readyz"),
    check(
        "K3",
        Layer::Kubernetes,
        "every inventory node registered, Ready, no pressure",
    ),
    check(
        "K8",
        Layer::Kubernetes,
        "node labels and taints as the inventory says",
    ),
    check(
        "K1",
        Layer::Kubernetes,
        "every kubelet within the version skew of the API server",
    ),
    check(
        "K6",
        Layer::Kubernetes,
        "the server's certificates valid, none within 30 days of its end",
    ),
    check(
        "N2",
        Layer::Network,
        "each node registered with the inventory's address",
    ),
    check("N1", Layer::Network, "calico-node ready on every node"),
    check(
        "R1",
        Layer::Runtime,
        "each kubelet uses the inventory's container runtime",
    ),
    check("K7", Layer::Kubernetes, "kube-system's pods running"),
    check(
        "R6",
        Layer::Runtime,
        "the GPU pods' RuntimeClass, with the nvidia handler",
    ),
    check(
        "A1",
        Layer::Stack,
        "the device plugin ready on every GPU node",
    ),
    check(
        "A2",
        Layer::Stack,
        "allocatable nvidia.com/gpu equals nvidia-smi's count",
    ),
    check(
        "A5",
        Layer::Stack,
        "the stack's CRDs Established, its workloads ready",
    ),
    check(
        "S1",
        Layer::Storage,
        "exactly one default StorageClass, the inventory's",
    ),
    check(
        "S2",
        Layer::Storage,
        "local-path volumes under the inventory's path",
    ),
    check(
        "S3",
        Layer::Storage,
        "NFS: the client on every node, the export on the server",
    ),
    check(
        "S4",
        Layer::Storage,
        "no volume claim Lost or stuck Pending",
    ),
    check(
        "N5",
        Layer::Network,
        "CoreDNS answers dns.hosts from coredns-custom",
    ),
    check(
        "M4",
        Layer::Mirror,
        "every image the cluster runs comes through the mirror",
    ),
    check(
        "R8",
        Layer::Gpu,
        "a GPU pod runs nvidia-smi on every GPU node (--smoke)",
    ),
    check(
        "N6",
        Layer::Network,
        "a pod resolves every dns.hosts name (--smoke)",
    ),
];

/// The catalog entry of an id.
pub fn catalog(id: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.id == id)
}

/// The `host` of findings about the cluster as a whole.
pub const CLUSTER: &str = "cluster";

/// One result of one check on one host (or the cluster).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub layer: Layer,
    pub host: String,
    pub title: String,
    /// The raw lines the check saw (file lines as `path:line: text`).
    pub evidence: Vec<String>,
    /// The exact command text that fixes it, when there is one.
    pub fix: Option<String>,
}

impl Finding {
    /// Adds evidence lines.
    pub fn evidence<I, S>(&mut self, lines: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.evidence.extend(lines.into_iter().map(Into::into));
        self
    }

    pub fn fix(&mut self, text: impl Into<String>) -> &mut Self {
        self.fix = Some(text.into());
        self
    }
}

/// Collects the findings of one host.
pub struct Findings {
    host: String,
    pub list: Vec<Finding>,
}

impl Findings {
    pub fn new(host: &str) -> Findings {
        Findings {
            host: host.to_string(),
            list: Vec::new(),
        }
    }

    /// Adds a finding; its layer comes from the catalog.
    pub fn add(&mut self, id: &str, severity: Severity, title: impl Into<String>) -> &mut Finding {
        let layer = catalog(id).map_or(Layer::Host, |c| c.layer);
        self.list.push(Finding {
            id: id.to_string(),
            severity,
            layer,
            host: self.host.clone(),
            title: title.into(),
            evidence: Vec::new(),
            fix: None,
        });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }
}

/// What the checks of one host get: the host as the inventory intends it, the cluster
/// settings, the evidence, and how the login becomes root.
pub struct HostInput<'a> {
    pub host: &'a Host,
    pub cluster: &'a Cluster,
    pub ev: &'a Evidence,
    pub sudo: SudoMode,
    /// What the script was told to probe (peer addresses, the mirror).
    pub plan: &'a reads::ScriptPlan,
}

impl HostInput<'_> {
    /// The GPU count the inventory promises: the host label `gpu-count`, when set.
    pub fn expected_gpus(&self) -> Option<u32> {
        self.host
            .labels
            .get("gpu-count")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Every check of one host, in catalog order of families.
pub fn check_host(input: &HostInput) -> Vec<Finding> {
    let mut out = Findings::new(&input.host.name);
    host::check(input, &mut out);
    host_net::check(input, &mut out);
    boot::check(input, &mut out);
    gpu::check(input, &mut out);
    gpu_health::check(input, &mut out);
    runtime::check(input, &mut out);
    containerd::check(input, &mut out);
    mirror::check(input, &mut out);
    services::check(input, &mut out);
    local_path::host_check(input, &mut out);
    nfs::host_check(input, &mut out);
    certificates::host_check(input, &mut out);
    out.list
}

/// The finding for a host doctor could not reach or read.
pub fn unreachable(host: &str, error: &str) -> Finding {
    let mut out = Findings::new(host);
    out.add(
        "H0",
        Severity::Error,
        "cannot reach or read this host; nothing else was checked on it",
    )
    .evidence(error.lines().map(str::to_string))
    .fix(format!(
        "gpuctl ping --inventory INVENTORY --hosts {host}   # shows how it is reached; fix the address, key or host key"
    ));
    out.list.remove(0)
}

/// Orders findings by host (as `hosts` lists them, the cluster last) and then by the
/// catalog, keeping the order checks emitted them in otherwise.
pub fn sort(findings: &mut [Finding], hosts: &[String]) {
    let host_rank = |h: &str| hosts.iter().position(|n| n == h).unwrap_or(hosts.len());
    let id_rank = |id: &str| {
        CHECKS
            .iter()
            .position(|c| c.id == id)
            .unwrap_or(CHECKS.len())
    };
    findings.sort_by_key(|f| (host_rank(&f.host), id_rank(&f.id)));
}

/// Counts per severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub ok: usize,
    pub skip: usize,
    pub info: usize,
    pub warn: usize,
    pub error: usize,
    /// Findings dropped by `--ignore`.
    pub ignored: usize,
}

impl Summary {
    pub fn of(findings: &[Finding], ignored: usize) -> Summary {
        let mut s = Summary {
            ignored,
            ..Summary::default()
        };
        for f in findings {
            match f.severity {
                Severity::Ok => s.ok += 1,
                Severity::Skip => s.skip += 1,
                Severity::Info => s.info += 1,
                Severity::Warn => s.warn += 1,
                Severity::Error => s.error += 1,
            }
        }
        s
    }
}

/// The first lines of a list, for evidence that could be long.
pub(crate) fn head(lines: &[String], n: usize) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().take(n).cloned().collect();
    if lines.len() > n {
        out.push(format!("… {} more lines", lines.len() - n));
    }
    out
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::CHECKS;

    fn read(path: &str) -> String {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    /// docs/doctor.md documents every id in a table row, and the JSON schema accepts
    /// exactly the ids of the catalog.
    #[test]
    fn the_catalog_the_docs_and_the_schema_agree() {
        let doc = read("docs/doctor.md");
        for check in CHECKS {
            assert!(
                doc.contains(&format!("| {} |", check.id)),
                "docs/doctor.md has no table row for {}",
                check.id
            );
        }
        let schema: serde_json::Value = serde_json::from_str(&read("docs/doctor.schema.json"))
            .unwrap_or_else(|e| panic!("docs/doctor.schema.json: {e}"));
        let ids: Vec<&str> = schema["$defs"]["finding"]["properties"]["id"]["enum"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let catalog: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        assert_eq!(ids, catalog);
    }
}
