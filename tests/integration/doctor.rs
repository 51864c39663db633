//! `gpuctl doctor` against real lab nodes: a prepared lab passes, each fault injected on
//! one node is found on that node with its id and fix, nothing on any node changes, and
//! the JSON matches the shipped schema.
//!
//! Lab nodes are containers sharing this machine's kernel, so some facts (cgroup version,
//! swap, inotify limits, which modules are built in) are the kernel's, not the node's.
//! [`kernel_expectations`] reads them inside the node independently of doctor and says
//! exactly what doctor must report for them; everything the test can prepare, it prepares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::lab::{Lab, LabSpec};

pub(crate) const NODES: [&str; 3] = ["node1", "node2", "node3"];
pub(crate) const GPU_NODE: &str = "node3";

const SYSCTL: &str = "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n\
                      fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 1048576\n";
const DAEMON_JSON: &str = r#"{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}"#;
/// A root-only file with a credential: doctor reads it through sudo and must never show it.
const REGISTRY_PASSWORD: &str = "s3cret-Registry-Pass";

/// The lab's inventory with docker as the runtime and node3 promising 4 GPUs.
pub(crate) fn doctor_inventory(lab: &Lab) -> PathBuf {
    let text = std::fs::read_to_string(&lab.inventory)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", lab.inventory.display()));
    let mut out = String::new();
    let mut in_gpu_node = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("  version:") {
            out.push_str("  container_runtime: docker\n");
        }
        if line.starts_with("  - name: ") {
            in_gpu_node = line.ends_with(GPU_NODE);
        }
        if in_gpu_node && line.trim() == "gpu: true" {
            out.push_str("    labels: { gpu-count: 4, gpu-type: T4 }\n");
        }
    }
    let path = lab.dir().join("doctor.yaml");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// What an install's os and runtime stages would leave: persisted sysctls and modules on
/// every node; on the GPU node the device nodes the driver makes, their `/dev/char` links
/// (`nvidia-ctk system create-dev-char-symlinks`) and docker's daemon.json.
pub(crate) fn prepare(lab: &Lab) {
    for node in NODES {
        lab.exec(
            node,
            &format!(
                "printf '{SYSCTL}' > /etc/sysctl.d/99-kubernetes.conf && \
                 mkdir -p /etc/modules-load.d && printf 'overlay\\nbr_netfilter\\n' > /etc/modules-load.d/kubernetes.conf"
            ),
        );
    }
    gpu_device_nodes(lab, GPU_NODE);
    lab.exec(
        GPU_NODE,
        &format!(
            "mkdir -p /etc/docker && printf '%s\\n' '{DAEMON_JSON}' > /etc/docker/daemon.json"
        ),
    );
    lab.exec(
        "node1",
        &format!(
            "mkdir -p /etc/rancher/k3s && umask 077 && printf 'mirrors:\\n  docker.io:\\n    endpoint: [\"https://registry.lab:5000\"]\\nconfigs:\\n  registry.lab:5000:\\n    auth:\\n      username: admin\\n      password: {REGISTRY_PASSWORD}\\n' > /etc/rancher/k3s/registries.yaml"
        ),
    );
}

/// The device nodes the NVIDIA driver makes for the four GPUs the nvidia-smi fixture lists,
/// and their `/dev/char` links (`nvidia-ctk system create-dev-char-symlinks`).
pub(crate) fn gpu_device_nodes(lab: &Lab, node: &str) {
    lab.exec(
        node,
        "mknod -m 666 /dev/nvidiactl c 195 255 && mknod -m 666 /dev/nvidia-uvm c 511 0 && \
         mknod -m 666 /dev/nvidia-uvm-tools c 511 1 && \
         for i in 0 1 2 3; do mknod -m 666 /dev/nvidia$i c 195 $i; done && \
         mkdir -p /dev/char && for i in 0 1 2 3; do ln -s ../nvidia$i /dev/char/195:$i; done && \
         ln -s ../nvidiactl /dev/char/195:255 && ln -s ../nvidia-uvm /dev/char/511:0 && \
         ln -s ../nvidia-uvm-tools /dev/char/511:1",
    );
}

/// Findings doctor must report on `node` that depend on this machine's kernel, read here
/// without doctor: (id, severity) pairs other than ok and skip.
pub(crate) fn kernel_expectations(lab: &Lab, node: &str) -> BTreeSet<(String, String)> {
    let sh = |cmd: &str| lab.exec(node, cmd).trim().to_string();
    let mut want = BTreeSet::new();
    let mut add = |id: &str, sev: &str| {
        want.insert((id.to_string(), sev.to_string()));
    };
    assert!(
        sh("cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent") == "1"
            && sh("cat /proc/sys/net/ipv4/ip_forward") == "1",
        "this machine's kernel must have br_netfilter loaded and IP forwarding on (Docker does both); \
         run `sudo modprobe br_netfilter && sudo sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1`"
    );
    match sh("stat -fc %T /sys/fs/cgroup").as_str() {
        "tmpfs" => add("H4", "warn"),
        "cgroup2fs" => {}
        other => panic!("unexpected cgroup filesystem {other} on {node}"),
    }
    if sh("tail -n +2 /proc/swaps | grep -c . || true") != "0" {
        add("H2", "error");
    }
    let instances: u64 = sh("cat /proc/sys/fs/inotify/max_user_instances")
        .parse()
        .unwrap_or(0);
    let watches: u64 = sh("cat /proc/sys/fs/inotify/max_user_watches")
        .parse()
        .unwrap_or(0);
    if instances < 1280 || watches < 655_360 {
        add("H11", "warn");
    }
    let used: u32 = sh("df -P / | awk 'NR==2 {sub(/%/, \"\", $5); print $5}'")
        .parse()
        .unwrap_or(0);
    if used >= 95 {
        add("H13", "error");
    } else if used >= 80 {
        add("H13", "warn");
    }
    if sh("cat /proc/modules 2>/dev/null | grep -c '^nouveau ' || true") != "0" && node == GPU_NODE
    {
        add("G2", "error");
    }
    // The lab image has no timedatectl and no chrony.
    add("H12", "warn");
    want
}

pub(crate) fn doctor(inventory: &Path, extra: &[&str]) -> (Outcome, Value) {
    let out = Gpuctl::new()
        .args(["doctor", "--json"])
        .args(extra.iter().copied())
        .inventory(inventory)
        .run();
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    (out, json)
}

pub(crate) fn schema_errors(json: &Value) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/doctor.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("the schema is invalid: {e}"));
    validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

pub(crate) fn findings(json: &Value) -> Vec<&Value> {
    json["findings"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// (id, severity) of every finding on `host` that is neither ok nor skip.
pub(crate) fn notable(json: &Value, host: &str) -> BTreeSet<(String, String)> {
    findings(json)
        .into_iter()
        .filter(|f| f["host"] == host && f["severity"] != "ok" && f["severity"] != "skip")
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("").to_string(),
                f["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The one finding with this id, severity and host whose title contains `text`.
pub(crate) fn expect<'a>(
    json: &'a Value,
    id: &str,
    severity: &str,
    host: &str,
    text: &str,
) -> &'a Value {
    let hits: Vec<&Value> = findings(json)
        .into_iter()
        .filter(|f| f["id"] == id && f["severity"] == severity && f["host"] == host)
        .filter(|f| f["title"].as_str().is_some_and(|t| t.contains(text)))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "want one {id} {severity} on {host} with {text:?} in:\n{json:#}"
    );
    assert!(
        hits[0]["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{id} has no fix: {:#}",
        hits[0]
    );
    hits[0]
}

/// Every file under /etc, /var/lib and /usr/local on every node, with its sha256.
fn snapshot(lab: &Lab) -> Vec<String> {
    NODES
        .iter()
        .map(|n| {
            let list = lab.exec(
                n,
                "find /etc /var/lib /usr/local -type f -print0 | sort -z | xargs -0 sha256sum",
            );
            format!("== {n}\n{list}")
        })
        .collect()
}

#[test]
fn doctor_passes_a_prepared_lab_finds_each_fault_and_changes_nothing() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1));
    let inventory = doctor_inventory(&lab);
    prepare(&lab);
    let baseline: Vec<BTreeSet<(String, String)>> =
        NODES.iter().map(|n| kernel_expectations(&lab, n)).collect();

    // Healthy: exactly the kernel-dependent findings, nothing else; read-only proven.
    let before = snapshot(&lab);
    let (out, json) = doctor(&inventory, &[]);
    // Nothing doctor started outlives it (the peer probes' timer included).
    for node in NODES {
        let left = lab.exec(node, "pgrep -u ops -a -x sleep || true");
        assert!(left.trim().is_empty(), "{node}: doctor left {left}");
    }
    let after = snapshot(&lab);
    assert_eq!(before, after, "doctor changed a file on a node");
    assert_eq!(schema_errors(&json), Vec::<String>::new(), "{json:#}");
    for (node, want) in NODES.iter().zip(&baseline) {
        assert_eq!(&notable(&json, node), want, "{node}:\n{json:#}");
    }
    assert!(notable(&json, "cluster").is_empty(), "{json:#}");
    let any_error = baseline.iter().flatten().any(|(_, s)| s == "error");
    let out = out.code(i32::from(any_error));
    for (id, host) in [
        ("G1", GPU_NODE),
        ("G5", GPU_NODE),
        ("G7", GPU_NODE),
        ("R5", GPU_NODE),
        ("M2", "node1"),
    ] {
        assert!(
            findings(&json)
                .iter()
                .any(|f| f["id"] == id && f["host"] == host && f["severity"] == "ok"),
            "{id} not ok on {host}:\n{json:#}"
        );
    }
    // registries.yaml is root-only: read through sudo, its password redacted on the host.
    let logs = std::fs::read_dir(lab.dir().join(".gpuctl")).is_ok();
    assert!(logs, "no run logs beside the inventory");
    assert!(!out.stdout.contains(REGISTRY_PASSWORD) && !out.stderr.contains(REGISTRY_PASSWORD));
    assert!(
        !grep_dir(&lab.dir().join(".gpuctl"), REGISTRY_PASSWORD),
        "the password reached a run log"
    );

    // The table: grouped per host, no colour when piped, a summary line.
    let table = Gpuctl::new()
        .args(["doctor"])
        .inventory(&inventory)
        .run()
        .code(i32::from(any_error));
    assert!(
        table.stdout.contains("== node3 ") && table.stdout.contains("  gpu      ok     G1"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains('\x1b'));
    assert!(
        table
            .stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("3 host(s): ")),
        "{}",
        table.stdout
    );

    // The support bundle: the report and each host's evidence, the password redacted.
    let bundle = lab.dir().join("support.tar.gz");
    Gpuctl::new()
        .args(["doctor", "--support-bundle"])
        .args([bundle.display().to_string()])
        .inventory(&inventory)
        .run()
        .code(i32::from(any_error))
        .stderr_has("support bundle: ");
    let files = untar(&bundle);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.txt",
            "report.json",
            "report.txt",
            "hosts/node1/evidence.txt",
            "hosts/node2/evidence.txt",
            "hosts/node3/evidence.txt",
            "cluster/evidence.txt"
        ]
    );
    let report: Value =
        serde_json::from_str(&files[1].1).unwrap_or_else(|e| panic!("report.json: {e}"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    let node1 = &files[3].1;
    assert!(
        node1.contains("/etc/rancher/k3s/registries.yaml") && node1.contains("<redacted>"),
        "{node1}"
    );
    assert!(
        files
            .iter()
            .all(|(_, text)| !text.contains(REGISTRY_PASSWORD)),
        "the password reached the bundle"
    );

    // Faults, one at a time, each undone before the next.
    let faults: [(&str, &str, &str, &str); 7] = [
        (
            "node1",
            "mv /etc/sysctl.d/99-kubernetes.conf /root/",
            "mv /root/99-kubernetes.conf /etc/sysctl.d/",
            "H5",
        ),
        (
            "node2",
            "printf 'overlay\\n' > /etc/modules-load.d/kubernetes.conf",
            "printf 'overlay\\nbr_netfilter\\n' > /etc/modules-load.d/kubernetes.conf",
            "H5",
        ),
        (
            "node1",
            "cp /etc/fstab /root/fstab && echo '/swapfile none swap sw 0 0' >> /etc/fstab",
            "cp /root/fstab /etc/fstab",
            "H2",
        ),
        (
            GPU_NODE,
            "printf '{\"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\"}}}\\n' > /etc/docker/daemon.json",
            &format!("printf '%s\\n' '{DAEMON_JSON}' > /etc/docker/daemon.json"),
            "R5",
        ),
        (
            "node2",
            "echo node1 > /etc/hostname",
            "echo node2 > /etc/hostname",
            "H7",
        ),
        (
            GPU_NODE,
            "echo 2 > /etc/gpuctl-lab/gpus",
            "echo 4 > /etc/gpuctl-lab/gpus",
            "G5",
        ),
        (
            "node2",
            "mkdir -p /etc/kubernetes/manifests /var/lib/etcd",
            "rm -rf /etc/kubernetes /var/lib/etcd",
            "K4",
        ),
    ];
    let builtin_br_netfilter = lab
        .exec(
            "node2",
            "cat /proc/modules 2>/dev/null | grep -c '^br_netfilter ' || true",
        )
        .trim()
        == "0";
    for (node, inject, undo, id) in faults {
        lab.exec(node, inject);
        let (out, json) = doctor(&inventory, &[]);
        let mut new: BTreeSet<(String, String)> = notable(&json, node);
        let base = &baseline[NODES.iter().position(|n| *n == node).unwrap_or(0)];
        new.retain(|f| !base.contains(f));
        match id {
            "H5" if node == "node1" => {
                expect(
                    &json,
                    "H5",
                    "error",
                    node,
                    "net.ipv4.ip_forward = 1 is not persisted",
                );
                expect(
                    &json,
                    "H5",
                    "error",
                    node,
                    "net.bridge.bridge-nf-call-iptables = 1 is not persisted",
                );
                out.code(1);
            }
            "H5" => {
                // Built into this kernel: nothing to load at boot, so only info; a loadable
                // module would be loaded now and gone after a reboot: an error.
                let sev = if builtin_br_netfilter {
                    "info"
                } else {
                    "error"
                };
                let f = expect(&json, "H5", sev, node, "br_netfilter");
                assert_eq!(
                    f["fix"],
                    "echo br_netfilter | sudo tee -a /etc/modules-load.d/kubernetes.conf"
                );
                out.code(i32::from(sev == "error" || any_error));
            }
            "H2" => {
                let f = expect(
                    &json,
                    "H2",
                    "error",
                    node,
                    "/etc/fstab turns swap on at the next boot",
                );
                assert!(
                    f["evidence"][0]
                        .as_str()
                        .is_some_and(|e| e.ends_with("/swapfile none swap sw 0 0")),
                    "{f:#}"
                );
                out.code(1);
            }
            "R5" => {
                expect(&json, "R5", "error", node, "the default runtime is runc");
                out.code(1);
            }
            "H7" => {
                expect(
                    &json,
                    "H7",
                    "error",
                    node,
                    "hostname node1 is also used by node1",
                );
                expect(
                    &json,
                    "H7",
                    "warn",
                    node,
                    "changes from node2 to node1 at the next reboot",
                );
                assert!(
                    !notable(&json, "node1").iter().any(|(i, _)| i == "H7"),
                    "{json:#}"
                );
                out.code(1);
            }
            "G5" => {
                expect(
                    &json,
                    "G5",
                    "error",
                    node,
                    "nvidia-smi lists 2 GPU(s), the inventory's gpu-count label says 4",
                );
                out.code(1);
            }
            "K4" => {
                let f = expect(
                    &json,
                    "K4",
                    "warn",
                    node,
                    "files of an earlier Kubernetes install",
                );
                assert_eq!(
                    f["evidence"],
                    serde_json::json!(["/etc/kubernetes/manifests exists", "/var/lib/etcd exists"])
                );
                out.code(i32::from(any_error));
            }
            _ => unreachable!(),
        }
        // Nothing else changed: every new finding is of the injected check, and other
        // hosts report exactly their baseline.
        assert!(
            new.iter().all(|(i, _)| i == id),
            "{node}: unexpected {new:?}\n{json:#}"
        );
        for (other, want) in NODES.iter().zip(&baseline).filter(|(n, _)| **n != node) {
            assert_eq!(
                &notable(&json, other),
                want,
                "{other} after a fault on {node}:\n{json:#}"
            );
        }
        lab.exec(node, undo);
    }
    let (out, json) = doctor(&inventory, &[]);
    out.code(i32::from(any_error));
    for (node, want) in NODES.iter().zip(&baseline) {
        assert_eq!(
            &notable(&json, node),
            want,
            "{node} after undoing every fault:\n{json:#}"
        );
    }
}

/// The files of a .tar.gz, in archive order, extracted with the system's tar.
fn untar(archive: &Path) -> Vec<(String, String)> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("tar")
            .args(args)
            .arg(archive)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
        assert!(
            out.status.success(),
            "tar {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["-tzf"])
        .lines()
        .map(|name| {
            let text = {
                let out = std::process::Command::new("tar")
                    .args(["-xzOf"])
                    .arg(archive)
                    .arg(name)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            (name.to_string(), text)
        })
        .collect()
}

/// Whether any file under `dir` contains `needle`.
fn grep_dir(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            grep_dir(&p, needle)
        } else {
            std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
        }
    })
}

#[test]
fn doctor_reports_an_unreachable_host_checks_the_rest_and_validates_its_flags() {
    let lab = Lab::up(&LabSpec::new(1));
    // A host whose port refuses connections, beside a real one.
    let mut text = std::fs::read_to_string(&lab.inventory).unwrap_or_else(|e| panic!("{e}"));
    text.push_str(
        "  - name: ghost\n    address: 127.0.0.1\n    ssh: { port: 1 }\n    roles: [worker]\n",
    );
    let inventory = lab.dir().join("ghost.yaml");
    std::fs::write(&inventory, text).unwrap_or_else(|e| panic!("{e}"));

    let (out, json) = doctor(&inventory, &["--only", "host", "--ignore", "H12"]);
    out.code(1).stderr_has("error: doctor found");
    assert_eq!(schema_errors(&json), Vec::<String>::new(), "{json:#}");
    let ghost = expect(&json, "H0", "error", "ghost", "cannot reach");
    assert!(ghost["evidence"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(
        findings(&json)
            .iter()
            .any(|f| f["host"] == "node1" && f["id"] == "H1" && f["severity"] == "ok")
    );
    assert!(
        findings(&json)
            .iter()
            .all(|f| f["layer"] == "host" && f["id"] != "H12"),
        "{json:#}"
    );
    assert!(json["summary"]["ignored"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(json["hosts"][1]["reachable"], false);

    // The support bundle says why the unreachable host has no evidence.
    let bundle = lab.dir().join("ghost.tar.gz");
    Gpuctl::new()
        .args(["doctor", "--json", "--support-bundle"])
        .args([bundle.display().to_string()])
        .inventory(&inventory)
        .run()
        .code(1);
    let files = untar(&bundle);
    let ghost = files.iter().find(|(n, _)| n == "hosts/ghost/error.txt");
    assert!(
        ghost.is_some_and(|(_, t)| !t.trim().is_empty()),
        "{:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    Gpuctl::new()
        .args(["doctor", "--support-bundle", "/no/such/dir/b.tar.gz"])
        .inventory(&inventory)
        .run()
        .code(2)
        .stderr_has("--support-bundle: the directory /no/such/dir does not exist");

    // --hosts picks hosts as in ping and exec.
    let (_, json) = doctor(&inventory, &["--hosts", "node1"]);
    assert!(
        findings(&json)
            .iter()
            .all(|f| f["host"] == "node1" || f["host"] == "cluster")
    );

    // Bad flags are usage errors naming what is allowed.
    Gpuctl::new()
        .args(["doctor", "--only", "kube"])
        .inventory(&inventory)
        .run()
        .code(2)
        .stderr_has("`kube` is not a layer");
    Gpuctl::new()
        .args(["doctor", "--ignore", "H99"])
        .inventory(&inventory)
        .run()
        .code(2)
        .stderr_has("`H99` is not a check id");
}

/// install and doctor agree: on bare nodes doctor reports the kernel settings that would be
/// lost at a reboot (H5 errors); after `install --only os` it reports none, and no other
/// host check turned into an error.
#[test]
fn after_install_os_doctor_finds_the_kernel_settings_persisted() {
    let lab = Lab::up(&LabSpec::new(2));
    let h5_errors = |json: &Value| {
        findings(json)
            .into_iter()
            .filter(|f| f["id"] == "H5" && f["severity"] == "error")
            .count()
    };
    let (_, before) = doctor(&lab.inventory, &["--only", "host"]);
    assert!(
        h5_errors(&before) >= 2,
        "bare nodes should lack persisted forwarding settings:\n{before:#}"
    );
    Gpuctl::new()
        .args(["install", "--yes", "--only", "os"])
        .inventory(&lab.inventory)
        .run()
        .success();
    let (_, after) = doctor(&lab.inventory, &["--only", "host"]);
    assert_eq!(h5_errors(&after), 0, "{after:#}");
    // Whatever else this machine's kernel or disks make doctor say, install added nothing.
    let errors = |json: &Value| -> BTreeSet<(String, String)> {
        findings(json)
            .into_iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| {
                (
                    f["id"].as_str().unwrap_or("").to_string(),
                    f["host"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let new: Vec<_> = errors(&after)
        .difference(&errors(&before))
        .cloned()
        .collect();
    assert!(
        new.is_empty(),
        "errors that install brought: {new:?}\n{after:#}"
    );
    assert!(schema_errors(&after).is_empty());
}
