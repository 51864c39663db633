//! GPU checks (G1, G2, G5, G6, G7), against what the inventory intends: a host with
//! `gpu: true` must show its GPUs on the PCI bus, to the driver and as device nodes, and
//! as many as its `gpu-count` label promises. The chain is reported in order, PCI first,
//! so the first broken link is the first error.

use super::{Findings, HostInput, Severity};
use crate::inventory::GpuPresence;

/// NVIDIA display controllers (`[0300]` VGA, `[0302]` 3D) on the PCI bus; NVSwitch
/// bridges (`[0680]`) and audio functions are not GPUs.
pub fn pci_gpus(input: &HostInput) -> Option<Vec<String>> {
    let cmd = input.ev.cmd("lspci")?;
    Some(
        cmd.lines
            .iter()
            .filter(|l| l.contains("[0300]") || l.contains("[0302]"))
            .cloned()
            .collect(),
    )
}

/// GPUs `nvidia-smi -L` lists, `None` when it is not installed.
pub fn smi_gpus(input: &HostInput) -> Option<Vec<String>> {
    let cmd = input.ev.cmd("nvidia_smi_list")?;
    Some(
        cmd.lines
            .iter()
            .filter(|l| l.starts_with("GPU "))
            .cloned()
            .collect(),
    )
}

/// The driver version nvidia-smi reports: the last column of the health query's first
/// row (`index, pci.bus_id, ecc, mig, driver_version`; one query, not two, as nvidia-smi
/// takes long to start on hosts without persistence mode).
pub fn smi_driver(ev: &super::evidence::Evidence) -> Option<String> {
    let c = ev.cmd("nvidia_smi_health").filter(|c| c.ok())?;
    let row = c.lines.iter().find(|l| !l.trim().is_empty())?;
    let fields: Vec<&str> = row.split(',').map(str::trim).collect();
    (fields.len() >= 5)
        .then(|| fields[4].to_string())
        .filter(|v| !v.is_empty())
}

/// Whether this host counts as a GPU host: `gpu: true`, or `auto` with a GPU in sight.
pub fn is_gpu_host(input: &HostInput) -> bool {
    match input.host.gpu {
        GpuPresence::Yes => true,
        GpuPresence::No => false,
        GpuPresence::Auto => {
            pci_gpus(input).is_some_and(|g| !g.is_empty())
                || smi_gpus(input).is_some_and(|g| !g.is_empty())
        }
    }
}

pub fn check(input: &HostInput, out: &mut Findings) {
    let gpu_host = is_gpu_host(input);
    pci(input, out);
    if !gpu_host {
        for id in ["G2", "G5", "G6", "G7"] {
            out.add(id, Severity::Skip, "not a GPU host");
        }
        return;
    }
    nouveau(input, out);
    let listed = driver(input, out);
    versions(input, out);
    device_nodes(input, out, listed);
}

/// G1: the PCI bus against the inventory's intent.
fn pci(input: &HostInput, out: &mut Findings) {
    let expected = input.expected_gpus();
    let Some(found) = pci_gpus(input) else {
        if input.host.gpu == GpuPresence::Yes {
            out.add(
                "G1",
                Severity::Warn,
                "cannot count GPUs on the PCI bus: lspci is missing",
            )
            .fix("sudo apt-get install -y pciutils");
        } else {
            out.add("G1", Severity::Skip, "lspci is missing; GPUs not counted");
        }
        return;
    };
    let n = found.len() as u32;
    let evidence = super::head(&found, 16);
    match (input.host.gpu, expected) {
        (GpuPresence::Yes, _) if n == 0 => {
            out.add(
                "G1",
                Severity::Error,
                "the inventory says gpu: true, but no NVIDIA GPU is on the PCI bus",
            )
            .evidence(["lspci -nn -d 10de: lists no VGA/3D controller".to_string()])
            .fix("check the card is seated and enabled in the BIOS (Above 4G decoding), or set gpu: false");
        }
        (GpuPresence::Yes | GpuPresence::Auto, Some(want)) if n != want => {
            out.add(
                "G1",
                Severity::Error,
                format!(
                    "{n} NVIDIA GPU(s) on the PCI bus, the inventory's gpu-count label says {want}"
                ),
            )
            .evidence(evidence)
            .fix("reseat or replace the missing card, or correct the host's gpu-count label");
        }
        (GpuPresence::No, _) if n > 0 => {
            out.add(
                "G1",
                Severity::Info,
                format!("{n} NVIDIA GPU(s) on the PCI bus, but the inventory says gpu: false: they stay unused"),
            )
            .evidence(evidence);
        }
        (GpuPresence::No, _) | (GpuPresence::Auto, None) if n == 0 => {
            out.add(
                "G1",
                Severity::Ok,
                "no NVIDIA GPU on the PCI bus (none intended)",
            );
        }
        _ => {
            out.add(
                "G1",
                Severity::Ok,
                format!("{n} NVIDIA GPU(s) on the PCI bus"),
            )
            .evidence(evidence);
        }
    }
}

/// G2: nouveau holds the GPU and the NVIDIA driver cannot bind.
fn nouveau(input: &HostInput, out: &mut Findings) {
    if input.ev.all("module").contains(&"nouveau") {
        out.add("G2", Severity::Error, "nouveau is loaded: the NVIDIA driver cannot use the GPUs")
            .evidence(["/proc/modules: nouveau"])
            .fix("printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && sudo update-initramfs -u && sudo reboot");
    } else {
        out.add("G2", Severity::Ok, "nouveau is not loaded");
    }
}

/// G5: nvidia-smi answers and lists every GPU the bus (and the inventory) has. Returns
/// how many it listed, for the device-node check.
fn driver(input: &HostInput, out: &mut Findings) -> Option<u32> {
    let Some(cmd) = input.ev.cmd("nvidia_smi_list") else {
        out.add("G5", Severity::Error, "nvidia-smi is not installed: the NVIDIA driver is missing")
            .fix("install the NVIDIA driver packages for this kernel (e.g. sudo apt-get install -y nvidia-driver-535-server), then reboot");
        return None;
    };
    if !cmd.ok() {
        out.add(
            "G5",
            Severity::Error,
            format!("nvidia-smi -L failed (exit {})", cmd.status.map_or("?".into(), |s| s.to_string())),
        )
        .evidence(super::head(&cmd.lines, 8))
        .fix("sudo dmesg | grep -iE 'NVRM|Xid'   # then reinstall the driver for $(uname -r), or reboot after a kernel update");
        return None;
    }
    let listed = smi_gpus(input).unwrap_or_default();
    let n = listed.len() as u32;
    let pci = pci_gpus(input).map(|g| g.len() as u32).filter(|p| *p > 0);
    let expected = input.expected_gpus();
    let want = expected.or(pci);
    let evidence = super::head(&listed, 16);
    match want {
        Some(w) if n < w => {
            let source = if expected.is_some() {
                "the inventory's gpu-count label"
            } else {
                "the PCI bus"
            };
            out.add(
                "G5",
                Severity::Error,
                format!("nvidia-smi lists {n} GPU(s), {source} says {w}"),
            )
            .evidence(evidence)
            .fix("sudo dmesg | grep -iE 'NVRM|Xid|fallen off the bus'   # a GPU the driver lost: reset or reboot; reseat it if it stays missing");
        }
        _ if n == 0 => {
            out.add("G5", Severity::Error, "nvidia-smi lists no GPU")
                .evidence(super::head(&cmd.lines, 8))
                .fix("sudo dmesg | grep -iE 'NVRM|Xid'   # the driver sees no device: check G1 and the driver version");
        }
        _ => {
            out.add("G5", Severity::Ok, format!("nvidia-smi lists {n} GPU(s)"))
                .evidence(evidence);
        }
    }
    Some(n)
}

/// G6: the loaded kernel module and the user-space tools are one driver version.
fn versions(input: &HostInput, out: &mut Findings) {
    let ev = input.ev;
    let Some(kernel_line) = ev
        .lines("/proc/driver/nvidia/version")
        .and_then(|l| l.iter().find(|l| l.starts_with("NVRM")).cloned())
    else {
        out.add(
            "G6",
            Severity::Skip,
            "/proc/driver/nvidia/version is not readable here (no loaded nvidia module visible)",
        );
        return;
    };
    let kernel = kernel_line
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .unwrap_or("")
        .to_string();
    let user = smi_driver(ev).unwrap_or_default();
    if user.is_empty() {
        out.add(
            "G6",
            Severity::Skip,
            "nvidia-smi did not report a driver version",
        );
    } else if kernel == user {
        out.add(
            "G6",
            Severity::Ok,
            format!("driver {user} in kernel and user space"),
        )
        .evidence([kernel_line]);
    } else {
        out.add(
            "G6",
            Severity::Error,
            format!("kernel module {kernel} but user-space driver {user}: a driver update without a reboot"),
        )
        .evidence([kernel_line, format!("nvidia-smi driver_version: {user}")])
        .fix("sudo reboot   # then hold both: sudo apt-mark hold 'nvidia-*' 'libnvidia-*' linux-image-$(uname -r)");
    }
}

/// G7: the device nodes containers get: nvidiactl, nvidia-uvm(-tools), one per GPU.
fn device_nodes(input: &HostInput, out: &mut Findings, listed: Option<u32>) {
    let devs = input.ev.all("dev");
    let mut missing: Vec<String> = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
        .iter()
        .filter(|d| !devs.contains(d))
        .map(|d| d.to_string())
        .collect();
    let per_gpu = devs
        .iter()
        .filter(|d| {
            d.strip_prefix("/dev/nvidia")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u32;
    let want = listed.unwrap_or(0);
    for i in per_gpu..want {
        missing.push(format!("/dev/nvidia{i}"));
    }
    if listed.is_none() {
        out.add(
            "G7",
            Severity::Skip,
            "the driver does not answer (G5); device nodes not checked",
        );
    } else if missing.is_empty() {
        out.add(
            "G7",
            Severity::Ok,
            format!("device nodes present ({per_gpu} GPU nodes, nvidiactl, nvidia-uvm)"),
        )
        .evidence(devs.iter().map(|d| d.to_string()));
    } else {
        let mut fix = String::from("sudo nvidia-modprobe -u -c=0");
        for i in 1..want {
            fix.push_str(&format!(" && sudo nvidia-modprobe -c={i}"));
        }
        out.add(
            "G7",
            Severity::Error,
            format!("missing device nodes: {}", missing.join(", ")),
        )
        .evidence(devs.iter().map(|d| format!("present: {d}")))
        .fix(fix);
    }
}

#[cfg(test)]
#[path = "gpu_tests.rs"]
mod tests;
