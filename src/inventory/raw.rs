//! The inventory as written: every key decoded to its type with its position, nothing
//! defaulted or cross-checked yet (that is `resolve.rs`). Hosts and SSH blocks are decoded
//! in `raw_host.rs`.
//!
//! A field is `None` when the key is absent *or* when its value was wrong; in the second
//! case the problem is already recorded, so the resolver never reports it twice.

use super::decode::{S, boolean, choice, fields, join, list, number, one_or_many, secret, string};
use super::model::{Cni, ContainerRuntime, Distribution, GpuPresence, Role};
use super::node::{Kind, Node};
use super::problem::{At, Problems};
use super::raw_host::{host, ssh_block};
use super::schema::*;
use crate::secret::SecretSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    Ssh,
    Local,
}

#[derive(Debug, Default)]
pub struct RawInventory {
    pub cluster: RawCluster,
    pub ssh: RawSsh,
    pub bundle: Option<S<String>>,
    pub registry: Option<RawRegistry>,
    pub dns: Vec<RawDnsHost>,
    pub storage: RawStorage,
    pub gpu: RawGpu,
    pub stack: Vec<S<String>>,
    pub stack_timeout: Option<S<u64>>,
    pub stack_tls: Option<RawStackTls>,
    pub users: RawUsers,
    pub hosts: Vec<RawHost>,
    /// Where `hosts:` is (or the document, when it is missing).
    pub hosts_at: At,
}

#[derive(Debug, Default)]
pub struct RawCluster {
    pub at: At,
    pub name: Option<S<String>>,
    pub distribution: Option<S<Distribution>>,
    pub version: Option<S<String>>,
    pub api_endpoint: Option<S<String>>,
    pub pod_cidr: Option<S<String>>,
    pub service_cidr: Option<S<String>>,
    pub cni: Option<S<Cni>>,
    pub data_dir: Option<S<String>>,
    pub container_runtime: Option<S<ContainerRuntime>>,
}

/// SSH settings as written in one place (top level, a host, or a bastion hop).
#[derive(Clone, Debug, Default)]
pub struct RawSsh {
    pub user: Option<S<String>>,
    pub port: Option<S<u16>>,
    pub identity_files: Option<Vec<S<String>>>,
    pub identity_passphrase: Option<S<SecretSource>>,
    pub password: Option<S<SecretSource>>,
    pub agent: Option<S<bool>>,
    /// `Some(empty)` for `bastion: []`: go direct even if the top level says otherwise.
    pub bastion: Option<Vec<RawHop>>,
    pub sudo_password: Option<S<SecretSource>>,
    pub known_hosts: Option<S<String>>,
}

/// One bastion hop.
#[derive(Clone, Debug)]
pub enum RawHop {
    /// The name of a host in the inventory.
    Host(S<String>),
    /// A machine outside the inventory: `host` plus SSH settings.
    Outside { host: S<String>, ssh: RawSsh },
}

#[derive(Debug)]
pub struct RawRegistry {
    pub at: At,
    pub mirror: Option<S<String>>,
    pub insecure: Option<S<bool>>,
    pub ca_file: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password: Option<S<SecretSource>>,
}

#[derive(Debug)]
pub struct RawDnsHost {
    pub ip: Option<S<String>>,
    pub names: Vec<S<String>>,
}

#[derive(Debug, Default)]
pub struct RawStorage {
    pub local_path: Option<RawLocalPath>,
    pub nfs: Option<RawNfs>,
}

#[derive(Debug)]
pub struct RawStackTls {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    pub name: Option<S<String>>,
    pub namespace: Option<S<String>>,
}

#[derive(Debug)]
pub struct RawLocalPath {
    pub path: Option<S<String>>,
    pub default: Option<S<bool>>,
}

#[derive(Debug)]
pub struct RawNfs {
    pub server: Option<S<String>>,
    pub export: Option<S<String>>,
    pub provisioner: Option<S<bool>>,
    pub default: Option<S<bool>>,
}

#[derive(Debug, Default)]
pub struct RawGpu {
    pub device_plugin: Option<S<bool>>,
    pub runtime_class: Option<S<String>>,
    pub dcgm_exporter: Option<S<bool>>,
}

#[derive(Debug, Default)]
pub struct RawUsers {
    pub tiers: Vec<RawTier>,
    pub list: Vec<RawUser>,
}

#[derive(Debug)]
pub struct RawTier {
    pub name: S<String>,
    pub cpu: Option<S<String>>,
    pub memory: Option<S<String>>,
    pub gpu: Option<S<u64>>,
    pub storage: Option<S<String>>,
    pub pvcs: Option<S<u64>>,
}

#[derive(Debug)]
pub struct RawUser {
    pub name: Option<S<String>>,
    pub email: Option<S<String>>,
    pub tier: Option<S<String>>,
    pub data_path: Option<S<String>>,
}

#[derive(Debug)]
pub struct RawHost {
    pub at: At,
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub connection: Option<S<ConnectionKind>>,
    pub internal_address: Option<S<String>>,
    pub ssh: RawSsh,
    pub roles: Vec<S<Role>>,
    /// Every role written was understood (so "no server" is a real finding).
    pub roles_complete: bool,
    pub gpu: Option<S<GpuPresence>>,
    pub labels: Vec<(S<String>, S<String>)>,
    pub taints: Vec<S<String>>,
}

/// Decodes the document. Never fails: what cannot be read is a recorded problem.
pub fn decode(p: &mut Problems, root: &Node) -> RawInventory {
    if root.is_null() {
        p.error_hint(
            &At::new(root.pos, ""),
            "the inventory is empty",
            "run `gpuctl init` for a commented starter inventory",
        );
        return RawInventory::default();
    }
    let top = fields(
        p,
        root,
        "",
        TOP_KEYS,
        &[
            ("nodes", "write `hosts:`"),
            (
                "all",
                "this looks like an Ansible inventory: convert it with `gpuctl init --from-ansible FILE`",
            ),
        ],
    );
    let mut raw = RawInventory {
        hosts_at: top.at.clone(),
        ..RawInventory::default()
    };
    match top.require(p, "cluster", "{ name: mycluster }") {
        Some((n, path)) => raw.cluster = cluster(p, n, &path),
        None => raw.cluster.at = top.at.clone(),
    }
    if let Some((n, path)) = top.get("ssh") {
        raw.ssh = ssh_block(p, n, &path, TOP_SSH_KEYS, SSH_HINTS);
    }
    raw.bundle = top.get("bundle").and_then(|(n, path)| string(p, n, &path));
    raw.registry = top.get("registry").map(|(n, path)| registry(p, n, &path));
    if let Some((n, path)) = top.get("dns") {
        let f = fields(p, n, &path, DNS_KEYS, &[]);
        if let Some((n, path)) = f.get("hosts") {
            raw.dns = list(p, n, &path)
                .into_iter()
                .map(|(n, path)| dns_host(p, n, &path))
                .collect();
        }
    }
    if let Some((n, path)) = top.get("storage") {
        raw.storage = storage(p, n, &path);
    }
    if let Some((n, path)) = top.get("gpu") {
        let f = fields(p, n, &path, GPU_KEYS, &[]);
        raw.gpu = RawGpu {
            device_plugin: f
                .get("device_plugin")
                .and_then(|(n, path)| boolean(p, n, &path)),
            runtime_class: f
                .get("runtime_class")
                .and_then(|(n, path)| string(p, n, &path)),
            dcgm_exporter: f
                .get("dcgm_exporter")
                .and_then(|(n, path)| boolean(p, n, &path)),
        };
    }
    if let Some((n, path)) = top.get("stack") {
        let f = fields(p, n, &path, STACK_KEYS, &[]);
        if let Some((n, path)) = f.get("components") {
            raw.stack = list(p, n, &path)
                .into_iter()
                .filter_map(|(n, path)| string(p, n, &path))
                .collect();
        }
        raw.stack_timeout = f
            .get("timeout")
            .and_then(|(n, path)| number(p, n, &path, (10, 86_400), 600));
        raw.stack_tls = f.get("tls").map(|(n, path)| {
            let t = fields(p, n, &path, STACK_TLS_KEYS, &[("crt", "write `cert:`")]);
            let s =
                |p: &mut Problems, key: &str| t.get(key).and_then(|(n, path)| string(p, n, &path));
            RawStackTls {
                cert: t
                    .require(p, "cert", "./certs/gateway.crt")
                    .and_then(|(n, path)| string(p, n, &path)),
                key: t
                    .require(p, "key", "./certs/gateway.key")
                    .and_then(|(n, path)| string(p, n, &path)),
                name: s(p, "name"),
                namespace: s(p, "namespace"),
            }
        });
    }
    if let Some((n, path)) = top.get("users") {
        raw.users = users(p, n, &path);
    }
    if let Some((n, path)) = top.require(
        p,
        "hosts",
        "[{ name: node1, address: 10.0.0.5, roles: [server, worker] }]",
    ) {
        raw.hosts_at = At::new(n.pos, path.clone());
        raw.hosts = list(p, n, &path)
            .into_iter()
            .map(|(n, path)| host(p, n, &path))
            .collect();
    }
    raw
}

fn cluster(p: &mut Problems, node: &Node, path: &str) -> RawCluster {
    let f = fields(
        p,
        node,
        path,
        CLUSTER_KEYS,
        &[
            ("type", "write `distribution:`"),
            ("k8s_version", "write `version:`"),
            ("network_plugin", "write `cni:`"),
        ],
    );
    let s = |p: &mut Problems, key: &str| f.get(key).and_then(|(n, path)| string(p, n, &path));
    RawCluster {
        at: f.at.clone(),
        name: f
            .require(p, "name", "mycluster")
            .and_then(|(n, path)| string(p, n, &path)),
        distribution: f.get("distribution").and_then(|(n, path)| {
            choice(
                p,
                n,
                &path,
                "distribution",
                &[
                    ("k3s", Distribution::K3s),
                    ("kubeadm", Distribution::Kubeadm),
                ],
                &[
                    ("k8s", "kubeadm"),
                    ("kubernetes", "kubeadm"),
                    ("rke2", "k3s"),
                ],
            )
        }),
        version: s(p, "version"),
        api_endpoint: s(p, "api_endpoint"),
        pod_cidr: s(p, "pod_cidr"),
        service_cidr: s(p, "service_cidr"),
        cni: f.get("cni").and_then(|(n, path)| {
            choice(
                p,
                n,
                &path,
                "CNI",
                &[("flannel", Cni::Flannel), ("calico", Cni::Calico)],
                &[],
            )
        }),
        data_dir: s(p, "data_dir"),
        container_runtime: f.get("container_runtime").and_then(|(n, path)| {
            choice(
                p,
                n,
                &path,
                "container runtime",
                &[
                    ("containerd", ContainerRuntime::Containerd),
                    ("docker", ContainerRuntime::Docker),
                ],
                &[("cri-o", "containerd"), ("crio", "containerd")],
            )
        }),
    }
}

fn registry(p: &mut Problems, node: &Node, path: &str) -> RawRegistry {
    let f = fields(
        p,
        node,
        path,
        REGISTRY_KEYS,
        &[
            ("url", "write `mirror: host:port`"),
            (
                "username",
                "write `credentials: { username: ..., password: { env: ... } }`",
            ),
        ],
    );
    let (username, password) = match f.get("credentials") {
        Some((n, path)) => {
            let c = fields(p, n, &path, CREDENTIALS_KEYS, &[]);
            (
                c.require(p, "username", "admin")
                    .and_then(|(n, path)| string(p, n, &path)),
                c.get("password").and_then(|(n, path)| secret(p, n, &path)),
            )
        }
        None => (None, None),
    };
    RawRegistry {
        at: f.at.clone(),
        mirror: f
            .require(p, "mirror", "registry.lab:5000")
            .and_then(|(n, path)| string(p, n, &path)),
        insecure: f.get("insecure").and_then(|(n, path)| boolean(p, n, &path)),
        ca_file: f.get("ca_file").and_then(|(n, path)| string(p, n, &path)),
        username,
        password,
    }
}

fn dns_host(p: &mut Problems, node: &Node, path: &str) -> RawDnsHost {
    let f = fields(
        p,
        node,
        path,
        DNS_HOST_KEYS,
        &[("name", "write `names: [...]` (a list)")],
    );
    let names = f
        .require(p, "names", "[login.lab.example]")
        .map(|(n, path)| {
            one_or_many(n, &path)
                .into_iter()
                .filter_map(|(n, path)| string(p, n, &path))
                .collect()
        })
        .unwrap_or_default();
    RawDnsHost {
        ip: f
            .require(p, "ip", "192.168.1.10")
            .and_then(|(n, path)| string(p, n, &path)),
        names,
    }
}

fn storage(p: &mut Problems, node: &Node, path: &str) -> RawStorage {
    let f = fields(p, node, path, STORAGE_KEYS, &[]);
    let local_path = f.get("local_path").map(|(n, path)| {
        let l = fields(p, n, &path, LOCAL_PATH_KEYS, &[]);
        RawLocalPath {
            path: l
                .require(p, "path", "/data/k8s/local-path")
                .and_then(|(n, path)| string(p, n, &path)),
            default: l.get("default").and_then(|(n, path)| boolean(p, n, &path)),
        }
    });
    let nfs = f.get("nfs").map(|(n, path)| {
        let l = fields(p, n, &path, NFS_KEYS, &[("path", "write `export:`")]);
        RawNfs {
            server: l
                .require(p, "server", "nas1")
                .and_then(|(n, path)| string(p, n, &path)),
            export: l
                .require(p, "export", "/data/share")
                .and_then(|(n, path)| string(p, n, &path)),
            provisioner: l
                .get("provisioner")
                .and_then(|(n, path)| boolean(p, n, &path)),
            default: l.get("default").and_then(|(n, path)| boolean(p, n, &path)),
        }
    });
    RawStorage { local_path, nfs }
}

fn users(p: &mut Problems, node: &Node, path: &str) -> RawUsers {
    let f = fields(p, node, path, USERS_KEYS, &[("users", "write `list:`")]);
    let mut out = RawUsers::default();
    if let Some((n, tiers_path)) = f.get("tiers") {
        match &n.kind {
            Kind::Map(entries) => {
                for e in entries {
                    let path = join(&tiers_path, &e.key);
                    let t = fields(p, &e.value, &path, TIER_KEYS, &[("cpus", "write `cpu:`"), ("gpus", "write `gpu:`"), ("mem", "write `memory:`")]);
                    let s = |p: &mut Problems, key: &str| t.get(key).and_then(|(n, path)| string(p, n, &path));
                    out.tiers.push(RawTier {
                        name: S {
                            v: e.key.clone(),
                            at: At::new(e.key_pos, path.clone()),
                        },
                        cpu: s(p, "cpu"),
                        memory: s(p, "memory"),
                        gpu: t.get("gpu").and_then(|(n, path)| number(p, n, &path, (0, 1024), 1)),
                        storage: s(p, "storage"),
                        pvcs: t.get("pvcs").and_then(|(n, path)| number(p, n, &path, (0, 10_000), 5)),
                    });
                }
            }
            _ => p.error_hint(
                &At::new(n.pos, tiers_path),
                format!("expected a mapping of tier names, found {}", n.describe()),
                "write `tiers: { small: { cpu: \"12.5\", memory: 64Gi, gpu: 1, storage: 100Gi, pvcs: 5 } }`",
            ),
        }
    }
    if let Some((n, path)) = f.get("list") {
        for (n, path) in list(p, n, &path) {
            let u = fields(p, n, &path, USER_KEYS, &[("mail", "write `email:`")]);
            let s =
                |p: &mut Problems, key: &str| u.get(key).and_then(|(n, path)| string(p, n, &path));
            out.list.push(RawUser {
                name: u
                    .require(p, "name", "alice")
                    .and_then(|(n, path)| string(p, n, &path)),
                email: u
                    .require(p, "email", "alice@lab.example")
                    .and_then(|(n, path)| string(p, n, &path)),
                tier: s(p, "tier"),
                data_path: s(p, "data_path"),
            });
        }
    }
    out
}
