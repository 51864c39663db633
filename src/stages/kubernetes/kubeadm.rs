//! The kubeadm files and commands of the `kubernetes` stage, rendered from the inventory:
//! the kubelet's unit and drop-in (as the kubelet package ships them), the configuration
//! `kubeadm init` and `kubeadm join` read, and the command that leaves the join material
//! on the first server. Pure text; the stage decides where each goes and in what order.
//!
//! **Why a join-material file.** kubeadm's bootstrap tokens and uploaded control-plane
//! certificates expire (24 h and 2 h), unlike k3s's token. So the first server keeps
//! `token=`, `hash=` (the CA's public-key pin) and `key=` (the certificate key) in a 0600
//! file that the engine hands to the joining hosts as a secret, and makes it again only
//! when a node of the inventory still has to join and what the file holds is gone from the
//! cluster: a finished cluster is left alone by every later run.

use serde::Serialize;

use super::k3s::{NodeRole, address_of, url_host};
use crate::inventory::{Host, Inventory, Role};
use crate::transport::shell::quote;

/// Where gpuctl puts the kubeadm binaries (not `/usr/bin`, which belongs to packages).
pub const BIN_DIR: &str = "/usr/local/bin";
/// The binaries of the bundle's `bin/` (`bin/<name>-<arch>` off amd64).
pub const BINARIES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];
/// kubectl with the admin kubeconfig, on servers.
pub const KUBECTL: &str = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";
/// What `kubeadm init` (and a control-plane join) writes for the cluster's admin.
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
/// What every node has once it is initialised or joined: the guard of both commands.
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// gpuctl's own files under kubeadm's directory.
pub const CONFIG_DIR: &str = "/etc/kubernetes/gpuctl";
pub const INIT_CONFIG: &str = "/etc/kubernetes/gpuctl/init.yaml";
pub const JOIN_CONFIG: &str = "/etc/kubernetes/gpuctl/join.yaml";
/// The first server's join material (see the module's doc).
pub const JOIN_MATERIAL: &str = "/etc/kubernetes/gpuctl/join-material";
pub const UNIT: &str = "/etc/systemd/system/kubelet.service";
pub const DROP_IN: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";
/// The kubeadm API both 1.30 and 1.31 read (v1beta4 needs 1.31).
const API: &str = "kubeadm.k8s.io/v1beta3";
/// The images besides kube-apiserver, -controller-manager, -scheduler and -proxy (which
/// carry the Kubernetes version) that kubeadm pulls, per minor version, as `kubeadm config
/// images list` prints them for v1.30.6 and v1.31.1: (etcd, CoreDNS, pause). Early patch
/// releases of a minor may name older ones.
const COMPANIONS: [(&str, &str, &str, &str); 2] = [
    ("v1.30.", "3.5.15-0", "v1.11.3", "3.9"),
    ("v1.31.", "3.5.15-0", "v1.11.3", "3.10"),
];
/// The first server computes the CA pin for joining nodes with openssl.
pub const OPENSSL_MISSING: &str = "openssl is not installed on the first server, and gpuctl \
    computes the CA's public-key pin that joining nodes check with it: put openssl's .deb for \
    this OS in the bundle's packages/<os-id>-<version>/ and run the packages stage, or install \
    it yourself";
/// How long a bootstrap token made for joining lives.
const TOKEN_TTL: &str = "24h";

/// The image repository kubeadm pulls its images from: the mirror keeps upstream paths,
/// so `registry.k8s.io/kube-apiserver` is `MIRROR/kube-apiserver`.
fn image_repository(inv: &Inventory) -> Option<String> {
    inv.registry.as_ref().map(|r| r.mirror.clone())
}

/// The [`COMPANIONS`] row of `version`'s minor release.
fn companions(
    version: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    COMPANIONS.iter().find(|c| version.starts_with(c.0))
}

/// Every image kubeadm `version` pulls, upstream names (`kubeadm config images list`);
/// `None` for a minor version gpuctl has no table for.
pub fn images(version: &str) -> Option<Vec<String>> {
    let (_, etcd, coredns, pause) = companions(version)?;
    let mut out: Vec<String> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ]
    .iter()
    .map(|c| format!("registry.k8s.io/{c}:{version}"))
    .collect();
    out.push(format!("registry.k8s.io/coredns/coredns:{coredns}"));
    out.push(format!("registry.k8s.io/pause:{pause}"));
    out.push(format!("registry.k8s.io/etcd:{etcd}"));
    Some(out)
}

/// The pause image (the pod sandbox) as the nodes pull it: kubeadm's for the inventory's
/// version (1.30's, `3.9`, for versions gpuctl has no table for).
pub fn pause_image(inv: &Inventory) -> String {
    let pause = companions(&inv.cluster.version).map_or("3.9", |c| c.3);
    match image_repository(inv) {
        Some(repo) => format!("{repo}/pause:{pause}"),
        None => format!("registry.k8s.io/pause:{pause}"),
    }
}

/// `HOST:6443` the nodes join and every kubeconfig names (k3s's too): `api_endpoint`, else
/// the first server's address.
pub fn control_plane_endpoint(inv: &Inventory) -> String {
    let host = match (&inv.cluster.api_endpoint, inv.servers().next()) {
        (Some(e), _) => e.clone(),
        (None, Some(first)) => address_of(first),
        (None, None) => "127.0.0.1".into(),
    };
    format!("{}:6443", url_host(&host))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Taint {
    key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    effect: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRegistration {
    name: String,
    cri_socket: &'static str,
    /// Always written: absent, kubeadm taints every control plane, even one that is also
    /// a worker.
    taints: Vec<Taint>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    kubelet_extra_args: std::collections::BTreeMap<&'static str, String>,
}

/// The node's name, its internal address for the kubelet, and its taints (the inventory's;
/// a server that is not also a worker gets kubeadm's control-plane taint). Labels are the
/// `labels` stage's: the kubelet refuses to set some of them itself.
fn node_registration(host: &Host) -> NodeRegistration {
    let mut taints: Vec<Taint> = host
        .taints
        .iter()
        .map(|t| {
            let (key, value, effect) = crate::stages::labels::split_taint(t);
            Taint { key, value, effect }
        })
        .collect();
    if host.roles.contains(&Role::Server) && !host.roles.contains(&Role::Worker) {
        taints.push(Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
    }
    let mut kubelet_extra_args = std::collections::BTreeMap::new();
    if let Some(ip) = host.internal_address {
        kubelet_extra_args.insert("node-ip", ip.to_string());
    }
    NodeRegistration {
        name: host.name.clone(),
        cri_socket: "unix:///var/run/containerd/containerd.sock",
        taints,
        kubelet_extra_args,
    }
}

/// Where a control plane's API server listens (`localAPIEndpoint`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    advertise_address: String,
    bind_port: u16,
}

/// The API server endpoint `host` advertises, when the inventory gives its address as an
/// IP (kubeadm wants one; without it kubeadm picks the default route's address).
fn local_endpoint(host: &Host) -> Option<Endpoint> {
    let addr = host.internal_address.map(|ip| ip.to_string()).or_else(|| {
        let addr = address_of(host);
        addr.parse::<std::net::IpAddr>().is_ok().then_some(addr)
    })?;
    Some(Endpoint {
        advertise_address: addr,
        bind_port: 6443,
    })
}

fn yaml<T: Serialize>(doc: &T) -> String {
    serde_yaml::to_string(doc).unwrap_or_default()
}

/// `init.yaml` of the first server: InitConfiguration, ClusterConfiguration and the
/// kubelet's cgroup driver. No token in it: kubeadm makes one, and the join material gets
/// its own (see the module's doc).
pub fn init_config(inv: &Inventory, host: &Host) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Init {
        api_version: &'static str,
        kind: &'static str,
        node_registration: NodeRegistration,
        #[serde(rename = "localAPIEndpoint", skip_serializing_if = "Option::is_none")]
        local_api_endpoint: Option<Endpoint>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Networking {
        pod_subnet: String,
        service_subnet: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Repo {
        image_repository: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ApiServer {
        #[serde(rename = "certSANs")]
        cert_sans: Vec<String>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Cluster {
        api_version: &'static str,
        kind: &'static str,
        cluster_name: String,
        kubernetes_version: String,
        control_plane_endpoint: String,
        networking: Networking,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_repository: Option<String>,
        /// With a custom repository kubeadm drops CoreDNS's `coredns/` path, which the
        /// mirror keeps: named here so the image is found.
        #[serde(skip_serializing_if = "Option::is_none")]
        dns: Option<Repo>,
        api_server: ApiServer,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Kubelet {
        api_version: &'static str,
        kind: &'static str,
        cgroup_driver: &'static str,
    }
    let repo = image_repository(inv);
    let mut cert_sans: Vec<String> = inv.cluster.api_endpoint.iter().cloned().collect();
    for server in inv.servers() {
        let addr = address_of(server);
        if !cert_sans.contains(&addr) {
            cert_sans.push(addr);
        }
    }
    let init = Init {
        api_version: API,
        kind: "InitConfiguration",
        node_registration: node_registration(host),
        local_api_endpoint: local_endpoint(host),
    };
    let cluster = Cluster {
        api_version: API,
        kind: "ClusterConfiguration",
        cluster_name: inv.cluster.name.clone(),
        kubernetes_version: inv.cluster.version.clone(),
        control_plane_endpoint: control_plane_endpoint(inv),
        networking: Networking {
            pod_subnet: inv.cluster.pod_cidr.to_string(),
            service_subnet: inv.cluster.service_cidr.to_string(),
        },
        dns: repo.as_ref().map(|r| Repo {
            image_repository: format!("{r}/coredns"),
        }),
        image_repository: repo,
        api_server: ApiServer { cert_sans },
    };
    let kubelet = Kubelet {
        api_version: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        cgroup_driver: "systemd",
    };
    format!(
        "# Written by gpuctl from the inventory for `kubeadm init`; read once, when the \
         cluster is made.\n{}---\n{}---\n{}",
        yaml(&init),
        yaml(&cluster),
        yaml(&kubelet)
    )
}

/// What the first server hands over: a bootstrap token, the CA pin and the certificate key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMaterial {
    pub token: String,
    pub hash: String,
    pub key: String,
}

impl JoinMaterial {
    /// The file's `name=value` lines; an error names what is missing, never a value.
    pub fn parse(text: &str) -> anyhow::Result<JoinMaterial> {
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                // Each value on its own is a secret too: registered for redaction.
                .inspect(|v| drop(crate::secret::Secret::new(v.clone())))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the first server's {JOIN_MATERIAL} has no {name}= line; remove the \
                         file there and run install again to make it anew"
                    )
                })
        };
        Ok(JoinMaterial {
            token: get("token")?,
            hash: get("hash")?,
            key: get("key")?,
        })
    }
}

/// `join.yaml` of a joining node: where to join, the token and CA pin, and for a server
/// the certificate key that fetches the control plane's certificates. Holds secrets: a
/// secret File, 0600.
pub fn join_config(inv: &Inventory, host: &Host, role: &NodeRole, m: &JoinMaterial) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Bootstrap<'a> {
        api_server_endpoint: String,
        token: &'a str,
        ca_cert_hashes: Vec<&'a str>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Discovery<'a> {
        bootstrap_token: Bootstrap<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ControlPlane<'a> {
        certificate_key: &'a str,
        #[serde(rename = "localAPIEndpoint", skip_serializing_if = "Option::is_none")]
        local_api_endpoint: Option<Endpoint>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Join<'a> {
        api_version: &'static str,
        kind: &'static str,
        discovery: Discovery<'a>,
        node_registration: NodeRegistration,
        #[serde(skip_serializing_if = "Option::is_none")]
        control_plane: Option<ControlPlane<'a>>,
    }
    let join = Join {
        api_version: API,
        kind: "JoinConfiguration",
        discovery: Discovery {
            bootstrap_token: Bootstrap {
                api_server_endpoint: control_plane_endpoint(inv),
                token: &m.token,
                ca_cert_hashes: vec![&m.hash],
            },
        },
        node_registration: node_registration(host),
        control_plane: role.is_server().then(|| ControlPlane {
            certificate_key: &m.key,
            local_api_endpoint: local_endpoint(host),
        }),
    };
    format!(
        "# Written by gpuctl for `kubeadm join`; holds the join token (mode 0600).\n{}",
        yaml(&join)
    )
}

/// The kubelet's unit, as the kubelet package ships it (its binary where gpuctl puts it).
/// It restarts until `kubeadm init`/`join` gave it a configuration.
pub fn unit_file() -> String {
    format!(
        "# Written by gpuctl.\n\
         [Unit]\n\
         Description=kubelet: The Kubernetes Node Agent\n\
         Documentation=https://kubernetes.io/docs/\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={BIN_DIR}/kubelet\n\
         Restart=always\n\
         StartLimitInterval=0\n\
         RestartSec=10\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The kubeadm drop-in of the kubelet unit: the flags kubeadm writes for each node.
pub fn drop_in() -> String {
    format!(
        "# Written by gpuctl, as the kubeadm package ships it.\n\
         [Service]\n\
         Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
         Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
         EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
         EnvironmentFile=-/etc/default/kubelet\n\
         ExecStart=\n\
         ExecStart={BIN_DIR}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n"
    )
}

/// `kubeadm init` on the first server, once; undone by `kubeadm reset`.
pub fn init_command() -> (String, String) {
    (
        format!("{BIN_DIR}/kubeadm init --config {INIT_CONFIG} --skip-token-print"),
        format!("test -f {ADMIN_KUBECONFIG}"),
    )
}

/// `kubeadm join` on any other node, once.
pub fn join_command() -> (String, String) {
    (
        format!("{BIN_DIR}/kubeadm join --config {JOIN_CONFIG}"),
        format!("test -f {KUBELET_KUBECONFIG}"),
    )
}

/// `kubeadm reset`, the undo of both: it stops the kubelet and removes what kubeadm made.
pub fn reset_command() -> (String, String) {
    (
        format!("{BIN_DIR}/kubeadm reset -f"),
        format!("test ! -e {KUBELET_KUBECONFIG} && test ! -e {ADMIN_KUBECONFIG}"),
    )
}

/// The first server's command that (re)makes [`JOIN_MATERIAL`]: a bootstrap token, the CA
/// pin, and with more than one server the control-plane certificates uploaded under a new
/// key. `(run, guard)`: the guard holds while the file is there and either every node of
/// the inventory has joined or the file's token (and uploaded certificates) still exist.
/// Nothing secret is in either text, and the values never reach the output.
pub fn material_command(inv: &Inventory) -> (String, String) {
    let ha = inv.servers().count() > 1;
    let f = quote(JOIN_MATERIAL);
    let tmp = quote(&format!("{JOIN_MATERIAL}.tmp"));
    let upload = if ha {
        format!(
            "{BIN_DIR}/kubeadm init phase upload-certs --upload-certs --certificate-key \"$k\" \
             >/dev/null; "
        )
    } else {
        String::new()
    };
    let run = format!(
        "set -e; umask 077; mkdir -p {dir}; \
         t=$({BIN_DIR}/kubeadm token create --ttl {TOKEN_TTL}); \
         h=sha256:$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | \
         openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1); \
         k=$(openssl rand -hex 32); {upload}\
         printf 'token=%s\\nhash=%s\\nkey=%s\\n' \"$t\" \"$h\" \"$k\" > {tmp}; mv {tmp} {f}",
        dir = quote(CONFIG_DIR),
    );
    let nodes: Vec<String> = inv
        .nodes()
        .map(|h| quote(&format!("node/{}", h.name)))
        .collect();
    let joined = format!(
        "have=$({KUBECTL} get nodes -o name --request-timeout=10s 2>/dev/null) && \
         missing=$(for n in {}; do printf '%s\\n' \"$have\" | grep -qx \"$n\" || echo \"$n\"; \
         done) && test -z \"$missing\"",
        nodes.join(" ")
    );
    // Fresh: the token's Secret is still there (and, with more than one server, the
    // uploaded certificates).
    let mut fresh = format!(
        "id=$(sed -n 's/^token=\\([a-z0-9]*\\)\\..*/\\1/p' {f}) && \
         {KUBECTL} -n kube-system get secret \"bootstrap-token-$id\" -o name \
         --request-timeout=10s >/dev/null 2>&1"
    );
    if ha {
        fresh.push_str(&format!(
            " && {KUBECTL} -n kube-system get secret kubeadm-certs -o name \
             --request-timeout=10s >/dev/null 2>&1"
        ));
    }
    let guard = format!("test -s {f} && {{ {{ {joined}; }} || {{ {fresh}; }}; }}");
    (run, guard)
}
