//! The components gpuctl knows by name: what order their parts go in and what in the
//! inventory they must not collide with. A component the list does not name is applied
//! the same way, its files in path order: the mechanism is general, these are the facts
//! about particular upstreams that the mechanism cannot guess.

use crate::inventory::{Cni, Inventory};

pub struct Component {
    pub name: &'static str,
    pub about: &'static str,
    /// Sub-directories of `manifests/<name>/`, in the order they are applied (files
    /// directly in the directory first, directories not named here last, by name).
    /// Later parts may use what earlier ones define (a profile controller before the
    /// dashboard that lists profiles).
    pub parts: &'static [&'static str],
    /// Why this inventory cannot have the component, if it cannot.
    pub conflict: fn(&Inventory) -> Option<String>,
}

fn none(_: &Inventory) -> Option<String> {
    None
}

pub const KNOWN: &[Component] = &[
    Component {
        name: "kubeflow-core",
        about: "profiles, training operator, notebook controller, central dashboard",
        parts: &[
            "profiles",
            "training-operator",
            "notebook-controller",
            "centraldashboard",
        ],
        conflict: none,
    },
    Component {
        name: "calico",
        about: "the calico CNI, its pool CIDR set to cluster.pod_cidr (applied by the cni \
                stage, not as a component)",
        parts: &[],
        conflict: |inv| {
            Some(if inv.cluster.cni == Cni::Calico {
                "calico is the cluster's network, which the cni stage applies from the same \
                 manifests/calico/ (kubeadm with `cluster.cni: calico`): remove it from \
                 stack.components"
                    .to_string()
            } else {
                "calico is the cluster's network: it needs kubeadm with `cluster.cni: calico` \
                 (k3s brings flannel), and then the cni stage applies it"
                    .to_string()
            })
        },
    },
    Component {
        name: "nvidia-device-plugin",
        about: "the upstream NVIDIA device plugin manifests, instead of gpuctl's template",
        parts: &[],
        conflict: |inv| {
            inv.gpu.device_plugin.then(|| {
                "the gpu stage applies the device plugin already (gpu.device_plugin: true); \
                 set it to false to apply the bundle's upstream manifests instead"
                    .to_string()
            })
        },
    },
    Component {
        name: "local-path",
        about: "the upstream local-path provisioner, instead of gpuctl's template",
        parts: &[],
        conflict: |inv| {
            inv.storage.local_path.is_some().then(|| {
                "the storage stage applies local-path already (storage.local_path); remove \
                 that section to apply the bundle's upstream manifests instead"
                    .to_string()
            })
        },
    },
    Component {
        name: "nfs-provisioner",
        about: "the upstream NFS subdir provisioner, instead of gpuctl's template",
        parts: &[],
        conflict: |inv| {
            inv.storage
                .nfs
                .as_ref()
                .is_some_and(|n| n.provisioner)
                .then(|| {
                    "the storage stage applies the NFS provisioner already \
                 (storage.nfs.provisioner); set it to false to apply the bundle's upstream \
                 manifests instead"
                        .to_string()
                })
        },
    },
];

pub fn known(name: &str) -> Option<&'static Component> {
    KNOWN.iter().find(|c| c.name == name)
}

/// The order key of a file of component `name` (its path relative to the component's
/// directory): files of earlier parts first.
pub fn order(name: &str, rel: &str) -> (usize, String) {
    let parts = known(name).map_or(&[][..], |c| c.parts);
    let rank = match rel.split_once('/') {
        None => 0,
        Some((dir, _)) => parts
            .iter()
            .position(|p| *p == dir)
            .map_or(parts.len() + 1, |i| i + 1),
    };
    (rank, rel.to_string())
}
