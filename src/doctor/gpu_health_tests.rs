use super::xids;
use crate::doctor::Severity;
use crate::doctor::testing::{Case, one};

/// A GPU host whose driver is down: nvidia-smi fails, no module in the kernel.
fn driver_down() -> Case {
    Case::healthy("g1", true)
        .without("@@t cmd nvidia_smi_list")
        .without("GPU ")
        .without("@@t status nvidia_smi_list")
        .with("@@t cmd nvidia_smi_list")
        .with("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        .with("@@t status nvidia_smi_list 9")
}

fn cmd(case: Case, name: &str, lines: &[&str], status: i32) -> Case {
    let mut c = case.with(&format!("@@t cmd {name}"));
    for l in lines {
        c = c.with(l);
    }
    c.with(&format!("@@t status {name} {status}"))
}

#[test]
fn the_module_is_judged_against_the_running_kernel() {
    let loaded = Case::healthy("g1", true)
        .with("@@t kv module=nvidia")
        .findings();
    one(&loaded, "G3", Severity::Ok);

    let none = cmd(
        driver_down(),
        "modinfo_nvidia",
        &["modinfo: ERROR: Module nvidia not found."],
        1,
    )
    .findings();
    let e = one(&none, "G3", Severity::Error);
    assert!(
        e.title
            .contains("no nvidia module for the running kernel 6.1.0-18-amd64"),
        "{e:?}"
    );
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|f| f.contains("dkms autoinstall -k 6.1.0-18-amd64"))
    );

    let other = cmd(
        driver_down(),
        "modinfo_nvidia",
        &["6.1.0-17-amd64 SMP preempt mod_unload modversions "],
        0,
    )
    .findings();
    assert!(
        one(&other, "G3", Severity::Error)
            .title
            .contains("built for kernel 6.1.0-17-amd64")
    );

    let unloaded = cmd(
        driver_down(),
        "modinfo_nvidia",
        &["6.1.0-18-amd64 SMP preempt mod_unload "],
        0,
    )
    .findings();
    let e = one(&unloaded, "G3", Severity::Error);
    assert!(e.title.contains("installed but not loaded"));
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|f| f.starts_with("sudo modprobe nvidia"))
    );
}

#[test]
fn a_rejected_key_or_secure_boot_without_the_module_is_reported() {
    let rejected = cmd(
        driver_down(),
        "kernel_log",
        &[
            "[    4.1] Loading of module with unavailable key is rejected",
            "[    4.2] nvidia: Key was rejected by service",
        ],
        0,
    )
    .findings();
    let e = one(&rejected, "G4", Severity::Error);
    assert_eq!(
        e.evidence,
        ["[    4.2] nvidia: Key was rejected by service"]
    );
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|f| f.contains("mokutil --import"))
    );

    let sb = cmd(driver_down(), "sb_state", &["SecureBoot enabled"], 0).findings();
    one(&sb, "G4", Severity::Warn);
    let efi = driver_down()
        .with("@@t kv sb_efivar=   6   0   0   0   0")
        .findings();
    assert_eq!(one(&efi, "G4", Severity::Ok).title, "Secure Boot is off");
}

fn systemd_docker(case: Case) -> Case {
    case.without(r#"{"default-runtime""#).with(
        r#"{"default-runtime": "nvidia", "exec-opts": ["native.cgroupdriver=systemd"], "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}"#,
    )
}

#[test]
fn dev_char_links_are_needed_only_with_systemd_cgroups() {
    let nums = [
        "/dev/nvidia0 c3 0 character special file",
        "/dev/nvidiactl c3 ff character special file",
        "/dev/nvidia-caps 0 0 directory",
    ];
    let missing = cmd(
        systemd_docker(Case::healthy("g1", true)),
        "dev_nums",
        &nums,
        0,
    )
    .with("@@t kv dev_char_dir=yes")
    .with("@@t cmd dev_char")
    .with("195:0 ../nvidia0")
    .with("@@t status dev_char 0")
    .findings();
    let e = one(&missing, "G8", Severity::Error);
    assert!(
        e.evidence
            .iter()
            .any(|l| l == "/dev/char/195:255 -> /dev/nvidiactl"),
        "{e:?}"
    );
    assert!(e.fix.as_deref().is_some_and(|f| {
        f.starts_with("sudo nvidia-ctk system create-dev-char-symlinks --create-all")
    }));

    let all = cmd(
        systemd_docker(Case::healthy("g1", true)),
        "dev_nums",
        &nums,
        0,
    )
    .with("@@t cmd dev_char")
    .with("195:0 ../nvidia0")
    .with("195:255 ../nvidiactl")
    .with("@@t status dev_char 0")
    .findings();
    one(&all, "G8", Severity::Ok);

    let cgroupfs = cmd(
        Case::healthy("g1", true).replace("@@t kv cgroup_fs=cgroup2fs", "@@t kv cgroup_fs=tmpfs"),
        "dev_nums",
        &nums,
        0,
    )
    .findings();
    assert!(
        one(&cgroupfs, "G8", Severity::Ok)
            .title
            .contains("cgroupfs")
    );
}

#[test]
fn fatal_xids_ecc_errors_and_mig_are_found() {
    let lines: Vec<String> = [
        "[ 12.5] NVRM: Xid (PCI:0000:17:00): 79, pid=0, name=, GPU has fallen off the bus.",
        "[ 13.0] NVRM: Xid (PCI:0000:18:00): 13, pid=4242, Graphics Exception",
        "[ 14.0] nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        xids(&lines).iter().map(|(x, _)| *x).collect::<Vec<_>>(),
        [79, 13]
    );
    let f = cmd(
        Case::healthy("g1", true),
        "kernel_log",
        &[lines[0].as_str(), lines[1].as_str()],
        0,
    )
    .findings();
    let e = one(&f, "G9", Severity::Error);
    assert_eq!(e.evidence, [lines[0].clone()]);
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|x| x.starts_with("kubectl drain g1"))
    );

    let health = cmd(
        Case::healthy("g1", true),
        "nvidia_smi_health",
        &[
            "0, 00000000:17:1E.0, 0, Disabled",
            "1, 00000000:18:1E.0, 3, Enabled",
        ],
        0,
    )
    .findings();
    assert!(
        one(&health, "G9", Severity::Error)
            .title
            .contains("GPU 1 (00000000:18:1E.0) has 3 uncorrectable")
    );
    assert!(
        one(&health, "G9", Severity::Warn)
            .title
            .contains("MIG mode is on for GPU 1")
    );

    let clean = cmd(
        cmd(Case::healthy("g1", true), "kernel_log", &[], 0),
        "nvidia_smi_health",
        &[
            "0, 00000000:17:1E.0, 0, Disabled",
            "1, 00000000:18:1E.0, [N/A], [N/A]",
        ],
        0,
    )
    .findings();
    assert!(
        one(&clean, "G9", Severity::Ok)
            .title
            .starts_with("no fatal XID")
    );
}
