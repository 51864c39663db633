//! The k3s stand-in (tests/lab/fixtures/k3s) on a real three-node lab, set up by hand the
//! way gpuctl's kubernetes stage writes a node (binary, links, config.yaml, units, env
//! files), so the stage can rely on it: nodes register and turn Ready, a wrong token is
//! refused, a killed node goes NotReady and comes back with its container, objects
//! round-trip through kubectl, and a device-plugin DaemonSet makes the GPU node advertise
//! `nvidia.com/gpu`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::lab::{Lab, LabSpec};

/// Far longer than anything here should take; only a hung fixture reaches it.
const DEADLINE: Duration = Duration::from_secs(90);

/// Installs the fixture as /usr/local/bin/k3s with the kubectl and crictl links the
/// install script makes.
fn install_k3s(lab: &Lab, node: &str) {
    lab.install_fixture(node, "k3s", "/usr/local/bin/k3s");
    lab.exec(
        node,
        "ln -sf k3s /usr/local/bin/kubectl && ln -sf k3s /usr/local/bin/crictl",
    );
}

/// Writes a file as root with `mode`; the content travels inside a quoted heredoc.
fn write(lab: &Lab, node: &str, path: &str, mode: &str, text: &str) {
    assert!(!text.contains("\nEOF_K3S\n") && (text.is_empty() || text.ends_with('\n')));
    lab.exec(
        node,
        &format!(
            "mkdir -p \"$(dirname {path})\" && cat > {path} <<'EOF_K3S'\n{text}EOF_K3S\nchmod {mode} {path}"
        ),
    );
}

/// The unit gpuctl writes (Type=notify: the lab's systemctl has no Type=exec).
fn unit(name: &str, command: &str) -> String {
    format!(
        "[Unit]\nDescription=Lightweight Kubernetes\nAfter=network-online.target\n\n\
         [Service]\nType=notify\nEnvironmentFile=-/etc/systemd/system/{name}.service.env\n\
         KillMode=process\nExecStart=/usr/local/bin/k3s {command}\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// config.yaml, unit and env file for `node`; `server` is None on the first server.
fn configure(lab: &Lab, node: &str, role: &str, server: Option<&str>, token: Option<&str>) {
    let unit_name = if role == "server" { "k3s" } else { "k3s-agent" };
    let mut config = format!(
        "node-name: {node}\nnode-label:\n  - \"gpuctl.io/test=k3s-fixture\"\n\
         write-kubeconfig-mode: \"0644\"\ndisable:\n  - traefik\n"
    );
    let mut env = String::new();
    if let Some(server) = server {
        config.push_str(&format!("server: https://{server}:6443\n"));
        env.push_str(&format!("K3S_URL=https://{server}:6443\n"));
    }
    if let Some(token) = token {
        env.push_str(&format!("K3S_TOKEN={token}\n"));
    }
    write(lab, node, "/etc/rancher/k3s/config.yaml", "0600", &config);
    write(
        lab,
        node,
        &format!("/etc/systemd/system/{unit_name}.service"),
        "0644",
        &unit(unit_name, role),
    );
    write(
        lab,
        node,
        &format!("/etc/systemd/system/{unit_name}.service.env"),
        "0600",
        &env,
    );
}

fn kubectl_json(lab: &Lab, args: &str) -> Value {
    let text = lab.exec("node1", &format!("kubectl {args} -o json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl {args}: {e}:\n{text}"))
}

/// Each node's name and its Ready condition's status.
fn readiness(lab: &Lab) -> Vec<(String, String)> {
    let list = kubectl_json(lab, "get nodes");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect()
}

/// Polls `probe` until it returns Some, failing the test with `what` and the last value
/// seen when the deadline passes.
fn eventually<T, S: std::fmt::Debug>(what: &str, mut probe: impl FnMut() -> Result<T, S>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > DEADLINE => {
                panic!("{what}: still not so after {DEADLINE:?}; last seen: {last:?}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn wait_ready(lab: &Lab, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    eventually(&format!("nodes {want:?}"), || {
        let got = readiness(lab);
        if got == want { Ok(()) } else { Err(got) }
    });
}

fn gpu_allocatable(lab: &Lab) -> Vec<(String, Option<String>)> {
    let list = kubectl_json(lab, "get nodes");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["status"]["allocatable"]["nvidia.com/gpu"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
  namespace: kube-system
data:
  greeting: hello
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: nvidia-device-plugin-daemonset
  namespace: kube-system
spec:
  selector:
    matchLabels: {name: nvidia-device-plugin}
  template:
    metadata:
      labels: {name: nvidia-device-plugin}
    spec:
      tolerations:
        - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
      containers:
        - name: nvidia-device-plugin-ctr
          image: registry.lab:5000/nvidia/k8s-device-plugin:v0.16.2
";

#[test]
fn k3s_fixture_runs_a_three_node_cluster_as_the_contract_says() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1));
    let server_ip = lab.node("node1").ip.clone();
    for node in ["node1", "node2", "node3"] {
        install_k3s(&lab, node);
    }
    assert!(lab.exec("node1", "k3s --version").contains("v1.30.6+k3s1"));

    // The first server makes the token, the kubeconfig and its own Ready node.
    configure(&lab, "node1", "server", None, None);
    lab.exec("node1", "systemctl enable --now k3s");
    assert_eq!(
        lab.exec("node1", "systemctl is-active k3s").trim(),
        "active"
    );
    let token = lab.exec("node1", "cat /var/lib/rancher/k3s/server/node-token");
    let token = token.trim().to_string();
    let shape = regex_like_token(&token);
    assert!(shape, "node-token has the wrong shape: {token:?}");
    assert_eq!(
        lab.exec(
            "node1",
            "stat -c %a /var/lib/rancher/k3s/server/token /var/lib/rancher/k3s/server/node-token /etc/rancher/k3s/k3s.yaml"
        )
        .split_whitespace()
        .collect::<Vec<_>>(),
        ["600", "600", "644"]
    );
    assert!(
        lab.exec("node1", "cat /etc/rancher/k3s/k3s.yaml")
            .contains("server: https://127.0.0.1:6443")
    );
    assert_eq!(lab.exec("node1", "kubectl get --raw /readyz"), "ok");

    // An agent with a wrong token is refused and never registers; with the right one it joins.
    configure(
        &lab,
        "node3",
        "agent",
        Some(&server_ip),
        Some("K10deadbeef::server:not-the-token"),
    );
    // `enable --now` exits 0 here even when the start fails, so start separately.
    lab.exec("node3", "systemctl enable k3s-agent");
    let refused = lab.exec_output("node3", "systemctl start k3s-agent");
    assert!(
        !refused.status.success(),
        "a wrong token must fail the start"
    );
    assert_eq!(
        lab.exec("node3", "systemctl is-active k3s-agent || true")
            .trim(),
        "failed"
    );
    let log = lab.exec("node3", "cat /var/log/journal/k3s-agent.service.log");
    assert!(
        log.contains("level=fatal") && log.contains("token"),
        "{log}"
    );
    assert!(
        !log.contains("not-the-token"),
        "the token leaked into the log: {log}"
    );
    configure(&lab, "node2", "agent", Some(&server_ip), Some(&token));
    lab.exec("node2", "systemctl enable --now k3s-agent");
    wait_ready(&lab, &[("node1", "True"), ("node2", "True")]);
    configure(&lab, "node3", "agent", Some(&server_ip), Some(&token));
    lab.exec("node3", "systemctl restart k3s-agent");
    wait_ready(
        &lab,
        &[("node1", "True"), ("node2", "True"), ("node3", "True")],
    );

    // What each node reports.
    let nodes = kubectl_json(&lab, "get nodes");
    let items = nodes["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{nodes}");
    for n in &items {
        let name = n["metadata"]["name"].as_str().unwrap_or_default();
        let labels = &n["metadata"]["labels"];
        assert_eq!(labels["gpuctl.io/test"], "k3s-fixture", "{name}");
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(
            labels["node-role.kubernetes.io/control-plane"] == "true",
            name == "node1",
            "{name}: {labels}"
        );
        let ip = n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .map(|a| a["address"].clone())
            .unwrap_or_default();
        assert_eq!(ip, lab.node(name).ip.as_str(), "{name}");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.30.6+k3s1");
    }
    let hosts = lab.exec(
        "node1",
        "kubectl -n kube-system get configmap coredns -o jsonpath='{.data.NodeHosts}'",
    );
    assert!(
        hosts.contains(&format!("{} node3", lab.node("node3").ip)),
        "{hosts}"
    );

    // Objects round-trip; the device plugin makes the GPU node (node3) advertise its GPUs.
    write(&lab, "node1", "/root/manifest.yaml", "0644", MANIFEST);
    let applied = lab.exec(
        "node1",
        "kubectl apply --server-side -f /root/manifest.yaml",
    );
    assert_eq!(
        applied,
        "configmap/probe serverside-applied\ndaemonset.apps/nvidia-device-plugin-daemonset serverside-applied\n"
    );
    let again = lab.exec(
        "node1",
        "kubectl apply --server-side -f /root/manifest.yaml",
    );
    assert!(again.contains("configmap/probe unchanged"), "{again}");
    let cm = kubectl_json(&lab, "-n kube-system get configmap probe");
    assert_eq!(cm["data"]["greeting"], "hello");
    lab.exec(
        "node1",
        "kubectl -n kube-system label configmap probe tier=test",
    );
    assert_eq!(
        lab.exec(
            "node1",
            "kubectl -n kube-system get cm -l tier=test -o jsonpath='{.items[*].metadata.name}'"
        ),
        "probe"
    );
    lab.exec("node1", "kubectl -n kube-system delete configmap probe");
    let gone = lab.exec_output("node1", "kubectl -n kube-system get configmap probe");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("(NotFound)"));
    let gpus = eventually("nvidia.com/gpu on node3 only", || {
        let got = gpu_allocatable(&lab);
        if got.iter().any(|(_, g)| g.is_some()) {
            Ok(got)
        } else {
            Err(got)
        }
    });
    assert_eq!(
        gpus,
        [
            ("node1".to_string(), None),
            ("node2".to_string(), None),
            ("node3".to_string(), Some("4".to_string()))
        ]
    );
    lab.exec(
        "node1",
        "kubectl -n kube-system rollout status daemonset/nvidia-device-plugin-daemonset --timeout=30s",
    );
    lab.exec(
        "node1",
        "kubectl -n kube-system delete daemonset nvidia-device-plugin-daemonset",
    );
    assert!(gpu_allocatable(&lab).iter().all(|(_, g)| g.is_none()));

    // A killed node turns NotReady; its container's start brings the enabled agent back.
    lab.kill("node2");
    wait_ready(
        &lab,
        &[("node1", "True"), ("node2", "Unknown"), ("node3", "True")],
    );
    lab.start("node2");
    wait_ready(
        &lab,
        &[("node1", "True"), ("node2", "True"), ("node3", "True")],
    );
}

/// `K10<64 hex>::server:<32 hex>`, without pulling in a regex crate for one check.
fn regex_like_token(token: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match token
        .strip_prefix("K10")
        .and_then(|rest| rest.split_once("::server:"))
    {
        Some((ca, secret)) => hex(ca, 64) && hex(secret, 32),
        None => false,
    }
}

const KUBELET_UNIT: &str = "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\n\
After=network-online.target\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n\
RestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n";

const KUBEADM_CONFIG: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: node1
  kubeletExtraArgs:
    - {name: node-labels, value: gpuctl.io/test=kubeadm-fixture}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.30.6
imageRepository: registry.lab:5000/k8s
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
";

/// What the kubelet package leaves on a node, with the fixture as kubeadm, kubelet and
/// kubectl; the kubelet is enabled and, before init/join, exits like the real one.
fn install_kubeadm(lab: &Lab, node: &str) {
    for bin in ["kubeadm", "kubelet", "kubectl"] {
        lab.install_fixture(node, "k3s", &format!("/usr/bin/{bin}"));
    }
    write(
        lab,
        node,
        "/lib/systemd/system/kubelet.service",
        "0644",
        KUBELET_UNIT,
    );
    lab.exec(node, "systemctl daemon-reload && systemctl enable kubelet");
}

#[test]
fn kubeadm_fixture_inits_joins_and_resets() {
    let lab = Lab::up(&LabSpec::new(2));
    for node in ["node1", "node2"] {
        install_kubeadm(&lab, node);
    }
    write(&lab, "node1", "/root/kubeadm.yaml", "0600", KUBEADM_CONFIG);

    // Swap on (faked through /etc/gpuctl-lab/swaps) stops init unless the check is ignored.
    write(
        &lab,
        "node1",
        "/etc/gpuctl-lab/swaps",
        "0644",
        "Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n",
    );
    let refused = lab.exec_output("node1", "kubeadm init --config /root/kubeadm.yaml");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("[ERROR Swap]"));
    lab.exec("node1", "test ! -e /etc/kubernetes/admin.conf");
    let init = lab.exec(
        "node1",
        "kubeadm init --config /root/kubeadm.yaml --ignore-preflight-errors=Swap",
    );
    lab.exec("node1", "rm /etc/gpuctl-lab/swaps");
    let join = init
        .lines()
        .skip_while(|l| !l.starts_with("kubeadm join "))
        .take(2)
        .map(|l| l.trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        join.contains("--token ") && join.contains("--discovery-token-ca-cert-hash sha256:"),
        "{init}"
    );
    assert_eq!(
        lab.exec("node1", "stat -c %a /etc/kubernetes/admin.conf")
            .trim(),
        "600"
    );
    let images = lab.exec("node1", "grep -h 'image:' /etc/kubernetes/manifests/*.yaml");
    assert_eq!(images.lines().count(), 4, "{images}");
    assert!(
        images
            .lines()
            .all(|l| l.contains("image: registry.lab:5000/k8s/")),
        "{images}"
    );
    // The printed hash is the one OpenSSL computes from the CA, as the docs tell operators.
    let hash = lab.exec(
        "node1",
        "openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | sha256sum | cut -c1-64",
    );
    assert!(join.contains(&format!("sha256:{}", hash.trim())), "{join}");
    // A second init finds the manifests and refuses.
    let again = lab.exec_output(
        "node1",
        "kubeadm init --config /root/kubeadm.yaml --ignore-preflight-errors=Port-6443",
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("[ERROR DirAvailable--etc-kubernetes-manifests]")
    );

    let kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
    let cluster_config = lab.exec(
        "node1",
        &format!("{kubectl} -n kube-system get cm kubeadm-config -o jsonpath='{{.data.ClusterConfiguration}}'"),
    );
    assert!(
        cluster_config.contains("podSubnet: 10.244.0.0/16"),
        "{cluster_config}"
    );
    let corefile = lab.exec(
        "node1",
        &format!("{kubectl} -n kube-system get cm coredns -o jsonpath='{{.data.Corefile}}'"),
    );
    assert!(
        corefile.contains("kubernetes cluster.local") && !corefile.contains("coredns/custom"),
        "{corefile}"
    );

    // A wrong CA hash is refused before anything is written; the printed command joins.
    let wrong = join.replace("sha256:", "sha256:00");
    let refused = lab.exec_output("node2", &wrong);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("are pinned"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    lab.exec("node2", "test ! -e /etc/kubernetes/kubelet.conf");
    lab.exec("node2", &join);
    let nodes = lab.exec(
        "node1",
        &format!("{kubectl} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.status.conditions[?(@.type==\"Ready\")].status}} {{.spec.taints[*].key}};{{end}}'"),
    );
    assert_eq!(
        nodes,
        "node1 True node-role.kubernetes.io/control-plane;node2 True ;"
    );
    let label = lab.exec(
        "node1",
        &format!("{kubectl} get nodes -l gpuctl.io/test=kubeadm-fixture -o name"),
    );
    assert_eq!(label, "node/node1\n");

    // token create prints a join command that works the same way.
    let fresh = lab.exec("node1", "kubeadm token create --print-join-command");
    assert!(fresh.starts_with(&format!(
        "kubeadm join {}:6443 --token ",
        lab.node("node1").ip
    )));

    // reset removes what join wrote and stops the kubelet.
    lab.exec("node2", "kubeadm reset -f");
    lab.exec(
        "node2",
        "test ! -e /etc/kubernetes/kubelet.conf && test ! -e /var/lib/kubelet/config.yaml && test ! -e /etc/kubernetes/pki",
    );
    assert_ne!(
        lab.exec("node2", "systemctl is-active kubelet || true")
            .trim(),
        "active"
    );
}
