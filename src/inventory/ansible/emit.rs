//! Ansible groups and variables → gpuctl keys, written as commented YAML.
//!
//! Settings every host shares (the same `ansible_user` on all of them, typically from
//! `all:vars`) go to the top-level `ssh:` block; the rest stay on their hosts. Secrets are
//! replaced by `{ env: ... }` references with a comment telling the admin to export them.

use std::collections::BTreeMap;

use super::{Ansible, Value};
use crate::inventory::syntax::to_dns_label;

/// The converted inventory and what could not be converted.
#[derive(Clone, Debug)]
pub struct Converted {
    pub yaml: String,
    /// One line per thing left out (also written as comments at the end of `yaml`).
    pub not_converted: Vec<String>,
}

pub(crate) const SERVER_GROUPS: &[&str] = &[
    "kube_control_plane",
    "kube-control-plane",
    "kube-master",
    "kube_master",
    "masters",
];
pub(crate) const WORKER_GROUPS: &[&str] = &["kube_node", "kube-node", "nodes", "workers"];
pub(crate) const NFS_GROUPS: &[&str] = &["nfs"];
/// Hosts on which gpuctl runs the registry itself. A `harbor` group is the site's own
/// registry, which gpuctl must not touch: it is noted, and the mirror is written commented.
pub(crate) const REGISTRY_GROUPS: &[&str] = &["registry"];
pub(crate) const GPU_GROUPS: &[&str] = &["gpu", "gpus"];
/// Groups that only gather others; their variables still apply to their hosts.
pub(crate) const PARENT_GROUPS: &[&str] = &[
    "all",
    "ungrouped",
    "k8s_cluster",
    "k8s-cluster",
    "kube_cluster",
    "cluster",
];

pub(crate) const SUDO_VARS: &[&str] = &[
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
    "ansible_sudo_password",
];
pub(crate) const SSH_PASSWORD_VARS: &[&str] = &[
    "ansible_ssh_pass",
    "ansible_password",
    "ansible_ssh_password",
];
/// Host variables gpuctl's own behaviour already covers (it always becomes root with sudo).
const IMPLIED_VARS: &[(&str, Option<&str>)] = &[
    ("ansible_become", None),
    ("ansible_become_method", Some("sudo")),
    ("ansible_become_user", Some("root")),
];

/// Cluster settings found in group variables: (Ansible names, gpuctl key).
pub(crate) const CLUSTER_VARS: &[(&[&str], &str)] = &[
    (&["kube_network_plugin", "CLUSTER_NETWORK"], "cni"),
    (
        &["container_manager", "CONTAINER_RUNTIME"],
        "container_runtime",
    ),
    (&["kube_pods_subnet", "CLUSTER_CIDR"], "pod_cidr"),
    (&["kube_service_addresses", "SERVICE_CIDR"], "service_cidr"),
];

#[derive(Default)]
struct HostOut {
    name: String,
    ansible_name: String,
    address: Option<String>,
    local: bool,
    internal: Option<String>,
    roles: Vec<&'static str>,
    gpu: bool,
    user: Option<String>,
    port: Option<String>,
    key: Option<String>,
    password: bool,
}

/// Quotes a string for YAML unless it is plainly safe.
fn q(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./~@+-".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if safe {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
    }
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["pass", "secret", "token", "vault", "credential"]
        .iter()
        .any(|w| k.contains(w))
        || (k.contains("key") && !k.ends_with("key_file"))
}

fn shown(key: &str, v: &Value) -> String {
    match v {
        _ if looks_secret(key) => format!("{key} (value not copied)"),
        Value::Complex => format!("{key} (a list or mapping)"),
        Value::Text(t) => format!("{key}={t}"),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Text(t)) if !t.is_empty() => Some(t.clone()),
        _ => None,
    }
}

pub fn emit(inv: &Ansible, file: &str) -> Converted {
    // note → hosts it applies to (empty for notes about the file as a whole)
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut hosts: Vec<HostOut> = Vec::new();
    let mut sudo = false;
    let cluster_keys: Vec<&str> = CLUSTER_VARS
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .collect();

    for (group, g) in &inv.groups {
        let lower = group.to_ascii_lowercase();
        let known = [
            SERVER_GROUPS,
            WORKER_GROUPS,
            NFS_GROUPS,
            REGISTRY_GROUPS,
            GPU_GROUPS,
            PARENT_GROUPS,
        ]
        .iter()
        .any(|list| list.contains(&lower.as_str()));
        if lower == "harbor" && !g.hosts.is_empty() {
            notes.insert("group harbor: the site's own registry, which gpuctl leaves alone; point registry.mirror (and ca_file, credentials) at it".into(), g.hosts.clone());
        } else if lower == "etcd" && !g.hosts.is_empty() {
            notes.insert("group etcd: gpuctl runs etcd on the servers (k3s embedded etcd, kubeadm stacked etcd)".into(), g.hosts.clone());
        } else if !known && lower != "etcd" && !g.hosts.is_empty() {
            notes.insert(format!("group {group}: no gpuctl role"), g.hosts.clone());
        }
    }

    for host in &inv.hosts {
        let groups: Vec<String> = inv
            .groups_of(host)
            .iter()
            .map(|g| g.to_ascii_lowercase())
            .collect();
        let in_any = |list: &[&str]| groups.iter().any(|g| list.contains(&g.as_str()));
        let mut roles = Vec::new();
        for (list, role) in [
            (SERVER_GROUPS, "server"),
            (WORKER_GROUPS, "worker"),
            (NFS_GROUPS, "nfs"),
            (REGISTRY_GROUPS, "registry"),
        ] {
            if in_any(list) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            if groups.iter().any(|g| g == "harbor") {
                continue;
            }
            let why = if groups.iter().any(|g| g == "etcd") {
                "host only in etcd: gpuctl runs etcd on the servers; not converted".to_string()
            } else {
                "host in no group that maps to a role (kube_control_plane, kube_node, nfs, registry, ...); not converted".to_string()
            };
            notes.entry(why).or_default().push(host.clone());
            continue;
        }
        let vars = inv.vars_of(host);
        let ansible_name = host.clone();
        let name_source = text(vars.get("k8s_nodename")).unwrap_or_else(|| host.clone());
        let name = if name_source.parse::<std::net::IpAddr>().is_ok() {
            to_dns_label(&name_source)
        } else {
            to_dns_label(name_source.split('.').next().unwrap_or(&name_source))
        };
        let mut out = HostOut {
            name,
            ansible_name,
            address: text(vars.get("ansible_host").or(vars.get("ansible_ssh_host")))
                .or_else(|| Some(host.clone())),
            internal: text(vars.get("ip")),
            roles,
            gpu: in_any(GPU_GROUPS),
            user: text(vars.get("ansible_user").or(vars.get("ansible_ssh_user"))),
            key: text(
                vars.get("ansible_ssh_private_key_file")
                    .or(vars.get("ansible_private_key_file")),
            ),
            ..HostOut::default()
        };
        if let Some(port) = text(vars.get("ansible_port").or(vars.get("ansible_ssh_port"))) {
            if port.parse::<u16>().is_ok() {
                out.port = Some(port);
            } else {
                notes
                    .entry(format!("ansible_port={port} (not a port number)"))
                    .or_default()
                    .push(host.clone());
            }
        }
        for (k, v) in &vars {
            let value = text(Some(v));
            let implied = IMPLIED_VARS
                .iter()
                .any(|(name, want)| k == name && want.is_none_or(|w| value.as_deref() == Some(w)));
            match k.as_str() {
                "ansible_host"
                | "ansible_ssh_host"
                | "ansible_user"
                | "ansible_ssh_user"
                | "ansible_port"
                | "ansible_ssh_port"
                | "ansible_ssh_private_key_file"
                | "ansible_private_key_file"
                | "k8s_nodename"
                | "ip" => {}
                k if cluster_keys.contains(&k) || implied => {}
                k if SUDO_VARS.contains(&k) => sudo = true,
                k if SSH_PASSWORD_VARS.contains(&k) => out.password = true,
                "ansible_connection" if value.as_deref() == Some("local") => {
                    out.local = true;
                    if !vars.contains_key("ansible_host") {
                        out.address = None;
                    }
                }
                "ansible_connection"
                    if matches!(value.as_deref(), Some("ssh" | "smart" | "paramiko")) => {}
                _ => notes.entry(shown(k, v)).or_default().push(host.clone()),
            }
        }
        hosts.push(out);
    }

    let cluster = cluster_settings(inv, &mut notes);
    let yaml = write(file, &cluster, &hosts, sudo, &notes, hosts.len());
    let not_converted = notes
        .iter()
        .map(|(note, on)| note_line(note, on, hosts.len()))
        .collect();
    Converted {
        yaml,
        not_converted,
    }
}

/// Cluster keys from group variables (all first), with where they came from.
fn cluster_settings(
    inv: &Ansible,
    notes: &mut BTreeMap<String, Vec<String>>,
) -> Vec<(&'static str, String, String)> {
    let mut groups: Vec<&super::Group> = inv.groups.get("all").into_iter().collect();
    groups.extend(
        inv.groups
            .iter()
            .filter(|(n, _)| n.as_str() != "all")
            .map(|(_, g)| g),
    );
    let mut out = Vec::new();
    for (names, key) in CLUSTER_VARS {
        let found = groups.iter().find_map(|g| {
            g.vars
                .iter()
                .find(|(k, _)| names.contains(&k.as_str()))
                .and_then(|(k, v)| text(Some(v)).map(|t| (k.clone(), t.to_ascii_lowercase())))
        });
        let Some((from, value)) = found else { continue };
        let ok = match *key {
            "cni" => matches!(value.as_str(), "calico" | "flannel"),
            "container_runtime" => matches!(value.as_str(), "containerd" | "docker"),
            _ => value.parse::<ipnet::IpNet>().is_ok(),
        };
        if ok {
            out.push((*key, value, from));
        } else {
            notes
                .entry(format!("{from}={value} (gpuctl's {key} cannot be that)"))
                .or_default();
        }
    }
    out
}

fn note_line(note: &str, on: &[String], total: usize) -> String {
    if on.is_empty() {
        note.to_string()
    } else if on.len() == total && total > 1 {
        format!("{note} (all hosts)")
    } else if on.len() > 6 {
        format!(
            "{note} (hosts: {}, … {} in all)",
            on[..5].join(", "),
            on.len()
        )
    } else {
        format!("{note} (hosts: {})", on.join(", "))
    }
}

/// The value every host has, when they all have the same one.
fn shared(hosts: &[HostOut], get: impl Fn(&HostOut) -> Option<&String>) -> Option<String> {
    let first = hosts.first().and_then(&get)?;
    hosts
        .iter()
        .all(|h| get(h) == Some(first))
        .then(|| first.clone())
}

fn write(
    file: &str,
    cluster: &[(&str, String, String)],
    hosts: &[HostOut],
    sudo: bool,
    notes: &BTreeMap<String, Vec<String>>,
    total: usize,
) -> String {
    let mut y = String::new();
    y.push_str(&format!(
        "# Converted from {file} by `gpuctl init --from-ansible`.\n"
    ));
    y.push_str("# Review it, then check it without touching any host:\n");
    y.push_str("#   gpuctl inventory check --inventory THIS_FILE\n");
    y.push_str("# Every key is described in docs/inventory.md. Relative paths are relative to this file.\n\n");
    y.push_str("cluster:\n  name: mycluster                 # choose a name: lowercase letters, digits, '-'\n");
    y.push_str("  distribution: k3s               # or kubeadm, closer to what kubespray/kubeasz install\n");
    for (key, value, from) in cluster {
        y.push_str(&format!("  {key}: {}  # from {from}\n", q(value)));
    }

    let user = shared(hosts, |h| h.user.as_ref());
    let port = shared(hosts, |h| h.port.as_ref());
    let key = shared(hosts, |h| h.key.as_ref());
    let all_password = !hosts.is_empty() && hosts.iter().all(|h| h.password);
    let mut ssh = String::new();
    if let Some(u) = &user {
        ssh.push_str(&format!("  user: {}  # from ansible_user\n", q(u)));
    }
    if let Some(p) = &port {
        ssh.push_str(&format!("  port: {p}  # from ansible_port\n"));
    }
    if let Some(k) = &key {
        ssh.push_str(&format!(
            "  identity_file: {}  # from ansible_ssh_private_key_file\n",
            q(k)
        ));
    }
    if all_password {
        ssh.push_str("  # The Ansible inventory holds an SSH password. gpuctl keeps no secret in the inventory:\n");
        ssh.push_str("  # export GPUCTL_SSH_PASSWORD before running gpuctl (or use keys).\n");
        ssh.push_str("  password: { env: GPUCTL_SSH_PASSWORD }\n");
    }
    if sudo {
        ssh.push_str("  # The Ansible inventory holds a become (sudo) password. gpuctl keeps no secret in the\n");
        ssh.push_str("  # inventory: export GPUCTL_SUDO_PASSWORD before running gpuctl.\n");
        ssh.push_str("  sudo_password: { env: GPUCTL_SUDO_PASSWORD }\n");
    }
    if !ssh.is_empty() {
        y.push_str("\nssh:\n");
        y.push_str(&ssh);
    }

    // Roles whose settings Ansible kept elsewhere: show where they go, commented out.
    if let Some(r) = hosts.iter().find(|h| h.roles.contains(&"registry")) {
        let at = r.address.clone().unwrap_or_else(|| r.name.clone());
        y.push_str(&format!(
            "\n# {} has role registry: gpuctl runs the image mirror there, at {}:5000, with its own CA\n# and login (docs/mirror.md). To give it another name:\n# registry: {{ mirror: {}:5000 }}\n",
            r.name,
            at,
            q(&at)
        ));
    }
    if let Some(n) = hosts.iter().find(|h| h.roles.contains(&"nfs")) {
        y.push_str(&format!(
            "\n# {} has role nfs; say what it exports:\n# storage: {{ nfs: {{ server: {}, export: /data/share }} }}\n",
            n.name,
            q(&n.name)
        ));
    }
    y.push_str("\nhosts:\n");
    for h in hosts {
        y.push_str(&format!("  - name: {}\n", q(&h.name)));
        if h.name != h.ansible_name {
            y.push_str(&format!("    # Ansible name: {}\n", h.ansible_name));
        }
        if h.local {
            y.push_str("    connection: local\n");
        }
        if let Some(a) = &h.address {
            y.push_str(&format!("    address: {}\n", q(a)));
        }
        if let Some(i) = &h.internal {
            y.push_str(&format!("    internal_address: {}\n", q(i)));
        }
        y.push_str(&format!("    roles: [{}]\n", h.roles.join(", ")));
        if h.gpu {
            y.push_str("    gpu: true\n");
        }
        let mut own = Vec::new();
        if let Some(u) = h.user.as_ref().filter(|_| user.is_none()) {
            own.push(format!("user: {}", q(u)));
        }
        if let Some(p) = h.port.as_ref().filter(|_| port.is_none()) {
            own.push(format!("port: {p}"));
        }
        if let Some(k) = h.key.as_ref().filter(|_| key.is_none()) {
            own.push(format!("identity_file: {}", q(k)));
        }
        if h.password && !all_password {
            own.push("password: { env: GPUCTL_SSH_PASSWORD }".to_string());
        }
        if !own.is_empty() {
            y.push_str(&format!("    ssh: {{ {} }}\n", own.join(", ")));
        }
    }
    if hosts.iter().any(|h| h.password) && !all_password {
        y.push_str(
            "# Some hosts had an SSH password: export GPUCTL_SSH_PASSWORD before running gpuctl.\n",
        );
    }
    if !notes.is_empty() {
        y.push_str("\n# not converted:\n");
        for (note, on) in notes {
            y.push_str(&format!("#   {}\n", note_line(note, on, total)));
        }
    }
    y
}
