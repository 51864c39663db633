//! R8 and N6, `doctor --smoke`: the one check that writes. A pod per GPU node, pinned to
//! it, asking for one `nvidia.com/gpu` under the inventory's RuntimeClass, runs `nvidia-smi
//! -L` from the mirror's CUDA image. It proves the whole chain at once (device plugin,
//! runtime, toolkit, driver, mirror), where the read-only checks prove each link. With
//! `dns.hosts`, one more pod looks every name up from inside the cluster (N6): N5 reads
//! what CoreDNS was given, this is what a pod gets back. The pods live in their own
//! namespace, which is deleted afterwards whatever happened.

use std::time::{Duration, Instant};

use super::{Finding, Findings, Severity};
use crate::fleet::HostCtx;
use crate::inventory::Inventory;
use crate::kube::{self, Condition};
use crate::mirror::rewrite::Rewrite;
use crate::registry::Reference;
use crate::transport::Command;

/// Where the smoke pods run; deleted at the end.
pub const NAMESPACE: &str = "gpuctl-smoke";

/// The image the pods run, through the mirror like every other (it must be there: `gpuctl
/// mirror-images` pulls it with the rest when it is listed).
pub const IMAGE: &str = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04";

/// The image of the DNS pod: the one the local-path helper already brings into the mirror.
pub const DNS_IMAGE: &str = "docker.io/library/busybox:1.36.1";

/// The DNS pod's name.
pub const DNS_POD: &str = "dns-lookup";

/// The GPU image as this cluster pulls it.
pub fn image(inv: &Inventory) -> String {
    mirrored(inv, IMAGE)
}

/// `image` as this cluster pulls it: through the mirror, pinned when the lock has it.
pub fn mirrored(inv: &Inventory, image: &str) -> String {
    let Some(r) = &inv.registry else {
        return image.to_string();
    };
    let lock = crate::stages::manifests::lock(inv).ok().flatten();
    let rw = Rewrite {
        mirror: &r.mirror,
        prefix: None,
        lock: lock.as_ref(),
    };
    Reference::parse(image)
        .ok()
        .and_then(|reference| rw.target(&reference))
        .map_or_else(|| image.to_string(), |t| t.to)
}

/// Every `dns.hosts` name, in inventory order.
pub fn dns_names(inv: &Inventory) -> Vec<String> {
    inv.dns.hosts.iter().flat_map(|h| h.names.clone()).collect()
}

/// The namespace, one pod per GPU node, and the DNS pod when there are names to look up.
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
    let names = dns_names(inv);
    if !names.is_empty() {
        // Each name must resolve; the first that does not is the container's last line.
        let script = format!(
            "for n in {}; do nslookup \"$n\" >/dev/null 2>&1 || {{ echo \"$n does not resolve\"; exit 1; }}; done",
            names.join(" ")
        );
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {DNS_POD}\n  namespace: \
             {NAMESPACE}\nspec:\n  restartPolicy: Never\n  tolerations:\n  - operator: Exists\n  \
             containers:\n  - name: lookup\n    image: {image}\n    command: [sh, -c, {script}]\n    \
             terminationMessagePolicy: FallbackToLogsOnError\n",
            image = mirrored(inv, DNS_IMAGE),
            script = serde_json::Value::String(script),
        ));
    }
    out
}

/// What holds a pod that did not succeed: the conditions that are not true, and each
/// container's state other than running, with reason, exit code and message.
fn reasons(pod: &kube::Pod) -> Vec<String> {
    let s = &pod.status;
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
    why
}

/// N6 from the DNS pod in the pods' last listing.
pub fn judge_dns(names: &[String], listed: Result<&str, String>, image: &str) -> Vec<Finding> {
    let mut f = Findings::new(super::CLUSTER);
    let pods = match listed.and_then(|t| {
        serde_json::from_str::<kube::List<kube::Pod>>(t)
            .map_err(|e| format!("kubectl's answer is not a pod list ({e})"))
    }) {
        Ok(p) => p,
        Err(why) => {
            f.add("N6", Severity::Error, "the lookup pod did not run")
                .evidence([why]);
            return f.list;
        }
    };
    let Some(pod) = pods.items.iter().find(|p| p.metadata.name == DNS_POD) else {
        f.add(
            "N6",
            Severity::Error,
            format!("no pod {DNS_POD} was created"),
        );
        return f.list;
    };
    if pod.status.phase == "Succeeded" {
        f.add(
            "N6",
            Severity::Ok,
            format!("a pod resolves every dns.hosts name ({})", names.join(", ")),
        );
        return f.list;
    }
    let why = reasons(pod);
    let text = why.join("; ");
    let fix = if text.contains("ImagePull") || text.contains("ErrImage") {
        format!(
            "the lookup image {image} is not in the mirror: add {DNS_IMAGE} to the images file and run gpuctl mirror-images pull/push"
        )
    } else {
        "see N5 (what CoreDNS was given); then gpuctl install --inventory INVENTORY --only dns"
            .to_string()
    };
    f.add(
        "N6",
        Severity::Error,
        format!(
            "the lookup pod did not succeed: {}",
            if pod.status.phase.is_empty() {
                "no phase"
            } else {
                pod.status.phase.as_str()
            }
        ),
    )
    .evidence(why)
    .fix(fix);
    f.list
}

/// Applies the pods with `kubectl` (the distribution's admin kubectl on the first
/// server), waits for them to finish, and deletes the namespace. Returns the pods as
/// kubectl last listed them.
pub async fn run(
    ctx: &HostCtx,
    kubectl: &str,
    manifest: String,
    pods: usize,
    timeout: Duration,
) -> anyhow::Result<String> {
    let applied = ctx
        .run(
            Command::new(format!("{kubectl} apply -f -"))
                .sudo(true)
                .stdin(manifest.into_bytes())
                .timeout(Duration::from_secs(30)),
        )
        .await;
    let result = match applied {
        Ok(out) if out.success() => wait(ctx, kubectl, pods, timeout).await,
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
                "{kubectl} delete namespace {NAMESPACE} --ignore-not-found --wait=false"
            ))
            .sudo(true)
            .timeout(Duration::from_secs(30)),
        )
        .await;
    result
}

async fn wait(
    ctx: &HostCtx,
    kubectl: &str,
    pods: usize,
    timeout: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let out = ctx
            .run(
                Command::new(format!(
                    "{kubectl} -n {NAMESPACE} get pods -o json --request-timeout=10s"
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
        let why = reasons(pod);
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

    /// The sample inventory (two `dns.hosts` names) with a plain-HTTP mirror.
    fn with_mirror() -> Inventory {
        let mut inv = sample::inventory();
        inv.registry = Some(crate::inventory::Registry {
            mirror: "registry.lab:5000".into(),
            insecure: true,
            ca_file: None,
            username: None,
            password: None,
            served_by: None,
        });
        inv
    }

    #[test]
    fn one_pinned_gpu_pod_per_node_from_the_mirror() {
        let inv = with_mirror();
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
    fn a_lookup_pod_asks_for_every_dns_name_through_the_mirror() {
        let inv = with_mirror();
        let docs = crate::mirror::discover::parse_yaml("smoke", &manifest(&inv, &[])).unwrap();
        assert_eq!(docs.len(), 2, "the namespace and the lookup pod only");
        let pod = &docs[1];
        assert_eq!(pod["metadata"]["name"], DNS_POD);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.lab:5000/library/busybox:1.36.1");
        let script = c["command"][2].as_str().unwrap();
        assert!(
            script.starts_with("for n in login.lab.example lab.example; do nslookup"),
            "{script}"
        );
        assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");

        let ok = serde_json::json!({"items": [
            {"metadata": {"name": DNS_POD}, "status": {"phase": "Succeeded"}}]})
        .to_string();
        let names = dns_names(&inv);
        let f = judge_dns(&names, Ok(&ok), DNS_IMAGE);
        assert_eq!(f[0].severity, Severity::Ok);
        assert_eq!(f[0].host, "cluster");
        let failed = serde_json::json!({"items": [
            {"metadata": {"name": DNS_POD}, "status": {"phase": "Failed", "containerStatuses": [
                {"state": {"terminated": {"reason": "Error", "exitCode": 1,
                 "message": "lab.example does not resolve"}}}]}}]})
        .to_string();
        let f = judge_dns(&names, Ok(&failed), DNS_IMAGE);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(
            f[0].evidence,
            ["container terminated: Error (exit 1): lab.example does not resolve"]
        );
        assert!(f[0].fix.as_deref().unwrap().contains("--only dns"));
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
