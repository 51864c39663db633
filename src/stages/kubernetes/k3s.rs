//! The k3s files of the `kubernetes` stage, rendered from the inventory: `config.yaml` (the
//! same keys as k3s's command-line flags), `registries.yaml`, the systemd unit and its env
//! file. Pure text; the stage decides where each goes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::{ContainerRuntime, Host, Inventory, Role};
use crate::secret::Secret;
use crate::transport::Endpoint;

pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
/// Where a k3s server writes the admin kubeconfig.
pub const ADMIN_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
const DEFAULT_DATA_DIR: &str = "/var/lib/rancher/k3s";

/// The public registries whose images nodes pull through `registry.mirror`. The mirror
/// keeps upstream paths (`docker.io/library/x` → `MIRROR/library/x`), so a mirror entry
/// swaps only the host.
pub const MIRRORED: [&str; 6] = [
    "docker.io",
    "registry.k8s.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "nvcr.io",
];

/// What k3s runs as on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// The first server of the inventory: starts the cluster and makes its token. `ha`:
    /// other servers join it (embedded etcd, `cluster-init`).
    FirstServer { ha: bool },
    /// Any other node: joins the first server at `url`, as a server or an agent.
    Joiner {
        first: String,
        url: String,
        server: bool,
    },
}

impl NodeRole {
    /// `None` for hosts that are neither server nor worker (an NFS server, the registry).
    pub fn of(inv: &Inventory, host: &Host) -> Option<NodeRole> {
        let server = host.roles.contains(&Role::Server);
        if !server && !host.roles.contains(&Role::Worker) {
            return None;
        }
        let first = inv.servers().next()?;
        if first.name == host.name {
            return Some(NodeRole::FirstServer {
                ha: inv.servers().count() > 1,
            });
        }
        Some(NodeRole::Joiner {
            first: first.name.clone(),
            url: format!("https://{}:6443", url_host(&address_of(first))),
            server,
        })
    }

    pub fn is_server(&self) -> bool {
        matches!(
            self,
            NodeRole::FirstServer { .. } | NodeRole::Joiner { server: true, .. }
        )
    }

    /// The systemd unit's name.
    pub fn unit(&self) -> &'static str {
        if self.is_server() { "k3s" } else { "k3s-agent" }
    }
}

/// How other nodes reach a host: its internal address, else the address gpuctl uses.
pub fn address_of(host: &Host) -> String {
    match (&host.internal_address, &host.endpoint) {
        (Some(ip), _) => ip.to_string(),
        (None, Endpoint::Ssh(t)) => t.host.clone(),
        (None, Endpoint::Local) => host.name.clone(),
    }
}

/// An IPv6 address in brackets, as URLs need.
pub fn url_host(addr: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    }
}

pub fn data_dir(inv: &Inventory) -> String {
    cluster_data_dir(&inv.cluster)
}

/// [`data_dir`] from the cluster section alone.
pub fn cluster_data_dir(cluster: &crate::inventory::Cluster) -> String {
    cluster
        .data_dir
        .as_ref()
        .map_or_else(|| DEFAULT_DATA_DIR.to_string(), |d| d.display().to_string())
}

/// Where k3s imports image tarballs from when it starts.
pub fn images_dir(inv: &Inventory) -> String {
    format!("{}/agent/images", data_dir(inv))
}

/// `images/k3s-airgap-images-<arch>.tar[.gz|.zst]` of the bundle.
pub fn is_airgap_image(path: &str, arch: &str) -> bool {
    path.strip_prefix(&format!("images/k3s-airgap-images-{arch}.tar"))
        .is_some_and(|rest| ["", ".gz", ".zst"].contains(&rest))
}

/// `/etc/rancher/k3s/config.yaml`. Never holds the token (that is in the env file, mode
/// 0600, a secret Op); the server URL is here too, so diffs show which server a node joins.
pub fn config_yaml(inv: &Inventory, host: &Host, role: &NodeRole) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Config {
        node_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        node_ip: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        node_label: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        node_taint: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data_dir: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        cluster_init: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        docker: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        write_kubeconfig_mode: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tls_san: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster_cidr: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service_cidr: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        disable: Vec<String>,
    }
    let server = role.is_server();
    let mut taints = host.taints.clone();
    // A server that is not also a worker runs the control plane only.
    if server && !host.roles.contains(&Role::Worker) {
        taints.push("node-role.kubernetes.io/control-plane=true:NoSchedule".into());
    }
    let mut tls_san = Vec::new();
    if server {
        tls_san.extend(inv.cluster.api_endpoint.clone());
        // The name or address gpuctl reaches the server by goes into the kubeconfig when
        // there is no api_endpoint; k3s adds its node IP and host name by itself.
        if host.internal_address.is_none()
            && let Endpoint::Ssh(t) = &host.endpoint
            && !tls_san.contains(&t.host)
        {
            tls_san.push(t.host.clone());
        }
    }
    let config = Config {
        node_name: host.name.clone(),
        node_ip: host.internal_address.map(|ip| ip.to_string()),
        node_label: host
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        node_taint: taints,
        data_dir: inv
            .cluster
            .data_dir
            .as_ref()
            .map(|d| d.display().to_string()),
        server: match role {
            NodeRole::Joiner { url, .. } => Some(url.clone()),
            NodeRole::FirstServer { .. } => None,
        },
        cluster_init: matches!(role, NodeRole::FirstServer { ha: true }),
        docker: inv.cluster.container_runtime == ContainerRuntime::Docker,
        write_kubeconfig_mode: server.then(|| "0600".to_string()),
        tls_san,
        cluster_cidr: server.then(|| inv.cluster.pod_cidr.to_string()),
        service_cidr: server.then(|| inv.cluster.service_cidr.to_string()),
        // Ingress is not part of this cluster; its images would need mirroring too. k3s's
        // own local-path provisioner would be a second one (and a second default class)
        // beside the one the storage stage applies with the inventory's path.
        disable: if server {
            let mut off = vec!["traefik".to_string()];
            if inv.storage.local_path.is_some() {
                off.push("local-storage".into());
            }
            off
        } else {
            Vec::new()
        },
    };
    let body = serde_yaml::to_string(&config).unwrap_or_default();
    format!("# Written by gpuctl from the inventory; changes here are overwritten.\n{body}")
}

/// `/etc/rancher/k3s/registries.yaml`: every public registry mirrored by `registry.mirror`
/// (`http://` when `insecure`), and the mirror itself, for images named by it. `None`
/// without a mirror. With `registry.credentials`, `configs.<mirror>.auth` holds them
/// (`password`: the loaded secret; the file is then a secret File); with `registry.ca_file`,
/// `configs.<mirror>.tls.ca_file` names where the `runtime` stage put that CA.
pub fn registries_yaml(inv: &Inventory, password: Option<&Secret>) -> Option<String> {
    let r = inv.registry.as_ref()?;
    let scheme = if r.insecure { "http" } else { "https" };
    let endpoint = vec![format!("{scheme}://{}", r.mirror)];
    #[derive(Serialize)]
    struct Mirror {
        endpoint: Vec<String>,
    }
    let mut mirrors = BTreeMap::new();
    for upstream in MIRRORED.iter().copied().chain([r.mirror.as_str()]) {
        mirrors.insert(
            upstream.to_string(),
            Mirror {
                endpoint: endpoint.clone(),
            },
        );
    }
    #[derive(Serialize)]
    struct Auth<'a> {
        username: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Tls {
        ca_file: String,
    }
    #[derive(Serialize)]
    struct Config<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<Auth<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tls: Option<Tls>,
    }
    let config = Config {
        auth: r.username.as_deref().map(|username| Auth {
            username,
            password: password.map(Secret::expose),
        }),
        tls: crate::stages::runtime::mirror_ca_path(inv).map(|ca_file| Tls { ca_file }),
    };
    let mut configs = BTreeMap::new();
    if config.auth.is_some() || config.tls.is_some() {
        configs.insert(r.mirror.clone(), config);
    }
    #[derive(Serialize)]
    struct Registries<'a> {
        mirrors: BTreeMap<String, Mirror>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        configs: BTreeMap<String, Config<'a>>,
    }
    let body = serde_yaml::to_string(&Registries { mirrors, configs }).unwrap_or_default();
    Some(format!(
        "# Written by gpuctl: images of these registries come from the mirror {}.\n{body}",
        r.mirror
    ))
}

/// containerd's `hosts.toml` for each registry of [`MIRRORED`] and the mirror itself, as
/// `(path under /etc/containerd/certs.d, text)`: the same routing as [`registries_yaml`]
/// for a containerd gpuctl does not embed (kubeadm's, or one an admin runs). Pulls try the
/// mirror first (`pull` and `resolve`), with the upstream paths kept under it; the upstream
/// stays the fallback `server`, which in an air gap simply fails. `None` without a mirror.
pub fn containerd_hosts(inv: &Inventory) -> Option<Vec<(String, String)>> {
    let r = inv.registry.as_ref()?;
    let scheme = if r.insecure { "http" } else { "https" };
    let ca = crate::stages::runtime::mirror_ca_path(inv)
        .filter(|_| inv.cluster.container_runtime == ContainerRuntime::Containerd);
    let mut out = Vec::new();
    for upstream in MIRRORED.iter().copied().chain([r.mirror.as_str()]) {
        let server = match upstream {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            u if u == r.mirror => format!("{scheme}://{u}"),
            u => format!("https://{u}"),
        };
        let mut text = format!(
            "# Written by gpuctl: images of {upstream} come from the mirror {}.\n\
             server = \"{server}\"\n\n\
             [host.\"{scheme}://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            r.mirror, r.mirror
        );
        if let Some(ca) = &ca {
            text.push_str(&format!("  ca = \"{ca}\"\n"));
        }
        out.push((format!("{upstream}/hosts.toml"), text));
    }
    Some(out)
}

/// The systemd unit, as k3s's install script writes it (minus its cloud-setup checks).
/// `Type=notify`: k3s says READY once it serves (a server) or has registered (an agent), so
/// `systemctl start` returns when the node is up and a server's token exists.
pub fn unit_file(role: &NodeRole, env_path: &str) -> String {
    let (what, cmd) = if role.is_server() {
        ("server", "server")
    } else {
        ("agent", "agent")
    };
    format!(
        "# Written by gpuctl.\n\
         [Unit]\n\
         Description=Lightweight Kubernetes (k3s {what})\n\
         Documentation=https://k3s.io\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         EnvironmentFile=-{env_path}\n\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         TimeoutStartSec=0\n\
         Restart=always\n\
         RestartSec=5s\n\
         ExecStart=/usr/local/bin/k3s {cmd}\n"
    )
}

/// The unit's env file: the join token and server URL for joiners; the first server makes
/// its own token, so its file says only that.
pub fn env_file(role: &NodeRole, token: Option<&str>) -> String {
    match (role, token) {
        (NodeRole::Joiner { url, .. }, Some(token)) => {
            format!("# Written by gpuctl.\nK3S_TOKEN={token}\nK3S_URL={url}\n")
        }
        _ => "# Written by gpuctl. The first server makes the cluster's join token itself.\n"
            .to_string(),
    }
}
