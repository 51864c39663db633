//! Stage `labels` (cluster): every node's labels and taints, as the inventory says, applied
//! with kubectl on the first server.
//!
//! k3s reads `node-label`/`node-taint` only when a node registers, so a label added to the
//! inventory later would never reach a running node; this stage applies them every time they
//! change. Each node gets its inventory `labels` and `taints`, and `gpu=true` when it has
//! GPUs (the device plugin's nodeSelector), unless the inventory sets `gpu` itself.
//!
//! Removing a label from the inventory removes it from the node, and only labels gpuctl set
//! are ever removed: the keys gpuctl manages are recorded on the node itself, in the
//! annotations `gpuctl.io/labels` and `gpuctl.io/taints`. The record lives with the node, not
//! on the first server, so it stays right when the first server is rebuilt.

use std::collections::BTreeMap;

use super::ready::kubectl;
use super::runtime::gpu_node;
use crate::inventory::{Host, Inventory};
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::transport::shell::quote;

pub struct Labels;

/// The annotation listing the label keys gpuctl set on a node.
pub const LABELS_ANNOTATION: &str = "gpuctl.io/labels";
/// The annotation listing the taints (`key:Effect`) gpuctl set on a node.
pub const TAINTS_ANNOTATION: &str = "gpuctl.io/taints";

impl Stage for Labels {
    fn name(&self) -> &'static str {
        "labels"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let mut ops = Vec::new();
        for host in inv.nodes() {
            let listed = hf.nodes.get(&host.name).map(|f| f.gpus.len());
            let wanted = wanted(host, gpu_node(host, listed))?;
            ops.push(Op::Command {
                run: apply_script(&host.name, &wanted, kubectl(inv)),
                guard: guard(&host.name, &wanted, kubectl(inv)),
                undo: None,
                rerun_on: Vec::new(),
            });
        }
        Ok(ops)
    }
}

/// What one node should carry.
#[derive(Debug, PartialEq, Eq)]
pub struct Wanted {
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)`.
    pub taints: Vec<(String, String, String)>,
}

/// The labels and taints of `host`: the inventory's, plus `gpu=true` on a GPU host (`gpu`:
/// whether it is one, `None` when unknown — a `gpu: auto` host not part of this run).
pub fn wanted(host: &Host, gpu: Option<bool>) -> anyhow::Result<Wanted> {
    let mut labels = host.labels.clone();
    if !labels.contains_key("gpu") {
        let Some(gpu) = gpu else {
            anyhow::bail!(
                "{} has `gpu: auto` and is not part of this run, so whether it has GPUs is \
                 unknown: run without --hosts, or set `gpu: true` or `gpu: false` for it in \
                 the inventory",
                host.name
            );
        };
        if gpu {
            labels.insert("gpu".into(), "true".into());
        }
    }
    let taints = host.taints.iter().map(|t| split_taint(t)).collect();
    Ok(Wanted { labels, taints })
}

/// A taint as kubectl takes it: `key[=value]:Effect`.
pub fn taint_spec(key: &str, value: &str, effect: &str) -> String {
    if value.is_empty() {
        format!("{key}:{effect}")
    } else {
        format!("{key}={value}:{effect}")
    }
}

/// `key[=value]:Effect` (validated with the inventory) → its parts.
pub(crate) fn split_taint(taint: &str) -> (String, String, String) {
    let (kv, effect) = taint.rsplit_once(':').unwrap_or((taint, ""));
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    (key.into(), value.into(), effect.into())
}

fn label_keys(w: &Wanted) -> String {
    w.labels.keys().cloned().collect::<Vec<_>>().join(",")
}

fn taint_ids(w: &Wanted) -> String {
    w.taints
        .iter()
        .map(|(k, _, e)| format!("{k}:{e}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The jsonpath of the node's two annotations and its taints, twice:
/// `LABELS;TAINTS;[k=v:E]...;[k:E]...`.
const STATE: &str = "{.metadata.annotations.gpuctl\\.io/labels};\
    {.metadata.annotations.gpuctl\\.io/taints};\
    {range .spec.taints[*]}[{.key}={.value}:{.effect}]{end};\
    {range .spec.taints[*]}[{.key}:{.effect}]{end}";

/// Sets the wanted labels and taints, removes the ones gpuctl set before that are no
/// longer wanted (a taint only while the node has it: kubectl fails on a missing one), and
/// records what gpuctl now manages.
fn apply_script(node: &str, w: &Wanted, kubectl: &str) -> String {
    let n = quote(node);
    let labels: Vec<String> = w
        .labels
        .iter()
        .map(|(k, v)| quote(&format!("{k}={v}")))
        .collect();
    let taints: Vec<String> = w
        .taints
        .iter()
        .map(|(k, v, e)| quote(&taint_spec(k, v, e)))
        .collect();
    let keys = label_keys(w);
    let ids = taint_ids(w);
    format!(
        "# {node}: labels and taints\n\
         set -e\n\
         state=$({kubectl} get node {n} -o jsonpath={state})\n\
         old_labels=${{state%%;*}}; rest=${{state#*;}}; old_taints=${{rest%%;*}}; ids=${{rest##*;}}\n\
         set -- {labels}\n\
         for k in $(printf %s \"$old_labels\" | tr , ' '); do\n\
         \x20 case ,{keys_q}, in *,\"$k\",*) ;; *) set -- \"$@\" \"$k-\" ;; esac\n\
         done\n\
         [ $# -eq 0 ] || {kubectl} label node {n} --overwrite \"$@\"\n\
         set -- {taints}\n\
         for t in $(printf %s \"$old_taints\" | tr , ' '); do\n\
         \x20 case ,{ids_q}, in *,\"$t\",*) continue ;; esac\n\
         \x20 case \"$ids\" in *\"[$t]\"*) set -- \"$@\" \"$t-\" ;; esac\n\
         done\n\
         [ $# -eq 0 ] || {kubectl} taint node {n} --overwrite \"$@\"\n\
         {kubectl} annotate node {n} --overwrite {ann_l} {ann_t}\n",
        state = quote(STATE),
        labels = labels.join(" "),
        taints = taints.join(" "),
        keys_q = quote(&keys),
        ids_q = quote(&ids),
        ann_l = quote(&format!("{LABELS_ANNOTATION}={keys}")),
        ann_t = quote(&format!("{TAINTS_ANNOTATION}={ids}")),
    )
}

/// Holds when the node has every wanted label and taint and gpuctl's record matches (so
/// nothing it set before is left to remove).
fn guard(node: &str, w: &Wanted, kubectl: &str) -> String {
    let n = quote(node);
    let mut checks = vec![format!(
        "state=$({kubectl} get node {n} -o jsonpath={state})",
        state = quote(STATE)
    )];
    checks.push(format!(
        "case \"$state\" in {}*) ;; *) exit 1 ;; esac",
        quote(&format!("{};{};", label_keys(w), taint_ids(w)))
    ));
    for (k, v, e) in &w.taints {
        checks.push(format!(
            "case \"$state\" in *{}*) ;; *) exit 1 ;; esac",
            quote(&format!("[{k}={v}:{e}]"))
        ));
    }
    if !w.labels.is_empty() {
        let selector: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        checks.push(format!(
            "{kubectl} get nodes -l {} -o name | grep -qx {}",
            quote(&selector.join(",")),
            quote(&format!("node/{node}"))
        ));
    }
    checks.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn gpu_hosts_get_gpu_true_and_inventory_labels_and_taints() {
        let mut inv = sample::inventory();
        let gpu1 = inv.hosts.iter_mut().find(|h| h.name == "gpu1").unwrap();
        gpu1.labels.insert("gpu-type".into(), "T4".into());
        gpu1.taints.push("nvidia.com/gpu=present:NoSchedule".into());
        let gpu1 = inv.hosts.iter().find(|h| h.name == "gpu1").unwrap();
        let w = wanted(gpu1, gpu_node(gpu1, Some(0))).unwrap();
        assert_eq!(
            w.labels.iter().collect::<Vec<_>>(),
            [
                (&"gpu".to_string(), &"true".to_string()),
                (&"gpu-type".into(), &"T4".into())
            ]
        );
        assert_eq!(
            w.taints,
            [(
                "nvidia.com/gpu".into(),
                "present".into(),
                "NoSchedule".into()
            )]
        );
        let cp1 = inv.hosts.iter().find(|h| h.name == "cp1").unwrap();
        assert!(wanted(cp1, Some(false)).unwrap().labels.is_empty());
    }

    #[test]
    fn an_auto_gpu_host_is_judged_by_its_facts_or_refused_without_them() {
        let mut inv = sample::inventory();
        let far = inv.hosts.iter_mut().find(|h| h.name == "far").unwrap();
        far.gpu = crate::inventory::GpuPresence::Auto;
        let far = far.clone();
        let err = wanted(&far, gpu_node(&far, None)).unwrap_err().to_string();
        assert!(err.contains("far has `gpu: auto`"), "{err}");
        assert_eq!(
            wanted(&far, gpu_node(&far, Some(2))).unwrap().labels["gpu"],
            "true"
        );
        assert!(
            !wanted(&far, gpu_node(&far, Some(0)))
                .unwrap()
                .labels
                .contains_key("gpu")
        );
        // The plan reads the count from the run's facts of every node.
        let mut hf = sample::cluster_facts(&inv, "cp1");
        assert!(Labels.plan(&inv, &hf).is_ok());
        hf.nodes.remove("far");
        assert!(Labels.plan(&inv, &hf).is_err());
    }

    #[test]
    fn one_command_per_node_whose_guard_checks_labels_taints_and_the_record() {
        let inv = sample::inventory();
        let hf = sample::cluster_facts(&inv, "cp1");
        let ops = Labels.plan(&inv, &hf).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        let Op::Command { run, guard, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert!(run.contains("label node gpu1 --overwrite"), "{run}");
        assert!(run.contains("set -- gpu=true\n"), "{run}");
        assert!(run.contains("gpuctl.io/labels=gpu"), "{run}");
        assert!(
            guard.contains("-l gpu=true -o name | grep -qx node/gpu1"),
            "{guard}"
        );
        assert!(guard.contains("in 'gpu;;'*)"), "{guard}");
    }

    /// The scripts are run for real against a stand-in `kubectl` (a shell function over
    /// files) to check the stale-key logic, which is shell.
    #[test]
    fn the_script_removes_only_what_gpuctl_set_before() {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        // State: gpuctl set `old` and `gpu` labels and the `gone:NoSchedule` taint before;
        // the node still has that taint.
        let fake = format!(
            "k3s_kubectl() {{ case \"$1\" in get) printf '%s' 'gpu,old;gone:NoSchedule,keep:NoExecute;[gone=:NoSchedule][x=y:NoExecute];[gone:NoSchedule][x:NoExecute]';; *) echo \"kubectl $*\" >> {calls};; esac; }}\n",
            calls = calls.display()
        );
        let mut w = Wanted {
            labels: BTreeMap::from([("gpu".to_string(), "true".to_string())]),
            taints: Vec::new(),
        };
        w.taints
            .push(("new".into(), String::new(), "NoSchedule".into()));
        let script = apply_script("n1", &w, "k3s_kubectl");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{fake}{script}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(
            calls,
            "kubectl label node n1 --overwrite gpu=true old-\n\
             kubectl taint node n1 --overwrite new:NoSchedule gone:NoSchedule-\n\
             kubectl annotate node n1 --overwrite gpuctl.io/labels=gpu gpuctl.io/taints=new:NoSchedule\n"
        );
    }
}
