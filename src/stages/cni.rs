//! Stage `cni` (cluster): the pod network of a kubeadm cluster, from the bundle's
//! `manifests/<cluster.cni>/` (calico's or flannel's rendered manifests), right after the
//! `kubernetes` stage and before `ready`: kubeadm brings no pod network, and its nodes stay
//! NotReady until one runs. k3s brings flannel itself, so with k3s this stage does nothing.
//!
//! The manifests go through the same steps as a component of the `stack` stage (label
//! `gpuctl.io/component: <cni>`, images rewritten to the mirror and pinned by the lock,
//! calico's `CALICO_IPV4POOL_CIDR` set to `cluster.pod_cidr`, CRDs first and waited for
//! until Established) and the same [`super::manifests`] mechanism, so a re-run applies
//! nothing unless the bundle or the inventory changed. The stage ends when the network's
//! DaemonSets and Deployments are ready.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::manifests;
use super::ready::kubectl;
use super::stack;
use crate::bundle::Bundle;
use crate::inventory::{Cni, Distribution, Inventory};
use crate::mirror::rewrite::Rewrite;
use crate::plan::{Finish, HostFacts, Op, Scope, Stage};
use stack::workloads::COMPONENT_LABEL;

pub struct CniStage {
    /// Loaded and verified (its `manifests/` files) before any host is touched.
    pub bundle: Option<Arc<Bundle>>,
}

/// How long the network's workloads get to become ready.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The bundle directory of the inventory's pod network (`manifests/<name>/`).
pub fn component(inv: &Inventory) -> &'static str {
    match inv.cluster.cni {
        Cni::Calico => "calico",
        Cni::Flannel => "flannel",
    }
}

/// Whether gpuctl applies the pod network (kubeadm) or the distribution brings it (k3s).
pub fn applies(inv: &Inventory) -> bool {
    inv.cluster.distribution == Distribution::Kubeadm
}

impl Stage for CniStage {
    fn name(&self) -> &'static str {
        "cni"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        if !applies(inv) {
            return Ok(Vec::new());
        }
        let name = component(inv);
        let Some(bundle) = self.bundle.as_deref() else {
            bail!(
                "kubeadm's pod network ({name}) comes from the bundle's manifests/{name}/, \
                 and no bundle is loaded: add `bundle:` to the inventory"
            );
        };
        let lock = manifests::lock(inv)?;
        let rewrite = inv.registry.as_ref().map(|r| Rewrite {
            mirror: &r.mirror,
            prefix: None,
            lock: lock.as_ref(),
        });
        stack::component_ops(inv, bundle, rewrite.as_ref(), ("cni", name), kubectl(inv))
            .with_context(|| format!("cluster.cni {name} (kubeadm's pod network)"))
    }
    fn finish(&self, inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        if !applies(inv) {
            return None;
        }
        let name = component(inv);
        Some(stack::workloads_wait(
            kubectl(inv),
            &format!("{COMPONENT_LABEL}={name}"),
            format!("the pod network ({name}) ready"),
            TIMEOUT,
        ))
    }
}
