//! `gpuctl doctor`'s network, proxy, NVIDIA module and health, containerd and mirror checks
//! (H8, H9, G3, G4, G8, G9, N4, R2, R7, M1) against real lab nodes: on the prepared lab of
//! `doctor.rs`, with a registry stand-in on node1, each fault injected on one node is
//! found on that node with its id and a fix, and other hosts keep their baseline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::doctor::{
    GPU_NODE, NODES, doctor, doctor_inventory, expect, findings, kernel_expectations, notable,
    prepare, schema_errors,
};
use crate::support::lab::{Lab, LabSpec};

/// The mirror as the nodes name it. What answers there is a few lines of Python on node1
/// that answer `GET /v2/` with 200 as a registry does: M1 asks only that (the registry
/// itself is tested in the mirror tests).
const MIRROR: &str = "node1:5000";
const V2: &str = r#"import http.server as h
class R(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/v2/' else 404)
        self.send_header('Docker-Distribution-API-Version', 'registry/2.0')
        self.end_headers()
    def log_message(self, *a): pass
h.HTTPServer(('0.0.0.0', 5000), R).serve_forever()
"#;

/// `doctor.rs`'s inventory plus the mirror (plain HTTP).
fn with_mirror(lab: &Lab, base: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(base).unwrap_or_else(|e| panic!("{e}"));
    text.push_str(&format!(
        "registry:\n  mirror: {MIRROR}\n  insecure: true\n"
    ));
    let path = lab.dir().join("doctor-mirror.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// The same inventory for kubeadm with containerd.
fn kubeadm(lab: &Lab, base: &Path) -> PathBuf {
    let text = std::fs::read_to_string(base)
        .unwrap_or_else(|e| panic!("{e}"))
        .replace("distribution: k3s", "distribution: kubeadm")
        .replace("container_runtime: docker", "container_runtime: containerd")
        .replace("version: v1.30.6+k3s1", "version: v1.30.6");
    let path = lab.dir().join("doctor-kubeadm.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Starts a detached process on a node; `tag` names its pid file for [`stop`].
fn start(lab: &Lab, node: &str, tag: &str, cmd: &str) {
    lab.exec(
        node,
        &format!("setsid sh -c '{cmd}' >/dev/null 2>&1 < /dev/null & echo $! > /run/gpuctl-test-{tag}.pid"),
    );
}

fn stop(lab: &Lab, node: &str, tag: &str) {
    lab.exec(
        node,
        &format!("kill $(cat /run/gpuctl-test-{tag}.pid) && rm /run/gpuctl-test-{tag}.pid"),
    );
}

/// Waits until something listens on `port` on `node`.
fn listening(lab: &Lab, node: &str, port: u16) {
    lab.exec(
        node,
        &format!(
            "for i in $(seq 100); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; done; echo 'nothing listens on {port}' >&2; exit 1"
        ),
    );
}

fn ip_of(lab: &Lab, node: &str) -> String {
    lab.exec(node, "hostname -i")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn doctor_finds_port_proxy_module_health_runtime_and_mirror_faults() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1));
    let base = doctor_inventory(&lab);
    prepare(&lab);
    lab.install_fixture(GPU_NODE, "dmesg", "/usr/local/bin/dmesg");
    lab.exec("node1", &format!("cat > /root/v2.py <<'EOF'\n{V2}EOF"));
    start(&lab, "node1", "mirror", "exec python3 /root/v2.py");
    listening(&lab, "node1", 5000);
    let inventory = with_mirror(&lab, &base);
    let baseline: Vec<BTreeSet<(String, String)>> =
        NODES.iter().map(|n| kernel_expectations(&lab, n)).collect();
    let node1_ip = ip_of(&lab, "node1");

    // Healthy: the new checks add nothing notable; before install nothing listens on the
    // cluster ports, so N4 is "not applicable yet" everywhere, and the mirror answers.
    let (_, json) = doctor(&inventory, &[]);
    assert_eq!(schema_errors(&json), Vec::<String>::new(), "{json:#}");
    for (node, want) in NODES.iter().zip(&baseline) {
        assert_eq!(&notable(&json, node), want, "{node}:\n{json:#}");
        let ok = |id: &str, sev: &str, text: &str| {
            assert!(
                findings(&json).iter().any(|f| f["id"] == id
                    && f["host"] == *node
                    && f["severity"] == sev
                    && f["title"].as_str().is_some_and(|t| t.contains(text))),
                "no {id} {sev} {text:?} on {node}:\n{json:#}"
            )
        };
        ok("N4", "skip", "not applicable yet");
        ok("M1", "ok", "the mirror node1:5000 answers /v2/");
        ok("H8", "ok", "10250/tcp");
        ok("H9", "ok", "no proxy configured");
    }

    // Each fault: (node, inject, undo, the ids that may newly appear on that node).
    let faults: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "node2",
            "setsid python3 -m http.server 10250 >/dev/null 2>&1 < /dev/null & echo $! > /run/gpuctl-test-h8.pid".into(),
            "kill $(cat /run/gpuctl-test-h8.pid) && rm /run/gpuctl-test-h8.pid".into(),
            vec!["H8"],
        ),
        (
            "node2",
            format!("iptables -A OUTPUT -p tcp -d {node1_ip} --dport 6443 -j DROP"),
            format!("iptables -D OUTPUT -p tcp -d {node1_ip} --dport 6443 -j DROP"),
            vec!["N4"],
        ),
        (
            "node2",
            "mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nEnvironment=\"HTTPS_PROXY=http://proxy.example:3128\" \"NO_PROXY=localhost,127.0.0.1\"\\n' > /etc/systemd/system/docker.service.d/http-proxy.conf".into(),
            "rm -r /etc/systemd/system/docker.service.d".into(),
            vec!["H9"],
        ),
        (
            "node2",
            format!("iptables -A OUTPUT -p tcp -d {node1_ip} --dport 5000 -j DROP"),
            format!("iptables -D OUTPUT -p tcp -d {node1_ip} --dport 5000 -j DROP"),
            vec!["M1"],
        ),
        (
            GPU_NODE,
            "echo down > /etc/gpuctl-lab/driver".into(),
            "rm /etc/gpuctl-lab/driver".into(),
            // The driver down: G3 names the cause, G5 the symptom.
            vec!["G3", "G5"],
        ),
        (
            GPU_NODE,
            "printf '[    4.2] nvidia: Key was rejected by service\\n[   12.5] NVRM: Xid (PCI:0000:17:00): 79, pid=0, name=, GPU has fallen off the bus.\\n' > /etc/gpuctl-lab/kmsg".into(),
            "rm /etc/gpuctl-lab/kmsg".into(),
            vec!["G4", "G9"],
        ),
        (
            GPU_NODE,
            "echo 3 > /etc/gpuctl-lab/ecc-uncorrected && echo Enabled > /etc/gpuctl-lab/mig".into(),
            "rm /etc/gpuctl-lab/ecc-uncorrected /etc/gpuctl-lab/mig".into(),
            vec!["G9"],
        ),
        (
            GPU_NODE,
            "cp /etc/docker/daemon.json /root/daemon.json && sed -i 's/{/{\"exec-opts\": [\"native.cgroupdriver=systemd\"], /' /etc/docker/daemon.json && rm /dev/char/195:255".into(),
            "cp /root/daemon.json /etc/docker/daemon.json && ln -s ../nvidiactl /dev/char/195:255".into(),
            vec!["G8"],
        ),
    ];
    for (node, inject, undo, ids) in &faults {
        if ids.contains(&"N4") {
            // Something must listen on node1:6443 for N4 to apply.
            start(&lab, "node1", "api", "exec python3 -m http.server 6443");
            listening(&lab, "node1", 6443);
        }
        lab.exec(node, inject);
        if ids[0] == "H8" {
            // The listener starts in the background: every peer's probe must find it up.
            listening(&lab, node, 10250);
        }
        let (out, json) = doctor(&inventory, &[]);
        out.code(1);
        match ids[0] {
            "H8" => {
                let f = expect(
                    &json,
                    "H8",
                    "error",
                    node,
                    "port 10250/tcp (kubelet) is already taken",
                );
                assert!(
                    f["evidence"][0]
                        .as_str()
                        .is_some_and(|e| e.contains(":10250")),
                    "{f:#}"
                );
            }
            "N4" => {
                let f = expect(
                    &json,
                    "N4",
                    "error",
                    node,
                    "node node2 cannot reach node1:6443 (Kubernetes API)",
                );
                assert!(
                    f["fix"]
                        .as_str()
                        .is_some_and(|x| x.contains("--dport 6443")),
                    "{f:#}"
                );
                // node3 reaches it: N4 ok there; node1's own 6443 listener is H8's business.
                assert!(
                    findings(&json)
                        .iter()
                        .any(|f| f["id"] == "N4" && f["host"] == GPU_NODE && f["severity"] == "ok"),
                    "{json:#}"
                );
                expect(&json, "H8", "error", "node1", "port 6443/tcp");
            }
            "H9" => {
                let f = expect(&json, "H9", "error", node, "docker.service uses a proxy");
                let fix = f["fix"].as_str().unwrap_or("");
                assert!(
                    fix.contains("NO_PROXY=localhost,127.0.0.1,10.42.0.0/16,10.43.0.0/16,node1,"),
                    "{fix}"
                );
            }
            "M1" => {
                expect(
                    &json,
                    "M1",
                    "error",
                    node,
                    "cannot reach the mirror node1:5000",
                );
            }
            "G3" => {
                expect(
                    &json,
                    "G3",
                    "error",
                    node,
                    "no nvidia module for the running kernel",
                );
            }
            "G4" => {
                expect(&json, "G4", "error", node, "rejected a module's signature");
                let f = expect(&json, "G9", "error", node, "1 fatal XID");
                assert!(
                    f["evidence"][0]
                        .as_str()
                        .is_some_and(|e| e.contains("Xid (PCI:0000:17:00): 79")),
                    "{f:#}"
                );
            }
            "G9" => {
                expect(
                    &json,
                    "G9",
                    "error",
                    node,
                    "GPU 0 (00000000:17:1E.0) has 3 uncorrectable ECC",
                );
                expect(&json, "G9", "warn", node, "MIG mode is on for GPU 0");
            }
            "G8" => {
                let f = expect(&json, "G8", "error", node, "lack a /dev/char link");
                assert!(
                    f["evidence"].as_array().is_some_and(|e| e
                        .iter()
                        .any(|l| l == "/dev/char/195:255 -> /dev/nvidiactl")),
                    "{f:#}"
                );
            }
            other => unreachable!("{other}"),
        }
        // Nothing else changed on the node, and no other host moved (N4's listener on
        // node1 is the exception the N4 case itself asserts).
        let i = NODES.iter().position(|n| n == node).unwrap_or(0);
        let mut new = notable(&json, node);
        new.retain(|f| !baseline[i].contains(f));
        assert!(
            new.iter().all(|(id, _)| ids.contains(&id.as_str())),
            "{node}: unexpected {new:?}\n{json:#}"
        );
        for (other, want) in NODES.iter().zip(&baseline).filter(|(n, _)| *n != node) {
            let mut got = notable(&json, other);
            if ids.contains(&"N4") && *other == "node1" {
                got.remove(&("H8".to_string(), "error".to_string()));
            }
            assert_eq!(&got, want, "{other} after a fault on {node}:\n{json:#}");
        }
        lab.exec(node, undo);
        if ids.contains(&"N4") {
            stop(&lab, "node1", "api");
        }
    }

    // kubeadm with containerd: Docker's config.toml (CRI disabled, the public pause image).
    lab.exec(
        "node1",
        "mkdir -p /etc/containerd && printf 'disabled_plugins = [\"cri\"]\\n[plugins.\"io.containerd.grpc.v1.cri\"]\\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\\n' > /etc/containerd/config.toml",
    );
    let (out, json) = doctor(&kubeadm(&lab, &inventory), &[]);
    out.code(1);
    let f = expect(&json, "R2", "error", "node1", "CRI plugin is disabled");
    assert_eq!(
        f["evidence"][0],
        "/etc/containerd/config.toml:1: disabled_plugins = [\"cri\"]"
    );
    let f = expect(&json, "R7", "error", "node1", "comes from registry.k8s.io");
    assert!(
        f["fix"]
            .as_str()
            .is_some_and(|x| x.contains("\"node1:5000/pause:3.9\"")),
        "{f:#}"
    );
    lab.exec("node1", "rm -r /etc/containerd");
    stop(&lab, "node1", "mirror");
}
