//! Ansible conversion: each fixture converts to the snapshot YAML, and that YAML loads.

use super::{fixture_dir, opts};
use crate::inventory::{GpuPresence, Role, ansible, load_text};
use crate::secret::SecretSource;

/// Secret values in the fixtures; none may reach the output.
const SECRETS: &[&str] = &[
    "hunter2-do-not-copy",
    "not-a-real-password",
    "also-not-copied",
];

fn convert(name: &str) -> (String, crate::inventory::Inventory) {
    let dir = fixture_dir().join("ansible");
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let converted = ansible::convert(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    for s in SECRETS {
        assert!(!converted.yaml.contains(s), "{name}: secret {s} copied");
        assert!(
            converted.not_converted.iter().all(|n| !n.contains(s)),
            "{name}: secret {s} in notes"
        );
    }
    let inv = load_text(&converted.yaml, &dir.join("converted.yaml"), &dir, &opts())
        .unwrap_or_else(|e| {
            panic!(
                "{name}: converted inventory is invalid:\n{e}\n{}",
                converted.yaml
            )
        });
    (converted.yaml, inv)
}

#[test]
fn deepops_ini_with_ranges_children_and_become_password() {
    let (yaml, inv) = convert("deepops.ini");
    insta::assert_snapshot!("deepops_ini", yaml);
    // 3 control-plane + 50 GPU workers + the NAS; `login` has no role and is noted.
    assert_eq!(inv.hosts.len(), 54);
    assert_eq!(inv.servers().count(), 3);
    let gpus: Vec<&str> = inv
        .hosts
        .iter()
        .filter(|h| h.gpu == GpuPresence::Yes)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(gpus.len(), 50);
    assert_eq!(gpus.first(), Some(&"gpu01"));
    assert_eq!(gpus.last(), Some(&"gpu50"));
    assert_eq!(
        inv.sudo_password,
        Some(SecretSource::Env {
            env: "GPUCTL_SUDO_PASSWORD".into()
        })
    );
    assert!(yaml.contains("export GPUCTL_SUDO_PASSWORD"));
    assert!(yaml.contains("#   group slurm-node: no gpuctl role (hosts: login)"));
    assert_eq!(inv.cluster.pod_cidr.to_string(), "10.233.64.0/18");
    let nas = inv.hosts.iter().find(|h| h.name == "nas1");
    assert!(nas.is_some_and(|h| h.roles.contains(&Role::Nfs)));
}

#[test]
fn kubespray_yaml_with_per_host_overrides_and_ssh_password() {
    let (yaml, inv) = convert("kubespray.yaml");
    insta::assert_snapshot!("kubespray_yaml", yaml);
    assert_eq!(inv.hosts.len(), 3);
    assert!(yaml.contains("password: { env: GPUCTL_SSH_PASSWORD }"));
    // Harbor is the site's registry: gpuctl must not run its own on it.
    assert!(yaml.contains("group harbor: the site's own registry, which gpuctl leaves alone"));
    assert!(!inv.hosts.iter().any(|h| h.name == "harbor"));
}

#[test]
fn kubeasz_ini_names_nodes_from_k8s_nodename() {
    let (yaml, inv) = convert("kubeasz.ini");
    insta::assert_snapshot!("kubeasz_ini", yaml);
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["master-01", "worker-01", "worker-02"]);
    assert_eq!(inv.cluster.service_cidr.to_string(), "10.68.0.0/16");
}

#[test]
fn unreadable_ansible_input_names_the_line() {
    let err = ansible::convert("[nodes]\nhost[01:]\n", "bad.ini").err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.starts_with("bad.ini:2: "), "{text}");
}
