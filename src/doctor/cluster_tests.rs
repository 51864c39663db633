#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::stages::sample;

/// The sample inventory (cp1 server, gpu1 GPU worker, far worker; dns.hosts; local-path
/// default) as a healthy cluster answers for it, as `(command, status, output)`.
fn healthy() -> Vec<(&'static str, i32, String)> {
    let node = |name: &str, labels: serde_json::Value, gpus: &str, ip: &str| {
        json!({
            "metadata": {"name": name, "labels": labels, "annotations": {}},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                ],
                "allocatable": {"cpu": "4", "nvidia.com/gpu": gpus},
                "nodeInfo": {"kubeletVersion": "v1.30.6+k3s1", "containerRuntimeVersion": "containerd://1.7.22-k3s1"},
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
            }
        })
    };
    let nodes = json!({"items": [
        node("cp1", json!({}), "0", "10.0.0.1"),
        node("gpu1", json!({"gpu": "true"}), "4", "10.0.0.2"),
        node("far", json!({}), "0", "10.0.0.3"),
    ]});
    let classes = json!({"items": [
        {"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}},
        {"metadata": {"name": "nfs-client", "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}}
    ]});
    let custom = json!({"data": {"gpuctl-hosts.server": "lab.example:53 {\n    hosts {\n        192.168.3.14   login.lab.example lab.example\n        fallthrough\n    }\n}\n"}});
    let coredns = json!({"data": {"Corefile": ".:53 {\n    errors\n}\nimport /etc/coredns/custom/*.server\n"}});
    vec![
        ("readyz", 0, "ok".to_string()),
        (
            "version",
            0,
            json!({"serverVersion": {"gitVersion": "v1.30.6+k3s1"}}).to_string(),
        ),
        ("nodes", 0, nodes.to_string()),
        ("storageclasses", 0, classes.to_string()),
        ("coredns_custom", 0, custom.to_string()),
        ("coredns", 0, coredns.to_string()),
        (
            "device_plugin",
            0,
            json!({"status": {"desiredNumberScheduled": 1, "numberReady": 1}}).to_string(),
        ),
        (
            "claims",
            0,
            json!({"items": [
                {"metadata": {"name": "data", "namespace": "alice", "creationTimestamp": "2020-01-01T00:00:00Z"},
                 "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}}
            ]})
            .to_string(),
        ),
        (
            "stack_crds",
            0,
            json!({"items": [{"metadata": {"name": "notebooks.kubeflow.org"},
                "status": {"conditions": [{"type": "Established", "status": "True"}]}}]})
            .to_string(),
        ),
        (
            "stack_workloads",
            0,
            format!(
                "{}\n{{\"items\": []}}\n{{\"items\": []}}",
                json!({"items": [
            {"kind": "Deployment", "metadata": {"name": "dash", "namespace": "kubeflow", "generation": 1},
             "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}}]})
            ),
        ),
        (
            "certs",
            0,
            "/var/lib/rancher/k3s/server/tls/server-ca.crt|notBefore=Dec  1 00:00:00 2026 GMT|notAfter=Nov 28 00:00:00 2036 GMT|\n\
             now 1796256000"
                .to_string(),
        ),
        (
            "local_path_config",
            0,
            json!({"data": {"config.json": json!({"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/data/k8s/local-path"]}]}).to_string()}})
            .to_string(),
        ),
        ("system_daemonsets", 0, "{\"items\": []}".to_string()),
        ("webhooks", 0, "{\"items\": []}\n{\"items\": []}".to_string()),
        ("endpoints", 0, "{\"items\": []}".to_string()),
        (
            "runtimeclasses",
            0,
            json!({"items": [{"metadata": {"name": "nvidia"}, "handler": "nvidia"}]}).to_string(),
        ),
        (
            "pods",
            0,
            json!({"items": [
                {"metadata": {"name": "coredns-1", "namespace": "kube-system"},
                 "spec": {"containers": [{"image": "rancher/mirrored-coredns-coredns:1.11"}]},
                 "status": {"phase": "Running",
                  "containerStatuses": [{"name": "coredns", "ready": true, "state": {"running": {}}}]}},
                {"metadata": {"name": "helm-install-x", "namespace": "kube-system"}, "status": {"phase": "Succeeded"}},
                // Another namespace's pod that does not run is not K7's.
                {"metadata": {"name": "nb-0", "namespace": "alice"}, "status": {"phase": "Pending"}}
            ]})
            .to_string(),
        ),
    ]
}

fn evidence(cmds: &[(&str, i32, String)]) -> Evidence {
    let cmds: Vec<(&str, i32, &str)> = cmds.iter().map(|(n, s, o)| (*n, *s, o.as_str())).collect();
    Evidence::for_test(&cmds)
}

fn facts() -> Vec<Facts> {
    ["cp1", "gpu1", "far"]
        .iter()
        .map(|h| Facts {
            host: h.to_string(),
            gpu_host: *h == "gpu1",
            gpu_count: (*h == "gpu1").then_some(4),
            ..Facts::default()
        })
        .collect()
}

/// The sample inventory with a stack component.
fn inventory() -> Inventory {
    sample::load(&format!(
        "{}stack: {{ components: [kubeflow-core] }}\n",
        sample::YAML
    ))
}

fn run(cmds: &[(&str, i32, String)]) -> Vec<Finding> {
    let inv = inventory();
    let ev = evidence(cmds);
    let facts = facts();
    check(&ClusterInput {
        inv: &inv,
        first: "cp1",
        ev: Ok(&ev),
        facts: &facts,
    })
}

fn with(name: &str, status: i32, out: serde_json::Value) -> Vec<(&'static str, i32, String)> {
    healthy()
        .into_iter()
        .map(|(n, s, o)| {
            if n == name {
                (n, status, out.to_string())
            } else {
                (n, s, o)
            }
        })
        .collect()
}

fn one<'a>(findings: &'a [Finding], id: &str, host: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.id == id && f.host == host)
        .unwrap_or_else(|| panic!("no {id} on {host}: {findings:#?}"))
}

#[test]
fn a_healthy_cluster_passes_every_check() {
    let f = run(&healthy());
    // `far` is reached by name only: which IP it should register with is unknown; and the
    // sample names no mirror, so which images must come through it is not a question.
    assert_eq!(one(&f, "N2", "far").severity, Severity::Skip);
    assert_eq!(one(&f, "M4", CLUSTER).severity, Severity::Skip);
    // The sample's CNI is k3s's flannel: no calico-node to be ready.
    assert_eq!(one(&f, "N1", CLUSTER).severity, Severity::Skip);
    let bad: Vec<&Finding> = f
        .iter()
        .filter(|f| {
            f.severity != Severity::Ok
                && !(f.id == "N2" && f.host == "far")
                && f.id != "M4"
                && f.id != "N1"
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    for id in IDS {
        assert!(f.iter().any(|x| x.id == *id), "no {id}");
    }
    assert_eq!(
        one(&f, "A2", "gpu1").title,
        "4 nvidia.com/gpu allocatable, as nvidia-smi lists"
    );
}

#[test]
fn before_install_every_cluster_check_says_it_does_not_apply_yet() {
    let inv = sample::inventory();
    let ev = Evidence::parse("t", "@@t kv cluster=absent\n@@t kv end=1\n");
    let f = check(&ClusterInput {
        inv: &inv,
        first: "cp1",
        ev: Ok(&ev),
        facts: &facts(),
    });
    assert_eq!(f.len(), IDS.len());
    assert!(
        f.iter()
            .all(|x| x.severity == Severity::Skip && x.title.starts_with("no cluster yet"))
    );
}

#[test]
fn an_api_that_does_not_answer_is_the_one_error_and_the_rest_waits() {
    let cmds = with(
        "readyz",
        1,
        json!("The connection to the server 127.0.0.1:6443 was refused"),
    );
    let f = run(&cmds);
    assert_eq!(one(&f, "K5", CLUSTER).severity, Severity::Error);
    assert_eq!(
        f.iter().filter(|x| x.severity == Severity::Error).count(),
        1
    );
    assert_eq!(
        one(&f, "S1", CLUSTER).title,
        "waits for the API server (K5)"
    );
}

#[test]
fn node_faults_are_told_on_their_node() {
    let mut nodes: serde_json::Value =
        serde_json::from_str(&healthy().into_iter().find(|c| c.0 == "nodes").unwrap().2).unwrap();
    // gpu1 lost its gpu label and its GPUs; far is NotReady; cp1 is missing.
    nodes["items"][1]["metadata"]["labels"] = json!({});
    nodes["items"][1]["status"]["allocatable"]["nvidia.com/gpu"] = json!("0");
    nodes["items"][2]["status"]["conditions"][1] = json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."});
    nodes["items"].as_array_mut().unwrap().remove(0);
    let f = run(&with("nodes", 0, nodes));
    assert_eq!(
        one(&f, "K3", "cp1").title,
        "not registered with the cluster"
    );
    assert_eq!(one(&f, "K8", "cp1").severity, Severity::Skip);
    let far = one(&f, "K3", "far");
    assert_eq!(far.title, "Ready=Unknown");
    assert!(
        far.evidence[0].contains("Kubelet stopped posting"),
        "{far:?}"
    );
    let labels = one(&f, "K8", "gpu1");
    assert_eq!(labels.severity, Severity::Error);
    assert_eq!(labels.evidence, ["label gpu=true is missing"]);
    assert_eq!(
        labels.fix.as_deref(),
        Some("gpuctl install --inventory INVENTORY --only labels")
    );
    let a2 = one(&f, "A2", "gpu1");
    assert_eq!(
        a2.title,
        "allocatable nvidia.com/gpu is 0, but nvidia-smi lists 4 GPU(s) on it"
    );
}

#[test]
fn the_device_plugin_must_run_ready_on_every_gpu_node() {
    let unscheduled = json!({"status": {"desiredNumberScheduled": 0, "numberReady": 0}});
    let f = run(&with("device_plugin", 0, unscheduled));
    let a1 = one(&f, "A1", CLUSTER);
    assert_eq!(a1.severity, Severity::Error);
    assert!(
        a1.title
            .starts_with("the device plugin is scheduled on 0 of 1 GPU node(s)"),
        "{a1:?}"
    );
    let unready = json!({"status": {"desiredNumberScheduled": 1, "numberReady": 0}});
    let f = run(&with("device_plugin", 0, unready));
    assert_eq!(
        one(&f, "A1", CLUSTER).title,
        "0 of 1 device plugin pod(s) ready"
    );
    let f = run(&with(
        "device_plugin",
        1,
        json!(
            "Error from server (NotFound): daemonsets.apps \"nvidia-device-plugin-daemonset\" not found"
        ),
    ));
    assert_eq!(one(&f, "A1", CLUSTER).severity, Severity::Error);
}

#[test]
fn a_second_default_class_and_missing_dns_entries_are_errors_a_hand_edit_a_warning() {
    let classes = json!({"items": [
        {"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}},
        {"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    ]});
    let f = run(&with("storageclasses", 0, classes));
    let s1 = one(&f, "S1", CLUSTER);
    assert_eq!(s1.severity, Severity::Error);
    assert!(
        s1.evidence[0].starts_with("standard is marked default too"),
        "{s1:?}"
    );

    let f = run(&with(
        "coredns_custom",
        1,
        json!("Error from server (NotFound): configmaps \"coredns-custom\" not found"),
    ));
    let n5 = one(&f, "N5", CLUSTER);
    assert_eq!(n5.severity, Severity::Error);
    assert_eq!(
        n5.evidence,
        ["missing: 192.168.3.14 login.lab.example lab.example"]
    );

    let edited = json!({"data": {"Corefile": ".:53 {\n    hosts {\n      192.168.3.14 login.lab.example\n    }\n}\n"}});
    let f = run(&with("coredns", 0, edited));
    let n5 = one(&f, "N5", CLUSTER);
    assert_eq!(n5.severity, Severity::Warn);
    assert!(n5.title.contains("k3s rewrites it"), "{n5:?}");
}

#[test]
fn stack_crds_not_established_and_workloads_not_ready_are_named() {
    let crds = json!({"items": [{"metadata": {"name": "profiles.kubeflow.org"}, "status": {"conditions": [
        {"type": "Established", "status": "False", "reason": "Installing"}]}}]});
    let stuck = format!(
        "{}\n{{\"items\": []}}\n{{\"items\": []}}",
        json!({"items": [{"kind": "Deployment", "metadata": {"name": "dash", "namespace": "kubeflow", "generation": 1},
            "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "readyReplicas": 0, "updatedReplicas": 1,
            "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}}]})
    );
    let mut cmds = with("stack_crds", 0, crds);
    for c in &mut cmds {
        if c.0 == "stack_workloads" {
            c.2 = stuck.clone();
        }
    }
    let f = run(&cmds);
    let a5 = one(&f, "A5", CLUSTER);
    assert_eq!(a5.severity, Severity::Error);
    assert_eq!(
        a5.evidence,
        [
            "customresourcedefinition profiles.kubeflow.org is not Established",
            "deployment kubeflow/dash: 0/1 ready; Available=False (MinimumReplicasUnavailable)"
        ]
    );
    assert!(
        a5.fix
            .as_deref()
            .unwrap_or_default()
            .contains("--only stack"),
        "{a5:?}"
    );

    // Nothing there at all: the stage never ran.
    let mut cmds = with("stack_crds", 0, json!({"items": []}));
    for c in &mut cmds {
        if c.0 == "stack_workloads" {
            c.2 = "{\"items\": []}\n{\"items\": []}\n{\"items\": []}".into();
        }
    }
    let f = run(&cmds);
    assert!(
        one(&f, "A5", CLUSTER)
            .title
            .contains("the stack stage has not run"),
        "{f:#?}"
    );

    // Without components A5 does not apply.
    let inv = sample::inventory();
    let ev = evidence(&healthy());
    let facts = facts();
    let f = check(&ClusterInput {
        inv: &inv,
        first: "cp1",
        ev: Ok(&ev),
        facts: &facts,
    });
    assert_eq!(one(&f, "A5", CLUSTER).severity, Severity::Skip);
}

#[test]
fn system_pods_that_do_not_run_are_named_with_what_holds_them() {
    let pods = json!({"items": [
        {"metadata": {"name": "coredns-1", "namespace": "kube-system"}, "status": {"phase": "Pending",
          "containerStatuses": [{"name": "coredns", "ready": false,
            "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}},
        {"metadata": {"name": "metrics-1", "namespace": "kube-system"}, "status": {"phase": "Pending", "conditions": [
          {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
           "message": "0/3 nodes are available"}]}}
    ]});
    let f = run(&with("pods", 0, pods));
    let k7 = one(&f, "K7", CLUSTER);
    assert_eq!(k7.severity, Severity::Error);
    assert_eq!(
        k7.evidence,
        [
            "pod kube-system/coredns-1: Pending, coredns ImagePullBackOff",
            "pod kube-system/metrics-1: Pending, PodScheduled=False (Unschedulable: 0/3 nodes are available)"
        ]
    );
    assert!(
        k7.fix
            .as_deref()
            .unwrap_or_default()
            .contains("mirror-images check"),
        "{k7:?}"
    );
}

#[test]
fn lost_claims_are_errors_and_long_pending_ones_warnings() {
    let now = chrono::Utc::now();
    let ago = |min: i64| (now - chrono::TimeDelta::minutes(min)).to_rfc3339();
    let claims = |items: serde_json::Value| {
        let ev = evidence(&with("claims", 0, json!({ "items": items })));
        super::claims(&ev, now)
    };
    let f = claims(json!([
        {"metadata": {"name": "new", "namespace": "a", "creationTimestamp": ago(1)}, "status": {"phase": "Pending"}},
        {"metadata": {"name": "old", "namespace": "a", "creationTimestamp": ago(30)},
         "spec": {"storageClassName": "nfs-client"}, "status": {"phase": "Pending"}}
    ]));
    assert_eq!(f[0].severity, Severity::Warn);
    assert_eq!(
        f[0].evidence,
        ["a/old: Pending for 30 min, storage class nfs-client"]
    );
    let f = claims(json!([
        {"metadata": {"name": "gone", "namespace": "b", "creationTimestamp": ago(90)},
         "spec": {"volumeName": "pv-9"}, "status": {"phase": "Lost"}}
    ]));
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].evidence, ["b/gone: Lost (its volume pv-9 is gone)"]);
    let f = claims(json!([
        {"metadata": {"name": "new", "namespace": "a", "creationTimestamp": ago(1)}, "status": {"phase": "Pending"}}
    ]));
    assert_eq!(f[0].severity, Severity::Ok);
}

#[test]
fn kubelets_outside_the_skew_and_nodes_on_another_address_are_named() {
    let mut nodes: serde_json::Value =
        serde_json::from_str(&healthy().into_iter().find(|c| c.0 == "nodes").unwrap().2).unwrap();
    nodes["items"][1]["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.31.0+k3s1");
    nodes["items"][0]["status"]["addresses"][0]["address"] = json!("172.17.0.5");
    let f = run(&with("nodes", 0, nodes.clone()));
    let k1 = one(&f, "K1", CLUSTER);
    assert_eq!(k1.severity, Severity::Error);
    assert!(
        k1.evidence[0].starts_with("gpu1: kubelet v1.31.0+k3s1, API server v1.30.6+k3s1"),
        "{k1:?}"
    );
    let n2 = one(&f, "N2", "cp1");
    assert_eq!(n2.severity, Severity::Error);
    assert_eq!(
        n2.title,
        "registered as 172.17.0.5, the inventory says 10.0.0.1"
    );

    // Older within the policy but unlike the others: the node that missed an upgrade.
    nodes["items"][1]["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.29.3+k3s1");
    let f = run(&with("nodes", 0, nodes.clone()));
    assert_eq!(one(&f, "K1", CLUSTER).severity, Severity::Warn);
    nodes["items"][1]["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.26.0+k3s1");
    let f = run(&with("nodes", 0, nodes));
    assert_eq!(one(&f, "K1", CLUSTER).severity, Severity::Error);
}

/// The same checks on kubeadm: N5 reads the Corefile's gpuctl block, the fixes name the
/// kubelet and kubeadm's own commands.
#[test]
fn on_kubeadm_dns_is_the_corefile_block_and_fixes_name_kubeadm() {
    let mut inv = inventory();
    inv.cluster.distribution = crate::inventory::Distribution::Kubeadm;
    let facts = facts();
    let judge = |cmds: &[(&str, i32, String)]| {
        let ev = evidence(cmds);
        check(&ClusterInput {
            inv: &inv,
            first: "cp1",
            ev: Ok(&ev),
            facts: &facts,
        })
    };
    let corefile = |block: &str| {
        json!({"data": {"Corefile": format!(
            ".:53 {{\n    kubernetes cluster.local\n}}\n{block}"
        )}})
    };
    // coredns-custom does not exist on kubeadm: the block is what counts.
    let mut cmds = with(
        "coredns",
        0,
        corefile(
            "# BEGIN gpuctl dns.hosts\nhosts {\n  192.168.3.14 login.lab.example lab.example\n  fallthrough\n}\n# END gpuctl dns.hosts\n",
        ),
    );
    cmds.retain(|(n, _, _)| *n != "coredns_custom");
    let f = judge(&cmds);
    let n5 = one(&f, "N5", CLUSTER);
    assert_eq!(n5.severity, Severity::Ok, "{n5:?}");
    assert!(n5.title.contains("the Corefile's gpuctl block"), "{n5:?}");

    let mut cmds = with("coredns", 0, corefile(""));
    cmds.retain(|(n, _, _)| *n != "coredns_custom");
    let f = judge(&cmds);
    let n5 = one(&f, "N5", CLUSTER);
    assert_eq!(n5.severity, Severity::Error);
    assert_eq!(
        n5.title,
        "the Corefile's gpuctl block does not exist: CoreDNS does not answer dns.hosts"
    );
    assert_eq!(
        n5.fix.as_deref(),
        Some("gpuctl install --inventory INVENTORY --only dns")
    );

    let f = judge(&with("readyz", 1, json!("connection refused")));
    let k5 = one(&f, "K5", CLUSTER);
    assert!(
        k5.fix
            .as_deref()
            .unwrap_or_default()
            .contains("systemctl status kubelet"),
        "{k5:?}"
    );
}
