//! K7, the taints half: every kube-system DaemonSet runs on every node it selects, which
//! it only does where it tolerates the node's `NoSchedule`/`NoExecute` taints. A taint
//! from the inventory (`gpu=true:NoSchedule` to keep CPU work off GPU nodes is the usual
//! one) silently keeps a system DaemonSet off those nodes: no log collector, no load
//! balancer pods, no device plugin there, and nothing fails loudly. Which nodes a
//! DaemonSet is meant for is read as the scheduler reads it: its `nodeSelector` and its
//! required node affinity (a DaemonSet meant for GPU nodes only does not belong on the
//! others); preferred affinity does not restrict it.

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
    #[serde(default)]
    affinity: Affinity,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Affinity {
    #[serde(default)]
    node_affinity: NodeAffinity,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAffinity {
    required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelector {
    #[serde(default)]
    node_selector_terms: Vec<Term>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Term {
    #[serde(default)]
    match_expressions: Vec<Requirement>,
    #[serde(default)]
    match_fields: Vec<Requirement>,
}

#[derive(Default, Deserialize)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

impl Requirement {
    /// Kubernetes' node selector operators; `value` is the node's label (or field).
    fn matches(&self, value: Option<&str>) -> bool {
        let number = |v: &str| v.parse::<i64>().ok();
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            "NotIn" => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" | "Lt" => match (
                value.and_then(number),
                self.values.first().and_then(|v| number(v)),
            ) {
                (Some(v), Some(limit)) if self.operator == "Gt" => v > limit,
                (Some(v), Some(limit)) => v < limit,
                _ => false,
            },
            // An operator the API would refuse: it selects nothing.
            _ => false,
        }
    }
}

impl PodSpec {
    /// Whether the scheduler would place this pod on `node` if no taint were there: every
    /// `nodeSelector` label, and one required affinity term (terms are ORed, the
    /// requirements of a term ANDed; `matchFields` knows only `metadata.name`).
    fn selects(&self, node: &Node) -> bool {
        let labels = &node.metadata.labels;
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            return false;
        }
        let Some(required) = &self
            .affinity
            .node_affinity
            .required_during_scheduling_ignored_during_execution
        else {
            return true;
        };
        required.node_selector_terms.iter().any(|term| {
            (!term.match_expressions.is_empty() || !term.match_fields.is_empty())
                && term
                    .match_expressions
                    .iter()
                    .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
                && term.match_fields.iter().all(|r| {
                    r.matches((r.key == "metadata.name").then_some(node.metadata.name.as_str()))
                })
        })
    }
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
            if !spec.selects(node) {
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

    fn with_affinity(terms: &str) -> String {
        format!(
            r#"{{"items": [{{"metadata": {{"name": "a"}}, "spec": {{"template": {{"spec": {{"affinity": {{"nodeAffinity": {{"requiredDuringSchedulingIgnoredDuringExecution": {{"nodeSelectorTerms": {terms}}}}}}}}}}}}}}}]}}"#
        )
    }

    #[test]
    fn required_node_affinity_decides_which_nodes_a_daemonset_is_meant_for() {
        // Meant for the other nodes only: the taint keeps it from nowhere it should be.
        for terms in [
            r#"[{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]"#,
            r#"[{"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["true"]}]}]"#,
            r#"[{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["cp1"]}]}]"#,
        ] {
            assert_eq!(
                judge(&with_affinity(terms)).severity,
                Severity::Ok,
                "{terms}"
            );
        }
        // Meant for GPU nodes (terms are ORed): the taint keeps it off.
        for terms in [
            r#"[{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["true"]}]}]"#,
            r#"[{"matchExpressions": [{"key": "nope", "operator": "Exists"}]}, {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]"#,
        ] {
            let f = judge(&with_affinity(terms));
            assert_eq!(f.severity, Severity::Warn, "{terms}");
            assert_eq!(
                f.evidence,
                ["daemonset a is kept off node gpu1 by gpu=true:NoSchedule"]
            );
        }
        // Preferred affinity does not restrict where it belongs.
        let sets = r#"{"items": [{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}}]}}}}}}]}"#;
        assert_eq!(judge(sets).severity, Severity::Warn);
    }
}
