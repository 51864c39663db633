//! Network paths between the nodes (N4): every host probed the peer ports of every
//! inventory host (6443 on servers, 10250 everywhere, 2049 on the NFS server) in its one
//! evidence script. A probe is judged against what the *target* host said listens: a
//! port nothing listens on yet (before install) is "not applicable yet", never a failure.

use std::collections::BTreeMap;

use super::reads::Probe;
use super::{Finding, Findings, Severity};

/// What one host contributes: its name, its probe results (`addr:port` → open, closed
/// or timeout) and the TCP ports it listens on (`None` when it could not tell).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerView {
    pub host: String,
    pub results: BTreeMap<String, String>,
    /// Whether the host could probe at all (bash present).
    pub can_probe: bool,
    pub listening: Option<Vec<(String, u16)>>,
}

impl PeerView {
    pub fn of(host: &str, ev: &super::Evidence) -> PeerView {
        let results = ev
            .all("probe")
            .iter()
            .filter_map(|v| {
                let (k, r) = v.rsplit_once(' ')?;
                Some((k.to_string(), r.to_string()))
            })
            .collect();
        let listening = ev.cmd("listen").filter(|c| c.ok()).map(|c| {
            c.lines
                .iter()
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    if *w.first()? != "tcp" {
                        return None;
                    }
                    let (addr, port) = w.get(4)?.rsplit_once(':')?;
                    Some((addr.to_string(), port.parse().ok()?))
                })
                .collect()
        });
        PeerView {
            host: host.to_string(),
            results,
            can_probe: ev.get("probe_tool") != Some("none"),
            listening,
        }
    }

    /// Whether something listens on `port` where peers can reach it (not only loopback).
    fn listens(&self, port: u16) -> Option<bool> {
        self.listening.as_ref().map(|l| {
            l.iter().any(|(addr, p)| {
                *p == port && !addr.starts_with("127.") && addr != "[::1]" && addr != "::1"
            })
        })
    }
}

/// Why a port matters, for the titles.
fn what(port: u16) -> &'static str {
    match port {
        6443 => "Kubernetes API",
        10250 => "kubelet",
        2049 => "NFS",
        _ => "cluster",
    }
}

/// N4 for every host that answered: one error per peer port it cannot reach, else one
/// ok (or one skip when nothing listens anywhere yet).
pub fn check(probes: &[Probe], views: &[PeerView]) -> Vec<Finding> {
    let mut all = Vec::new();
    let by_host: BTreeMap<&str, &PeerView> = views.iter().map(|v| (v.host.as_str(), v)).collect();
    for from in views {
        let mut out = Findings::new(&from.host);
        if probes.is_empty() {
            out.add(
                "N4",
                Severity::Skip,
                "no peer addresses in the inventory (internal_address) to probe",
            );
            all.extend(out.list);
            continue;
        }
        if !from.can_probe {
            out.add(
                "N4",
                Severity::Skip,
                "bash is missing: peer ports not probed",
            );
            all.extend(out.list);
            continue;
        }
        let from_addr = probes
            .iter()
            .find(|p| p.host == from.host)
            .map(|p| p.addr.as_str());
        let (mut reached, mut waiting) = (0, Vec::new());
        for p in probes.iter().filter(|p| p.host != from.host) {
            let target = by_host.get(p.host.as_str());
            match target.and_then(|t| t.listens(p.port)) {
                None => {
                    waiting.push(format!("{}:{} (its listeners unknown)", p.host, p.port));
                    continue;
                }
                Some(false) => {
                    waiting.push(format!("{}:{}", p.host, p.port));
                    continue;
                }
                Some(true) => {}
            }
            let result = from
                .results
                .get(&p.key())
                .map_or("not probed", String::as_str);
            if result == "open" {
                reached += 1;
                continue;
            }
            let why = match result {
                "timeout" => "no answer: a firewall drops it",
                "closed" => "refused or unreachable: a firewall rejects it, or no route",
                _ => "not probed",
            };
            out.add(
                "N4",
                Severity::Error,
                format!(
                    "node {} cannot reach {}:{} ({}): {why}",
                    from.host, p.host, p.port, what(p.port)
                ),
            )
            .evidence([
                format!("from {}: bash /dev/tcp/{} → {result}", from.host, p.key()),
                format!("on {}: ss -ltn shows a listener on port {}", p.host, p.port),
            ])
            .fix(format!(
                "on {target}: sudo iptables -I INPUT -p tcp --dport {port} -s {src} -j ACCEPT   # ufw: sudo ufw allow from {src} to any port {port} proto tcp; firewalld: sudo firewall-cmd --permanent --add-port={port}/tcp && sudo firewall-cmd --reload; then on {from}: ip route get {addr}",
                target = p.host,
                port = p.port,
                src = from_addr.unwrap_or("NODE_IP"),
                from = from.host,
                addr = p.addr,
            ));
        }
        if out.list.is_empty() {
            if reached == 0 {
                out.add(
                    "N4",
                    Severity::Skip,
                    "not applicable yet: nothing listens on the peers' cluster ports (before install)",
                )
                .evidence(super::head(&waiting, 6));
            } else {
                out.add(
                    "N4",
                    Severity::Ok,
                    format!("reaches every listening peer port ({reached})"),
                )
                .evidence(
                    super::head(&waiting, 6)
                        .into_iter()
                        .map(|w| format!("not listening yet: {w}")),
                );
            }
        }
        all.extend(out.list);
    }
    all
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
