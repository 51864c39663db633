//! The `kubernetes` stage (k3s), the join of every other node through the first server's
//! token, the `ready` and `kubeconfig` cluster stages and `reset`, on lab nodes with the k3s
//! stand-in (tests/lab/fixtures/k3s) put into a test bundle as `bin/k3s`, exactly as the
//! real binary would be.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::lab::{Lab, LabSpec};

pub(crate) const RUN_DEADLINE: Duration = Duration::from_secs(420);

pub(crate) fn install(lab: &Lab, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["install", "--yes"])
        .args(extra.iter().copied())
        .inventory(&lab.inventory)
        .spawn()
        .wait(RUN_DEADLINE)
}

pub(crate) fn gpuctl(lab: &Lab, args: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(args.iter().copied())
        .inventory(&lab.inventory)
        .spawn()
        .wait(RUN_DEADLINE)
}

/// A bundle beside the inventory with the k3s stand-in as `bin/k3s` and a small airgap
/// image tarball (the stand-in ignores it; it is uploaded like the real one), and
/// `bundle: ./bundle` in the inventory.
pub(crate) fn k3s_bundle(lab: &Lab) {
    let dir = lab.dir().join("bundle");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/fixtures/k3s");
    let k3s = std::fs::read(&fixture).unwrap_or_else(|e| {
        panic!(
            "the k3s stand-in {} is missing ({e}); it is part of the lab (docs/lab.md)",
            fixture.display()
        )
    });
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("bin/k3s", k3s),
        (
            "images/k3s-airgap-images-amd64.tar.zst",
            b"not really an image tarball\n".to_vec(),
        ),
    ];
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("bundle.yaml"),
        "name: lab-k3s\nversions: { k3s: v1.30.6+k3s1 }\nfiles:\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<(String, Vec<u8>)> =
        files.into_iter().map(|(p, b)| (p.to_string(), b)).collect();
    add_to_bundle(lab, &files);
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    std::fs::write(&lab.inventory, format!("bundle: ./bundle\n{text}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Adds files to the bundle [`k3s_bundle`] made, each listed in its `bundle.yaml`.
pub(crate) fn add_to_bundle(lab: &Lab, files: &[(String, Vec<u8>)]) {
    let dir = lab.dir().join("bundle");
    let mut yaml = std::fs::read_to_string(dir.join("bundle.yaml")).unwrap_or_default();
    for (path, bytes) in files {
        let local = dir.join(path);
        std::fs::create_dir_all(local.parent().unwrap_or(&dir)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&local, bytes).unwrap_or_else(|e| panic!("{e}"));
        yaml.push_str(&format!(
            "  - path: {path}\n    sha256: {}\n    size: {}\n",
            hex::encode(Sha256::digest(bytes)),
            bytes.len()
        ));
    }
    std::fs::write(dir.join("bundle.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
}

/// The lab's GPU nodes need the NVIDIA container runtime on PATH (the runtime stage
/// requires it there).
pub(crate) fn gpu_runtime(lab: &Lab) {
    for n in lab.nodes.iter().filter(|n| n.gpu) {
        lab.install_fixture(
            &n.name,
            "nvidia-container-runtime",
            "/usr/bin/nvidia-container-runtime",
        );
    }
}

/// Sets the roles of `node` in the lab inventory.
pub(crate) fn set_roles(lab: &Lab, node: &str, roles: &str) {
    set_host_key(lab, node, "roles", roles);
}

/// Sets `key: value` in the entry of `node` in the lab inventory, replacing the key's line
/// when there is one.
pub(crate) fn set_host_key(lab: &Lab, node: &str, key: &str, value: &str) {
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let mut out = String::new();
    let mut inside = false;
    let mut done = false;
    let line_for = format!("    {key}: {value}\n");
    for line in text.lines() {
        if line.trim_start().starts_with("- name: ") {
            if inside && !done {
                out.push_str(&line_for);
                done = true;
            }
            inside = line.trim_end().ends_with(&format!("name: {node}"));
        }
        if inside && line.trim_start().starts_with(&format!("{key}:")) {
            out.push_str(&line_for);
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if inside && !done {
        out.push_str(&line_for);
    }
    std::fs::write(&lab.inventory, out).unwrap_or_else(|e| panic!("{e}"));
}

pub(crate) fn state_dir(lab: &Lab) -> PathBuf {
    let gpuctl = lab.dir().join(".gpuctl");
    std::fs::read_dir(&gpuctl)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("no cluster state under {}", gpuctl.display()))
}

/// The part of a run's output about one host.
pub(crate) fn host_part<'a>(out: &'a Outcome, host: &str) -> &'a str {
    out.stdout
        .split("== ")
        .find(|s| s.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no section for {host}:\n{}", out.stdout))
}

/// `kubectl get nodes -o json` on node1, as `(name, Ready status, labels)`.
pub(crate) fn nodes(lab: &Lab) -> Vec<(String, String, serde_json::Value)> {
    let text = lab.exec("node1", "k3s kubectl get nodes -o json");
    let list: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let mut out: Vec<_> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["status"].as_str())
                .unwrap_or("none")
                .to_string();
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
                n["metadata"]["labels"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn all_ready(lab: &Lab, names: &[&str]) {
    let got = nodes(lab);
    let summary: Vec<(String, String)> =
        got.iter().map(|(n, r, _)| (n.clone(), r.clone())).collect();
    let want: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), "True".to_string()))
        .collect();
    assert_eq!(summary, want);
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The join token appears nowhere gpuctl writes or prints: not in the outputs, not in the
/// run logs, journal or kubeconfig beside the inventory, not in any host journal.
/// `secret` (`what` it is) is in no output, no file of the local state directory (journal
/// and run logs), and no host journal.
pub(crate) fn secret_never_leaked(lab: &Lab, what: &str, token: &str, outputs: &[&Outcome]) {
    assert!(token.len() > 8, "odd {what} {token:?}");
    for out in outputs {
        assert!(
            !out.stdout.contains(token),
            "{what} in stdout:\n{}",
            out.stdout
        );
        assert!(
            !out.stderr.contains(token),
            "{what} in stderr:\n{}",
            out.stderr
        );
    }
    let files = files_under(&state_dir(lab));
    assert!(
        files.iter().any(|f| f.ends_with("state.json")),
        "no journal among {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "no run log among {files:?}"
    );
    let encoded = base64_cores(token);
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        assert!(!text.contains(token), "the {what} is in {}", f.display());
        // Nor base64-encoded inside a script or a file's content in a run log.
        for core in &encoded {
            assert!(
                !text.contains(core.as_str()),
                "the {what} is in {}, base64-encoded",
                f.display()
            );
        }
    }
    for n in &lab.nodes {
        let journal = lab.exec(
            &n.name,
            "cat /var/lib/gpuctl/state.json 2>/dev/null || true",
        );
        assert!(
            !journal.contains(token),
            "{what} in {}'s host journal",
            n.name
        );
    }
}

/// What `secret` looks like inside any base64 text that encodes it: for each of the three
/// alignments of its bytes to base64's 3-byte groups, the characters that only its own
/// bytes decide.
fn base64_cores(secret: &str) -> Vec<String> {
    (0..3)
        .map(|pad| {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = data_encoding::BASE64.encode(&bytes);
            let first = pad.div_ceil(3) * 4;
            let last = bytes.len() / 3 * 4;
            encoded.get(first..last).unwrap_or_default().to_string()
        })
        .collect()
}

/// In `out`, each of `stages` was skipped (done, Ops unchanged) on each of `nodes`.
pub(crate) fn skipped(out: &Outcome, nodes: &[&str], stages: &[&str]) {
    for node in nodes {
        let part = host_part(out, node);
        for stage in stages {
            assert!(
                part.contains(&format!("{stage:<10} skipped")),
                "{node} did not skip {stage}:\n{}",
                out.stdout
            );
        }
    }
}

/// After `reset`: none of `files` (space-separated) on `node`, and no process whose command
/// line matches `process` (a `pgrep -f` pattern).
pub(crate) fn nothing_left(lab: &Lab, node: &str, files: &str, process: &str, reset: &Outcome) {
    let left = lab.exec(
        node,
        &format!("for f in {files}; do test -e $f -o -L $f && echo $f; done; true"),
    );
    assert_eq!(
        left.trim(),
        "",
        "{node} keeps files:\n{left}\n{}",
        reset.stdout
    );
    let procs = lab.exec(node, &format!("pgrep -fc '{process}' || true"));
    assert_eq!(procs.trim(), "0", "{node} still runs {process}");
}

const K3S_FILES: &str = "/usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl \
    /etc/rancher /var/lib/rancher/k3s /etc/systemd/system/k3s.service \
    /etc/systemd/system/k3s.service.env /etc/systemd/system/k3s-agent.service \
    /etc/systemd/system/k3s-agent.service.env";

#[test]
fn k3s_installs_joins_every_node_and_writes_the_kubeconfig_then_skips_and_resets() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1));
    k3s_bundle(&lab);
    gpu_runtime(&lab);
    let ip1 = lab.node("node1").ip.clone();

    // The first server cannot take the k3s binary: its kubernetes stage fails, and each
    // joiner fails naming it instead of waiting for ever.
    lab.exec("node1", "mkdir -p /usr/local/bin/k3s");
    let out = install(&lab, &[]).code(1);
    assert!(
        host_part(&out, "node1").contains("kubernetes FAILED"),
        "{}",
        out.stdout
    );
    for joiner in ["node2", "node3"] {
        let part = host_part(&out, joiner);
        assert!(
            part.contains("kubernetes FAILED: node1 (the first server, whose join token this node needs) did not finish its kubernetes stage"),
            "{}",
            out.stdout
        );
        // Their earlier stages went on and are done.
        assert!(part.contains("runtime "), "{}", out.stdout);
    }
    lab.exec("node1", "rmdir /usr/local/bin/k3s");

    let first = install(&lab, &[]).success();
    for node in ["node1", "node2", "node3"] {
        let part = host_part(&first, node);
        assert!(
            part.contains("~ upload /usr/local/bin/k3s"),
            "{}",
            first.stdout
        );
        assert!(part.contains("kubernetes "), "{}", first.stdout);
    }
    let node1 = host_part(&first, "node1");
    assert!(node1.contains("ready "), "{}", first.stdout);
    assert!(node1.contains("kubeconfig "), "{}", first.stdout);
    all_ready(&lab, &["node1", "node2", "node3"]);

    // What the nodes got: the agents join node1 with its token, given in a 0600 env file.
    let token = lab
        .exec("node1", "cat /var/lib/rancher/k3s/server/token")
        .trim()
        .to_string();
    let config = lab.exec("node2", "cat /etc/rancher/k3s/config.yaml");
    assert!(
        config.contains(&format!("server: https://{ip1}:6443")),
        "{config}"
    );
    assert!(!config.contains(&token), "{config}");
    let env = lab.exec("node3", "stat -c %a /etc/systemd/system/k3s-agent.service.env; cat /etc/systemd/system/k3s-agent.service.env");
    assert!(env.starts_with("600\n"), "{env}");
    assert!(
        env.contains(&format!("K3S_TOKEN={token}\n")),
        "the env file lacks the token"
    );
    assert_eq!(
        lab.exec("node2", "readlink /usr/local/bin/kubectl").trim(),
        "k3s"
    );
    lab.exec(
        "node2",
        "test -f /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst",
    );

    // The kubeconfig: 0600, the server rewritten, named after the cluster.
    let kubeconfig = state_dir(&lab).join("kubeconfig");
    let mode = std::fs::metadata(&kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
    assert!(
        text.contains(&format!("server: https://{ip1}:6443")),
        "server not rewritten"
    );
    let cluster = state_dir(&lab)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        text.contains(&format!("current-context: {cluster}")),
        "context not renamed"
    );
    assert!(!text.contains("127.0.0.1"), "the local address stayed");

    // Done: every stage is skipped; plan finds nothing to change.
    let second = install(&lab, &[]).success();
    assert!(
        second.stdout.contains("0 changes made"),
        "{}",
        second.stdout
    );
    skipped(
        &second,
        &["node1", "node2", "node3"],
        &["os", "packages", "runtime", "kubernetes"],
    );
    skipped(&second, &["node1"], &["ready", "kubeconfig"]);
    let plan = gpuctl(&lab, &["plan"]).success();
    assert!(plan.stdout.contains("0 changes to make"), "{}", plan.stdout);
    let dry = install(&lab, &["--dry-run", "--force", "kubernetes"]).success();

    // `gpuctl kubeconfig --merge` into another file keeps the other contexts.
    let other = lab.dir().join("other-kubeconfig");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: Config\ncurrent-context: work\nclusters:\n- name: work\n  cluster: {server: 'https://work.example:6443'}\ncontexts:\n- name: work\n  context: {cluster: work, user: work}\nusers:\n- name: work\n  user: {token: abcdef-work}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let merged = gpuctl(
        &lab,
        &[
            "kubeconfig",
            "--merge",
            "--out",
            &other.display().to_string(),
        ],
    )
    .success();
    let text = std::fs::read_to_string(&other).unwrap_or_default();
    assert!(text.contains("https://work.example:6443"), "{text}");
    assert!(
        text.contains(&format!("server: https://{ip1}:6443")),
        "{text}"
    );
    assert!(text.contains("current-context: work"), "{text}");
    let mode = std::fs::metadata(&other)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !merged.stdout.contains("client-key-data"),
        "{}",
        merged.stdout
    );

    secret_never_leaked(
        &lab,
        "join token",
        &token,
        &[&out, &first, &second, &plan, &dry, &merged],
    );

    // Reset leaves no k3s file and no k3s process behind.
    let reset = gpuctl(&lab, &["reset", "--yes"]).success();
    for n in ["node1", "node2", "node3"] {
        nothing_left(&lab, n, K3S_FILES, "k3s (serve[r]|agen[t])", &reset);
    }
    secret_never_leaked(&lab, "join token", &token, &[&reset]);
}

#[test]
fn ha_three_servers_and_an_agent_all_ready_with_etcd_on_the_servers() {
    let lab = Lab::up(&LabSpec::new(4));
    k3s_bundle(&lab);
    set_roles(&lab, "node2", "[server]");
    set_roles(&lab, "node3", "[server]");
    let out = install(&lab, &[]).success();
    all_ready(&lab, &["node1", "node2", "node3", "node4"]);
    assert!(
        lab.exec("node1", "cat /etc/rancher/k3s/config.yaml")
            .contains("cluster-init: true"),
        "{}",
        out.stdout
    );
    for (name, _, labels) in nodes(&lab) {
        let etcd = labels["node-role.kubernetes.io/etcd"].as_str() == Some("true");
        assert_eq!(etcd, name != "node4", "{name}: {labels}");
    }
    let token = lab
        .exec("node1", "cat /var/lib/rancher/k3s/server/token")
        .trim()
        .to_string();
    secret_never_leaked(&lab, "join token", &token, &[&out]);
}

/// A `systemctl` ahead of the real one on sudo's PATH that, for `start`, says so
/// (`/tmp/start-began`) and waits while `/tmp/hold` exists: the kubernetes stage visibly in
/// the middle of starting k3s.
fn hold_start(lab: &Lab, node: &str) {
    lab.exec(
        node,
        "touch /tmp/hold && printf '%s\\n' '#!/bin/sh' \
         'if [ \"$1\" = start ]; then touch /tmp/start-began; i=0; while [ -e /tmp/hold ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; fi' \
         'exec /usr/bin/systemctl \"$@\"' > /usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl",
    );
}

#[test]
fn a_worker_killed_in_the_kubernetes_stage_resumes_without_redoing_the_others() {
    let lab = Lab::up(&LabSpec::new(3));
    k3s_bundle(&lab);
    hold_start(&lab, "node3");
    let running = Gpuctl::new()
        .args(["install", "--yes"])
        .inventory(&lab.inventory)
        .spawn();
    let started = std::time::Instant::now();
    while !lab
        .exec_output("node3", "test -e /tmp/start-began")
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "node3 never reached the start of k3s-agent"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    lab.kill("node3");
    let out = running.wait(RUN_DEADLINE).code(1);
    assert!(
        host_part(&out, "node3").contains("kubernetes FAILED"),
        "{}",
        out.stdout
    );
    // The first cluster stage (cni, which has nothing to do with k3s) says why the cluster
    // stages cannot run.
    assert!(
        host_part(&out, "node1")
            .contains("cni        FAILED: waits for every host's kubernetes stage"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("node3: kubernetes failed"),
        "{}",
        out.stdout
    );

    lab.start("node3");
    lab.exec("node3", "rm -f /tmp/hold /usr/local/sbin/systemctl");
    let again = install(&lab, &[]).success();
    skipped(
        &again,
        &["node1", "node2"],
        &["os", "packages", "runtime", "kubernetes"],
    );
    assert!(
        !host_part(&again, "node3").contains("kubernetes skipped"),
        "{}",
        again.stdout
    );
    all_ready(&lab, &["node1", "node2", "node3"]);
}

#[test]
fn registry_credentials_and_ca_reach_the_nodes_and_the_password_nothing_else() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBlabMirrorCA\n-----END CERTIFICATE-----\n";
    std::fs::write(lab.dir().join("mirror-ca.pem"), ca).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    std::fs::write(
        &lab.inventory,
        format!(
            "registry:\n  mirror: registry.lab:5000\n  ca_file: ./mirror-ca.pem\n  credentials: {{ username: puller, password: {{ env: GPUCTL_LAB_REGISTRY_PASSWORD }} }}\n{text}"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = |password: Option<&str>, args: &[&str]| {
        let mut g = Gpuctl::new().args(args.iter().copied());
        if let Some(p) = password {
            g = g.env("GPUCTL_LAB_REGISTRY_PASSWORD", p);
        }
        g.inventory(&lab.inventory).spawn().wait(RUN_DEADLINE)
    };

    // Without the password nothing starts, and the message names the variable.
    let refused = run(None, &["install", "--yes"]).code(2);
    assert!(
        refused.stderr.contains("GPUCTL_LAB_REGISTRY_PASSWORD"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("runtime"), "{}", refused.stdout);

    let first_password = "pull-secret-one-7f3a";
    let first = run(Some(first_password), &["install", "--yes"]).success();
    for node in ["node1", "node2"] {
        assert_eq!(
            lab.exec(node, "cat /etc/containerd/certs.d/registry.lab:5000/ca.crt"),
            ca
        );
        let registries = lab.exec(node, "cat /etc/rancher/k3s/registries.yaml");
        assert!(
            registries.contains(&format!("password: {first_password}"))
                && registries.contains("ca_file: /etc/containerd/certs.d/registry.lab:5000/ca.crt"),
            "{registries}"
        );
        assert_eq!(
            lab.exec(node, "stat -c %a /etc/rancher/k3s/registries.yaml")
                .trim(),
            "600"
        );
    }
    let plan = run(Some(first_password), &["plan"]).success();
    assert!(plan.stdout.contains("0 changes to make"), "{}", plan.stdout);

    // A new password: registries.yaml is rewritten (k3s restarted to read it), shown
    // without its content.
    let second_password = "pull-secret-two-9c1d";
    let second = run(Some(second_password), &["install", "--yes"]).success();
    let node1 = host_part(&second, "node1");
    assert!(
        node1.contains("~ file /etc/rancher/k3s/registries.yaml"),
        "{}",
        second.stdout
    );
    assert!(
        lab.exec("node2", "cat /etc/rancher/k3s/registries.yaml")
            .contains(second_password)
    );
    for (what, secret) in [
        ("first registry password", first_password),
        ("second registry password", second_password),
    ] {
        secret_never_leaked(&lab, what, secret, &[&first, &plan, &second]);
    }
}
