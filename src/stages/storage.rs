//! Stage `storage` (cluster): the local-path provisioner (its path from the inventory, its
//! helper image from the mirror) and the NFS dynamic provisioner, from the templates
//! `storage/local-path.yaml` and `storage/nfs-provisioner.yaml` through
//! [`super::manifests`]; then a check that the cluster has exactly one default
//! StorageClass, the one the inventory marks.
//!
//! Why the check: two default classes make Kubernetes pick one arbitrarily for claims that
//! name none (the ML stack's do not), and none leaves them Pending for ever. On k3s the
//! bundled `local-storage` addon is the usual second default: the `kubernetes` stage
//! disables it when the inventory asks for gpuctl's local-path, and this check catches any
//! other.

use std::sync::Arc;
use std::time::Duration;

use super::manifests;
use super::ready::kubectl;
use crate::inventory::Inventory;
use crate::kube;
use crate::plan::{Finish, HostFacts, Op, Scope, Stage, Wait};

pub struct Storage;

/// The templates this stage applies, in order.
pub const TEMPLATES: [&str; 2] = ["storage/local-path.yaml", "storage/nfs-provisioner.yaml"];

/// The StorageClass names the templates create.
pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const NFS_CLASS: &str = "nfs-client";

/// The annotation that marks the default StorageClass.
pub const DEFAULT_ANNOTATION: &str = kube::DEFAULT_CLASS;

/// How long the default class may take to settle (k3s removing its disabled addon).
pub const TIMEOUT: Duration = Duration::from_secs(90);

impl Stage for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        manifests::ops(inv, &TEMPLATES, kubectl(inv))
    }
    fn finish(&self, inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        let want = default_class(inv)?.to_string();
        let judged = want.clone();
        let kubectl = kubectl(inv);
        Some(Finish::Wait(Wait {
            what: format!("exactly one default StorageClass, {want}"),
            command: format!("{kubectl} get storageclass -o json --request-timeout=10s"),
            timeout: TIMEOUT,
            interval: Duration::from_secs(3),
            judge: Arc::new(move |out| judge(&judged, out)),
            hint: format!("{kubectl} get storageclass"),
        }))
    }
}

/// The class the inventory marks default, if any (the inventory allows at most one).
pub fn default_class(inv: &Inventory) -> Option<&'static str> {
    if inv.storage.local_path.as_ref().is_some_and(|l| l.default) {
        Some(LOCAL_PATH_CLASS)
    } else if inv
        .storage
        .nfs
        .as_ref()
        .is_some_and(|n| n.default && n.provisioner)
    {
        Some(NFS_CLASS)
    } else {
        None
    }
}

/// `Ok` when `want` is the one default class in `kubectl get storageclass -o json`.
pub fn judge(want: &str, output: &str) -> Result<(), String> {
    let list = kube::list::<kube::StorageClass>(output, "StorageClass")?;
    judge_list(want, &list)
}

/// [`judge`] on a list already read.
pub fn judge_list(want: &str, list: &kube::List<kube::StorageClass>) -> Result<(), String> {
    let defaults = list.defaults();
    if defaults == [want] {
        return Ok(());
    }
    let mut why = Vec::new();
    if !list.items.iter().any(|c| c.metadata.name == want) {
        why.push(format!("the StorageClass {want} does not exist"));
    } else if !defaults.contains(&want) {
        why.push(format!("{want} is not marked default"));
    }
    for other in defaults.iter().filter(|d| **d != want) {
        why.push(format!(
            "{other} is marked default too; if it is not gpuctl's, unmark it: kubectl annotate \
             storageclass {other} {DEFAULT_ANNOTATION}=false --overwrite"
        ));
    }
    Err(why.join("\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn class(name: &str, default: Option<&str>) -> serde_json::Value {
        let mut meta = serde_json::json!({"name": name});
        if let Some(d) = default {
            meta["annotations"] = serde_json::json!({DEFAULT_ANNOTATION: d});
        }
        serde_json::json!({"metadata": meta})
    }

    #[test]
    fn exactly_the_inventory_default_must_be_default() {
        let one = serde_json::json!({"items": [class("local-path", Some("true")), class("nfs-client", Some("false"))]});
        assert_eq!(judge("local-path", &one.to_string()), Ok(()));
        let two = serde_json::json!({"items": [class("local-path", Some("true")), class("standard", Some("true"))]});
        let err = judge("local-path", &two.to_string()).unwrap_err();
        assert!(err.starts_with("standard is marked default too"), "{err}");
        assert!(
            err.contains("kubectl annotate storageclass standard"),
            "{err}"
        );
        let none = serde_json::json!({"items": [class("nfs-client", None)]});
        assert_eq!(
            judge("local-path", &none.to_string()).unwrap_err(),
            "the StorageClass local-path does not exist"
        );
    }

    #[test]
    fn the_sample_applies_local_path_with_its_path_and_waits_for_it_as_default() {
        let inv = sample::inventory();
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Storage.plan(&inv, &hf).unwrap();
        let Op::File { path, content, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(path, "/var/lib/gpuctl/manifests/storage/local-path.yaml");
        assert!(content.contains("/data/k8s/local-path"), "{content}");
        let Some(Finish::Wait(w)) = Storage.finish(&inv, &hf) else {
            panic!("local_path is default in the sample")
        };
        assert_eq!(w.what, "exactly one default StorageClass, local-path");
    }
}
