//! Stage `users` (cluster): per user of the inventory a namespace, the ResourceQuota of the
//! user's tier, the `edit` role for the user's email and, with a data path, a read-only
//! volume of the shared data (template `users/profiles.yaml`), applied through
//! [`super::manifests`].
//!
//! A user taken out of the inventory leaves the manifest, and the manifest mechanism deletes
//! what was applied for them (the namespace, and with it everything in it), except the
//! data volume, which is marked to be kept: it names shared data, not the user's.

use super::manifests;
use super::ready::kubectl;
use crate::inventory::Inventory;
use crate::plan::{HostFacts, Op, Scope, Stage};

pub struct Users;

/// The template holding every user's objects.
pub const TEMPLATE: &str = "users/profiles.yaml";

impl Stage for Users {
    fn name(&self) -> &'static str {
        "users"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        manifests::ops(inv, &[TEMPLATE], kubectl(inv))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn users_are_listed_for_pruning_but_their_data_volume_is_kept() {
        let yaml = format!(
            "{}\nusers:\n  tiers:\n    mid: {{ cpu: 8, memory: 32Gi, gpu: 1, storage: 100Gi, pvcs: 5 }}\n  list:\n    - {{ name: alice, email: alice@lab.example, tier: mid, data_path: /data/shared }}\nstorage:\n  nfs: {{ server: 10.0.0.9, export: /data }}\n",
            sample::YAML.replace(
                "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n",
                ""
            )
        );
        let inv = sample::load(&yaml);
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Users.plan(&inv, &hf).unwrap();
        let Op::File { content, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert!(content.contains("name: \"alice@lab.example\""), "{content}");
        assert!(content.contains("kind: PersistentVolume\n"), "{content}");
        let Op::File { content: list, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert!(list.contains("namespace/"), "{list}");
        assert!(
            list.contains("rolebinding.rbac.authorization.k8s.io/gpuctl-user-edit"),
            "{list}"
        );
        assert!(!list.contains("persistentvolume/"), "{list}");
    }
}
