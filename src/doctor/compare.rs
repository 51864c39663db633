//! Across hosts: the odd one out (kernel, cgroup version, sysctls, iptables backend, MTU,
//! GPU count per GPU type, driver version, docker's cgroup driver), duplicate hostnames
//! (H7) and clock skew measured on every host in the same moment (H12).
//!
//! A value most hosts share is taken as intended and the others are flagged on their own
//! host; when no value has a majority the finding is about the cluster.

use std::collections::BTreeMap;

use super::{CLUSTER, Finding, Findings, HostInput, Severity};

/// The comparable facts of one host, taken from its evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub host: String,
    pub kernel: String,
    pub cgroup: String,
    pub sysctls: Vec<(String, String)>,
    pub iptables: Option<String>,
    pub mtu: Option<String>,
    pub hostname: String,
    pub hostname_persisted: Option<String>,
    pub gpu_host: bool,
    pub gpu_type: Option<String>,
    pub gpu_count: Option<u32>,
    pub driver: Option<String>,
    pub cgroup_driver: Option<String>,
    /// Bounds on the host clock's offset from this machine's, in ns: the host read its
    /// clock after we sent and before we received.
    pub offset_ns: Option<(i128, i128)>,
}

impl Facts {
    pub fn of(input: &HostInput) -> Facts {
        let ev = input.ev;
        let cgroup = match ev.get("cgroup_fs") {
            Some("cgroup2fs") => "v2",
            Some("tmpfs") => "v1",
            _ => "unknown",
        };
        let sysctls = ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"]
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    ev.get(&format!("sysctl.{k}"))
                        .unwrap_or("absent")
                        .to_string(),
                )
            })
            .collect();
        let iptables = ev
            .cmd("iptables_version")
            .filter(|c| c.ok())
            .and_then(|c| c.lines.first())
            .and_then(|l| super::host::parse_iptables(l))
            .map(|(_, mode)| mode);
        let gpu_host = super::gpu::is_gpu_host(input);
        let driver = super::gpu::smi_driver(ev);
        let cgroup_driver = ev
            .lines("/etc/docker/daemon.json")
            .and_then(|l| super::runtime::parse_daemon_json(l).ok())
            .map(|d| d.cgroup_driver.unwrap_or_else(|| "cgroupfs".into()));
        let offset_ns = match (
            ev.get("time_start").and_then(|v| v.parse::<i128>().ok()),
            ev.get("time_end").and_then(|v| v.parse::<i128>().ok()),
        ) {
            // start ≥ sent + offset and end ≤ received + offset.
            (Some(start), Some(end)) if ev.sent_ns > 0 => {
                Some((end - ev.received_ns, start - ev.sent_ns))
            }
            _ => None,
        };
        Facts {
            host: input.host.name.clone(),
            kernel: ev.get("kernel").unwrap_or("").to_string(),
            cgroup: cgroup.to_string(),
            sysctls,
            iptables,
            mtu: default_mtu(input),
            hostname: ev.get("uname_n").unwrap_or("").to_string(),
            hostname_persisted: ev
                .lines("/etc/hostname")
                .and_then(|l| l.first())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            gpu_host,
            gpu_type: input.host.labels.get("gpu-type").cloned(),
            gpu_count: super::gpu::smi_gpus(input).map(|g| g.len() as u32),
            driver,
            cgroup_driver,
            offset_ns,
        }
    }
}

/// The MTU of the interface the default route leaves by.
fn default_mtu(input: &HostInput) -> Option<String> {
    let route = input.ev.cmd("ip_route")?;
    let dev = route
        .lines
        .iter()
        .find(|l| l.starts_with("default "))?
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)?
        .to_string();
    let link = input.ev.cmd("ip_link")?;
    link.lines.iter().find_map(|l| {
        let name = l.split(": ").nth(1)?.split('@').next()?;
        if name != dev {
            return None;
        }
        let mtu = l.split_whitespace().skip_while(|w| *w != "mtu").nth(1)?;
        Some(format!("{mtu} ({dev})"))
    })
}

/// Clock skew above which hosts disagree too much for TLS and etcd.
const MAX_SKEW_NS: i128 = 1_000_000_000;

/// Every cross-host check. `all_hosts` is the inventory's host names (for uniqueness
/// messages); `facts` are the hosts that answered.
pub fn check(facts: &[Facts]) -> Vec<Finding> {
    let mut out = Vec::new();
    duplicate_hostnames(facts, &mut out);
    skew(facts, &mut out);
    let all: Vec<&Facts> = facts.iter().collect();
    odd_one_out(&all, "C1", "kernel", |f| Some(f.kernel.clone()), &mut out);
    odd_one_out(
        &all,
        "C2",
        "cgroup version",
        |f| Some(f.cgroup.clone()),
        &mut out,
    );
    odd_one_out(
        &all,
        "C3",
        "forwarding sysctls",
        |f| {
            Some(
                f.sysctls
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        },
        &mut out,
    );
    odd_one_out(
        &all,
        "C4",
        "iptables backend",
        |f| f.iptables.clone(),
        &mut out,
    );
    odd_one_out(
        &all,
        "N3",
        "MTU of the default-route interface",
        |f| {
            f.mtu
                .as_ref()
                .map(|m| m.split(' ').next().unwrap_or("").to_string())
        },
        &mut out,
    );
    odd_one_out(
        &all,
        "R3",
        "docker cgroup driver",
        |f| f.cgroup_driver.clone(),
        &mut out,
    );
    let gpu: Vec<&Facts> = facts.iter().filter(|f| f.gpu_host).collect();
    let mut by_type: BTreeMap<Option<String>, Vec<&Facts>> = BTreeMap::new();
    for f in &gpu {
        by_type.entry(f.gpu_type.clone()).or_default().push(f);
    }
    for (gpu_type, hosts) in by_type {
        let what = match gpu_type {
            Some(t) => format!("GPU count among gpu-type={t} hosts"),
            None => "GPU count among GPU hosts".to_string(),
        };
        odd_one_out(
            &hosts,
            "C5",
            &what,
            |f| f.gpu_count.map(|n| n.to_string()),
            &mut out,
        );
    }
    odd_one_out(
        &gpu,
        "C6",
        "NVIDIA driver version",
        |f| f.driver.clone(),
        &mut out,
    );
    out
}

fn finding(id: &str, host: &str, severity: Severity, title: String) -> Finding {
    let mut f = Findings::new(host);
    f.add(id, severity, title);
    f.list.remove(0)
}

/// Flags hosts whose value differs from the majority. Hosts without a value are left out
/// (their own checks say why).
fn odd_one_out(
    hosts: &[&Facts],
    id: &str,
    what: &str,
    value: impl Fn(&Facts) -> Option<String>,
    out: &mut Vec<Finding>,
) {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for f in hosts {
        let Some(v) = value(f) else { continue };
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, names)) => names.push(&f.host),
            None => groups.push((v, vec![&f.host])),
        }
    }
    if groups.len() < 2 {
        return;
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    let evidence: Vec<String> = groups
        .iter()
        .map(|(v, names)| format!("{v}: {}", names.join(", ")))
        .collect();
    let (major, major_hosts) = (&groups[0].0, groups[0].1.len());
    if major_hosts > groups[1].1.len() {
        for (v, names) in &groups[1..] {
            for name in names {
                let mut f = finding(
                    id,
                    name,
                    Severity::Warn,
                    format!("{what} is {v}, while {major_hosts} other host(s) have {major}"),
                );
                f.evidence = evidence.clone();
                f.fix = Some(format!("make this host match the others ({major})"));
                out.push(f);
            }
        }
    } else {
        let mut f = finding(
            id,
            CLUSTER,
            Severity::Warn,
            format!("hosts disagree on the {what}"),
        );
        f.evidence = evidence;
        f.fix = Some("pick one and align the hosts".to_string());
        out.push(f);
    }
}

/// H7 across hosts: two hosts with one name become one Kubernetes node. The name that
/// counts is the one the host has after a reboot (/etc/hostname), else the live one.
/// When some hosts of a group carry their inventory name, the others are the culprits.
fn duplicate_hostnames(facts: &[Facts], out: &mut Vec<Finding>) {
    let mut by_name: BTreeMap<&str, Vec<&Facts>> = BTreeMap::new();
    for f in facts {
        let mut names = vec![f.hostname.as_str()];
        if let Some(p) = &f.hostname_persisted
            && p != &f.hostname
        {
            names.push(p.as_str());
        }
        for n in names {
            by_name.entry(n).or_default().push(f);
        }
    }
    for (name, group) in by_name {
        if group.len() < 2 || name.is_empty() {
            continue;
        }
        let owners: Vec<&&Facts> = group.iter().filter(|f| f.host == name).collect();
        let culprits: Vec<&&Facts> = if owners.is_empty() {
            group.iter().collect()
        } else {
            group.iter().filter(|f| f.host != name).collect()
        };
        let hosts: Vec<&str> = group.iter().map(|f| f.host.as_str()).collect();
        for f in culprits {
            let mut finding = finding(
                "H7",
                &f.host,
                Severity::Error,
                format!(
                    "hostname {name} is also used by {}: they would register as one Kubernetes node",
                    hosts
                        .iter()
                        .filter(|h| **h != f.host)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            finding.evidence = group
                .iter()
                .map(|g| {
                    format!(
                        "{}: uname -n {}, /etc/hostname {}",
                        g.host,
                        g.hostname,
                        g.hostname_persisted.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            finding.fix = Some(format!("sudo hostnamectl set-hostname {}", f.host));
            out.push(finding);
        }
    }
}

/// H12 across hosts: the spread of clock offsets. Each host's offset is known within an
/// interval (its round trip); skew is reported only when the intervals prove it.
fn skew(facts: &[Facts], out: &mut Vec<Finding>) {
    let known: Vec<(&str, (i128, i128))> = facts
        .iter()
        .filter_map(|f| f.offset_ns.map(|o| (f.host.as_str(), o)))
        .collect();
    if known.len() < 2 {
        return;
    }
    let mid = |(lo, hi): (i128, i128)| (lo + hi) / 2;
    let (fast_host, fast) = known
        .iter()
        .max_by_key(|(_, o)| o.0)
        .copied()
        .unwrap_or(known[0]);
    let (slow_host, slow) = known
        .iter()
        .min_by_key(|(_, o)| o.1)
        .copied()
        .unwrap_or(known[0]);
    // The smallest skew consistent with every measurement.
    let proven = fast.0 - slow.1;
    let evidence: Vec<String> = known
        .iter()
        .map(|(h, o)| {
            format!(
                "{h}: offset {:+.3} s (±{:.3} s) from this machine",
                mid(*o) as f64 / 1e9,
                (o.1 - o.0) as f64 / 2e9
            )
        })
        .collect();
    if proven > MAX_SKEW_NS {
        let mut f = finding(
            "H12",
            CLUSTER,
            Severity::Error,
            format!(
                "clocks differ by at least {:.1} s ({fast_host} ahead of {slow_host}): TLS and etcd break",
                proven as f64 / 1e9
            ),
        );
        f.evidence = evidence;
        f.fix = Some("run one time source for the cluster (chrony) and point every host at it; see H12 on each host".into());
        out.push(f);
    } else {
        let spread = known.iter().map(|(_, o)| mid(*o)).max().unwrap_or(0)
            - known.iter().map(|(_, o)| mid(*o)).min().unwrap_or(0);
        let width = known.iter().map(|(_, o)| o.1 - o.0).max().unwrap_or(0);
        let mut f = finding(
            "H12",
            CLUSTER,
            Severity::Ok,
            format!(
                "clocks agree: spread {:.3} s (±{:.3} s), read on every host at once",
                spread as f64 / 1e9,
                width as f64 / 2e9
            ),
        );
        f.evidence = evidence;
        out.push(f);
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
