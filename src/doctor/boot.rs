//! What breaks after a reboot (H2, H5, H11): swap, forwarding, bridge netfilter, modules
//! and kernel limits, each checked twice — live, as the kernel reports it now, and
//! persisted, as `/etc/fstab`, `sysctl.d` and `modules-load.d` will set it at the next boot.
//! A host that works today and loses a sysctl at its next reboot is broken; this is the
//! check no other tool does.

use super::evidence::{MODULES_DIRS, SYSCTL_DIRS};
use super::{Findings, HostInput, Severity};

/// Where doctor's fixes write: one file of our own, never someone else's.
const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kubernetes.conf";
const MODULES_FILE: &str = "/etc/modules-load.d/kubernetes.conf";

pub fn check(input: &HostInput, out: &mut Findings) {
    swap(input, out);
    forwarding(input, out);
    limits(input, out);
}

/// A setting as the boot files leave it: the value, and the file line that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persisted {
    pub value: String,
    pub file: String,
    pub line: usize,
}

impl Persisted {
    /// The line as evidence: `file:line: key = value`.
    fn evidence(&self, key: &str) -> String {
        format!("{}:{}: {key} = {}", self.file, self.line, self.value)
    }

    /// The fix that rewrites this very line to `key = value`.
    fn rewrite_fix(&self, key: &str, value: &str) -> String {
        format!(
            "sudo sed -i '{}s/.*/{key} = {value}/' {}",
            self.line, self.file
        )
    }
}

/// `*.conf` files of `dirs` in the order systemd applies them: by file name, a name in an
/// earlier directory hiding the same name in a later one (so `/etc` overrides `/usr/lib`).
pub fn boot_files<'a>(input: &'a HostInput, dirs: &[&str]) -> Vec<(&'a str, &'a [String])> {
    let mut chosen: Vec<(&str, &str, &[String])> = Vec::new();
    for dir in dirs {
        for (path, lines) in input.ev.files_under(&[dir]) {
            let name = path.rsplit('/').next().unwrap_or(path);
            if !path.ends_with(".conf") || chosen.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            chosen.push((name, path, lines));
        }
    }
    chosen.sort_by(|a, b| a.0.cmp(b.0));
    chosen.into_iter().map(|(_, p, l)| (p, l)).collect()
}

/// The persisted value of every sysctl: sysctl.d files in order, then /etc/sysctl.conf
/// (procps' `sysctl --system` reads it last; systemd links it as 99-sysctl.conf).
pub fn persisted_sysctls(input: &HostInput) -> Vec<(String, Persisted)> {
    let mut files = boot_files(input, SYSCTL_DIRS);
    let conf = input.ev.lines("/etc/sysctl.conf");
    if let Some(lines) = conf
        && !files.iter().any(|(p, _)| p.ends_with("/99-sysctl.conf"))
    {
        files.push(("/etc/sysctl.conf", lines));
    }
    let mut values: Vec<(String, Persisted)> = Vec::new();
    for (path, lines) in files {
        for (i, raw) in lines.iter().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let line = line.strip_prefix('-').unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim().replace('/', ".");
            let p = Persisted {
                value: value.trim().to_string(),
                file: path.to_string(),
                line: i + 1,
            };
            match values.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = p,
                None => values.push((key, p)),
            }
        }
    }
    values
}

/// Modules loaded at boot: modules-load.d files and Debian's /etc/modules.
pub fn persisted_modules(input: &HostInput) -> Vec<(String, Persisted)> {
    let mut files = boot_files(input, MODULES_DIRS);
    if let Some(lines) = input.ev.lines("/etc/modules") {
        files.push(("/etc/modules", lines));
    }
    let mut out = Vec::new();
    for (path, lines) in files {
        for (i, raw) in lines.iter().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let name = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .replace('-', "_");
            out.push((
                name.clone(),
                Persisted {
                    value: name,
                    file: path.to_string(),
                    line: i + 1,
                },
            ));
        }
    }
    out
}

/// How a module is present in the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Listed in /proc/modules: a loadable module, loaded now.
    Loaded,
    /// Built into the kernel: nothing to load, ever.
    Builtin,
    /// Neither: not loaded (or unknown).
    Absent,
}

/// `proof` is a file that only exists while the module is active (e.g. its sysctl).
pub fn module_state(input: &HostInput, name: &str, proof: bool) -> ModuleState {
    let ev = input.ev;
    if ev.all("module").contains(&name) {
        return ModuleState::Loaded;
    }
    if ev.all("builtin").contains(&name) {
        return ModuleState::Builtin;
    }
    let config_y = |opt: &str| {
        ev.cmd("kconfig")
            .is_some_and(|c| c.lines.iter().any(|l| l == &format!("CONFIG_{opt}=y")))
    };
    let option = match name {
        "br_netfilter" => "BRIDGE_NETFILTER",
        "overlay" => "OVERLAY_FS",
        _ => "",
    };
    // Without module support at all (no /proc/modules), whatever works is built in.
    if (!option.is_empty() && config_y(option)) || (ev.get("proc_modules") == Some("no") && proof) {
        return ModuleState::Builtin;
    }
    ModuleState::Absent
}

/// H2: no swap now, and none coming back from /etc/fstab or a swap unit at boot.
fn swap(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let mut clean = true;
    if let Some(lines) = ev.lines("/proc/swaps") {
        let active: Vec<String> = lines
            .iter()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .cloned()
            .collect();
        if !active.is_empty() {
            clean = false;
            out.add(
                "H2",
                Severity::Error,
                "swap is on: kubelet refuses to start with swap",
            )
            .evidence(active.iter().map(|l| format!("/proc/swaps: {l}")))
            .fix("sudo swapoff -a");
        }
    }
    if let Some(lines) = ev.lines("/etc/fstab") {
        let swap_lines: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let f: Vec<&str> = l.split_whitespace().collect();
                !l.trim_start().starts_with('#')
                    && f.get(2) == Some(&"swap")
                    && !f
                        .get(3)
                        .is_some_and(|o| o.split(',').any(|o| o == "noauto"))
            })
            .map(|(i, l)| format!("/etc/fstab:{}: {l}", i + 1))
            .collect();
        if !swap_lines.is_empty() {
            clean = false;
            out.add(
                "H2",
                Severity::Error,
                "/etc/fstab turns swap on at the next boot",
            )
            .evidence(swap_lines)
            .fix("sudo sed -i.bak -E '/^[^#]/{/[[:space:]]swap[[:space:]]/s/^/# /}' /etc/fstab");
        }
    }
    let units = ev.all("swap_unit");
    if !units.is_empty() {
        clean = false;
        out.add(
            "H2",
            Severity::Error,
            "a systemd swap unit turns swap on at boot",
        )
        .evidence(
            units
                .iter()
                .map(|u| format!("/etc/systemd/system/swap.target.wants/{u}")),
        )
        .fix(format!("sudo systemctl mask {}", units.join(" ")));
    }
    if clean {
        out.add("H2", Severity::Ok, "no swap, and none in /etc/fstab");
    }
}

/// One sysctl that must be 1: live value and the value the boot files leave.
fn sysctl_one(
    input: &HostInput,
    out: &mut Findings,
    persisted: &[(String, Persisted)],
    id: &str,
    key: &str,
    why: &str,
) -> bool {
    let live = input.ev.get(&format!("sysctl.{key}"));
    let mut ok = true;
    match live {
        Some("1") => {}
        Some(v) => {
            ok = false;
            out.add(id, Severity::Error, format!("{key} is {v}: {why}"))
                .evidence([format!("/proc/sys/{}: {v}", key.replace('.', "/"))])
                .fix(format!("sudo sysctl -w {key}=1"));
        }
        None => {
            // Only the bridge keys can be absent: br_netfilter is not loaded.
            ok = false;
            out.add(
                id,
                Severity::Error,
                format!("{key} does not exist: br_netfilter is not loaded, {why}"),
            )
            .evidence([format!("/proc/sys/{}: absent", key.replace('.', "/"))])
            .fix("sudo modprobe br_netfilter");
        }
    }
    match persisted.iter().find(|(k, _)| k == key).map(|(_, p)| p) {
        Some(p) if p.value == "1" => {}
        Some(p) => {
            ok = false;
            out.add(
                id,
                Severity::Error,
                format!(
                    "{}:{} sets {key} = {} at boot: {why} after the next reboot",
                    p.file, p.line, p.value
                ),
            )
            .evidence([p.evidence(key)])
            .fix(p.rewrite_fix(key, "1"));
        }
        None => {
            ok = false;
            out.add(
                id,
                Severity::Error,
                format!("{key} = 1 is not persisted: it is lost at the next reboot"),
            )
            .evidence([format!(
                "no {key} in {}/*.conf or /etc/sysctl.conf",
                SYSCTL_DIRS.join("/*.conf, ")
            )])
            .fix(format!("echo '{key} = 1' | sudo tee -a {SYSCTL_FILE}"));
        }
    }
    ok
}

/// One module kubelet or containerd needs: loaded (or built in), and loaded at boot.
fn module_one(
    input: &HostInput,
    out: &mut Findings,
    persisted: &[(String, Persisted)],
    name: &str,
    proof: bool,
    why: &str,
) -> bool {
    let state = module_state(input, name, proof);
    let listed = persisted.iter().find(|(n, _)| n == name).map(|(_, p)| p);
    let fix = format!("echo {name} | sudo tee -a {MODULES_FILE}");
    match (state, listed) {
        (ModuleState::Absent, _) => {
            out.add(
                "H5",
                Severity::Error,
                format!("module {name} is not loaded: {why}"),
            )
            .evidence([format!("{name}: not in /proc/modules, not built in")])
            .fix(if listed.is_some() {
                format!("sudo modprobe {name}")
            } else {
                format!("sudo modprobe {name} && {fix}")
            });
            false
        }
        (ModuleState::Loaded, None) => {
            out.add(
                "H5",
                Severity::Error,
                format!("module {name} is loaded now but not at boot: {why} after the next reboot"),
            )
            .evidence([format!(
                "{name}: in /proc/modules; not in {}/*.conf or /etc/modules",
                MODULES_DIRS.join("/*.conf, ")
            )])
            .fix(fix);
            false
        }
        (ModuleState::Builtin, None) => {
            out.add(
                "H5",
                Severity::Info,
                format!("{name} is built into this kernel, so nothing loads it at boot; list it anyway so a kernel where it is a module keeps working"),
            )
            .evidence([format!("{name}: built in; not in modules-load.d or /etc/modules")])
            .fix(fix);
            true
        }
        (_, Some(_)) => true,
    }
}

/// H5: IP forwarding and bridge netfilter (pods and services break without them), and
/// the modules behind them, live and at boot.
fn forwarding(input: &HostInput, out: &mut Findings) {
    let persisted = persisted_sysctls(input);
    let modules = persisted_modules(input);
    let bridge_live = input
        .ev
        .get("sysctl.net.bridge.bridge-nf-call-iptables")
        .is_some();
    let mut ok = true;
    ok &= sysctl_one(
        input,
        out,
        &persisted,
        "H5",
        "net.ipv4.ip_forward",
        "nodes do not forward pod traffic",
    );
    ok &= module_one(
        input,
        out,
        &modules,
        "br_netfilter",
        bridge_live,
        "bridged pod traffic skips iptables",
    );
    ok &= sysctl_one(
        input,
        out,
        &persisted,
        "H5",
        "net.bridge.bridge-nf-call-iptables",
        "Service traffic between pods on one node bypasses kube-proxy",
    );
    ok &= module_one(
        input,
        out,
        &modules,
        "overlay",
        true,
        "containerd cannot unpack images",
    );
    if ok {
        out.add(
            "H5",
            Severity::Ok,
            "ip_forward and bridge-nf-call-iptables are 1 now and at boot; br_netfilter and overlay load",
        );
    }
}

/// H11: kernel limits many containers need; low values warn (work now, fail under load).
fn limits(input: &HostInput, out: &mut Findings) {
    let persisted = persisted_sysctls(input);
    let wanted: [(&str, u64); 3] = [
        ("kernel.keys.root_maxkeys", 10_000),
        ("fs.inotify.max_user_instances", 1_280),
        ("fs.inotify.max_user_watches", 655_360),
    ];
    let mut ok = Vec::new();
    for (key, min) in wanted {
        let live: Option<u64> = input
            .ev
            .get(&format!("sysctl.{key}"))
            .and_then(|v| v.parse().ok());
        let saved = persisted.iter().find(|(k, _)| k == key).map(|(_, p)| p);
        let saved_ok = saved
            .and_then(|p| p.value.parse::<u64>().ok())
            .is_some_and(|v| v >= min);
        match (live, saved) {
            (Some(v), _) if v >= min && (saved_ok || saved.is_none()) => {
                ok.push(format!("{key} = {v}"))
            }
            // Live value fine, but a file lowers it at boot.
            (Some(v), Some(p)) if v >= min => {
                out.add(
                    "H11",
                    Severity::Warn,
                    format!(
                        "{key} is {v} now, but {}:{} lowers it to {} at boot",
                        p.file, p.line, p.value
                    ),
                )
                .evidence([p.evidence(key)])
                .fix(p.rewrite_fix(key, &min.to_string()));
            }
            // A file sets it right, but it was never applied.
            (Some(v), Some(p)) if saved_ok => {
                out.add(
                    "H11",
                    Severity::Warn,
                    format!(
                        "{key} is {v} (want ≥ {min}); {}:{} sets {} but it is not applied",
                        p.file, p.line, p.value
                    ),
                )
                .evidence([
                    format!("/proc/sys/{}: {v}", key.replace('.', "/")),
                    p.evidence(key),
                ])
                .fix("sudo sysctl --system");
            }
            (Some(v), _) => {
                out.add("H11", Severity::Warn, format!("{key} is {v}, want ≥ {min}"))
                    .evidence([format!("/proc/sys/{}: {v}", key.replace('.', "/"))])
                    .fix(format!(
                        "echo '{key} = {min}' | sudo tee -a {SYSCTL_FILE} && sudo sysctl --system"
                    ));
            }
            (None, _) => {}
        }
    }
    if !ok.is_empty() && out.list.iter().all(|f| f.id != "H11") {
        out.add("H11", Severity::Ok, "kernel limits are high enough")
            .evidence(ok);
    }
}

#[cfg(test)]
#[path = "boot_tests.rs"]
mod tests;
