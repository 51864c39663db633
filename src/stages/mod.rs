//! The stages of `gpuctl install`, one per file, in the order they run.
//!
//! Each is a [`Stage`]: a name, a scope and a pure `plan` from the inventory and one
//! host's facts to Ops. Host stages run on every host; cluster stages (`cni`, `ready`,
//! `kubeconfig`, `labels`, `gpu`, `dns`, `storage`, `stack`, `users`) run once, over the first server's connection, after the
//! host stages. Cluster stages that create Kubernetes objects share [`manifests`].

pub mod cni;
pub mod dns;
pub mod facts;
pub mod gpu;
pub mod kubeconfig;
pub mod kubernetes;
pub mod labels;
pub mod manifests;
pub mod nfs;
pub mod os;
pub mod packages;
pub mod preflight;
pub mod ready;
pub mod registry;
pub mod runtime;
pub mod stack;
pub mod storage;
pub mod users;

use std::sync::Arc;

use crate::bundle::Bundle;
use crate::inventory::{Distribution, Inventory};
use crate::plan::Stage;
use crate::secret::Secret;

/// What some stages need beyond the inventory and the facts, loaded once before any host
/// is touched.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The run's verified bundle, for the stages that send its artifacts (`None` when the
    /// inventory names none or no selected stage needs it).
    pub bundle: Option<Arc<Bundle>>,
    /// `registry.credentials.password`, for the `kubernetes` stage's `registries.yaml`.
    pub registry_password: Option<Secret>,
    /// The certificate and login of the registry gpuctl runs (a `registry` host), made on
    /// this machine before any host is touched.
    pub registry_site: Option<Arc<registry::site::Materials>>,
}

/// Every stage, in order.
pub fn all(inputs: &Inputs) -> Vec<Box<dyn Stage>> {
    let bundle = inputs.bundle.clone();
    vec![
        Box::new(facts::FactsStage),
        Box::new(preflight::Preflight),
        Box::new(os::Os),
        Box::new(packages::Packages {
            bundle: bundle.clone(),
        }),
        Box::new(registry::RegistryStage {
            site: inputs.registry_site.clone(),
        }),
        Box::new(runtime::Runtime {
            registry_password: inputs.registry_password.clone(),
        }),
        Box::new(nfs::Nfs),
        Box::new(kubernetes::Kubernetes {
            bundle: bundle.clone(),
            registry_password: inputs.registry_password.clone(),
        }),
        Box::new(cni::CniStage {
            bundle: bundle.clone(),
        }),
        Box::new(ready::Ready),
        Box::new(kubeconfig::Kubeconfig),
        Box::new(labels::Labels),
        Box::new(gpu::Gpu),
        Box::new(dns::Dns),
        Box::new(storage::Storage),
        Box::new(stack::StackStage { bundle }),
        Box::new(users::Users),
    ]
}

/// Whether the stages that write the mirror's login (`kubernetes` for k3s, `runtime` for
/// kubeadm's containerd) write a password, which must then have been loaded.
pub fn registry_login(inv: &Inventory, loaded: Option<&Secret>) -> anyhow::Result<bool> {
    let wanted = inv.registry.as_ref().is_some_and(|r| r.password.is_some());
    if wanted && loaded.is_none() {
        anyhow::bail!("the registry password (registry.credentials.password) was not loaded");
    }
    Ok(wanted)
}

/// The stage names, in order (for flags and messages).
pub fn names() -> Vec<&'static str> {
    all(&Inputs::default()).iter().map(|s| s.name()).collect()
}

/// The stages that send files of the bundle, and the part of it each sends: the bundle is
/// loaded and those files verified before any host is touched, when one of them runs.
pub const BUNDLE_USERS: [(&str, &str); 6] = [
    ("packages", "packages/"),
    ("kubernetes", "bin/k3s"),
    ("kubernetes", "bin/kube"),
    ("kubernetes", "images/k3s-airgap-images-"),
    ("cni", "manifests/"),
    ("stack", "manifests/"),
];

/// What a stage cannot do without, for this inventory: the bundle must have a file whose
/// path starts with the prefix. Checked with the bundle, before any host is touched, as
/// `(stage, path prefix, what it is)`.
pub fn required_files(inv: &Inventory) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut required = match inv.cluster.distribution {
        Distribution::K3s => vec![(
            "kubernetes",
            "bin/k3s",
            "the k3s binary (bin/k3s for amd64 hosts, bin/k3s-arm64 for arm64 ones)",
        )],
        Distribution::Kubeadm => vec![
            (
                "kubernetes",
                "bin/kubeadm",
                "kubeadm, kubelet and kubectl (bin/kubeadm, bin/kubelet, bin/kubectl for amd64 \
                 hosts, bin/kubeadm-arm64 … for arm64 ones)",
            ),
            (
                "cni",
                "manifests/",
                "the pod network's manifests (manifests/<cluster.cni>/, e.g. manifests/calico/)",
            ),
        ],
    };
    if !inv.stack.components.is_empty() {
        required.push((
            "stack",
            "manifests/",
            "the manifests of stack.components (manifests/<component>/)",
        ));
    }
    required
}

#[cfg(test)]
pub(crate) mod sample;
