//! Cluster checks, read once through the first server's kubectl (as root, for the admin
//! kubeconfig, which k3s and kubeadm both keep 0600; [`super::distro`] says where): the API
//! answers (K5), every inventory node registered and Ready without pressure (K3), every
//! node carries the labels and taints the inventory gives it (K8), the device plugin runs
//! ready on every GPU node (A1), every GPU node advertises the GPUs `nvidia-smi` lists on
//! it (A2), exactly one default StorageClass, the inventory's (S1), CoreDNS answers
//! `dns.hosts` from `coredns-custom`, not from edits k3s overwrites (N5; on kubeadm from
//! the Corefile's gpuctl block), kube-system's DaemonSets not kept off a node by its taints
//! (K7, [`super::taints`]), the stack's CRDs Established and its workloads ready, and every
//! admission webhook with an endpoint (A5, [`super::webhooks`]), kube-system's pods running
//! (K7), no volume claim Lost or long Pending (S4), every kubelet within the supported skew
//! of the API server (K1), the server's certificates not expired nor near their end (K6,
//! [`super::certificates`]), the GPU pods' RuntimeClass (R6, [`super::runtime_class`]),
//! each kubelet's runtime the inventory's (R1, [`super::node_runtime`]), local-path volumes
//! under the inventory's path (S2, [`super::local_path`]), every image the pods run pulled
//! through the mirror (M4, [`super::pod_images`]), calico-node ready on every node (N1,
//! [`super::calico`]), and every node registered with the address the inventory gives it
//! (N2).
//!
//! The chain is judged from its first broken link: without the cluster on the first server
//! no cluster check applies yet (each says so); with an API that does not answer, K5 is the
//! error and the checks that need the API say they wait for it. The judgements reuse the
//! install stages' own rules ([`crate::stages`]), so doctor and install agree on what is
//! right.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::compare::Facts;
use super::distro::Distro;
use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::inventory::{Distribution, Inventory};
use crate::kube::{self, Condition, Node};
use crate::stages::runtime::gpu_node;
use crate::stages::stack::workloads::{self, COMPONENT_LABEL};
use crate::stages::{gpu, labels, storage};

/// The checks of this family, in report order.
pub const IDS: &[&str] = &[
    "K5", "K3", "K8", "K1", "K6", "N2", "N1", "R1", "K7", "R6", "A1", "A2", "A5", "S1", "S2", "S4",
    "N5", "M4",
];

/// The device plugin's DaemonSet, as the `gpu` stage's template names it.
pub const DEVICE_PLUGIN: &str = "nvidia-device-plugin-daemonset";

/// The read-only script for the first server; run as root.
pub fn script(nonce: &str, distro: &Distro) -> String {
    let kubectl = distro.kubectl();
    let q = |args: &str| format!("{kubectl} {args} --request-timeout=10s");
    // Several commands as one `sh -c` argument, joined by `&&` or `||`.
    let seq = |sep: &str, cmds: &[String]| crate::transport::shell::quote(&cmds.join(sep));
    format!(
        "M='@@{nonce}'\n{prelude}\n\
         if {installed}; then kv cluster present\n\
         c readyz sh -c {readyz}\n\
         c nodes {nodes}\n\
         c storageclasses {classes}\n\
         c coredns_custom {custom}\n\
         c coredns {coredns}\n\
         c device_plugin {plugin}\n\
         c runtimeclasses {runtimeclasses}\n\
         c pods {pods}\n\
         c local_path_config sh -c {local_path_config}\n\
         c webhooks sh -c {webhooks}\n\
         c endpoints {endpoints}\n\
         c version {version}\n\
         c system_daemonsets {system_daemonsets}\n\
         c claims {claims}\n\
         c stack_crds {stack_crds}\n\
         c stack_workloads sh -c {stack_workloads}\n\
         {certs}\
         else kv cluster absent; fi\n\
         kv end 1\n",
        prelude = super::evidence::PRELUDE,
        installed = distro.installed_test(),
        certs = super::certificates::script_line(&distro.cert_dirs()),
        // `ok` comes without a newline, which would glue the status marker to it.
        readyz = crate::transport::shell::quote(&format!(
            "{}; r=$?; echo; exit $r",
            q("get --raw /readyz")
        )),
        nodes = q("get nodes -o json"),
        classes = q("get storageclass -o json"),
        custom = q("-n kube-system get configmap coredns-custom -o json"),
        coredns = q("-n kube-system get configmap coredns -o json"),
        plugin = q(&format!(
            "-n kube-system get daemonset {DEVICE_PLUGIN} -o json"
        )),
        version = q("version -o json"),
        runtimeclasses = q("get runtimeclass -o json"),
        webhooks = seq(
            " && ",
            &[
                q("get validatingwebhookconfigurations -o json"),
                q("get mutatingwebhookconfigurations -o json"),
            ]
        ),
        endpoints = q("get endpoints --all-namespaces -o json"),
        pods = q("get pods --all-namespaces -o json"),
        // gpuctl's provisioner lives in local-path-storage, k3s's own in kube-system.
        local_path_config = seq(
            " || ",
            &[
                q("-n local-path-storage get configmap local-path-config -o json"),
                q("-n kube-system get configmap local-path-config -o json"),
            ]
        ),
        system_daemonsets = q("-n kube-system get daemonsets -o json"),
        claims = q("get persistentvolumeclaims --all-namespaces -o json"),
        stack_crds = q(&format!(
            "get customresourcedefinition -l {COMPONENT_LABEL} -o json"
        )),
        stack_workloads = seq(
            " && ",
            &["deployments", "statefulsets", "daemonsets"].map(|k| q(&format!(
                "get {k} --all-namespaces -l {COMPONENT_LABEL} -o json"
            )))
        ),
    )
}

/// What the cluster checks judge.
pub struct ClusterInput<'a> {
    pub inv: &'a Inventory,
    /// The first server's name.
    pub first: &'a str,
    /// What the first server answered; `Err(why)` when it could not be asked.
    pub ev: Result<&'a Evidence, String>,
    /// Every reachable host's comparable facts (GPU host, GPU count).
    pub facts: &'a [Facts],
}

/// Every cluster finding.
pub fn check(input: &ClusterInput) -> Vec<Finding> {
    let mut cluster = Findings::new(CLUSTER);
    let distro = Distro::of(&input.inv.cluster);
    let ev = match &input.ev {
        Ok(ev) if ev.get("cluster") == Some("present") => *ev,
        Ok(_) => {
            skip_all(
                &mut cluster,
                &format!(
                    "no cluster yet: {} is not installed on {} (gpuctl install)",
                    distro.name(),
                    input.first
                ),
            );
            return cluster.list;
        }
        Err(why) => {
            skip_all(&mut cluster, &format!("the cluster was not asked: {why}"));
            return cluster.list;
        }
    };
    let readyz = ev.cmd("readyz");
    if !readyz.is_some_and(|c| c.ok() && c.lines.iter().any(|l| l.trim() == "ok")) {
        let f = cluster.add(
            "K5",
            Severity::Error,
            format!("the API server on {} does not answer /readyz", input.first),
        );
        f.evidence(readyz.map(|c| c.lines.clone()).unwrap_or_default());
        f.fix(distro.api_fix(input.first));
        for id in &IDS[1..] {
            cluster.add(id, Severity::Skip, "waits for the API server (K5)");
        }
        return cluster.list;
    }
    cluster.add("K5", Severity::Ok, "the API server answers /readyz");

    let mut out = cluster.list;
    let listed = parse::<kube::List<Node>>(ev, "nodes");
    match &listed {
        Ok(list) => {
            out.extend(nodes(input, list, &distro));
            out.extend(skew(ev, list, &distro));
            out.extend(addresses(input, list));
            out.extend(super::node_runtime::check(input.inv, list));
            out.extend(gpus(input, list));
        }
        Err(why) => {
            let mut f = Findings::new(CLUSTER);
            f.add(
                "K3",
                Severity::Error,
                format!("cannot read the nodes: {why}"),
            );
            out.extend(f.list);
        }
    }
    out.extend(super::calico::check(input.inv, ev));
    out.extend(super::certificates::check(ev, input.first, &distro));
    out.extend(super::runtime_class::check(input.inv, ev, input.facts));
    out.extend(device_plugin(input, ev));
    out.extend(system_pods(ev));
    if let Ok(list) = &listed {
        out.extend(super::taints::check(list, ev));
    }
    out.extend(stack(input.inv, ev));
    out.extend(super::webhooks::check(ev));
    out.extend(claims(ev, chrono::Utc::now()));
    out.extend(classes(input.inv, ev));
    out.extend(super::local_path::check(input.inv, ev));
    out.extend(dns(input.inv, ev, &distro));
    out.extend(super::pod_images::check(input.inv, ev));
    out
}

fn skip_all(out: &mut Findings, why: &str) {
    for id in IDS {
        out.add(id, Severity::Skip, why);
    }
}

/// A command's JSON answer, or why there is none.
pub(super) fn parse<T: for<'de> Deserialize<'de>>(ev: &Evidence, cmd: &str) -> Result<T, String> {
    let Some(c) = ev.cmd(cmd) else {
        return Err("not asked".into());
    };
    let text = c.lines.join("\n");
    if !c.ok() {
        return Err(first_line(&text));
    }
    serde_json::from_str(&text).map_err(|e| format!("kubectl's answer is not JSON ({e})"))
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// K3 and K8, one finding each per inventory node.
fn nodes(input: &ClusterInput, list: &kube::List<Node>, distro: &Distro) -> Vec<Finding> {
    let mut out = Vec::new();
    for host in input.inv.nodes() {
        let mut f = Findings::new(&host.name);
        let Some(node) = list.items.iter().find(|n| n.metadata.name == host.name) else {
            f.add("K3", Severity::Error, "not registered with the cluster")
                .fix(format!(
                    "gpuctl install --inventory INVENTORY --only kubernetes --hosts {}",
                    host.name
                ));
            f.add("K8", Severity::Skip, "waits for the node to register (K3)");
            out.extend(f.list);
            continue;
        };
        let ready = node.status.conditions.iter().find(|c| c.kind == "Ready");
        let pressure: Vec<&Condition> = node
            .status
            .conditions
            .iter()
            .filter(|c| c.kind.ends_with("Pressure") && c.status == "True")
            .collect();
        match ready {
            Some(c) if c.status == "True" && pressure.is_empty() => {
                f.add("K3", Severity::Ok, "Ready");
            }
            Some(c) if c.status == "True" => {
                let names: Vec<&str> = pressure.iter().map(|c| c.kind.as_str()).collect();
                f.add(
                    "K3",
                    Severity::Warn,
                    format!("Ready, under {}", names.join(", ")),
                )
                .evidence(pressure.iter().map(|c| c.line()))
                .fix(format!(
                    "gpuctl exec --inventory INVENTORY --hosts {} -- df -h / /var/lib; free -m",
                    host.name
                ));
            }
            other => {
                let (status, line) = match other {
                    Some(c) => (c.status.as_str(), c.line()),
                    None => ("absent", "no Ready condition".to_string()),
                };
                f.add("K3", Severity::Error, format!("Ready={status}"))
                    .evidence([line])
                    .fix(distro.node_fix(&host.name));
            }
        }
        out.extend(f.list);
        out.extend(node_labels(input, host, node));
    }
    out
}

/// K8: the labels and taints the inventory gives the node (the `labels` stage's rule).
fn node_labels(input: &ClusterInput, host: &crate::inventory::Host, node: &Node) -> Vec<Finding> {
    let mut f = Findings::new(&host.name);
    // As the labels stage judges it: by what nvidia-smi listed in this run.
    let listed = input
        .facts
        .iter()
        .find(|x| x.host == host.name)
        .map(|x| x.gpu_count.unwrap_or(0) as usize);
    let Ok(want) = labels::wanted(host, gpu_node(host, listed)) else {
        f.add(
            "K8",
            Severity::Skip,
            "gpu: auto and the host was not reached: whether it has GPUs is unknown",
        );
        return f.list;
    };
    let mut wrong = Vec::new();
    for (k, v) in &want.labels {
        match node.metadata.labels.get(k) {
            Some(have) if have == v => {}
            Some(have) => wrong.push(format!("label {k}={have}, the inventory says {v}")),
            None => wrong.push(format!("label {k}={v} is missing")),
        }
    }
    for (k, v, e) in &want.taints {
        if !node
            .spec
            .taints
            .iter()
            .any(|t| &t.key == k && &t.value == v && &t.effect == e)
        {
            wrong.push(format!("taint {} is missing", labels::taint_spec(k, v, e)));
        }
    }
    let managed = node
        .metadata
        .annotations
        .get(labels::LABELS_ANNOTATION)
        .map(String::as_str)
        .unwrap_or_default();
    let stale: Vec<&str> = managed
        .split(',')
        .filter(|k| !k.is_empty() && !want.labels.contains_key(*k))
        .collect();
    let fix = "gpuctl install --inventory INVENTORY --only labels";
    if !wrong.is_empty() {
        f.add(
            "K8",
            Severity::Error,
            format!(
                "{} label(s) or taint(s) differ from the inventory",
                wrong.len()
            ),
        )
        .evidence(wrong)
        .fix(fix);
    } else if !stale.is_empty() {
        f.add(
            "K8",
            Severity::Warn,
            format!(
                "gpuctl set label(s) the inventory no longer has: {}",
                stale.join(", ")
            ),
        )
        .fix(fix);
    } else {
        f.add(
            "K8",
            Severity::Ok,
            "labels and taints as the inventory says",
        );
    }
    f.list
}

/// A2: each GPU node's allocatable GPUs against the GPUs `nvidia-smi` lists on it.
fn gpus(input: &ClusterInput, list: &kube::List<Node>) -> Vec<Finding> {
    let mut out = Vec::new();
    if !input.inv.gpu.device_plugin {
        let mut f = Findings::new(CLUSTER);
        f.add(
            "A2",
            Severity::Skip,
            "gpu.device_plugin is off in the inventory",
        );
        return f.list;
    }
    for host in input.inv.nodes() {
        let Some(facts) = input.facts.iter().find(|x| x.host == host.name) else {
            continue;
        };
        if !facts.gpu_host {
            continue;
        }
        let mut f = Findings::new(&host.name);
        let Some(node) = list.items.iter().find(|n| n.metadata.name == host.name) else {
            f.add("A2", Severity::Skip, "waits for the node to register (K3)");
            out.extend(f.list);
            continue;
        };
        let Some(listed) = facts.gpu_count else {
            f.add("A2", Severity::Skip, "nvidia-smi is not installed (G5)");
            out.extend(f.list);
            continue;
        };
        let have = node.allocatable(gpu::RESOURCE);
        match gpu::mismatch(node, Some(listed as usize)) {
            None => {
                f.add(
                    "A2",
                    Severity::Ok,
                    format!(
                        "{listed} {} allocatable, as nvidia-smi lists",
                        gpu::RESOURCE
                    ),
                );
            }
            Some(why) => {
                f.add("A2", Severity::Error, why)
                    .evidence([format!("status.allocatable[{}]: {have}", gpu::RESOURCE)])
                    .fix(format!(
                        "kubectl -n kube-system logs daemonset/{DEVICE_PLUGIN}; \
                         gpuctl install --inventory INVENTORY --only gpu"
                    ));
            }
        }
        out.extend(f.list);
    }
    out
}

/// A1: the device plugin's DaemonSet exists and has a ready pod on every GPU node.
fn device_plugin(input: &ClusterInput, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    if !input.inv.gpu.device_plugin {
        f.add(
            "A1",
            Severity::Skip,
            "gpu.device_plugin is off in the inventory",
        );
        return f.list;
    }
    let gpu_nodes: Vec<&str> = input
        .inv
        .nodes()
        .filter(|h| input.facts.iter().any(|x| x.host == h.name && x.gpu_host))
        .map(|h| h.name.as_str())
        .collect();
    if gpu_nodes.is_empty() {
        f.add(
            "A1",
            Severity::Skip,
            "no GPU node among the hosts doctor reached",
        );
        return f.list;
    }
    let fix = "gpuctl install --inventory INVENTORY --only labels,gpu";
    let ds: kube::DaemonSet = match parse(ev, "device_plugin") {
        Ok(ds) => ds,
        Err(why) => {
            f.add(
                "A1",
                Severity::Error,
                format!("the device plugin DaemonSet kube-system/{DEVICE_PLUGIN} cannot be read"),
            )
            .evidence([why])
            .fix(fix);
            return f.list;
        }
    };
    let (want, desired, ready) = (
        gpu_nodes.len() as u32,
        ds.status.desired_number_scheduled,
        ds.status.number_ready,
    );
    let evidence = [format!(
        "GPU nodes: {} ({want}); desiredNumberScheduled: {desired}; numberReady: {ready}",
        gpu_nodes.join(", ")
    )];
    if desired < want {
        f.add(
            "A1",
            Severity::Error,
            format!(
                "the device plugin is scheduled on {desired} of {want} GPU node(s): it selects \
                 nodes labelled gpu=true (see K8)"
            ),
        )
        .evidence(evidence)
        .fix(fix);
    } else if ready < desired {
        f.add(
            "A1",
            Severity::Error,
            format!("{ready} of {desired} device plugin pod(s) ready"),
        )
        .evidence(evidence)
        .fix(format!(
            "kubectl -n kube-system describe daemonset {DEVICE_PLUGIN}; kubectl -n \
             kube-system logs daemonset/{DEVICE_PLUGIN}"
        ));
    } else {
        f.add(
            "A1",
            Severity::Ok,
            format!("the device plugin is ready on {ready} node(s)"),
        )
        .evidence(evidence);
    }
    f.list
}

/// `v1.30.6+k3s1` → (1, 30).
fn minor_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// How many minor versions a kubelet may be older than the API server (Kubernetes' skew
/// policy since 1.28); it may never be newer.
const KUBELET_SKEW: u32 = 3;

/// K1: every kubelet within the skew policy of the API server, and all of them alike (an
/// odd one out is a node that missed an upgrade).
fn skew(ev: &Evidence, list: &kube::List<Node>, distro: &Distro) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let server = parse::<serde_json::Value>(ev, "version")
        .ok()
        .and_then(|v| {
            v.get("serverVersion")?
                .get("gitVersion")?
                .as_str()
                .map(str::to_string)
        });
    let Some((server, (major, minor))) =
        server.and_then(|s| minor_version(&s).map(|m| (s.clone(), m)))
    else {
        f.add(
            "K1",
            Severity::Skip,
            "the API server did not say its version",
        );
        return f.list;
    };
    let mut wrong = Vec::new();
    let mut versions = BTreeMap::<&str, Vec<&str>>::new();
    for node in &list.items {
        let v = node.status.node_info.kubelet_version.as_str();
        versions.entry(v).or_default().push(&node.metadata.name);
        match minor_version(v) {
            Some((ma, mi)) if ma == major && mi <= minor && mi + KUBELET_SKEW >= minor => {}
            Some(_) => wrong.push(format!(
                "{}: kubelet {v}, API server {server} (a kubelet may be up to {KUBELET_SKEW} \
                 minor versions older, never newer)",
                node.metadata.name
            )),
            None => {}
        }
    }
    let evidence: Vec<String> = versions
        .iter()
        .map(|(v, nodes)| format!("kubelet {v}: {}", nodes.join(", ")))
        .collect();
    let fix = format!(
        "put {} and run gpuctl install --inventory INVENTORY --only kubernetes",
        distro.version_source()
    );
    if !wrong.is_empty() {
        f.add(
            "K1",
            Severity::Error,
            format!("{} node(s) outside the version skew policy", wrong.len()),
        )
        .evidence(wrong)
        .fix(fix);
    } else if versions.len() > 1 {
        f.add(
            "K1",
            Severity::Warn,
            format!("{} different kubelet versions", versions.len()),
        )
        .evidence(evidence)
        .fix(fix);
    } else {
        f.add(
            "K1",
            Severity::Ok,
            format!("every kubelet within the skew of API server {server}"),
        )
        .evidence(evidence);
    }
    f.list
}

/// N2: each node registered with the address the inventory gives it (`internal_address`,
/// else its SSH address when that is an IP): a node that picked another interface routes
/// pod traffic where the other nodes do not expect it.
fn addresses(input: &ClusterInput, list: &kube::List<Node>) -> Vec<Finding> {
    let mut out = Vec::new();
    for host in input.inv.nodes() {
        let Some(node) = list.items.iter().find(|n| n.metadata.name == host.name) else {
            continue;
        };
        let mut f = Findings::new(&host.name);
        let want = host.internal_address.map(|ip| ip.to_string()).or_else(|| {
            let addr = crate::render::node_address(host);
            addr.parse::<std::net::IpAddr>().ok().map(|_| addr)
        });
        let have: Vec<&str> = node
            .status
            .addresses
            .iter()
            .filter(|a| a.kind == "InternalIP")
            .map(|a| a.address.as_str())
            .collect();
        match want {
            None => {
                f.add(
                    "N2",
                    Severity::Skip,
                    "the inventory gives no IP for this node (internal_address)",
                );
            }
            Some(w) if have.contains(&w.as_str()) => {
                f.add("N2", Severity::Ok, format!("registered as {w}"));
            }
            Some(w) => {
                f.add(
                    "N2",
                    Severity::Error,
                    format!(
                        "registered as {}, the inventory says {w}",
                        if have.is_empty() {
                            "no InternalIP".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                )
                .fix(format!(
                    "set `internal_address: {w}` for {} (the kubelet's node-ip) and run gpuctl install \
                     --inventory INVENTORY --only kubernetes --hosts {}",
                    host.name, host.name
                ));
            }
        }
        out.extend(f.list);
    }
    out
}

/// K7: every kube-system pod running with its containers ready (or finished, for jobs).
/// A pod that is not is named with what holds it: the scheduler's reason, or a
/// container's waiting reason (`ImagePullBackOff` points at the mirror).
fn system_pods(ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    // Read once for every namespace (M4 needs them all); K7 judges kube-system's.
    let list: kube::List<kube::Pod> = match parse::<kube::List<kube::Pod>>(ev, "pods") {
        Ok(mut l) => {
            l.items.retain(|p| p.metadata.namespace == "kube-system");
            l
        }
        Err(why) => {
            f.add("K7", Severity::Error, "cannot read kube-system's pods")
                .evidence([why]);
            return f.list;
        }
    };
    let mut wrong = Vec::new();
    let mut pulls = false;
    for pod in &list.items {
        let phase = pod.status.phase.as_str();
        if phase == "Succeeded" {
            continue;
        }
        let waiting: Vec<String> = pod
            .status
            .container_statuses
            .iter()
            .filter_map(|c| {
                let w = c.state.get("waiting")?;
                let reason = w
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("waiting");
                pulls |= reason.contains("ImagePull") || reason == "ErrImagePull";
                Some(format!("{} {reason}", c.name))
            })
            .collect();
        let all_ready = pod.status.container_statuses.iter().all(|c| c.ready);
        if phase == "Running" && all_ready && waiting.is_empty() {
            continue;
        }
        let why = if !waiting.is_empty() {
            waiting.join(", ")
        } else if let Some(c) = pod
            .status
            .conditions
            .iter()
            .find(|c| c.status != "True" && !c.reason.is_empty())
        {
            c.line()
        } else {
            "containers not ready".to_string()
        };
        let phase = if phase.is_empty() {
            "no phase yet"
        } else {
            phase
        };
        wrong.push(format!(
            "pod kube-system/{}: {phase}, {why}",
            pod.metadata.name
        ));
    }
    if wrong.is_empty() {
        f.add(
            "K7",
            Severity::Ok,
            format!("{} kube-system pod(s) running", list.items.len()),
        );
    } else {
        let fix = if pulls {
            "images cannot be pulled: gpuctl mirror-images check --inventory INVENTORY; \
             kubectl -n kube-system describe pod NAME"
        } else {
            "kubectl -n kube-system describe pod NAME; kubectl -n kube-system logs NAME"
        };
        f.add(
            "K7",
            Severity::Error,
            format!("{} kube-system pod(s) not running", wrong.len()),
        )
        .evidence(wrong)
        .fix(fix);
    }
    f.list
}

/// How long a claim may stay Pending before S4 calls it stuck: provisioning takes seconds,
/// a claim waiting for its first consumer (WaitForFirstConsumer) is Pending by design.
const PENDING_TOLERATED: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// S4: no PersistentVolumeClaim Lost (its volume is gone) or Pending longer than
/// [`PENDING_TOLERATED`] (no class provisions it: see S1).
fn claims(ev: &Evidence, now: chrono::DateTime<chrono::Utc>) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let list: kube::List<Claim> = match parse(ev, "claims") {
        Ok(l) => l,
        Err(why) => {
            f.add("S4", Severity::Error, "cannot read the volume claims")
                .evidence([why]);
            return f.list;
        }
    };
    let mut lost = Vec::new();
    let mut pending = Vec::new();
    for c in &list.items {
        let name = format!("{}/{}", c.metadata.namespace, c.metadata.name);
        let class = c
            .spec
            .storage_class_name
            .as_deref()
            .unwrap_or("(default class)");
        match c.status.phase.as_str() {
            "Lost" => lost.push(format!(
                "{name}: Lost (its volume {} is gone)",
                c.spec.volume_name
            )),
            "Pending" => {
                let since = chrono::DateTime::parse_from_rfc3339(&c.metadata.creation_timestamp)
                    .map(|t| now.signed_duration_since(t.with_timezone(&chrono::Utc)));
                if since.is_ok_and(|d| d > PENDING_TOLERATED) {
                    pending.push(format!(
                        "{name}: Pending for {} min, storage class {class}",
                        since.map(|d| d.num_minutes()).unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
    if !lost.is_empty() {
        let n = lost.len();
        lost.extend(pending);
        f.add("S4", Severity::Error, format!("{n} volume claim(s) Lost"))
            .evidence(lost)
            .fix("kubectl describe pvc -n NAMESPACE NAME; restore or recreate its volume");
    } else if !pending.is_empty() {
        f.add(
            "S4",
            Severity::Warn,
            format!("{} volume claim(s) Pending for more than 5 minutes", pending.len()),
        )
        .evidence(pending)
        .fix(
            "kubectl describe pvc -n NAMESPACE NAME (its events say why); check that its \
             storage class exists and provisions (S1): gpuctl install --inventory INVENTORY --only storage",
        );
    } else {
        f.add(
            "S4",
            Severity::Ok,
            format!(
                "{} volume claim(s), none Lost or stuck Pending",
                list.items.len()
            ),
        );
    }
    f.list
}

#[derive(Deserialize)]
struct Claim {
    metadata: ClaimMeta,
    #[serde(default)]
    spec: ClaimSpec,
    #[serde(default)]
    status: ClaimStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimMeta {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    creation_timestamp: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSpec {
    #[serde(default)]
    storage_class_name: Option<String>,
    #[serde(default)]
    volume_name: String,
}

#[derive(Default, Deserialize)]
struct ClaimStatus {
    #[serde(default)]
    phase: String,
}

/// A5: the stack's CRDs Established and its Deployments, StatefulSets and DaemonSets ready
/// (the `stack` stage's own judge).
fn stack(inv: &Inventory, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    if inv.stack.components.is_empty() {
        f.add("A5", Severity::Skip, "no stack.components in the inventory");
        return f.list;
    }
    let fix = "gpuctl install --inventory INVENTORY --only stack";
    let crds: kube::List<Crd> = match parse(ev, "stack_crds") {
        Ok(l) => l,
        Err(why) => {
            f.add("A5", Severity::Error, "cannot read the stack's CRDs")
                .evidence([why]);
            return f.list;
        }
    };
    let workloads_out = ev
        .cmd("stack_workloads")
        .map(|c| (c.ok(), c.lines.join("\n")));
    let mut wrong: Vec<String> = crds
        .items
        .iter()
        .filter(|c| {
            !c.status
                .conditions
                .iter()
                .any(|k| k.kind == "Established" && k.status == "True")
        })
        .map(|c| {
            format!(
                "customresourcedefinition {} is not Established",
                c.metadata.name
            )
        })
        .collect();
    let count = match &workloads_out {
        Some((true, text)) => {
            if let Err(lines) = workloads::judge(text) {
                wrong.extend(lines.lines().map(str::to_string));
            }
            serde_json::Deserializer::from_str(text)
                .into_iter::<kube::List<serde_json::Value>>()
                .flatten()
                .map(|l| l.items.len())
                .sum::<usize>()
        }
        Some((false, text)) => {
            wrong.push(format!(
                "cannot read the stack's workloads: {}",
                first_line(text)
            ));
            0
        }
        None => 0,
    };
    if !wrong.is_empty() {
        f.add(
            "A5",
            Severity::Error,
            format!("{} part(s) of the stack are not ready", wrong.len()),
        )
        .evidence(wrong)
        .fix(format!(
            "kubectl get pods --all-namespaces -l {COMPONENT_LABEL} -o wide; \
             kubectl describe the workload named; then {fix}"
        ));
    } else if count == 0 && crds.items.is_empty() {
        f.add(
            "A5",
            Severity::Error,
            format!(
                "nothing of {} is on the cluster: the stack stage has not run",
                inv.stack.components.join(", ")
            ),
        )
        .fix(fix);
    } else {
        f.add(
            "A5",
            Severity::Ok,
            format!(
                "{count} workload(s) ready, {} CRD(s) Established",
                crds.items.len()
            ),
        );
    }
    f.list
}

#[derive(Deserialize)]
struct Crd {
    metadata: kube::Meta,
    #[serde(default)]
    status: CrdStatus,
}

#[derive(Default, Deserialize)]
struct CrdStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

/// S1: exactly one default StorageClass, the one the inventory marks when it marks one.
fn classes(inv: &Inventory, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let list: kube::List<kube::StorageClass> = match parse(ev, "storageclasses") {
        Ok(l) => l,
        Err(why) => {
            f.add(
                "S1",
                Severity::Error,
                format!("cannot read the StorageClasses: {why}"),
            );
            return f.list;
        }
    };
    let defaults = list.defaults();
    let evidence: Vec<String> = defaults.iter().map(|d| format!("default: {d}")).collect();
    match storage::default_class(inv) {
        Some(want) => match storage::judge_list(want, &list) {
            Ok(()) => {
                f.add(
                    "S1",
                    Severity::Ok,
                    format!("{want} is the one default StorageClass"),
                );
            }
            Err(why) => {
                f.add(
                    "S1",
                    Severity::Error,
                    "the default StorageClass is not the inventory's alone",
                )
                .evidence(why.lines().map(str::to_string).chain(evidence))
                .fix("gpuctl install --inventory INVENTORY --only storage");
            }
        },
        None => match defaults.len() {
            1 => {
                f.add(
                    "S1",
                    Severity::Ok,
                    format!("{} is the one default StorageClass", defaults[0]),
                );
            }
            0 => {
                f.add(
                    "S1",
                    Severity::Warn,
                    "no default StorageClass: claims that name no class stay Pending",
                )
                .fix("mark one in the inventory (storage.local_path.default or storage.nfs.default), then gpuctl install --inventory INVENTORY --only storage");
            }
            _ => {
                f.add(
                    "S1",
                    Severity::Error,
                    format!(
                        "{} default StorageClasses: Kubernetes picks one at random",
                        defaults.len()
                    ),
                )
                .evidence(evidence)
                .fix(format!(
                    "kubectl annotate storageclass NAME {}=false --overwrite (all but one)",
                    storage::DEFAULT_ANNOTATION
                ));
            }
        },
    }
    f.list
}

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// N5: `dns.hosts` answered by CoreDNS from where gpuctl keeps it: on k3s `coredns-custom`
/// (and not edited into the `coredns` ConfigMap, which k3s rewrites at every start); on
/// kubeadm the managed block of the Corefile itself (kubeadm's CoreDNS imports no
/// `coredns-custom`).
fn dns(inv: &Inventory, ev: &Evidence, distro: &Distro) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    if inv.dns.hosts.is_empty() {
        f.add("N5", Severity::Skip, "no dns.hosts in the inventory");
        return f.list;
    }
    let fix = "gpuctl install --inventory INVENTORY --only dns";
    let corefile = parse::<ConfigMap>(ev, "coredns")
        .ok()
        .and_then(|c| c.data.get("Corefile").cloned())
        .unwrap_or_default();
    let home = distro.dns_home();
    let block = match distro.kind {
        Distribution::K3s => parse::<ConfigMap>(ev, "coredns_custom").ok().map(|c| {
            c.data
                .get("gpuctl-hosts.server")
                .cloned()
                .unwrap_or_default()
        }),
        Distribution::Kubeadm => crate::stages::dns::managed_block(&corefile),
    };
    let lines: Vec<String> = block
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let missing: Vec<String> = inv
        .dns
        .hosts
        .iter()
        .map(|h| format!("{} {}", h.ip, h.names.join(" ")))
        .filter(|want| !lines.contains(want))
        .collect();
    // Only k3s rewrites the Corefile; on kubeadm gpuctl's block is in it by design.
    let edited: Vec<&str> = match distro.kind {
        Distribution::K3s => inv
            .dns
            .hosts
            .iter()
            .flat_map(|h| h.names.iter().map(String::as_str))
            .filter(|n| corefile.contains(n))
            .collect(),
        Distribution::Kubeadm => Vec::new(),
    };
    if !missing.is_empty() {
        let title = if block.is_none() {
            format!("{home} does not exist: CoreDNS does not answer dns.hosts")
        } else {
            format!("{} dns.hosts entr(ies) missing from {home}", missing.len())
        };
        f.add("N5", Severity::Error, title)
            .evidence(missing.into_iter().map(|m| format!("missing: {m}")))
            .fix(fix);
    } else if !edited.is_empty() {
        f.add(
            "N5",
            Severity::Warn,
            format!(
                "the coredns ConfigMap was edited by hand ({}): k3s rewrites it at its next start",
                edited.join(", ")
            ),
        )
        .fix(format!(
            "take the entries out of the coredns ConfigMap; gpuctl keeps them in coredns-custom ({fix})"
        ));
    } else {
        f.add(
            "N5",
            Severity::Ok,
            format!("CoreDNS answers every dns.hosts entry from {home}"),
        );
    }
    f.list
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
