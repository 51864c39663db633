//! K7, the taints half: every kube-system DaemonSet runs on every node it selects, which
//! it only does where it tolerates the node's `NoSchedule`/`NoExecute` taints. A taint
//! from the inventory (`gpu=true:NoSchedule` to keep CPU work off GPU nodes is the usual
//! one) silently keeps a system DaemonSet off those nodes: no log collector, no load
//! balancer pods, no device plugin there, and nothing fails loudly. Node selectors are
//! honoured (a DaemonSet meant for GPU nodes only does not belong on the others); node
//! affinity is not read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::kube::{List, Node, Taint};

#[derive(Deserialize)]
struct DaemonSet {
    metadata: crate::kube::Meta,
    #[serde(default)]
    spec: DaemonSetSpec,
}

#[derive(Default, Deserialize)]
struct DaemonSetSpec {
    #[serde(default)]
    template: Template,
}

#[derive(Default, Deserialize)]
struct Template {
    #[serde(default)]
    spec: PodSpec,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
}

#[derive(Default, Deserialize)]
struct Toleration {
    #[serde(default)]
    key: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    effect: String,
}

impl Toleration {
    /// Kubernetes' rule: an empty effect matches every effect; `Exists` with an empty key
    /// matches every taint; otherwise the keys are equal and, unless `Exists`, the values.
    fn tolerates(&self, t: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        let exists = self.operator == "Exists";
        if self.key.is_empty() {
            return exists;
        }
        self.key == t.key && (exists || self.value == t.value)
    }
}

/// The second K7 finding, from the nodes and kube-system's DaemonSets.
pub fn check(nodes: &List<Node>, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let Some(c) = ev.cmd("system_daemonsets") else {
        f.add(
            "K7",
            Severity::Skip,
            "kube-system's DaemonSets were not read",
        );
        return f.list;
    };
    let sets: List<DaemonSet> = match crate::kube::list(&c.lines.join("\n"), "DaemonSet") {
        Ok(l) if c.ok() => l,
        Ok(_) | Err(_) => {
            f.add(
                "K7",
                Severity::Error,
                "cannot read kube-system's DaemonSets",
            )
            .evidence(c.lines.iter().take(3).cloned());
            return f.list;
        }
    };
    let mut kept_off = Vec::new();
    for ds in &sets.items {
        let spec = &ds.spec.template.spec;
        for node in &nodes.items {
            let selected = spec
                .node_selector
                .iter()
                .all(|(k, v)| node.metadata.labels.get(k) == Some(v));
            if !selected {
                continue;
            }
            let blocking: Vec<String> = node
                .spec
                .taints
                .iter()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .filter(|t| !spec.tolerations.iter().any(|tol| tol.tolerates(t)))
                .map(|t| format!("{}={}:{}", t.key, t.value, t.effect))
                .collect();
            if !blocking.is_empty() {
                kept_off.push(format!(
                    "daemonset {} is kept off node {} by {}",
                    ds.metadata.name,
                    node.metadata.name,
                    blocking.join(", ")
                ));
            }
        }
    }
    if kept_off.is_empty() {
        f.add(
            "K7",
            Severity::Ok,
            format!(
                "kube-system's {} DaemonSet(s) tolerate the taints of every node they select",
                sets.items.len()
            ),
        );
    } else {
        f.add(
            "K7",
            Severity::Warn,
            format!(
                "{} system DaemonSet/node pair(s) kept apart by a taint",
                kept_off.len()
            ),
        )
        .evidence(kept_off)
        .fix(
            "add a toleration for the taint to the DaemonSet (kubectl -n kube-system edit \
             daemonset NAME), or take the taint out of the inventory and run gpuctl install \
             --inventory INVENTORY --only labels",
        );
    }
    f.list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NODES: &str = r#"{"items": [
        {"metadata": {"name": "cp1", "labels": {}}, "spec": {}},
        {"metadata": {"name": "gpu1", "labels": {"gpu": "true"}},
         "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"},
                             {"key": "soft", "value": "", "effect": "PreferNoSchedule"}]}}]}"#;

    fn judge(sets: &str) -> Finding {
        let nodes: List<Node> = serde_json::from_str(NODES).unwrap();
        check(
            &nodes,
            &Evidence::for_test(&[("system_daemonsets", 0, sets)]),
        )
        .remove(0)
    }

    #[test]
    fn a_daemonset_without_the_toleration_is_kept_off_the_tainted_node() {
        let f = judge(
            r#"{"items": [{"metadata": {"name": "log-agent"}, "spec": {"template": {"spec": {}}}}]}"#,
        );
        assert_eq!(f.severity, Severity::Warn);
        assert_eq!(
            f.evidence,
            ["daemonset log-agent is kept off node gpu1 by gpu=true:NoSchedule"]
        );
    }

    #[test]
    fn tolerations_and_selectors_are_read_as_kubernetes_does() {
        for ds in [
            // Exists with no key tolerates everything.
            r#"{"operator": "Exists"}"#,
            // The key, any value.
            r#"{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}"#,
            // The key and value, every effect.
            r#"{"key": "gpu", "value": "true"}"#,
        ] {
            let sets = format!(
                r#"{{"items": [{{"metadata": {{"name": "a"}}, "spec": {{"template": {{"spec": {{"tolerations": [{ds}]}}}}}}}}]}}"#
            );
            assert_eq!(judge(&sets).severity, Severity::Ok, "{ds}");
        }
        // A wrong value or effect does not tolerate.
        let sets = r#"{"items": [{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"tolerations": [{"key": "gpu", "value": "false"}, {"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]}}}}]}"#;
        assert_eq!(judge(sets).severity, Severity::Warn);
        // Selecting only nodes without the taint is fine.
        let sets = r#"{"items": [{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"nodeSelector": {"gpu": "false"}}}}}]}"#;
        assert_eq!(judge(sets).severity, Severity::Ok);
    }
}
