//! R1: the runtime each node's kubelet really uses (`status.nodeInfo.containerRuntimeVersion`,
//! `containerd://…` or `docker://…`) is the one the inventory configures
//! (`cluster.container_runtime`). They part when k3s was started by hand or by another
//! installer with `--docker` (or without it): gpuctl then writes daemon.json or
//! registries.yaml for a runtime the node does not use, and the mirror, the CA and the
//! NVIDIA runtime silently do not apply to its pods.

use super::{Finding, Findings, Severity};
use crate::inventory::{ContainerRuntime, Inventory};
use crate::kube::{List, Node};

/// R1, one finding per inventory node that registered (K3 speaks for the others).
pub fn check(inv: &Inventory, list: &List<Node>) -> Vec<Finding> {
    let want = match inv.cluster.container_runtime {
        ContainerRuntime::Containerd => "containerd",
        ContainerRuntime::Docker => "docker",
    };
    let mut out = Vec::new();
    for host in inv.nodes() {
        let mut f = Findings::new(&host.name);
        let Some(node) = list.items.iter().find(|n| n.metadata.name == host.name) else {
            f.add("R1", Severity::Skip, "not registered with the cluster (K3)");
            out.extend(f.list);
            continue;
        };
        let version = &node.status.node_info.container_runtime_version;
        let got = version.split("://").next().unwrap_or_default();
        if version.is_empty() {
            f.add(
                "R1",
                Severity::Skip,
                "the node reports no container runtime yet",
            );
        } else if got == want {
            f.add(
                "R1",
                Severity::Ok,
                format!("the kubelet runs pods with {version}"),
            );
        } else {
            f.add(
                "R1",
                Severity::Error,
                format!(
                    "the kubelet runs pods with {version}, and the inventory configures \
                     {want}: the mirror, its CA and the NVIDIA runtime gpuctl set up for \
                     {want} do not apply to this node's pods"
                ),
            )
            .evidence([format!("containerRuntimeVersion: {version}")])
            .fix(format!(
                "gpuctl install --inventory INVENTORY --only runtime,kubernetes --hosts {} \
                 (k3s's config.yaml says `docker: true` only with the docker runtime); or set \
                 cluster.container_runtime to {got} if that is what the site wants",
                host.name
            ));
        }
        out.extend(f.list);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn the_kubelets_runtime_must_be_the_inventorys() {
        let inv = sample::inventory();
        let list: List<Node> = serde_json::from_value(serde_json::json!({"items": [
            {"metadata": {"name": "cp1"}, "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7.22-k3s1"}}},
            {"metadata": {"name": "gpu1"}, "status": {"nodeInfo": {"containerRuntimeVersion": "docker://24.0.7"}}}
        ]}))
        .unwrap();
        let f = check(&inv, &list);
        let by = |h: &str| f.iter().find(|x| x.host == h).unwrap();
        assert_eq!(by("cp1").severity, Severity::Ok);
        assert_eq!(by("gpu1").severity, Severity::Error);
        assert!(
            by("gpu1").title.contains("docker://24.0.7"),
            "{}",
            by("gpu1").title
        );
        assert!(by("gpu1").fix.as_deref().unwrap().contains("--hosts gpu1"));
        assert_eq!(by("far").severity, Severity::Skip);
    }
}
