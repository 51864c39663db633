//! GPU checks against the inventory's intent.

use crate::doctor::Severity::{Error, Info, Ok, Skip};
use crate::doctor::testing::{Case, one};
use crate::inventory::GpuPresence;

fn without_pci(case: Case) -> Case {
    case.without("17:00.0")
        .without("18:00.0")
        .without("19:00.0")
        .without("1a:00.0")
}

#[test]
fn gpu_true_without_a_gpu_on_the_bus_is_an_error() {
    let f = without_pci(Case::healthy("gpu1", true)).findings();
    let g1 = one(&f, "G1", Error);
    assert!(
        g1.title
            .contains("gpu: true, but no NVIDIA GPU is on the PCI bus")
    );
    // With no PCI count to compare, nvidia-smi's four are fine on their own.
    one(&f, "G5", Ok);
}

#[test]
fn the_gpu_count_label_is_the_intent_pci_and_nvidia_smi_must_match() {
    let mut case = Case::healthy("gpu1", true);
    case.host.labels.insert("gpu-count".into(), "8".into());
    let f = case.findings();
    assert!(
        one(&f, "G1", Error)
            .title
            .contains("4 NVIDIA GPU(s) on the PCI bus, the inventory's gpu-count label says 8")
    );
    assert_eq!(
        one(&f, "G5", Error).title,
        "nvidia-smi lists 4 GPU(s), the inventory's gpu-count label says 8"
    );
}

#[test]
fn nvidia_smi_listing_fewer_gpus_than_the_bus_is_an_error() {
    let f = Case::healthy("gpu1", true)
        .without("GPU 3: ")
        .without("@@t kv dev=/dev/nvidia3")
        .findings();
    let g5 = one(&f, "G5", Error);
    assert_eq!(g5.title, "nvidia-smi lists 3 GPU(s), the PCI bus says 4");
    assert!(g5.fix.as_deref().is_some_and(|x| x.contains("Xid")));
    assert_eq!(g5.evidence.len(), 3);
    // Device nodes are judged against what the driver lists: three GPUs, three nodes.
    one(&f, "G7", Ok);
}

#[test]
fn nouveau_missing_driver_version_skew_and_device_nodes() {
    let f = Case::healthy("gpu1", true)
        .with("@@t kv module=nouveau")
        .findings();
    assert!(
        one(&f, "G2", Error)
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("blacklist nouveau"))
    );

    let f = Case::healthy("gpu1", true)
        .without("@@t cmd nvidia_smi_list")
        .findings();
    assert!(one(&f, "G5", Error).title.contains("not installed"));
    one(&f, "G7", Skip);

    let f = Case::healthy("gpu1", true)
        .replace(
            "0, 00000000:17:00.0, 0, Disabled, 535.183.01",
            "0, 00000000:17:00.0, 0, Disabled, 550.54.15",
        )
        .findings();
    let g6 = one(&f, "G6", Error);
    assert!(
        g6.title
            .contains("kernel module 535.183.01 but user-space driver 550.54.15")
    );

    let f = Case::healthy("gpu1", true)
        .without("@@t file /proc/driver/nvidia/version")
        .without("NVRM version")
        .findings();
    one(&f, "G6", Skip);

    let f = Case::healthy("gpu1", true)
        .without("@@t kv dev=/dev/nvidia-uvm")
        .without("@@t kv dev=/dev/nvidia2")
        .findings();
    let g7 = one(&f, "G7", Error);
    assert_eq!(
        g7.title,
        "missing device nodes: /dev/nvidia-uvm, /dev/nvidia-uvm-tools, /dev/nvidia3"
    );
    assert!(
        g7.fix
            .as_deref()
            .is_some_and(|x| x.starts_with("sudo nvidia-modprobe -u -c=0"))
    );
}

#[test]
fn cpu_hosts_skip_and_unused_gpus_are_info() {
    let f = Case::healthy("cp1", false).findings();
    one(&f, "G1", Ok);
    for id in ["G2", "G5", "G6", "G7"] {
        assert_eq!(one(&f, id, Skip).title, "not a GPU host");
    }
    let mut case = Case::healthy("gpu1", true);
    case.host.gpu = GpuPresence::No;
    let f = case.findings();
    assert!(one(&f, "G1", Info).title.contains("they stay unused"));
    let mut case = Case::healthy("gpu1", true);
    case.host.gpu = GpuPresence::Auto;
    let f = case.findings();
    one(&f, "G5", Ok);
}
