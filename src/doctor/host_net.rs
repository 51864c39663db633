//! Host checks about the network around Kubernetes: ports and firewalls (H8) and proxies
//! (H9). Whether peers really reach the ports is N4 (`network.rs`); H8 says what on this
//! host stands in the way.

use std::net::IpAddr;

use ipnet::IpNet;

use super::reads::PROXY_UNITS;
use super::{Findings, HostInput, Severity};
use crate::inventory::{Cni, Distribution, Role};

/// A port a role needs, and what uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    pub udp: bool,
    pub what: &'static str,
}

const fn tcp(port: u16, what: &'static str) -> Port {
    Port {
        port,
        udp: false,
        what,
    }
}
const fn udp(port: u16, what: &'static str) -> Port {
    Port {
        port,
        udp: true,
        what,
    }
}

/// The ports this host's roles need open to its peers and free before install.
pub fn role_ports(input: &HostInput) -> Vec<Port> {
    let roles = &input.host.roles;
    let cluster = input.cluster;
    let mut ports = Vec::new();
    if roles.contains(&Role::Server) {
        ports.push(tcp(6443, "Kubernetes API"));
        ports.push(tcp(2379, "etcd client"));
        ports.push(tcp(2380, "etcd peer"));
        if cluster.distribution == Distribution::Kubeadm {
            ports.push(tcp(10257, "kube-controller-manager"));
            ports.push(tcp(10259, "kube-scheduler"));
        }
    }
    ports.push(tcp(10250, "kubelet"));
    match cluster.cni {
        Cni::Flannel => ports.push(udp(8472, "flannel VXLAN")),
        Cni::Calico => {
            ports.push(tcp(179, "calico BGP"));
            ports.push(udp(4789, "calico VXLAN"));
        }
    }
    if roles.contains(&Role::Nfs) {
        ports.push(tcp(2049, "NFS"));
    }
    ports
}

/// One listening socket from `ss -Hltnu`: protocol, local address, port.
pub fn listeners(input: &HostInput) -> Option<Vec<(bool, String, u16, String)>> {
    let cmd = input.ev.cmd("listen").filter(|c| c.ok())?;
    Some(
        cmd.lines
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let udp = *w.first()? == "udp";
                let local = w.get(4)?;
                let (addr, port) = local.rsplit_once(':')?;
                Some((
                    udp,
                    addr.to_string(),
                    port.parse().ok()?,
                    l.trim().to_string(),
                ))
            })
            .collect(),
    )
}

/// Whether the cluster software that owns these ports is installed: then a listener on
/// them is its own.
fn cluster_installed(input: &HostInput) -> bool {
    ["k3s", "kubelet"].iter().any(|b| input.ev.bin(b).is_some())
}

pub fn check(input: &HostInput, out: &mut Findings) {
    ports(input, out);
    firewall(input, out);
    proxy(input, out);
}

/// H8, part one: before install, nothing else may hold the ports the roles need.
fn ports(input: &HostInput, out: &mut Findings) {
    let Some(listening) = listeners(input) else {
        out.add(
            "H8",
            Severity::Skip,
            "ss is missing: listening ports not read",
        )
        .fix("sudo apt-get install -y iproute2");
        return;
    };
    let wanted = role_ports(input);
    let list = wanted
        .iter()
        .map(|p| format!("{}/{}", p.port, if p.udp { "udp" } else { "tcp" }))
        .collect::<Vec<_>>()
        .join(", ");
    if cluster_installed(input) {
        out.add(
            "H8",
            Severity::Ok,
            format!("cluster software installed: listeners on its ports ({list}) are its own"),
        );
        return;
    }
    let mut taken = false;
    for p in &wanted {
        let holders: Vec<&String> = listening
            .iter()
            .filter(|(udp, _, port, _)| *udp == p.udp && *port == p.port)
            .map(|(_, _, _, line)| line)
            .collect();
        if holders.is_empty() {
            continue;
        }
        taken = true;
        let proto = if p.udp { "udp" } else { "tcp" };
        let ss = if p.udp { "-lunp" } else { "-ltnp" };
        out.add(
            "H8",
            Severity::Error,
            format!(
                "port {}/{proto} ({}) is already taken before install",
                p.port, p.what
            ),
        )
        .evidence(holders.iter().map(|l| format!("ss -Hltnu: {l}")))
        .fix(format!(
            "sudo ss {ss} 'sport = :{}'   # find the process; stop or move it, the port is needed by the {}",
            p.port, p.what
        ));
    }
    if !taken {
        out.add(
            "H8",
            Severity::Ok,
            format!("the ports this host's roles need are free ({list})"),
        );
    }
}

/// H8, part two: an active host firewall must let the roles' ports through.
fn firewall(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let ports = role_ports(input);
    let ufw_on = ev.lines("/etc/ufw/ufw.conf").and_then(|l| {
        l.iter()
            .find(|l| {
                l.trim()
                    .replace(' ', "")
                    .eq_ignore_ascii_case("ENABLED=yes")
            })
            .cloned()
    });
    let firewalld_on = ev
        .cmd("firewalld")
        .filter(|c| c.lines.first().is_some_and(|l| l.trim() == "active"));
    if let Some(line) = ufw_on {
        let allow = ports
            .iter()
            .map(|p| {
                format!(
                    "sudo ufw allow {}/{}",
                    p.port,
                    if p.udp { "udp" } else { "tcp" }
                )
            })
            .collect::<Vec<_>>()
            .join(" && ");
        out.add(
            "H8",
            Severity::Warn,
            "ufw is enabled: the cluster's ports must be allowed (N4 shows what peers reach)",
        )
        .evidence([format!("/etc/ufw/ufw.conf: {}", line.trim())])
        .fix(allow);
    }
    if let Some(cmd) = firewalld_on {
        let add = ports
            .iter()
            .map(|p| {
                format!(
                    "--add-port={}/{}",
                    p.port,
                    if p.udp { "udp" } else { "tcp" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        out.add(
            "H8",
            Severity::Warn,
            "firewalld is active: the cluster's ports must be open (N4 shows what peers reach)",
        )
        .evidence(
            cmd.lines
                .iter()
                .map(|l| format!("systemctl is-active firewalld: {l}")),
        )
        .fix(format!(
            "sudo firewall-cmd --permanent {add} && sudo firewall-cmd --reload"
        ));
    }
}

/// Proxy settings from one source: where, the proxy line(s), and NO_PROXY's entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProxySource {
    pub source: String,
    /// A daemon's environment (a unit's drop-in or env file), not a login session's.
    pub daemon: bool,
    pub proxies: Vec<String>,
    pub no_proxy: Option<Vec<String>>,
    /// The file the fix edits (`None`: the session environment).
    pub file: Option<String>,
}

/// `KEY=VALUE` assignments of a line: shell/env lines, and systemd `Environment=` with
/// one or more quoted or bare assignments.
fn assignments(line: &str) -> Vec<(String, String)> {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let body = match line.strip_prefix("Environment=") {
        Some(rest) => rest,
        None => line,
    };
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (item, next) = if let Some(r) = rest.strip_prefix('"') {
            match r.split_once('"') {
                Some((item, next)) => (item, next),
                None => (r, ""),
            }
        } else {
            rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
        };
        if let Some((k, v)) = item.split_once('=') {
            out.push((k.trim().to_string(), v.trim_matches('"').to_string()));
        }
        rest = next.trim_start();
    }
    out
}

fn source_of(name: String, file: Option<String>, daemon: bool, lines: &[&str]) -> ProxySource {
    let mut s = ProxySource {
        source: name,
        daemon,
        file,
        ..ProxySource::default()
    };
    for line in lines {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for (k, v) in assignments(line) {
            match k.to_ascii_lowercase().as_str() {
                "http_proxy" | "https_proxy" | "all_proxy" if !v.is_empty() => {
                    s.proxies.push(format!("{k}={v}"))
                }
                "no_proxy" => {
                    s.no_proxy = Some(
                        v.split(',')
                            .map(|e| e.trim().to_string())
                            .filter(|e| !e.is_empty())
                            .collect(),
                    )
                }
                _ => {}
            }
        }
    }
    s
}

/// Every proxy setting doctor can see: the login session, `/etc/environment`, each
/// unit's drop-ins (merged per unit, as systemd does) and k3s's env files.
pub fn proxy_sources(input: &HostInput) -> Vec<ProxySource> {
    let ev = input.ev;
    let mut out = Vec::new();
    if let Some(c) = ev.cmd("proxy_env") {
        let lines: Vec<&str> = c.lines.iter().map(String::as_str).collect();
        out.push(source_of(
            "the login environment".into(),
            None,
            false,
            &lines,
        ));
    }
    if let Some(l) = ev.lines("/etc/environment") {
        let lines: Vec<&str> = l.iter().map(String::as_str).collect();
        out.push(source_of(
            "/etc/environment".into(),
            Some("/etc/environment".into()),
            false,
            &lines,
        ));
    }
    for unit in PROXY_UNITS {
        let dir = format!("/etc/systemd/system/{unit}.service.d");
        let files = ev.files_under(&[dir.as_str()]);
        let mut lines: Vec<&str> = Vec::new();
        let mut last = None;
        for (path, content) in &files {
            lines.extend(content.iter().map(String::as_str));
            last = Some(path.to_string());
        }
        let env_file = format!("/etc/systemd/system/{unit}.service.env");
        if let Some(l) = ev.lines(&env_file) {
            lines.extend(l.iter().map(String::as_str));
            last.get_or_insert(env_file);
        }
        if !lines.is_empty() {
            out.push(source_of(format!("{unit}.service"), last, true, &lines));
        }
    }
    out.retain(|s| !s.proxies.is_empty());
    out
}

/// Whether NO_PROXY `entries` cover `want` (an address, a CIDR or a host name) the way
/// Go's and curl's proxy rules read them: `*`, an equal host or IP, a CIDR containing
/// the address (or the whole CIDR), or a domain suffix.
pub fn covered(entries: &[String], want: &str) -> bool {
    let want_host = want.rsplit_once(':').map_or(want, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') {
            h
        } else {
            want
        }
    });
    entries.iter().any(|e| {
        let e = e.trim();
        let e_host = e.split_once(':').map_or(e, |(h, _)| h);
        if e == "*" {
            return true;
        }
        if let Ok(net) = e.parse::<IpNet>() {
            if let Ok(ip) = want_host.parse::<IpAddr>() {
                return net.contains(&ip);
            }
            if let Ok(w) = want_host.parse::<IpNet>() {
                return net.contains(&w);
            }
            return false;
        }
        if e_host.eq_ignore_ascii_case(want_host) {
            return true;
        }
        let suffix = e_host.trim_start_matches('.');
        !suffix.is_empty()
            && want_host.parse::<IpAddr>().is_err()
            && want_host
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
    })
}

/// What NO_PROXY must cover on every node: loopback, the pod and service CIDRs, the
/// mirror and every node's address.
pub fn must_bypass(input: &HostInput) -> Vec<String> {
    let mut want = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        input.cluster.pod_cidr.to_string(),
        input.cluster.service_cidr.to_string(),
    ];
    if let Some(m) = &input.plan.mirror {
        // The host alone: curl's NO_PROXY does not read ports.
        let host = match m.mirror.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => m.mirror.as_str(),
        };
        want.push(host.to_string());
    }
    for p in &input.plan.probes {
        if !want.contains(&p.addr) {
            want.push(p.addr.clone());
        }
    }
    want
}

/// H9: a proxy is fine when NO_PROXY keeps cluster-internal traffic off it.
fn proxy(input: &HostInput, out: &mut Findings) {
    let sources = proxy_sources(input);
    if sources.is_empty() {
        out.add("H9", Severity::Ok, "no proxy configured");
        return;
    }
    let want = must_bypass(input);
    for s in sources {
        let entries = s.no_proxy.clone().unwrap_or_default();
        let missing: Vec<&String> = want.iter().filter(|w| !covered(&entries, w)).collect();
        let mut evidence = s.proxies.clone();
        evidence.push(match &s.no_proxy {
            Some(e) => format!("NO_PROXY={}", e.join(",")),
            None => "NO_PROXY: not set".to_string(),
        });
        if missing.is_empty() {
            out.add(
                "H9",
                Severity::Ok,
                format!("{}: proxy set, NO_PROXY covers the cluster", s.source),
            )
            .evidence(evidence);
            continue;
        }
        let mut full = entries.clone();
        full.extend(missing.iter().map(|m| m.to_string()));
        let value = full.join(",");
        let missing_text = missing
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let (severity, title, fix) = match (&s.file, s.daemon) {
            (Some(file), true) => {
                let unit = s.source.clone();
                let fix = if file.ends_with(".env") {
                    format!(
                        "sudo sed -i -E '/^(NO_PROXY|no_proxy)=/d' {file} && echo 'NO_PROXY={value}' | sudo tee -a {file} && sudo systemctl restart {unit}"
                    )
                } else {
                    format!(
                        "printf '[Service]\\nEnvironment=\"NO_PROXY={value}\"\\n' | sudo tee {dir}/zz-no-proxy.conf && sudo systemctl daemon-reload && sudo systemctl restart {unit}",
                        dir = file.rsplit_once('/').map_or("", |(d, _)| d)
                    )
                };
                (
                    Severity::Error,
                    format!(
                        "{unit} uses a proxy, and NO_PROXY misses {missing_text}: image pulls from the mirror and cluster traffic go to the proxy"
                    ),
                    fix,
                )
            }
            (Some(file), false) => (
                Severity::Warn,
                format!(
                    "{file} sets a proxy, and NO_PROXY misses {missing_text}: tools run from a login shell send cluster traffic to the proxy"
                ),
                format!(
                    "sudo sed -i -E '/^(NO_PROXY|no_proxy)=/d' {file} && echo 'NO_PROXY={value}' | sudo tee -a {file}"
                ),
            ),
            (None, _) => (
                Severity::Warn,
                format!(
                    "the login environment sets a proxy, and NO_PROXY misses {missing_text}: kubectl and curl from this shell go to the proxy"
                ),
                format!("export NO_PROXY={value}   # in the profile that sets the proxy"),
            ),
        };
        out.add("H9", severity, title).evidence(evidence).fix(fix);
    }
}

#[cfg(test)]
#[path = "host_net_tests.rs"]
mod tests;
