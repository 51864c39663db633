//! Host checks (H1, H3, H4, H6, H7, H10, H12, H13): what a host needs before Kubernetes
//! can run on it. What must also survive a reboot (H2, H5, H11) is in `boot.rs`.

use ipnet::IpNet;

use super::{Findings, HostInput, Severity};
use crate::inventory::Role;
use crate::transport::SudoMode;

/// Minimums kubeadm enforces on a control-plane node.
const SERVER_MIN_CPUS: u32 = 2;
const SERVER_MIN_MEM_MIB: u64 = 1700;

pub fn check(input: &HostInput, out: &mut Findings) {
    privileges_and_size(input, out);
    kernel(input, out);
    cgroups(input, out);
    binaries(input, out);
    hostname(input, out);
    routes(input, out);
    time_sync(input, out);
    disk(input, out);
}

/// H1: root or sudo, and enough CPUs and memory for the host's roles.
fn privileges_and_size(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let user = ev.get("user").unwrap_or("the login user");
    let how = match input.sudo {
        SudoMode::Root => "logged in as root",
        SudoMode::NoPassword => "sudo without a password",
        SudoMode::Password => "sudo with the inventory's password",
        SudoMode::Unavailable => {
            out.add(
                "H1",
                Severity::Error,
                format!("{user} cannot become root: install and every fix need root"),
            )
            .evidence([format!("id -u: {}", ev.get("uid").unwrap_or("?")), "sudo -n true: refused, and no working sudo password".to_string()])
            .fix(format!(
                "as root on the host: echo '{user} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{user} && chmod 0440 /etc/sudoers.d/{user}   # or set ssh.sudo_password in the inventory"
            ));
            ""
        }
    };
    let cpus: u32 = ev.get("nproc").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mem_mib: u64 = ev
        .get("meminfo_kib")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    let evidence = [format!("nproc: {cpus}"), format!("MemTotal: {mem_mib} MiB")];
    let server = input.host.roles.contains(&Role::Server);
    let mut small = Vec::new();
    if server && cpus < SERVER_MIN_CPUS {
        small.push(format!(
            "{cpus} CPU(s), a server needs at least {SERVER_MIN_CPUS}"
        ));
    }
    if server && mem_mib < SERVER_MIN_MEM_MIB {
        small.push(format!(
            "{mem_mib} MiB of memory, a server needs at least {SERVER_MIN_MEM_MIB} MiB"
        ));
    }
    if !small.is_empty() {
        out.add(
            "H1",
            Severity::Error,
            format!("too small for a server: {}", small.join("; ")),
        )
        .evidence(evidence)
        .fix("give the machine more CPUs/memory, or make it a worker (roles: [worker])");
    } else if !how.is_empty() {
        out.add(
            "H1",
            Severity::Ok,
            format!("{how}; {cpus} CPUs, {:.1} GiB", mem_mib as f64 / 1024.0),
        )
        .evidence(evidence);
    }
}

/// H3: kernel version, and the options Kubernetes and the CNI need in its config.
fn kernel(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let release = ev.get("kernel").unwrap_or("");
    let version = parse_kernel_version(release);
    match version {
        Some(v) if v < (4, 19) => {
            out.add(
                "H3",
                Severity::Warn,
                format!("kernel {release} is older than 4.19, the oldest Kubernetes supports"),
            )
            .evidence([format!("uname -r: {release}")])
            .fix("install and boot your distribution's current kernel (e.g. linux-image-generic), then reboot");
        }
        _ => {}
    }
    let Some(source) = ev.get("kconfig_source") else {
        out.add(
            "H3",
            Severity::Skip,
            format!(
                "kernel {release}: config not readable (no /proc/config.gz, no /boot/config-{release})"
            ),
        );
        return;
    };
    let lines = ev
        .cmd("kconfig")
        .map(|c| c.lines.clone())
        .unwrap_or_default();
    let mut missing = Vec::new();
    for opt in super::evidence::KERNEL_OPTIONS {
        let set = lines.iter().any(|l| {
            l.strip_prefix(&format!("CONFIG_{opt}="))
                .is_some_and(|v| v == "y" || v == "m")
        });
        if !set {
            missing.push(format!("CONFIG_{opt}"));
        }
    }
    if missing.is_empty() {
        out.add(
            "H3",
            Severity::Ok,
            format!("kernel {release}: every required option is set ({source})"),
        );
    } else {
        out.add(
            "H3",
            Severity::Error,
            format!("kernel {release} lacks {}", missing.join(", ")),
        )
        .evidence(missing.iter().map(|o| format!("{source}: {o} is not set")))
        .fix(
            "boot a kernel built with these options (your distribution's generic kernel has them)",
        );
    }
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The names of `needed` that the space-separated list `have` lacks.
fn absent<'a>(needed: &[&'a str], have: &str) -> Vec<&'a str> {
    let have: Vec<&str> = have.split_whitespace().collect();
    needed
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect()
}

/// H4: cgroup v2 with the controllers kubelet needs; v1 still works but is on its way out.
fn cgroups(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let fs = ev.get("cgroup_fs").unwrap_or("");
    let needed = ["cpu", "cpuset", "memory", "pids"];
    let grub_fix = "sudo sed -i 's/^GRUB_CMDLINE_LINUX=\"/&systemd.unified_cgroup_hierarchy=1 /' /etc/default/grub && sudo update-grub && sudo reboot";
    match fs {
        "cgroup2fs" => {
            let controllers = ev.get("cgroup_controllers").unwrap_or("");
            let missing = absent(&needed, controllers);
            if missing.is_empty() {
                out.add(
                    "H4",
                    Severity::Ok,
                    "cgroup v2 with cpu, cpuset, memory, pids",
                )
                .evidence([format!("cgroup.controllers: {controllers}")]);
            } else {
                out.add(
                    "H4",
                    Severity::Error,
                    format!("cgroup v2 without the {} controller(s)", missing.join(", ")),
                )
                .evidence([format!("/sys/fs/cgroup/cgroup.controllers: {controllers}")])
                .fix("enable them on the kernel command line (e.g. cgroup_enable=memory cgroup_enable=cpuset), update-grub, reboot");
            }
        }
        "tmpfs" => {
            let dirs = ev.get("cgroup_dirs").unwrap_or("");
            let missing = absent(&needed, dirs);
            if missing.is_empty() {
                out.add(
                    "H4",
                    Severity::Warn,
                    "cgroup v1: works, but Kubernetes 1.31+ keeps v1 in maintenance only",
                )
                .evidence([format!("/sys/fs/cgroup is tmpfs with: {dirs}")])
                .fix(grub_fix);
            } else {
                out.add(
                    "H4",
                    Severity::Error,
                    format!("cgroup v1 without the {} hierarchy", missing.join(", ")),
                )
                .evidence([format!("/sys/fs/cgroup is tmpfs with: {dirs}")])
                .fix(grub_fix);
            }
        }
        other => {
            out.add(
                "H4",
                Severity::Error,
                format!("no cgroup filesystem at /sys/fs/cgroup (type {other:?})"),
            )
            .fix(grub_fix);
        }
    }
}

/// H6: the binaries kubelet and the install shell out to, and a usable iptables.
fn binaries(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let packages = |os: &str| -> [(&'static str, &'static str); 4] {
        let rpm = matches!(os, "rhel" | "centos" | "rocky" | "almalinux" | "fedora");
        [
            ("ip", if rpm { "iproute" } else { "iproute2" }),
            ("iptables", "iptables"),
            ("mount", if rpm { "util-linux" } else { "mount" }),
            ("nsenter", "util-linux"),
        ]
    };
    let os_id = os_release_value(input, "ID").unwrap_or_default();
    let missing: Vec<(&str, &str)> = packages(&os_id)
        .into_iter()
        .filter(|(bin, _)| ev.bin(bin).is_none())
        .collect();
    if !missing.is_empty() {
        let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        pkgs.dedup();
        let installer = if matches!(
            os_id.as_str(),
            "rhel" | "centos" | "rocky" | "almalinux" | "fedora"
        ) {
            "sudo dnf install -y"
        } else {
            "sudo apt-get install -y"
        };
        out.add(
            "H6",
            Severity::Error,
            format!(
                "missing {}",
                missing
                    .iter()
                    .map(|(b, _)| *b)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .evidence(
            missing
                .iter()
                .map(|(b, _)| format!("command -v {b}: not found")),
        )
        .fix(format!(
            "{installer} {}   # from your local package mirror or the bundle's packages/",
            pkgs.join(" ")
        ));
    }
    if let Some(cmd) = ev.cmd("iptables_version").filter(|c| c.ok()) {
        let line = cmd.lines.first().cloned().unwrap_or_default();
        match parse_iptables(&line) {
            Some((version, mode)) if mode == "nf_tables" && version < (1, 8, 4) => {
                out.add(
                    "H6",
                    Severity::Error,
                    format!("iptables {line}: nft mode before 1.8.4 breaks kube-proxy rules"),
                )
                .evidence([line.clone()])
                .fix("sudo update-alternatives --set iptables /usr/sbin/iptables-legacy && sudo update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy");
            }
            _ if missing.is_empty() => {
                out.add(
                    "H6",
                    Severity::Ok,
                    format!("ip, iptables, mount, nsenter present; {line}"),
                )
                .evidence([line.clone()]);
            }
            _ => {}
        }
    }
}

/// `iptables v1.8.9 (nf_tables)` → ((1, 8, 9), "nf_tables"); plain `v1.6.1` is legacy.
pub fn parse_iptables(line: &str) -> Option<((u32, u32, u32), String)> {
    let rest = line.split_once(" v")?.1;
    let (ver, mode) = match rest.split_once(' ') {
        Some((v, m)) => (v, m.trim_matches(|c| c == '(' || c == ')').to_string()),
        None => (rest, "legacy".to_string()),
    };
    let mut nums = ver.split('.').map(|n| n.parse::<u32>().ok());
    let v = (
        nums.next()??,
        nums.next().flatten().unwrap_or(0),
        nums.next().flatten().unwrap_or(0),
    );
    Some((v, mode))
}

/// A value from /etc/os-release, unquoted.
pub fn os_release_value(input: &HostInput, key: &str) -> Option<String> {
    input.ev.lines("/etc/os-release")?.iter().find_map(|l| {
        l.strip_prefix(&format!("{key}="))
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// Whether `name` is a DNS-1123 subdomain (what Kubernetes accepts as a node name).
pub fn is_dns1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// H7 (this host's part; uniqueness is in `compare.rs`): a valid name that resolves, and
/// one that stays the same after a reboot.
fn hostname(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let live = ev.get("uname_n").unwrap_or("").to_string();
    let persisted = ev
        .lines("/etc/hostname")
        .and_then(|l| l.first())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let mut bad = false;
    for name in std::iter::once(&live).chain(persisted.iter()) {
        if !is_dns1123(name) {
            bad = true;
            let lower = name.to_ascii_lowercase().replace('_', "-");
            out.add(
                "H7",
                Severity::Error,
                format!("hostname {name:?} is not a valid Kubernetes node name (DNS-1123: lowercase letters, digits, '-', '.')"),
            )
            .evidence([format!("uname -n: {live}"), format!("/etc/hostname: {}", persisted.clone().unwrap_or_default())])
            .fix(format!("sudo hostnamectl set-hostname {lower}"));
            break;
        }
    }
    if let Some(p) = &persisted
        && *p != live
    {
        bad = true;
        out.add(
            "H7",
            Severity::Warn,
            format!("the hostname changes from {live} to {p} at the next reboot (/etc/hostname)"),
        )
        .evidence([format!("uname -n: {live}"), format!("/etc/hostname:1: {p}")])
        .fix(format!(
            "sudo hostnamectl set-hostname {live}   # or {p}, whichever is meant"
        ));
    }
    let resolves = ev.cmd("getent").is_some_and(|c| c.ok());
    if !resolves {
        bad = true;
        let ip = input
            .host
            .internal_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "NODE_IP".to_string());
        out.add(
            "H7",
            Severity::Error,
            format!("hostname {live} does not resolve on the host itself"),
        )
        .evidence([format!("getent hosts {live}: no answer")])
        .fix(format!("echo '{ip} {live}' | sudo tee -a /etc/hosts"));
    }
    if !bad {
        let note = if live == input.host.name {
            String::new()
        } else {
            format!(" (inventory name {})", input.host.name)
        };
        let mut evidence = vec![format!("uname -n: {live}")];
        if let Some(c) = ev.cmd("getent") {
            evidence.extend(c.lines.iter().map(|l| format!("getent hosts: {l}")));
        }
        out.add(
            "H7",
            Severity::Ok,
            format!("hostname {live} is valid and resolves{note}"),
        )
        .evidence(evidence);
    }
}

/// Interfaces the cluster itself creates; their routes inside the pod CIDR are expected.
const CLUSTER_IFACES: &[&str] = &[
    "cni0",
    "flannel.1",
    "flannel-v6.1",
    "tunl0",
    "vxlan.calico",
    "kube-ipvs0",
    "nodelocaldns",
];

/// H10: a route into the pod or service CIDR means pod traffic would go somewhere else.
fn routes(input: &HostInput, out: &mut Findings) {
    let Some(cmd) = input.ev.cmd("ip_route").filter(|c| c.ok()) else {
        out.add("H10", Severity::Skip, "`ip route` did not answer (see H6)");
        return;
    };
    let cidrs = [
        ("pod_cidr", input.cluster.pod_cidr),
        ("service_cidr", input.cluster.service_cidr),
    ];
    let mut clashes = Vec::new();
    for line in &cmd.lines {
        let mut words = line.split_whitespace();
        let Some(dest) = words.next() else { continue };
        let dev = line
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("");
        if CLUSTER_IFACES.contains(&dev) || dev.starts_with("cali") || dev.starts_with("veth") {
            continue;
        }
        let net: IpNet = match dest.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match dest.parse::<std::net::IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => continue, // `default`, `unreachable`, …
            },
        };
        for (key, cidr) in &cidrs {
            if net.contains(&cidr.network()) || cidr.contains(&net.network()) {
                clashes.push(format!("{line}   (overlaps cluster.{key} {cidr})"));
            }
        }
    }
    if clashes.is_empty() {
        out.add(
            "H10",
            Severity::Ok,
            format!(
                "no route overlaps the pod ({}) or service ({}) CIDR",
                input.cluster.pod_cidr, input.cluster.service_cidr
            ),
        );
    } else {
        out.add(
            "H10",
            Severity::Error,
            "a route on this host overlaps the pod or service CIDR",
        )
        .evidence(clashes)
        .fix("choose other ranges in the inventory (cluster.pod_cidr / cluster.service_cidr) before install");
    }
}

/// H12 (this host's part; skew across hosts is in `compare.rs`): a time sync service
/// that says it is synchronised.
fn time_sync(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let fix = "sudo apt-get install -y chrony && echo 'server NTP_SERVER iburst' | sudo tee /etc/chrony/sources.d/local.sources && sudo systemctl restart chrony   # NTP_SERVER: a time source inside your network";
    if let Some(c) = ev.cmd("ntp_sync").filter(|c| c.ok()) {
        let value = c.lines.first().map(|s| s.trim()).unwrap_or("");
        if value == "yes" {
            out.add("H12", Severity::Ok, "clock synchronised (timedatectl)")
                .evidence(["NTPSynchronized=yes"]);
        } else {
            out.add(
                "H12",
                Severity::Warn,
                "clock not synchronised (timedatectl says no)",
            )
            .evidence([format!("NTPSynchronized={value}")])
            .fix(fix);
        }
        return;
    }
    if let Some(c) = ev.cmd("chrony") {
        let leap = c
            .lines
            .iter()
            .find(|l| l.starts_with("Leap status"))
            .cloned()
            .unwrap_or_default();
        if c.ok() && leap.ends_with("Normal") {
            out.add("H12", Severity::Ok, "clock synchronised (chrony)")
                .evidence([leap]);
        } else {
            out.add("H12", Severity::Warn, "chrony runs but is not synchronised")
                .evidence(super::head(&c.lines, 5))
                .fix(fix);
        }
        return;
    }
    out.add(
        "H12",
        Severity::Warn,
        "no time sync client found (no timedatectl, no chronyc): clocks drift apart",
    )
    .fix(fix);
}

/// Used space above which H13 warns, and errors.
const DISK_WARN: u32 = 80;
const DISK_ERROR: u32 = 95;

/// H13: space and inodes on the filesystems images, containers and data land on. The
/// `df` lines follow the `disk` entries in order (header first).
fn disk(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let paths: Vec<&str> = ev
        .all("disk")
        .into_iter()
        .filter_map(|e| e.split_once('\t').map(|(p, _)| p))
        .collect();
    let mut seen: Vec<(String, &str)> = Vec::new();
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for (kind, key) in [("space", "df"), ("inodes", "df_inodes")] {
        let Some(cmd) = ev.cmd(key) else { continue };
        let rows = cmd.lines.iter().filter(|l| !l.starts_with("Filesystem"));
        for (path, line) in paths.iter().zip(rows) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(pct), Some(mount)) = (fields.get(4), fields.last()) else {
                continue;
            };
            let Ok(used) = pct.trim_end_matches('%').parse::<u32>() else {
                continue; // `-` for filesystems without inode counts
            };
            if seen.iter().any(|(m, k)| m == mount && *k == kind) {
                continue;
            }
            seen.push((mount.to_string(), kind));
            let text = format!("{mount} ({path}): {used}% of {kind} used");
            if used >= DISK_WARN {
                problems.push((used, text, line.clone()));
            } else {
                ok.push(text);
            }
        }
    }
    for (used, text, line) in &problems {
        let severity = if *used >= DISK_ERROR {
            Severity::Error
        } else {
            Severity::Warn
        };
        out.add("H13", severity, text.clone())
            .evidence([line.clone()])
            .fix("free space (sudo docker system prune / sudo k3s crictl rmi --prune, old logs) or grow the filesystem");
    }
    if seen.is_empty() {
        out.add("H13", Severity::Skip, "df gave no usable answer");
    } else if problems.is_empty() {
        out.add("H13", Severity::Ok, format!("disk below {DISK_WARN}%"))
            .evidence(ok);
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
