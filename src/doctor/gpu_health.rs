//! GPU checks beyond "the driver answers": the module for the running kernel (G3),
//! Secure Boot refusing it (G4), the `/dev/char` links runc needs under systemd cgroups
//! (G8), and the GPUs' own health: fatal XIDs, uncorrectable ECC errors, MIG mode (G9).

use super::evidence::CmdOut;
use super::{Findings, HostInput, Severity};
use crate::inventory::{ContainerRuntime, Distribution};

pub fn check(input: &HostInput, out: &mut Findings) {
    if !super::gpu::is_gpu_host(input) {
        for id in ["G3", "G4", "G8", "G9"] {
            out.add(id, Severity::Skip, "not a GPU host");
        }
        return;
    }
    let loaded = module(input, out);
    secure_boot(input, out, loaded);
    dev_char(input, out);
    health(input, out);
}

fn nvidia_loaded(input: &HostInput) -> bool {
    input.ev.all("module").contains(&"nvidia")
}

/// `modinfo -F vermagic nvidia`: the kernel release the installed module was built for.
fn vermagic(input: &HostInput) -> Option<Result<String, Vec<String>>> {
    let c = input.ev.cmd("modinfo_nvidia")?;
    Some(if c.ok() {
        Ok(c.lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("")
            .to_string())
    } else {
        Err(c.lines.clone())
    })
}

fn driver_answers(input: &HostInput) -> bool {
    input.ev.cmd("nvidia_smi_list").is_some_and(CmdOut::ok)
}

/// G3: the nvidia module is loaded, or says why not. Returns whether it is loaded.
fn module(input: &HostInput, out: &mut Findings) -> bool {
    let ev = input.ev;
    let kernel = ev.get("kernel").unwrap_or("?");
    let dkms: Vec<String> = ev
        .cmd("dkms")
        .map(|c| {
            c.lines
                .iter()
                .map(|l| format!("dkms status: {l}"))
                .collect()
        })
        .unwrap_or_default();
    if nvidia_loaded(input) {
        out.add(
            "G3",
            Severity::Ok,
            format!("the nvidia module is loaded (kernel {kernel})"),
        )
        .evidence(["/proc/modules: nvidia".to_string()]);
        return true;
    }
    if driver_answers(input) {
        // Only a stand-in can answer without a module in the kernel (a container view
        // or the test lab's fixture): nothing to judge.
        out.add(
            "G3",
            Severity::Skip,
            "nvidia-smi answers but no nvidia module is visible here (a container's view?)",
        );
        return true;
    }
    if ev.bin("nvidia-smi").is_none() && vermagic(input).is_none_or(|v| v.is_err()) {
        out.add(
            "G3",
            Severity::Skip,
            "the NVIDIA driver is not installed (see G5)",
        );
        return false;
    }
    let headers = format!(
        "sudo apt-get install -y linux-headers-{kernel} && sudo dkms autoinstall -k {kernel} && sudo modprobe nvidia"
    );
    match vermagic(input) {
        Some(Ok(built)) if built == kernel => {
            out.add(
                "G3",
                Severity::Error,
                format!("the nvidia module for kernel {kernel} is installed but not loaded"),
            )
            .evidence([format!("modinfo -F vermagic nvidia: {built}"), "/proc/modules: no nvidia".into()])
            .fix("sudo modprobe nvidia && sudo dmesg | grep -iE 'NVRM|nvidia' | tail   # if it is refused, see G2 (nouveau) and G4 (Secure Boot)");
        }
        Some(Ok(built)) => {
            out.add(
                "G3",
                Severity::Error,
                format!("the nvidia module was built for kernel {built}, the running kernel is {kernel}: it cannot load"),
            )
            .evidence([format!("modinfo -F vermagic nvidia: {built}"), format!("uname -r: {kernel}")].into_iter().chain(dkms))
            .fix(format!("{headers}   # or boot kernel {built} again"));
        }
        _ => {
            let mut evidence = vec![format!(
                "modinfo nvidia: {}",
                vermagic(input)
                    .and_then(|v| v.err())
                    .and_then(|l| l.first().cloned())
                    .unwrap_or_else(|| "modinfo missing".into())
            )];
            evidence.extend(dkms);
            out.add(
                "G3",
                Severity::Error,
                format!("no nvidia module for the running kernel {kernel}: the driver was not built for it (a kernel update without DKMS?)"),
            )
            .evidence(evidence)
            .fix(headers);
        }
    }
    false
}

/// Kernel log lines, when the log could be read.
fn kernel_log<'a>(input: &HostInput<'a>) -> Option<&'a [String]> {
    input
        .ev
        .cmd("kernel_log")
        .filter(|c| c.ok())
        .map(|c| c.lines.as_slice())
}

/// Secure Boot as `mokutil` or the EFI variable says: `Some(true)` on.
pub fn secure_boot_on(input: &HostInput) -> Option<bool> {
    if let Some(c) = input.ev.cmd("sb_state").filter(|c| c.ok()) {
        let text = c.lines.join(" ").to_ascii_lowercase();
        if text.contains("enabled") {
            return Some(true);
        }
        if text.contains("disabled") {
            return Some(false);
        }
    }
    // 4 attribute bytes, then the value.
    input
        .ev
        .get("sb_efivar")
        .and_then(|v| v.split_whitespace().nth(4).map(|b| b == "1"))
}

/// G4: Secure Boot refused (or would refuse) an unsigned module.
fn secure_boot(input: &HostInput, out: &mut Findings, loaded: bool) {
    let rejected: Vec<String> = kernel_log(input)
        .unwrap_or_default()
        .iter()
        .filter(|l| {
            l.contains("Key was rejected by service")
                || (l.contains("Lockdown") && l.contains("unsigned module"))
        })
        .cloned()
        .collect();
    let enroll = "sudo mokutil --import /var/lib/dkms/mok.pub   # set a one-time password, reboot, enroll the key in the blue MOK screen; or turn Secure Boot off in the firmware";
    if !rejected.is_empty() {
        out.add(
            "G4",
            Severity::Error,
            "the kernel rejected a module's signature (Secure Boot): the nvidia module cannot load",
        )
        .evidence(super::head(&rejected, 8))
        .fix(enroll);
        return;
    }
    match secure_boot_on(input) {
        Some(true) if !loaded => {
            out.add(
                "G4",
                Severity::Warn,
                "Secure Boot is on and the nvidia module is not loaded: an unsigned module will be refused",
            )
            .evidence(["mokutil --sb-state: SecureBoot enabled".to_string()])
            .fix(enroll);
        }
        Some(true) => {
            out.add(
                "G4",
                Severity::Ok,
                "Secure Boot is on and the nvidia module is loaded (signed)",
            );
        }
        Some(false) => {
            out.add("G4", Severity::Ok, "Secure Boot is off");
        }
        None => {
            out.add(
                "G4",
                Severity::Ok,
                "no Secure Boot state (no EFI variable, no mokutil) and no signature rejection in the kernel log",
            );
        }
    }
}

/// Whether containers on this host get systemd cgroups (runc then needs `/dev/char`
/// links for every device it allows).
pub fn systemd_cgroups(input: &HostInput) -> Option<(bool, String)> {
    let ev = input.ev;
    match input.cluster.container_runtime {
        ContainerRuntime::Docker => {
            let d = ev
                .lines("/etc/docker/daemon.json")
                .and_then(|l| super::runtime::parse_daemon_json(l).ok());
            match d.and_then(|d| d.cgroup_driver) {
                Some(driver) => Some((
                    driver == "systemd",
                    format!("daemon.json exec-opts: native.cgroupdriver={driver}"),
                )),
                // docker's default: systemd on cgroup v2, cgroupfs on v1.
                None => Some((
                    ev.get("cgroup_fs") == Some("cgroup2fs"),
                    format!(
                        "docker's default cgroup driver on {}",
                        ev.get("cgroup_fs").unwrap_or("?")
                    ),
                )),
            }
        }
        ContainerRuntime::Containerd => {
            let path = match input.cluster.distribution {
                Distribution::K3s => "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                Distribution::Kubeadm => "/etc/containerd/config.toml",
            };
            let line = ev
                .lines(path)?
                .iter()
                .find(|l| l.trim_start().starts_with("SystemdCgroup"))?;
            Some((
                line.replace(' ', "").ends_with("=true"),
                format!("{path}: {}", line.trim()),
            ))
        }
    }
}

/// G8: under systemd cgroups every NVIDIA device node needs its `/dev/char/MAJ:MIN`
/// link, or containers lose the GPUs after the next `systemctl daemon-reload`.
fn dev_char(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let Some((systemd, why)) = systemd_cgroups(input) else {
        out.add(
            "G8",
            Severity::Skip,
            "the container runtime's cgroup driver is not known yet",
        );
        return;
    };
    if !systemd {
        out.add(
            "G8",
            Severity::Ok,
            "cgroupfs driver: /dev/char links are not needed",
        )
        .evidence([why]);
        return;
    }
    let Some(nums) = ev.cmd("dev_nums").filter(|c| c.ok()) else {
        out.add("G8", Severity::Skip, "no NVIDIA device nodes (see G7)");
        return;
    };
    let links: Vec<String> = ev
        .cmd("dev_char")
        .map(|c| {
            c.lines
                .iter()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut missing = Vec::new();
    for line in &nums.lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 4 || !line.contains("character special") {
            continue;
        }
        let (Ok(major), Ok(minor)) = (u32::from_str_radix(w[1], 16), u32::from_str_radix(w[2], 16))
        else {
            continue;
        };
        let name = format!("{major}:{minor}");
        if !links.contains(&name) {
            missing.push(format!("/dev/char/{name} -> {}", w[0]));
        }
    }
    if missing.is_empty() {
        out.add(
            "G8",
            Severity::Ok,
            "every NVIDIA device node has its /dev/char link",
        )
        .evidence([why]);
    } else {
        out.add(
            "G8",
            Severity::Error,
            format!("systemd cgroups, but {} NVIDIA device node(s) lack a /dev/char link: containers lose the GPUs at the next daemon-reload", missing.len()),
        )
        .evidence(std::iter::once(why).chain(super::head(&missing, 12)))
        .fix("sudo nvidia-ctk system create-dev-char-symlinks --create-all   # and at every boot: echo 'ACTION==\"add\", DEVPATH==\"/bus/pci/drivers/nvidia\", RUN+=\"/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all\"' | sudo tee /lib/udev/rules.d/71-nvidia-dev-char.rules");
    }
}

/// XIDs that mean the GPU (not the application) failed: the node should be drained.
/// 48 DBE, 61/62 internal micro-controller, 63/64 row remapping, 74 NVLink, 79 fallen
/// off the bus, 92 high SBE rate, 94/95 contained/uncontained ECC, 119/120 GSP.
pub const FATAL_XIDS: &[u32] = &[48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120];

/// `(xid, line)` of every `NVRM: Xid (PCI:...): N, ...` kernel log line.
pub fn xids(lines: &[String]) -> Vec<(u32, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.split_once("Xid")?.1;
            let n = rest.split_once("):")?.1.trim_start();
            let num: String = n.chars().take_while(char::is_ascii_digit).collect();
            Some((num.parse().ok()?, l.trim().to_string()))
        })
        .collect()
}

/// G9: no fatal XID in the kernel log, no uncorrectable ECC error, MIG as gpuctl expects.
fn health(input: &HostInput, out: &mut Findings) {
    let host = &input.host.name;
    let drain = format!(
        "kubectl drain {host} --ignore-daemonsets --delete-emptydir-data && sudo reboot   # a GPU that keeps failing after a reset needs replacing"
    );
    let mut bad = false;
    match kernel_log(input) {
        Some(lines) => {
            let fatal: Vec<String> = xids(lines)
                .into_iter()
                .filter(|(x, _)| FATAL_XIDS.contains(x))
                .map(|(_, l)| l)
                .collect();
            if !fatal.is_empty() {
                bad = true;
                out.add(
                    "G9",
                    Severity::Error,
                    format!(
                        "{} fatal XID error(s) in the kernel log: a GPU failed",
                        fatal.len()
                    ),
                )
                .evidence(super::head(&fatal, 8))
                .fix(drain.clone());
            }
        }
        None => {
            let why = match input.ev.cmd("kernel_log") {
                Some(c) => c.lines.last().cloned().unwrap_or_default(),
                None => "not read".to_string(),
            };
            out.add(
                "G9",
                Severity::Skip,
                "the kernel log is not readable (dmesg is root-only here and sudo needs a password): XIDs not checked",
            )
            .evidence([format!("dmesg: {why}")]);
        }
    }
    let rows: Vec<Vec<String>> = input
        .ev
        .cmd("nvidia_smi_health")
        .filter(|c| c.ok())
        .map(|c| {
            c.lines
                .iter()
                .map(|l| l.split(',').map(|f| f.trim().to_string()).collect())
                .filter(|r: &Vec<String>| r.len() >= 4)
                .collect()
        })
        .unwrap_or_default();
    for r in &rows {
        let (index, bus, ecc, mig) = (&r[0], &r[1], &r[2], &r[3]);
        if ecc.parse::<u64>().is_ok_and(|n| n > 0) {
            bad = true;
            out.add(
                "G9",
                Severity::Error,
                format!("GPU {index} ({bus}) has {ecc} uncorrectable ECC error(s) since the driver loaded"),
            )
            .evidence([format!("nvidia-smi ecc.errors.uncorrected.volatile.total: {}", r.join(", "))])
            .fix(drain.clone());
        }
        if mig == "Enabled" {
            bad = true;
            out.add(
                "G9",
                Severity::Warn,
                format!("MIG mode is on for GPU {index} ({bus}): the device plugin, set up without a MIG strategy, exposes no usable GPU there"),
            )
            .evidence([format!("nvidia-smi mig.mode.current: {}", r.join(", "))])
            .fix(format!("sudo nvidia-smi -i {index} -mig 0 && sudo nvidia-smi -i {index} -r   # or configure the device plugin's MIG strategy"));
        }
    }
    if !bad {
        let xid = if kernel_log(input).is_some() {
            "no fatal XID, "
        } else {
            ""
        };
        out.add(
            "G9",
            Severity::Ok,
            format!(
                "{xid}no uncorrectable ECC error, MIG off ({} GPU(s) read)",
                rows.len()
            ),
        );
    }
}

#[cfg(test)]
#[path = "gpu_health_tests.rs"]
mod tests;
