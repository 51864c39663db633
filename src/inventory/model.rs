//! The resolved inventory: every default filled, every reference resolved, ready to use.
//!
//! Nothing in here is optional "because the YAML may not say": the resolver
//! (`resolve.rs`) decides every default once, so the layers below never guess.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::secret::SecretSource;
use crate::transport::Endpoint;

/// A validated inventory.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory relative paths in the file are resolved against, and where
    /// `.gpuctl/<cluster>/` (journal, run logs) lives.
    pub base_dir: PathBuf,
    pub cluster: Cluster,
    /// The sudo password shared by all hosts that need one.
    pub sudo_password: Option<SecretSource>,
    /// known_hosts files, in lookup order; new keys are recorded in the first.
    pub known_hosts: Vec<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub registry: Option<Registry>,
    pub dns: Dns,
    pub storage: Storage,
    pub gpu: GpuSettings,
    pub stack: Stack,
    pub users: Users,
    pub hosts: Vec<Host>,
    /// Findings that do not stop anything (e.g. an even number of etcd servers).
    pub warnings: Vec<String>,
}

/// Where gpuctl keeps a cluster's state: `.gpuctl/<cluster>/` in `base_dir`, the
/// inventory's directory.
pub fn state_dir(base_dir: &std::path::Path, cluster: &str) -> PathBuf {
    base_dir.join(".gpuctl").join(cluster)
}

impl Inventory {
    /// `.gpuctl/<cluster>/` beside the inventory file.
    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.base_dir, &self.cluster.name)
    }
    pub fn servers(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .filter(|h| h.roles.contains(&Role::Server))
    }
    /// The hosts that are Kubernetes nodes (the `server` or `worker` role), in order.
    pub fn nodes(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .filter(|h| h.roles.contains(&Role::Server) || h.roles.contains(&Role::Worker))
    }
    /// Whether `host` is the NFS server: it has the `nfs` role, or `storage.nfs.server`
    /// names it or its node address.
    pub fn is_nfs_server(&self, host: &Host) -> bool {
        host.roles.contains(&Role::Nfs)
            || self.storage.nfs.as_ref().is_some_and(|n| {
                n.server == host.name || host.node_address().is_some_and(|a| a == n.server)
            })
    }
}

impl Host {
    /// The address other nodes reach the host at: `internal_address`, else its SSH address
    /// unless that is this machine's loopback (a tunnel, or a lab port), which says nothing
    /// about the node network.
    pub fn node_address(&self) -> Option<String> {
        if let Some(ip) = self.internal_address {
            return Some(ip.to_string());
        }
        match &self.endpoint {
            Endpoint::Ssh(t)
                if t.host != "localhost" && !t.host.starts_with("127.") && t.host != "::1" =>
            {
                Some(t.host.clone())
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub distribution: Distribution,
    pub version: String,
    pub api_endpoint: Option<String>,
    pub pod_cidr: IpNet,
    pub service_cidr: IpNet,
    pub cni: Cni,
    pub data_dir: Option<PathBuf>,
    pub container_runtime: ContainerRuntime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    K3s,
    Kubeadm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    Flannel,
    Calico,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Containerd,
    Docker,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Worker,
    Nfs,
    Registry,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Worker => "worker",
            Role::Nfs => "nfs",
            Role::Registry => "registry",
        }
    }
}

/// Whether a host has GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuPresence {
    Yes,
    No,
    /// Detected from `nvidia-smi`/`lspci` facts.
    Auto,
}

/// One host, resolved.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// Where gpuctl reaches it (SSH or local).
    pub endpoint: Endpoint,
    /// The address other nodes use for it (node IP); the SSH address unless
    /// `internal_address` is set.
    pub internal_address: Option<IpAddr>,
    pub roles: BTreeSet<Role>,
    pub gpu: GpuPresence,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Registry {
    /// `host[:port]` every image is pulled from.
    pub mirror: String,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// The host with role `registry`, on which gpuctl runs the registry itself (stage
    /// `registry`); `None` when the site runs its own.
    pub served_by: Option<String>,
}

impl Registry {
    /// The mirror's host without its port.
    pub fn mirror_host(&self) -> &str {
        crate::inventory::syntax::split_host_port(&self.mirror).0
    }
    /// The mirror's port: the one written, else 443 with TLS and 80 without.
    pub fn mirror_port(&self) -> u16 {
        match crate::inventory::syntax::split_host_port(&self.mirror).1 {
            Some(p) => p.parse().unwrap_or(443),
            None if self.insecure => 80,
            None => 443,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Dns {
    pub hosts: Vec<DnsHost>,
}

#[derive(Clone, Debug)]
pub struct DnsHost {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Storage {
    pub local_path: Option<LocalPath>,
    pub nfs: Option<Nfs>,
}

#[derive(Clone, Debug)]
pub struct LocalPath {
    pub path: PathBuf,
    pub default: bool,
}

#[derive(Clone, Debug)]
pub struct Nfs {
    /// A host name from the inventory or an outside server address.
    pub server: String,
    pub export: PathBuf,
    pub provisioner: bool,
    pub default: bool,
}

#[derive(Clone, Debug)]
pub struct GpuSettings {
    pub device_plugin: bool,
    pub runtime_class: String,
    pub dcgm_exporter: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Stack {
    pub components: Vec<String>,
    /// How long the `stack` stage waits for the components' workloads to be ready.
    pub timeout: std::time::Duration,
    /// The ingress gateway's TLS secret, from local PEM files.
    pub tls: Option<StackTls>,
}

#[derive(Clone, Debug)]
pub struct StackTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The Secret's name and namespace (default `kubeflow-gateway-tls` in `istio-system`).
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default)]
pub struct Users {
    pub tiers: BTreeMap<String, Tier>,
    pub users: Vec<User>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    pub cpu: String,
    pub memory: String,
    pub gpu: u32,
    pub storage: String,
    pub pvcs: u32,
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub email: String,
    pub tier: String,
    pub data_path: Option<PathBuf>,
}
