//! Stage `ready` (cluster): wait until every node of the inventory is Ready.
//!
//! The first cluster stage: it runs once, over the first server's connection, after every
//! host of the run finished its `kubernetes` stage. It asks `kubectl get nodes -o json`
//! every 2 s, for at most 5 minutes, and judges the answer here (no `jq` on the nodes): a
//! node of the inventory (a host with the `server` or `worker` role) that has not
//! registered, or whose `Ready` condition is not `True`, is named with its condition's
//! reason and message, and with the command that shows why.

use std::sync::Arc;
use std::time::Duration;

use crate::inventory::{Distribution, Inventory};
use crate::kube;
use crate::plan::{Finish, HostFacts, Op, Scope, Stage, Wait};

pub struct Ready;

/// How long nodes get to become Ready after their k3s started.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// kubectl of k3s, whatever the admin has on `PATH`, with the admin kubeconfig.
pub const KUBECTL: &str = "/usr/local/bin/k3s kubectl";

/// kubectl with the admin kubeconfig on the first server, for the inventory's
/// distribution: k3s's own (above), or the one the `kubernetes` stage puts beside kubeadm
/// with `/etc/kubernetes/admin.conf`. Never the admin's `kubectl` on `PATH`, whose version
/// and default kubeconfig gpuctl does not know.
pub fn kubectl(inv: &Inventory) -> &'static str {
    kubectl_for(inv.cluster.distribution)
}

/// [`kubectl`] for a distribution.
pub fn kubectl_for(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::K3s => KUBECTL,
        Distribution::Kubeadm => super::kubernetes::kubeadm::KUBECTL,
    }
}

impl Stage for Ready {
    fn name(&self) -> &'static str {
        "ready"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn plan(&self, _inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        Ok(Vec::new())
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn finish(&self, inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        let nodes = node_names(inv);
        let judged = nodes.clone();
        let kubectl = kubectl(inv);
        Some(Finish::Wait(Wait {
            what: format!("every node Ready ({})", nodes.join(", ")),
            command: format!("{kubectl} get nodes -o json --request-timeout=10s"),
            timeout: TIMEOUT,
            interval: Duration::from_secs(2),
            judge: Arc::new(move |out| judge(&judged, out)),
            hint: format!("{kubectl} describe nodes {}", nodes.join(" ")),
        }))
    }
}

/// The names of the hosts that are Kubernetes nodes, in inventory order.
pub fn node_names(inv: &Inventory) -> Vec<String> {
    inv.nodes().map(|h| h.name.clone()).collect()
}

/// `Ok` when every one of `nodes` is Ready in `kubectl get nodes -o json` output; else
/// what is missing, one node per line.
pub fn judge(nodes: &[String], output: &str) -> Result<(), String> {
    let list = kube::list::<kube::Node>(output, "node")?;
    let mut missing = Vec::new();
    for name in nodes {
        let Some(node) = list.items.iter().find(|n| &n.metadata.name == name) else {
            missing.push(format!("{name}: not registered with the cluster"));
            continue;
        };
        match node.ready() {
            Some(c) if c.status == "True" => {}
            Some(c) => missing.push(format!("{name}: {}", c.line())),
            None => missing.push(format!("{name}: no Ready condition yet")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn node(name: &str, ready: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready, "reason": reason, "message": "Kubelet stopped posting node status."}
            ]}
        })
    }

    #[test]
    fn every_inventory_node_must_be_registered_and_ready() {
        let nodes: Vec<String> = ["cp1", "gpu1", "far"].map(String::from).to_vec();
        let all = serde_json::json!({"kind": "List", "items": [
            node("cp1", "True", "KubeletReady"), node("gpu1", "True", ""), node("far", "True", ""),
            node("someone-else", "False", "")
        ]});
        assert_eq!(judge(&nodes, &all.to_string()), Ok(()));
        let some = serde_json::json!({"items": [
            node("cp1", "True", ""), node("gpu1", "Unknown", "NodeStatusUnknown")
        ]});
        assert_eq!(
            judge(&nodes, &some.to_string()).unwrap_err(),
            "gpu1: Ready=Unknown (NodeStatusUnknown: Kubelet stopped posting node status.)\n\
             far: not registered with the cluster"
        );
        let err = judge(&nodes, "The connection to the server was refused").unwrap_err();
        assert!(
            err.starts_with("kubectl did not answer with a node list"),
            "{err}"
        );
    }

    #[test]
    fn the_wait_names_the_nodes_and_how_to_see_why() {
        let inv = sample::inventory();
        assert_eq!(node_names(&inv), ["cp1", "gpu1", "far"]);
        let hf = sample::facts(&inv, "cp1");
        let Some(Finish::Wait(w)) = Ready.finish(&inv, &hf) else {
            panic!("ready waits")
        };
        assert_eq!(w.what, "every node Ready (cp1, gpu1, far)");
        assert_eq!(
            w.hint,
            "/usr/local/bin/k3s kubectl describe nodes cp1 gpu1 far"
        );
        assert!(w.command.contains("get nodes -o json"));
    }
}
