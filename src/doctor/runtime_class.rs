//! R6: the RuntimeClass GPU pods name (`gpu.runtime_class`, `nvidia` unless the inventory
//! says otherwise) exists, with the handler the nodes' containerd registers for the NVIDIA
//! runtime (`nvidia`). Without it every pod that names the class is refused at admission
//! ("RuntimeClass not found"), which users meet as a notebook that never starts while the
//! device plugin and the allocatable GPUs all look right. Whether each GPU node's runtime
//! has that handler is R5's, read on the node.

use serde::Deserialize;

use super::compare::Facts;
use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::inventory::Inventory;

/// The handler the `gpu` stage's template gives the class, and k3s's containerd names the
/// NVIDIA runtime.
pub const HANDLER: &str = "nvidia";

#[derive(Deserialize)]
struct RuntimeClass {
    metadata: crate::kube::Meta,
    #[serde(default)]
    handler: String,
}

/// R6 from the cluster script's `runtimeclasses` answer.
pub fn check(inv: &Inventory, ev: &Evidence, facts: &[Facts]) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let gpu_hosts: Vec<&str> = facts
        .iter()
        .filter(|h| h.gpu_host)
        .map(|h| h.host.as_str())
        .collect();
    if gpu_hosts.is_empty() {
        f.add("R6", Severity::Skip, "no GPU host was reached");
        return f.list;
    }
    let want = &inv.gpu.runtime_class;
    let fix = "gpuctl install --inventory INVENTORY --only gpu";
    let list: crate::kube::List<RuntimeClass> = match ev.cmd("runtimeclasses") {
        Some(c) if c.ok() => match crate::kube::list(&c.lines.join("\n"), "RuntimeClass") {
            Ok(l) => l,
            Err(why) => {
                f.add("R6", Severity::Error, why);
                return f.list;
            }
        },
        Some(c) => {
            f.add("R6", Severity::Error, "cannot read the RuntimeClasses")
                .evidence(c.lines.clone());
            return f.list;
        }
        None => {
            f.add("R6", Severity::Skip, "the RuntimeClasses were not read");
            return f.list;
        }
    };
    let evidence: Vec<String> = list
        .items
        .iter()
        .map(|c| format!("{} → handler {}", c.metadata.name, c.handler))
        .collect();
    match list.items.iter().find(|c| &c.metadata.name == want) {
        None => {
            f.add(
                "R6",
                Severity::Error,
                format!(
                    "no RuntimeClass {want}: pods that name it (GPU pods on {}) are refused",
                    gpu_hosts.join(", ")
                ),
            )
            .evidence(evidence)
            .fix(fix);
        }
        Some(c) if c.handler != HANDLER => {
            f.add(
                "R6",
                Severity::Error,
                format!(
                    "RuntimeClass {want} has handler {:?}, and the nodes' runtime registers \
                     {HANDLER:?}: its pods cannot start",
                    c.handler
                ),
            )
            .evidence(evidence)
            .fix(format!("kubectl delete runtimeclass {want}; then {fix}"));
        }
        Some(_) => {
            f.add(
                "R6",
                Severity::Ok,
                format!("RuntimeClass {want} with handler {HANDLER}"),
            )
            .evidence(evidence);
        }
    }
    f.list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn gpu_facts() -> Vec<Facts> {
        vec![Facts {
            host: "gpu1".into(),
            gpu_host: true,
            ..Facts::default()
        }]
    }

    fn judge(answer: &str) -> Finding {
        let inv = sample::inventory();
        let ev = Evidence::for_test(&[("runtimeclasses", 0, answer)]);
        check(&inv, &ev, &gpu_facts()).remove(0)
    }

    #[test]
    fn the_class_must_exist_with_the_nvidia_handler() {
        let ok = judge(r#"{"items": [{"metadata": {"name": "nvidia"}, "handler": "nvidia"}]}"#);
        assert_eq!(ok.severity, Severity::Ok, "{ok:?}");
        let missing = judge(r#"{"items": [{"metadata": {"name": "kata"}, "handler": "kata"}]}"#);
        assert_eq!(missing.severity, Severity::Error);
        assert!(
            missing.title.contains("no RuntimeClass nvidia"),
            "{}",
            missing.title
        );
        assert!(missing.title.contains("gpu1"), "{}", missing.title);
        assert!(missing.fix.as_deref().unwrap().contains("--only gpu"));
        let wrong = judge(r#"{"items": [{"metadata": {"name": "nvidia"}, "handler": "runc"}]}"#);
        assert_eq!(wrong.severity, Severity::Error);
        assert!(wrong.title.contains("handler \"runc\""), "{}", wrong.title);
    }

    #[test]
    fn without_a_gpu_host_it_does_not_apply() {
        let inv = sample::inventory();
        let ev = Evidence::for_test(&[("runtimeclasses", 0, r#"{"items": []}"#)]);
        let f = check(&inv, &ev, &[]);
        assert_eq!(f[0].severity, Severity::Skip);
    }
}
