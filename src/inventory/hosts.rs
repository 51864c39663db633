//! The `hosts:` list resolved: names, addresses, roles, labels and taints checked one by
//! one, then against each other and against the cluster's networks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::decode::S;
use super::endpoint::{SshEnv, endpoints, is_local};
use super::model::*;
use super::problem::{At, Problems, did_you_mean};
use super::raw::{RawHost, RawInventory};
use super::syntax;
use crate::transport::Endpoint;

/// What the host checks need from `cluster:`, known even when other cluster keys are
/// wrong (so a bad cluster name does not hide a host inside the pod network).
#[derive(Clone, Copy, Debug)]
pub struct ClusterFacts {
    pub distribution: Distribution,
    pub pod_cidr: Option<IpNet>,
    pub service_cidr: Option<IpNet>,
    pub has_api_endpoint: bool,
}

pub fn resolve_hosts(
    p: &mut Problems,
    raw: &RawInventory,
    env: &SshEnv<'_>,
    cluster: &ClusterFacts,
) -> Vec<Option<Host>> {
    if raw.hosts.is_empty() && raw.hosts_at.path == "hosts" {
        p.error_hint(
            &raw.hosts_at,
            "the hosts list is empty",
            "add at least one host: `- { name: node1, address: 10.0.0.5, roles: [server, worker] }`",
        );
    }
    let endpoints = endpoints(p, &raw.ssh, &raw.hosts, env);
    let hosts: Vec<Option<Host>> = raw
        .hosts
        .iter()
        .zip(endpoints)
        .map(|(h, endpoint)| host(p, h, endpoint))
        .collect();
    duplicates(p, raw, &hosts);
    networks(p, raw, &hosts, cluster);
    roles(p, raw, &hosts, cluster);
    hosts
}

fn host(p: &mut Problems, h: &RawHost, endpoint: Option<Endpoint>) -> Option<Host> {
    let name = h.name.as_ref().and_then(|n| match syntax::dns_label(&n.v) {
        Ok(()) => Some(n.v.clone()),
        Err(why) => {
            p.error_hint(
                &n.at,
                format!(
                    "host name {:?} is not valid: {why} (it becomes the Kubernetes node name)",
                    n.v
                ),
                format!("write \"{}\"", syntax::to_dns_label(&n.v)),
            );
            None
        }
    });
    if let Some(a) = &h.address {
        check_address(p, a);
    }
    let internal = match &h.internal_address {
        Some(ia) => match ia.v.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                p.error_hint(
                    &ia.at,
                    format!("internal_address {:?} is not an IP address", ia.v),
                    "write the node IP other nodes use, e.g. 10.0.0.5",
                );
                return None;
            }
        },
        None => default_internal(h, endpoint.as_ref()),
    };
    let mut labels = BTreeMap::new();
    for (k, v) in &h.labels {
        if let Err(why) = syntax::label_key(&k.v) {
            p.error(&k.at, format!("label key: {why}"));
        }
        if let Err(why) = syntax::label_value(&v.v) {
            p.error_hint(
                &v.at,
                format!("label value: {why}"),
                "quote nothing special; use letters, digits, '-', '_', '.'",
            );
        }
        labels.insert(k.v.clone(), v.v.clone());
    }
    for t in &h.taints {
        if let Err(why) = syntax::taint(&t.v) {
            p.error(&t.at, format!("taint {:?}: {why}", t.v));
        }
    }
    Some(Host {
        name: name?,
        endpoint: endpoint?,
        internal_address: internal,
        roles: h.roles.iter().map(|r| r.v).collect(),
        gpu: h.gpu.as_ref().map_or(GpuPresence::Auto, |g| g.v),
        labels,
        taints: h.taints.iter().map(|t| t.v.clone()).collect(),
    })
}

/// The address itself when it is an IP, else the ssh config's `HostName` when that is.
fn default_internal(h: &RawHost, endpoint: Option<&Endpoint>) -> Option<IpAddr> {
    if let Some(ip) = h.address.as_ref().and_then(|a| a.v.parse().ok()) {
        return Some(ip);
    }
    match endpoint {
        Some(Endpoint::Ssh(t)) => t.host.parse().ok(),
        _ => None,
    }
}

fn check_address(p: &mut Problems, a: &S<String>) {
    if a.v.parse::<IpAddr>().is_ok() {
        return;
    }
    if let Some((user, rest)) = a.v.split_once('@') {
        p.error_hint(
            &a.at,
            format!("address {:?} includes a user", a.v),
            format!("write `address: {rest}` and `ssh: {{ user: {user} }}`"),
        );
        return;
    }
    if let Some((host, port)) = a.v.rsplit_once(':')
        && port.parse::<u16>().is_ok()
        && !host.contains(':')
    {
        p.error_hint(
            &a.at,
            format!("address {:?} includes a port", a.v),
            format!("write `address: {host}` and `ssh: {{ port: {port} }}`"),
        );
        return;
    }
    if let Err(why) = syntax::dns_name(&a.v) {
        p.error_hint(
            &a.at,
            format!(
                "address {:?} is not an IP address, DNS name or ssh config alias: {why}",
                a.v
            ),
            "write where to reach the host, e.g. 10.0.0.5 or node1.lab.example",
        );
    }
}

/// Where a host was first seen, for "already used by" messages.
fn first_seen(h: &RawHost, i: usize) -> String {
    match &h.name {
        Some(n) => format!("host {:?} (line {})", n.v, n.at.pos.line),
        None => format!("hosts[{i}]"),
    }
}

fn local_key() -> (String, String) {
    (
        "this machine".to_string(),
        "is this machine too".to_string(),
    )
}

fn duplicates(p: &mut Problems, raw: &RawInventory, hosts: &[Option<Host>]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut reach: HashMap<String, usize> = HashMap::new();
    let mut internal: HashMap<IpAddr, (usize, bool)> = HashMap::new();
    for (i, (h, resolved)) in raw.hosts.iter().zip(hosts).enumerate() {
        if let Some(n) = &h.name {
            if let Some(&j) = names.get(n.v.as_str()) {
                p.error_hint(
                    &n.at,
                    format!(
                        "host name {:?} is already used by hosts[{j}] (line {})",
                        n.v, raw.hosts[j].at.pos.line
                    ),
                    "give every host its own name",
                );
            } else {
                names.insert(&n.v, i);
            }
        }
        // The same address and port through different bastions can be different machines.
        // When the endpoint could not be resolved (a bad bastion, reported already), the
        // address as written still finds duplicates.
        let (key, what) = match resolved.as_ref().map(|h| &h.endpoint) {
            Some(Endpoint::Local) => local_key(),
            None if is_local(h) => local_key(),
            Some(Endpoint::Ssh(t)) => {
                let via: Vec<String> = t.jumps.iter().map(|j| j.display()).collect();
                (
                    format!(
                        "{}:{} via [{}]",
                        t.host.to_ascii_lowercase(),
                        t.port,
                        via.join(",")
                    ),
                    format!("reaches the same place ({}:{})", t.host, t.port),
                )
            }
            None => {
                let Some(addr) = &h.address else { continue };
                let port = h
                    .ssh
                    .port
                    .as_ref()
                    .or(raw.ssh.port.as_ref())
                    .map_or(22, |p| p.v);
                (
                    format!("{}:{port} unresolved", addr.v.to_ascii_lowercase()),
                    format!("reaches the same place ({}:{port})", addr.v),
                )
            }
        };
        let at = h.address.as_ref().map_or(h.at.clone(), |a| a.at.clone());
        if let Some(&j) = reach.get(&key) {
            p.error_hint(
                &at,
                format!("this host {what} as {}", first_seen(&raw.hosts[j], j)),
                "each machine is listed once; give it all its roles in one entry",
            );
        } else {
            reach.insert(key, i);
        }
        let Some(host) = resolved else { continue };
        if let Some(ip) = host.internal_address {
            let explicit = h.internal_address.is_some();
            let at = h.internal_address.as_ref().map_or(at, |a| a.at.clone());
            match internal.get(&ip) {
                // Hosts behind one address on different ports (port forwarding, test
                // containers) share a defaulted internal address; only the admin knows the
                // real ones.
                Some(&(j, first_explicit)) if !explicit && !first_explicit => p.warn(
                    &at,
                    format!("this host and {} both default to internal address {ip}", first_seen(&raw.hosts[j], j)),
                    Some("set `internal_address:` to each node's own IP so nodes can reach each other".into()),
                ),
                Some(&(j, _)) => p.error_hint(
                    &at,
                    format!("internal address {ip} is also the internal address of {}", first_seen(&raw.hosts[j], j)),
                    "set `internal_address:` to each node's own IP",
                ),
                None => {
                    internal.insert(ip, (i, explicit));
                }
            }
        }
    }
}

fn networks(p: &mut Problems, raw: &RawInventory, hosts: &[Option<Host>], c: &ClusterFacts) {
    for (h, resolved) in raw.hosts.iter().zip(hosts) {
        let mut addrs: Vec<(IpAddr, &At)> = Vec::new();
        if let Some(a) = &h.address
            && let Ok(ip) = a.v.parse()
        {
            addrs.push((ip, &a.at));
        }
        if let (Some(ia), Some(host)) = (&h.internal_address, resolved)
            && let Some(ip) = host.internal_address
        {
            addrs.push((ip, &ia.at));
        }
        for (ip, at) in addrs {
            let nets = [(c.pod_cidr, "pod_cidr"), (c.service_cidr, "service_cidr")];
            for (net, key) in nets.iter().filter_map(|(n, k)| Some(((*n)?, *k))) {
                if net.contains(&ip) {
                    p.error_hint(
                        at,
                        format!("{ip} is inside cluster.{key} {net}; pods or services would shadow this node"),
                        format!("choose a cluster.{key} that no host address is in"),
                    );
                }
            }
        }
    }
}

fn roles(p: &mut Problems, raw: &RawInventory, hosts: &[Option<Host>], c: &ClusterFacts) {
    let servers = raw
        .hosts
        .iter()
        .filter(|h| h.roles.iter().any(|r| r.v == Role::Server))
        .count();
    let all_roles_read = raw.hosts.iter().all(|h| h.roles_complete);
    if servers == 0 && !raw.hosts.is_empty() && all_roles_read {
        p.error_hint(
            &raw.hosts_at,
            "no host has role server; a cluster needs a control plane",
            "add `server` to the roles of one host (three for high availability)",
        );
    }
    if servers >= 2 && servers % 2 == 0 {
        p.warn(
            &raw.hosts_at,
            format!("{servers} servers: etcd needs a majority, so an even number tolerates no more failures than {} would", servers - 1),
            Some(format!("use {} or {} servers", servers - 1, servers + 1)),
        );
    }
    if c.distribution == Distribution::Kubeadm && servers > 1 && !c.has_api_endpoint {
        p.warn(
            &raw.hosts_at,
            format!("{servers} kubeadm control-plane servers but no cluster.api_endpoint; nodes will reach the API through the first server only"),
            Some("set cluster.api_endpoint to a VIP or DNS name that reaches every server".into()),
        );
    }
    let has_nfs_storage = raw.storage.nfs.is_some();
    for (h, resolved) in raw.hosts.iter().zip(hosts) {
        let Some(host) = resolved else { continue };
        if host.roles.contains(&Role::Nfs) && !has_nfs_storage {
            p.warn(
                &h.at,
                format!(
                    "host {} has role nfs but storage.nfs is not set; nothing will be exported",
                    host.name
                ),
                Some("add `storage: { nfs: { server: NAME, export: /path } }`".into()),
            );
        }
        if is_local(h) && hosts.len() > 1 {
            p.warn(&h.at, format!("host {} is this machine; the others must be able to reach it at its internal address", host.name), None);
        }
    }
}

/// `storage.nfs.server` names an inventory host with role nfs, or a machine outside.
pub fn check_nfs_server(p: &mut Problems, server: &S<String>, raw: &RawInventory) {
    let by_name: BTreeSet<&str> = raw
        .hosts
        .iter()
        .filter_map(|h| h.name.as_ref())
        .map(|n| n.v.as_str())
        .collect();
    if by_name.contains(server.v.as_str()) {
        let host = raw
            .hosts
            .iter()
            .find(|h| h.name.as_ref().is_some_and(|n| n.v == server.v));
        if let Some(host) = host
            && host.roles_complete
            && !host.roles.iter().any(|r| r.v == Role::Nfs)
        {
            p.error_hint(
                &server.at,
                format!(
                    "nfs.server is host {:?}, which does not have role nfs",
                    server.v
                ),
                format!("add nfs to the roles of {}", server.v),
            );
        }
        return;
    }
    if server.v.parse::<IpAddr>().is_err()
        && let Err(why) = syntax::dns_name(&server.v)
    {
        p.error_hint(
            &server.at,
            format!(
                "nfs.server {:?} is neither a host of this inventory nor an address: {why}",
                server.v
            ),
            "name a host with role nfs, or give the NAS's address",
        );
        return;
    }
    if !server.v.contains('.')
        && let Some(close) = did_you_mean(&server.v, by_name.iter().copied())
    {
        p.warn(
            &server.at,
            format!("nfs.server {:?} is not a host of this inventory; it is taken as an outside NFS server", server.v),
            Some(format!("did you mean host \"{close}\"?")),
        );
    }
}
