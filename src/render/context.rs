//! The values templates see: the resolved inventory, reshaped for templates.
//!
//! Everything a template needs is decided here (node addresses, the NFS server's address,
//! each user's namespace and quota), so templates only place values and never compute them.
//! The shape is documented in `docs/templates.md`; renaming a key breaks admins' overrides.

use serde_json::{Value, json};

use super::TemplateError;
use crate::inventory::{Distribution, Host, Inventory};
use crate::transport::Endpoint;

/// The context every template is rendered with.
pub fn context(inv: &Inventory) -> Result<Value, TemplateError> {
    let nodes: Vec<Value> = inv
        .hosts
        .iter()
        .map(|h| {
            json!({
                "name": h.name,
                "address": node_address(h),
                "roles": h.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "labels": h.labels,
            })
        })
        .collect();

    let nfs = match &inv.storage.nfs {
        Some(n) => json!({
            "server": n.server,
            "address": nfs_address(inv, &n.server),
            "export": n.export.display().to_string(),
            "provisioner": n.provisioner,
            "default": n.default,
        }),
        None => Value::Null,
    };
    let local_path = match &inv.storage.local_path {
        Some(l) => json!({ "path": l.path.display().to_string(), "default": l.default }),
        None => Value::Null,
    };

    let mut zones: Vec<&str> = inv
        .dns
        .hosts
        .iter()
        .flat_map(|h| h.names.iter().map(String::as_str))
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let dns_hosts: Vec<Value> = inv
        .dns
        .hosts
        .iter()
        .map(|h| json!({ "ip": h.ip.to_string(), "names": h.names }))
        .collect();

    let mut users = Vec::new();
    for u in &inv.users.users {
        let tier = inv.users.tiers.get(&u.tier).ok_or_else(|| {
            TemplateError::Context(format!(
                "user {} names tier {}, which users.tiers does not define",
                u.name, u.tier
            ))
        })?;
        let data_server = match (&u.data_path, &inv.storage.nfs) {
            (Some(_), Some(n)) => Value::String(nfs_address(inv, &n.server)),
            (Some(p), None) => {
                return Err(TemplateError::Context(format!(
                    "user {} has data_path {} but the inventory has no storage.nfs to serve it; \
                     add storage.nfs or remove data_path",
                    u.name,
                    p.display()
                )));
            }
            (None, _) => Value::Null,
        };
        users.push(json!({
            "name": u.name,
            "email": u.email,
            "tier": u.tier,
            "namespace": namespace_for(&u.name),
            "data_path": u.data_path.as_ref().map(|p| p.display().to_string()),
            "data_server": data_server,
            "quota": {
                "cpu": tier.cpu,
                "memory": tier.memory,
                "gpu": tier.gpu,
                "storage": tier.storage,
                "pvcs": tier.pvcs,
            },
        }));
    }

    Ok(json!({
        "cluster": {
            "name": inv.cluster.name,
            "distribution": match inv.cluster.distribution {
                Distribution::K3s => "k3s",
                Distribution::Kubeadm => "kubeadm",
            },
            "k3s": inv.cluster.distribution == Distribution::K3s,
            "kubeadm": inv.cluster.distribution == Distribution::Kubeadm,
            "version": inv.cluster.version,
            "pod_cidr": inv.cluster.pod_cidr.to_string(),
            "service_cidr": inv.cluster.service_cidr.to_string(),
        },
        "registry": inv.registry.as_ref().map(|r| json!({
            "mirror": r.mirror,
            "insecure": r.insecure,
            "served_by": r.served_by,
            "port": r.mirror_port(),
        })),
        "nodes": nodes,
        "gpu": {
            "device_plugin": inv.gpu.device_plugin,
            "runtime_class": inv.gpu.runtime_class,
            "dcgm_exporter": inv.gpu.dcgm_exporter,
        },
        "dns": { "hosts": dns_hosts, "zones": zones },
        "storage": { "local_path": local_path, "nfs": nfs },
        "users": users,
        // Kubeflow's profile controller, in the stack: each user also gets a Profile.
        "stack": {
            "components": inv.stack.components,
            "profiles": inv.stack.components.iter().any(|c| c == "kubeflow-core"),
        },
    }))
}

/// The address other nodes reach `h` at: its internal address, else the SSH address.
pub fn node_address(h: &Host) -> String {
    if let Some(ip) = h.internal_address {
        return ip.to_string();
    }
    match &h.endpoint {
        Endpoint::Ssh(t) => t.host.clone(),
        Endpoint::Local => h.name.clone(),
    }
}

/// `storage.nfs.server` names an inventory host or an outside server: a host's address is
/// used so pods do not depend on cluster DNS knowing the host name.
fn nfs_address(inv: &Inventory, server: &str) -> String {
    inv.hosts
        .iter()
        .find(|h| h.name == server)
        .map(node_address)
        .unwrap_or_else(|| server.to_string())
}

/// A user's namespace: the name lowercased, anything outside `[a-z0-9-]` turned into `-`,
/// so `Jane.Doe` works as a DNS-1123 label.
pub fn namespace_for(user: &str) -> String {
    let mut ns: String = user
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    ns = ns.trim_matches('-').to_string();
    ns.truncate(63);
    ns
}
