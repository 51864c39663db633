//! The kubeadm path of the `kubernetes` stage on lab nodes: real Debian containerd (from the
//! bundle's packages, configured by the `runtime` stage), the kubeadm stand-in
//! (tests/lab/fixtures/k3s) as `bin/kubeadm`, `bin/kubelet` and `bin/kubectl` of a test
//! bundle, `kubeadm init` on the first server and `kubeadm join` on the others with the
//! join material it hands over, calico from the bundle's `manifests/calico/` (the `cni`
//! stage), then `ready`, `kubeconfig`, a re-run that changes nothing, and `reset`.

use std::path::Path;

use crate::cluster_stages::{doctor_json, set_section};
use crate::doctor::gpu_device_nodes;
use crate::kubernetes::{
    add_to_bundle, gpu_runtime, gpuctl, host_part, install, nothing_left, secret_never_leaked,
    skipped, state_dir,
};
use crate::stages::real_debs;
use crate::support::lab::{Lab, LabSpec};

/// A small calico: its CRD, and the calico-node DaemonSet whose pool CIDR gpuctl sets.
const CALICO: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ippools.crd.projectcalico.org}
spec:
  group: crd.projectcalico.org
  names: {kind: IPPool, plural: ippools, singular: ippool}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: calico-node}}
  template:
    metadata: {labels: {k8s-app: calico-node}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - name: calico-node
        image: docker.io/calico/node:v3.28.0
        env:
        - {name: CALICO_IPV4POOL_CIDR, value: 192.168.0.0/16}
";

/// The bundle: the stand-in as kubeadm, kubelet and kubectl, calico, and Debian's
/// containerd and runc; the lab inventory switched to kubeadm.
fn kubeadm_bundle(lab: &Lab) {
    let dir = lab.dir().join("bundle");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("bundle.yaml"),
        "name: lab-kubeadm\nversions: { kubernetes: v1.30.6 }\nfiles:\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/fixtures/k3s");
    let standin = std::fs::read(&fixture).unwrap_or_else(|e| {
        panic!(
            "the kubeadm stand-in {} is missing ({e}); it is part of the lab (docs/lab.md)",
            fixture.display()
        )
    });
    let mut files: Vec<(String, Vec<u8>)> = ["kubeadm", "kubelet", "kubectl"]
        .iter()
        .map(|n| (format!("bin/{n}"), standin.clone()))
        .collect();
    files.push((
        "manifests/calico/calico.yaml".into(),
        CALICO.as_bytes().to_vec(),
    ));
    for deb in real_debs(&["runc", "containerd"]) {
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&deb).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));
        files.push((format!("packages/debian-12/{name}"), bytes));
    }
    add_to_bundle(lab, &files);
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let text = text.replace(
        "  distribution: k3s\n  version: v1.30.6+k3s1\n",
        "  distribution: kubeadm\n  version: v1.30.6\n  cni: calico\n",
    );
    assert!(text.contains("distribution: kubeadm"), "{text}");
    std::fs::write(&lab.inventory, format!("bundle: ./bundle\n{text}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

const KUBECTL: &str = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// What the kubeadm path puts on a node (containerd's own files are the package's).
const KUBEADM_FILES: &str = "/usr/local/bin/kubeadm /usr/local/bin/kubelet \
    /usr/local/bin/kubectl /etc/kubernetes /var/lib/kubelet /var/lib/etcd \
    /etc/systemd/system/kubelet.service /etc/systemd/system/kubelet.service.d";

#[test]
fn kubeadm_inits_joins_brings_calico_then_skips_and_resets() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1));
    kubeadm_bundle(&lab);
    gpu_runtime(&lab);
    let ip1 = lab.node("node1").ip.clone();
    set_section(
        &lab,
        "dns",
        "  hosts: [{ ip: 10.9.0.5, names: [registry.lab.example] }]\n",
    );

    let first = install(&lab, &[]).success();
    for node in ["node1", "node2", "node3"] {
        let part = host_part(&first, node);
        assert!(
            part.contains("~ upload /usr/local/bin/kubeadm"),
            "{}",
            first.stdout
        );
        // Debian's containerd, installed from the bundle and configured for kubeadm.
        assert!(
            part.contains("~ file /etc/containerd/config.toml"),
            "{}",
            first.stdout
        );
        let config = lab.exec(node, "cat /etc/containerd/config.toml");
        assert!(config.contains("SystemdCgroup = true"), "{config}");
        assert_eq!(
            config.contains("runtimes.nvidia"),
            node == "node3",
            "{node}: {config}"
        );
        assert_eq!(
            lab.exec(node, "systemctl is-active containerd").trim(),
            "active"
        );
    }
    let node1 = host_part(&first, "node1");
    for stage in ["cni ", "ready ", "kubeconfig "] {
        assert!(node1.contains(stage), "{stage}: {}", first.stdout);
    }

    // Every node joined and is Ready; the first server is the control plane.
    let nodes = lab.exec("node1", &format!("{KUBECTL} get nodes -o json"));
    let nodes: serde_json::Value =
        serde_json::from_str(&nodes).unwrap_or_else(|e| panic!("{e}: {nodes}"));
    let mut ready: Vec<(String, String)> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let cond = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                cond,
            )
        })
        .collect();
    ready.sort();
    assert_eq!(
        ready,
        ["node1", "node2", "node3"].map(|n| (n.to_string(), "True".to_string()))
    );
    let taints = lab.exec(
        "node1",
        &format!("{KUBECTL} get node node1 -o jsonpath='{{.spec.taints[*].key}}'"),
    );
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane"),
        "{taints}"
    );

    // The workers joined with the first server's token, given in a 0600 file; calico's
    // pool follows the inventory's pod CIDR (kubeadm's default here).
    let material = lab.exec("node1", "cat /etc/kubernetes/gpuctl/join-material");
    let token = material
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .unwrap_or_else(|| panic!("no token in the join material"))
        .to_string();
    let join = lab.exec(
        "node2",
        "stat -c %a /etc/kubernetes/gpuctl/join.yaml; cat /etc/kubernetes/gpuctl/join.yaml",
    );
    assert!(join.starts_with("600\n"), "{join}");
    assert!(
        join.contains(&format!("apiServerEndpoint: {ip1}:6443")),
        "{join}"
    );
    assert!(
        join.contains(&token),
        "the join configuration lacks the token"
    );
    let pool = lab.exec(
        "node1",
        &format!(
            "{KUBECTL} -n kube-system get daemonset calico-node -o \
             jsonpath='{{.spec.template.spec.containers[0].env[0].value}}'"
        ),
    );
    assert_eq!(pool.trim(), "10.244.0.0/16");

    // dns.hosts: a managed block at the end of kubeadm's Corefile, kubeadm's own server
    // block kept.
    let corefile = || {
        lab.exec(
            "node1",
            &format!(
                "{KUBECTL} -n kube-system get configmap coredns -o jsonpath='{{.data.Corefile}}'"
            ),
        )
    };
    let text = corefile();
    assert!(text.starts_with(".:53 {"), "{text}");
    assert!(text.contains("kubernetes cluster.local"), "{text}");
    assert!(
        text.contains("# BEGIN gpuctl dns.hosts\n")
            && text.contains("10.9.0.5 registry.lab.example"),
        "{text}"
    );

    // doctor reads the kubeadm cluster as it reads k3s: a healthy install has no error, and
    // the checks that differ by distribution read kubeadm's own files and units.
    gpu_device_nodes(&lab, "node3");
    let (code, findings) = doctor_json(&lab, &[]);
    let errors: Vec<_> = findings.iter().filter(|(_, _, s)| s == "error").collect();
    assert!(errors.is_empty() && code == 0, "exit {code}: {errors:?}");
    let severity = |id: &str, host: &str| {
        findings
            .iter()
            .find(|(i, h, _)| i == id && h == host)
            .map(|(_, _, s)| s.as_str())
            .unwrap_or_else(|| panic!("no {id} on {host}: {findings:?}"))
    };
    for id in ["K5", "K1", "K6", "N5", "N1", "A1"] {
        assert_eq!(severity(id, "cluster"), "ok", "{id}: {findings:?}");
    }
    for node in ["node1", "node2", "node3"] {
        for id in ["K3", "K8", "K2", "R2", "N2"] {
            assert_eq!(severity(id, node), "ok", "{id} on {node}: {findings:?}");
        }
    }
    assert_eq!(severity("A2", "node3"), "ok", "{findings:?}");
    // R2 asked the running containerd (as root, through sudo) for its CRI plugin.
    let runtime = gpuctl(&lab, &["doctor", "--json", "--only", "runtime"]).success();
    let report: serde_json::Value = serde_json::from_str(&runtime.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", runtime.stdout));
    let r2: Vec<String> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["id"] == "R2")
        .map(|f| format!("{} {}", f["title"], f["evidence"]))
        .collect();
    assert!(
        r2.len() == 3
            && r2
                .iter()
                .all(|t| t.contains("CRI plugin is ok") && t.contains("io.containerd.grpc.v1")),
        "{r2:#?}"
    );

    // The kubeconfig names the first server.
    let kubeconfig = state_dir(&lab).join("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    assert!(
        text.contains(&format!("server: https://{ip1}:6443")),
        "{text}"
    );
    // `gpuctl kubeconfig` reads kubeadm's admin.conf the same way, into a 0600 file.
    let out = lab.dir().join("kubeadm-admin.conf");
    gpuctl(&lab, &["kubeconfig", "--out", &out.display().to_string()]).success();
    let fetched = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fetched.contains(&format!("server: https://{ip1}:6443")),
        "{fetched}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));

    // Done: a second install skips every stage, plan finds nothing to change.
    let second = install(&lab, &[]).success();
    assert!(
        second.stdout.contains("0 changes made"),
        "{}",
        second.stdout
    );
    skipped(
        &second,
        &["node1", "node2", "node3"],
        &["packages", "runtime", "kubernetes"],
    );
    skipped(&second, &["node1"], &["cni", "ready", "kubeconfig", "dns"]);
    let plan = gpuctl(&lab, &["plan"]).success();
    assert!(plan.stdout.contains("0 changes to make"), "{}", plan.stdout);
    secret_never_leaked(&lab, "join token", &token, &[&first, &second, &plan]);

    // A changed entry replaces the block (once, not twice); no entries take it out.
    set_section(
        &lab,
        "dns",
        "  hosts: [{ ip: 10.9.0.6, names: [registry2.lab.example] }]\n",
    );
    // Before install brings it there, doctor names the entry the Corefile's block lacks.
    let (code, findings) = doctor_json(&lab, &["--only", "network"]);
    assert_eq!(code, 1, "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|(id, host, s)| id == "N5" && host == "cluster" && s == "error"),
        "{findings:?}"
    );
    let changed = install(&lab, &[]).success();
    assert!(
        host_part(&changed, "node1").contains("dns        2 changed"),
        "{}",
        changed.stdout
    );
    let text = corefile();
    assert_eq!(
        text.matches("# BEGIN gpuctl dns.hosts").count(),
        1,
        "{text}"
    );
    assert!(text.contains("10.9.0.6 registry2.lab.example"), "{text}");
    assert!(!text.contains("10.9.0.5"), "{text}");
    set_section(&lab, "dns", "  hosts: []\n");
    install(&lab, &[]).success();
    let text = corefile();
    assert!(!text.contains("gpuctl"), "{text}");
    assert!(text.contains("kubernetes cluster.local"), "{text}");

    // Without calico's DaemonSet, N1 says pods get no network and names the cni stage.
    lab.exec(
        "node1",
        &format!("{KUBECTL} -n kube-system delete daemonset calico-node"),
    );
    let (code, findings) = doctor_json(&lab, &["--only", "network"]);
    assert_eq!(code, 1, "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|(id, host, s)| id == "N1" && host == "cluster" && s == "error"),
        "{findings:?}"
    );

    // Reset: kubeadm reset ran, nothing of the kubeadm path is left, gpuctl's containerd
    // configuration is gone.
    let reset = gpuctl(&lab, &["reset", "--yes"]).success();
    for n in ["node1", "node2", "node3"] {
        nothing_left(&lab, n, KUBEADM_FILES, "bin/kubele[t]", &reset);
        let config = lab.exec(n, "cat /etc/containerd/config.toml 2>/dev/null || true");
        assert!(!config.contains("gpuctl"), "{n}: {config}");
    }
    secret_never_leaked(&lab, "join token", &token, &[&reset]);
}
