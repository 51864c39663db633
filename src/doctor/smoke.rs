//! R8, `doctor --smoke`: the one check that writes. A pod per GPU node, pinned to it,
//! asking for one `nvidia.com/gpu` under the inventory's RuntimeClass, runs `nvidia-smi -L`
//! from the mirror's CUDA image. It proves the whole chain at once (device plugin,
//! runtime, toolkit, driver, mirror), where the read-only checks prove each link. The pods
//! live in their own namespace, which is deleted afterwards whatever happened.

use std::time::{Duration, Instant};

use super::{Finding, Findings, Severity};
use crate::fleet::HostCtx;
use crate::inventory::Inventory;
use crate::kube::{self, Condition};
use crate::mirror::rewrite::Rewrite;
use crate::registry::Reference;
use crate::stages::ready::KUBECTL;
use crate::transport::Command;

/// Where the smoke pods run; deleted at the end.
pub const NAMESPACE: &str = "gpuctl-smoke";

/// The image the pods run, through the mirror like every other (it must be there: `gpuctl
/// mirror-images` pulls it with the rest when it is listed).
pub const IMAGE: &str = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04";

/// The image as this cluster pulls it.
pub fn image(inv: &Inventory) -> String {
    let Some(r) = &inv.registry else {
        return IMAGE.to_string();
    };
    let lock = crate::stages::manifests::lock(inv).ok().flatten();
    let rw = Rewrite {
        mirror: &r.mirror,
        prefix: None,
        lock: lock.as_ref(),
    };
    Reference::parse(IMAGE)
        .ok()
        .and_then(|reference| rw.target(&reference))
        .map_or_else(|| IMAGE.to_string(), |t| t.to)
}

/// The namespace and one pod per GPU node.
pub fn manifest(inv: &Inventory, nodes: &[String]) -> String {
    let image = image(inv);
    let mut out = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    \
         app.kubernetes.io/managed-by: gpuctl\n"
    );
    for node in nodes {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke-{node}\n  namespace: \
             {NAMESPACE}\nspec:\n  restartPolicy: Never\n  runtimeClassName: {rc}\n  \
             nodeSelector:\n    kubernetes.io/hostname: {node}\n  tolerations:\n  - operator: \
             Exists\n  containers:\n  - name: smoke\n    image: {image}\n    command: \
             [nvidia-smi, -L]\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n",
            rc = inv.gpu.runtime_class,
        ));
    }
    out
}

/// Applies the pods, waits for them to finish, and deletes the namespace. Returns the
/// pods as kubectl last listed them.
pub async fn run(
    ctx: &HostCtx,
    manifest: String,
    pods: usize,
    timeout: Duration,
) -> anyhow::Result<String> {
    let applied = ctx
        .run(
            Command::new(format!("{KUBECTL} apply -f -"))
                .sudo(true)
                .stdin(manifest.into_bytes())
                .timeout(Duration::from_secs(30)),
        )
        .await;
    let result = match applied {
        Ok(out) if out.success() => wait(ctx, pods, timeout).await,
        Ok(out) => Err(anyhow::anyhow!(
            "the smoke pods could not be created: {}",
            out.stderr_str().trim()
        )),
        Err(e) => Err(e.into()),
    };
    // Whatever happened: the namespace and its pods go.
    let _ = ctx
        .run(
            Command::new(format!(
                "{KUBECTL} delete namespace {NAMESPACE} --ignore-not-found --wait=false"
            ))
            .sudo(true)
            .timeout(Duration::from_secs(30)),
        )
        .await;
    result
}

async fn wait(ctx: &HostCtx, pods: usize, timeout: Duration) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let out = ctx
            .run(
                Command::new(format!(
                    "{KUBECTL} -n {NAMESPACE} get pods -o json --request-timeout=10s"
                ))
                .sudo(true)
                .timeout(Duration::from_secs(30)),
            )
            .await?;
        let text = out.stdout_str();
        let done = serde_json::from_str::<kube::List<kube::Pod>>(&text).is_ok_and(|l| {
            l.items.len() >= pods
                && l.items
                    .iter()
                    .all(|p| matches!(p.status.phase.as_str(), "Succeeded" | "Failed"))
        });
        if done || started.elapsed() >= timeout {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// R8 per GPU node, from the pods' last listing (or why there is none).
pub fn judge(nodes: &[String], listed: Result<&str, String>, image: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let pods = listed.and_then(|t| {
        serde_json::from_str::<kube::List<kube::Pod>>(t)
            .map_err(|e| format!("kubectl's answer is not a pod list ({e})"))
    });
    for node in nodes {
        let mut f = Findings::new(node);
        let pods = match &pods {
            Ok(p) => p,
            Err(why) => {
                f.add("R8", Severity::Error, "the smoke test did not run")
                    .evidence([why.clone()]);
                out.extend(f.list);
                continue;
            }
        };
        let name = format!("smoke-{node}");
        let Some(pod) = pods.items.iter().find(|p| p.metadata.name == name) else {
            f.add("R8", Severity::Error, format!("no pod {name} was created"));
            out.extend(f.list);
            continue;
        };
        let s = &pod.status;
        if s.phase == "Succeeded" {
            f.add(
                "R8",
                Severity::Ok,
                "a pod with 1 GPU ran nvidia-smi on this node",
            );
            out.extend(f.list);
            continue;
        }
        let mut why: Vec<String> = s
            .conditions
            .iter()
            .filter(|c| c.status != "True" && !c.reason.is_empty())
            .map(Condition::line)
            .collect();
        for c in &s.container_statuses {
            for (state, detail) in &c.state {
                if state == "running" {
                    continue;
                }
                let reason = detail.get("reason").and_then(|r| r.as_str()).unwrap_or("");
                let message = detail.get("message").and_then(|r| r.as_str()).unwrap_or("");
                let exit = detail.get("exitCode").and_then(serde_json::Value::as_i64);
                why.push(
                    format!(
                        "container {state}: {reason}{}{}",
                        exit.map(|e| format!(" (exit {e})")).unwrap_or_default(),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(": {message}")
                        }
                    )
                    .trim_end()
                    .to_string(),
                );
            }
        }
        let text = why.join("; ");
        let fix = if text.contains("nvidia.com/gpu") {
            "the node advertises no free GPU: see A1 and A2 (gpuctl install --inventory INVENTORY --only labels,gpu)".to_string()
        } else if text.contains("ImagePull") || text.contains("ErrImage") {
            format!(
                "the smoke image {image} is not in the mirror: add it to the images file and run gpuctl mirror-images pull/push"
            )
        } else {
            "see R5 (the nvidia runtime) and G5 (the driver); kubectl describe shows the rest"
                .to_string()
        };
        f.add(
            "R8",
            Severity::Error,
            format!(
                "the smoke pod did not finish: {}",
                if s.phase.is_empty() {
                    "no phase"
                } else {
                    s.phase.as_str()
                }
            ),
        )
        .evidence(why)
        .fix(fix);
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
    fn one_pinned_gpu_pod_per_node_from_the_mirror() {
        let mut inv = sample::inventory();
        inv.registry = Some(crate::inventory::Registry {
            mirror: "registry.lab:5000".into(),
            insecure: true,
            ca_file: None,
            username: None,
            password: None,
            served_by: None,
        });
        let m = manifest(&inv, &["gpu1".into()]);
        let docs = crate::mirror::discover::parse_yaml("smoke", &m).unwrap();
        assert_eq!(docs[0]["kind"], "Namespace");
        let pod = &docs[1];
        assert_eq!(
            pod["spec"]["nodeSelector"]["kubernetes.io/hostname"],
            "gpu1"
        );
        assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            "registry.lab:5000/nvidia/cuda:12.4.1-base-ubuntu22.04"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            1
        );
    }

    #[test]
    fn finished_pods_pass_and_stuck_ones_say_why() {
        let nodes = vec!["gpu1".to_string(), "gpu2".to_string()];
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "smoke-gpu1"}, "status": {"phase": "Succeeded"}},
            {"metadata": {"name": "smoke-gpu2"}, "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: Insufficient nvidia.com/gpu."}]}}
        ]})
        .to_string();
        let f = judge(&nodes, Ok(&list), IMAGE);
        assert_eq!(f[0].severity, Severity::Ok);
        assert_eq!(f[1].severity, Severity::Error);
        assert_eq!(
            f[1].evidence,
            [
                "PodScheduled=False (Unschedulable: 0/3 nodes are available: Insufficient nvidia.com/gpu.)"
            ]
        );
        assert!(f[1].fix.as_deref().unwrap().contains("A1 and A2"));

        let pulled = serde_json::json!({"items": [
            {"metadata": {"name": "smoke-gpu1"}, "status": {"phase": "Pending",
             "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}]})
        .to_string();
        let f = judge(&nodes[..1], Ok(&pulled), IMAGE);
        assert_eq!(f[0].evidence, ["container waiting: ImagePullBackOff"]);
        assert!(f[0].fix.as_deref().unwrap().contains("not in the mirror"));

        let f = judge(&nodes[..1], Err("connection lost".into()), IMAGE);
        assert_eq!(f[0].title, "the smoke test did not run");
    }
}
