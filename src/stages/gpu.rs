//! Stage `gpu` (cluster): the RuntimeClass GPU pods use, the NVIDIA device plugin and, when
//! the inventory asks for it, dcgm-exporter, applied from the templates with the mirror's
//! images (see [`super::manifests`]); then a wait until every GPU node advertises as many
//! `nvidia.com/gpu` as `nvidia-smi` lists on it.
//!
//! Why the wait: a device plugin that runs but sees no GPU (the nvidia runtime missing on
//! the node, a driver/library mismatch) leaves the node with 0 allocatable GPUs, and the
//! first symptom is otherwise a user's pod stuck in Pending. Failing here names the node
//! while the admin is still at the install.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::manifests;
use super::ready::kubectl;
use super::runtime::gpu_node;
use crate::inventory::Inventory;
use crate::kube;
use crate::plan::{Finish, HostFacts, Op, Scope, Stage, Wait};

pub struct Gpu;

/// The templates this stage applies, in order.
pub const TEMPLATES: [&str; 3] = [
    "gpu/runtimeclass.yaml",
    "gpu/device-plugin.yaml",
    "gpu/dcgm-exporter.yaml",
];

/// How long the device plugin gets to advertise every node's GPUs.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// The resource the device plugin advertises.
pub const RESOURCE: &str = "nvidia.com/gpu";

impl Stage for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["runtime", "kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        manifests::ops(inv, &TEMPLATES, kubectl(inv))
    }
    fn finish(&self, inv: &Inventory, hf: &HostFacts) -> Option<Finish> {
        if !inv.gpu.device_plugin {
            return None;
        }
        let expected = expected(inv, hf);
        if expected.is_empty() {
            return None;
        }
        let names: Vec<String> = expected.keys().cloned().collect();
        let kubectl = kubectl(inv);
        Some(Finish::Wait(Wait {
            what: format!(
                "{RESOURCE} allocatable on every GPU node ({})",
                expected
                    .iter()
                    .map(|(n, c)| match c {
                        Some(c) => format!("{n}: {c}"),
                        None => format!("{n}: at least 1"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            command: format!("{kubectl} get nodes -o json --request-timeout=10s"),
            timeout: TIMEOUT,
            interval: Duration::from_secs(3),
            judge: Arc::new(move |out| judge(&expected, out)),
            hint: format!(
                "{kubectl} -n kube-system logs daemonset/nvidia-device-plugin-daemonset; \
                 {kubectl} describe nodes {}",
                names.join(" ")
            ),
        }))
    }
}

/// Every GPU node with the number of GPUs `nvidia-smi` listed on it in this run (`None`
/// when unknown: `gpu: true` on a host not part of this run, or whose nvidia-smi listed
/// none, where at least one is expected).
pub fn expected(inv: &Inventory, hf: &HostFacts) -> BTreeMap<String, Option<usize>> {
    let mut out = BTreeMap::new();
    for host in inv.nodes() {
        let listed = hf.nodes.get(&host.name).map(|f| f.gpus.len());
        if gpu_node(host, listed) == Some(true) {
            let listed = listed.unwrap_or(0);
            out.insert(host.name.clone(), (listed > 0).then_some(listed));
        }
    }
    out
}

/// `Ok` when each node of `expected` advertises its count (or at least one) of
/// [`RESOURCE`] in `kubectl get nodes -o json`; else one line per node that does not.
pub fn judge(expected: &BTreeMap<String, Option<usize>>, output: &str) -> Result<(), String> {
    let list = kube::list::<kube::Node>(output, "node")?;
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let Some(node) = list.items.iter().find(|n| &n.metadata.name == name) else {
            wrong.push(format!("{name}: not registered with the cluster"));
            continue;
        };
        if let Some(why) = mismatch(node, *want) {
            wrong.push(format!("{name}: {why}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// What is wrong with `node`'s allocatable GPUs when `nvidia-smi` listed `want` of them
/// (`None`: unknown, at least one expected); `None` when they agree.
pub fn mismatch(node: &kube::Node, want: Option<usize>) -> Option<String> {
    let have = usize::try_from(node.allocatable(RESOURCE)).unwrap_or(usize::MAX);
    match want {
        Some(want) if have != want => Some(format!(
            "allocatable {RESOURCE} is {have}, but nvidia-smi lists {want} GPU(s) on it"
        )),
        None if have == 0 => Some(format!(
            "allocatable {RESOURCE} is 0 on a host the inventory says has GPUs"
        )),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::facts::{Facts, Gpu as GpuFact};
    use crate::inventory::GpuPresence;
    use crate::stages::sample;

    fn gpus(n: usize) -> Facts {
        let mut f = Facts::default();
        for _ in 0..n {
            f.gpus.push(GpuFact {
                name: "Tesla T4".into(),
                memory_mib: 15360,
                driver: "550.54".into(),
            });
        }
        f
    }

    fn node(name: &str, gpus: Option<&str>) -> serde_json::Value {
        let mut alloc = serde_json::json!({"cpu": "4"});
        if let Some(g) = gpus {
            alloc[RESOURCE] = g.into();
        }
        serde_json::json!({"metadata": {"name": name}, "status": {"allocatable": alloc}})
    }

    #[test]
    fn gpu_nodes_expect_what_nvidia_smi_listed() {
        let mut inv = sample::inventory();
        inv.hosts.iter_mut().find(|h| h.name == "far").unwrap().gpu = GpuPresence::Auto;
        let mut hf = sample::facts(&inv, "cp1");
        // gpu1 (gpu: true) not in the run yet; far (auto) has 2.
        hf.nodes.insert("far".into(), gpus(2));
        hf.nodes.insert("cp1".into(), gpus(0));
        let want = expected(&inv, &hf);
        assert_eq!(
            want,
            BTreeMap::from([("far".to_string(), Some(2)), ("gpu1".to_string(), None)])
        );
        let good = serde_json::json!({"items": [node("cp1", None), node("gpu1", Some("4")), node("far", Some("2"))]});
        assert_eq!(judge(&want, &good.to_string()), Ok(()));
        let bad = serde_json::json!({"items": [node("gpu1", Some("0")), node("far", Some("1"))]});
        assert_eq!(
            judge(&want, &bad.to_string()).unwrap_err(),
            "far: allocatable nvidia.com/gpu is 1, but nvidia-smi lists 2 GPU(s) on it\n\
             gpu1: allocatable nvidia.com/gpu is 0 on a host the inventory says has GPUs"
        );
    }

    #[test]
    fn without_the_device_plugin_or_gpu_nodes_there_is_nothing_to_wait_for() {
        let mut inv = sample::inventory();
        let hf = sample::facts(&inv, "cp1");
        let Some(Finish::Wait(w)) = Gpu.finish(&inv, &hf) else {
            panic!("gpu1 has GPUs: the stage waits for them")
        };
        assert_eq!(
            w.what,
            "nvidia.com/gpu allocatable on every GPU node (gpu1: at least 1)"
        );
        inv.gpu.device_plugin = false;
        assert!(Gpu.finish(&inv, &hf).is_none());
        inv.gpu.device_plugin = true;
        for h in &mut inv.hosts {
            h.gpu = GpuPresence::No;
        }
        assert!(Gpu.finish(&inv, &hf).is_none());
    }

    #[test]
    fn the_plan_applies_the_three_templates() {
        let inv = sample::inventory();
        let hf = sample::facts(&inv, "cp1");
        let ops = Gpu.plan(&inv, &hf).unwrap();
        let files: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::File { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert!(files.contains(&"/var/lib/gpuctl/manifests/gpu/runtimeclass.yaml"));
        assert!(files.contains(&"/var/lib/gpuctl/manifests/gpu/device-plugin.yaml"));
    }
}
