//! The cluster stages that make Kubernetes objects — `labels`, `gpu`, `dns`, `storage`,
//! `users` —, the `nfs` host stage the NFS provisioner points at, doctor's cluster checks,
//! and Ctrl-C during a cluster stage, on lab clusters made by the k3s stand-in
//! (tests/lab/fixtures/k3s), which stores what is applied and serves it back to kubectl.

use std::time::Duration;

use crate::kubernetes::{
    add_to_bundle, files_under, gpu_runtime, gpuctl, host_part, install, k3s_bundle, nodes,
    set_host_key, set_roles, state_dir,
};
use crate::support::gpuctl::Gpuctl;
use crate::support::lab::{Lab, LabSpec};

/// Sets the top-level inventory section `key` to `body` (its indented lines), replacing
/// the section when the inventory has it.
pub(crate) fn set_section(lab: &Lab, key: &str, body: &str) {
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let mut rest = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if !line.starts_with(' ') && !line.starts_with('#') {
            inside = line.starts_with(&format!("{key}:"));
        }
        if !inside {
            rest.push_str(line);
        }
    }
    std::fs::write(&lab.inventory, format!("{key}:\n{body}{rest}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `k3s kubectl ARGS` on node1, trimmed.
fn kubectl(lab: &Lab, args: &str) -> String {
    lab.exec("node1", &format!("k3s kubectl {args}"))
        .trim()
        .to_string()
}

#[test]
fn labels_and_the_gpu_stage_follow_the_inventory_and_repair_drift() {
    let lab = Lab::up(&LabSpec::new(2).gpu(1));
    k3s_bundle(&lab);
    gpu_runtime(&lab);
    set_host_key(&lab, "node2", "labels", "{ gpu-type: T4, train: \"true\" }");

    let first = install(&lab, &[]).success();
    let node1 = host_part(&first, "node1");
    assert!(node1.contains("labels "), "{}", first.stdout);
    assert!(node1.contains("gpu "), "{}", first.stdout);
    let labels = |node: &str| -> serde_json::Value {
        nodes(&lab)
            .into_iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, _, l)| l)
            .unwrap_or_else(|| panic!("no node {node}"))
    };
    let l2 = labels("node2");
    assert_eq!(l2["gpu"], "true", "{l2}");
    assert_eq!(l2["gpu-type"], "T4", "{l2}");
    assert_eq!(l2["train"], "true", "{l2}");
    assert!(labels("node1").get("gpu").is_none());
    assert_eq!(
        kubectl(
            &lab,
            "get node node2 -o jsonpath='{.metadata.annotations.gpuctl\\.io/labels}'"
        ),
        "gpu,gpu-type,train"
    );

    // The GPU objects, applied from files kept on the first server, and the GPUs counted.
    assert_eq!(
        kubectl(&lab, "get runtimeclass nvidia -o name"),
        "runtimeclass.node.k8s.io/nvidia"
    );
    assert_eq!(
        kubectl(
            &lab,
            "-n kube-system get daemonset nvidia-device-plugin-daemonset -o name"
        ),
        "daemonset.apps/nvidia-device-plugin-daemonset"
    );
    assert_eq!(
        kubectl(
            &lab,
            "get node node2 -o jsonpath='{.status.allocatable.nvidia\\.com/gpu}'"
        ),
        "4"
    );
    assert_eq!(
        lab.exec(
            "node1",
            "stat -c %a /var/lib/gpuctl/manifests/gpu/device-plugin.yaml"
        )
        .trim(),
        "600"
    );

    // A label taken out of the inventory goes, a new taint comes, the admin's own label
    // stays.
    kubectl(&lab, "label node node2 admin=keep");
    set_host_key(&lab, "node2", "labels", "{ gpu-type: T4 }");
    set_host_key(&lab, "node2", "taints", "[\"dedicated=ml:NoSchedule\"]");
    let second = install(&lab, &[]).success();
    let node1 = host_part(&second, "node1");
    assert!(
        node1.contains("~ command `# node2: labels and taints`"),
        "{}",
        second.stdout
    );
    assert!(
        !node1.contains("~ command `# node1: labels and taints`"),
        "{}",
        second.stdout
    );
    assert!(node1.contains("gpu        skipped"), "{}", second.stdout);
    let l2 = labels("node2");
    assert!(l2.get("train").is_none(), "{l2}");
    assert_eq!(l2["admin"], "keep", "{l2}");
    assert_eq!(l2["gpu"], "true", "{l2}");
    assert_eq!(
        kubectl(
            &lab,
            "get node node2 -o jsonpath='{range .spec.taints[*]}{.key}={.value}:{.effect}{end}'"
        ),
        "dedicated=ml:NoSchedule"
    );

    // Drift: the device plugin deleted by hand is found by --verify and applied again.
    kubectl(
        &lab,
        "-n kube-system delete daemonset nvidia-device-plugin-daemonset",
    );
    let verify = install(&lab, &["--verify"]).success();
    assert!(
        verify.stdout.contains("device-plugin.yaml"),
        "{}",
        verify.stdout
    );
    assert_eq!(
        kubectl(
            &lab,
            "-n kube-system get daemonset nvidia-device-plugin-daemonset -o name"
        ),
        "daemonset.apps/nvidia-device-plugin-daemonset"
    );
    let plan = gpuctl(&lab, &["plan"]).success();
    assert!(plan.stdout.contains("0 changes to make"), "{}", plan.stdout);
}

#[test]
fn ctrl_c_stops_a_waiting_cluster_stage_and_the_report_says_so() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    install(&lab, &[]).success();
    // node2 stops posting its status: `ready` will wait for it.
    lab.exec("node2", "systemctl stop k3s-agent");
    let started = std::time::Instant::now();
    while nodes(&lab)
        .iter()
        .any(|(n, r, _)| n == "node2" && r == "True")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node2 stayed Ready for 60 s after its agent stopped"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let cluster_logs = |lab: &Lab| {
        files_under(&state_dir(lab))
            .iter()
            .filter(|f| f.ends_with("cluster@node1.log"))
            .count()
    };
    let before = cluster_logs(&lab);
    let running = Gpuctl::new()
        .args(["install", "--yes", "--force", "ready"])
        .inventory(&lab.inventory)
        .spawn();
    let started = std::time::Instant::now();
    while cluster_logs(&lab) == before {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the cluster stages never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    running.interrupt();
    let out = running.wait(Duration::from_secs(20)).code(1);
    let node1 = host_part(&out, "node1");
    assert!(
        node1.contains("ready      FAILED: interrupted before it finished"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(interrupted)"), "{}", out.stdout);
    assert!(out.stdout.contains("resume with: "), "{}", out.stdout);
}

#[test]
fn dns_entries_reach_coredns_custom_and_coredns_restarts_only_when_they_change() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    let with_dns = |entry: &str| set_section(&lab, "dns", &format!("  hosts: [{entry}]\n"));
    with_dns("{ ip: 10.9.0.5, names: [registry.lab.example] }");
    install(&lab, &[]).success();
    let block = || {
        kubectl(
            &lab,
            "-n kube-system get configmap coredns-custom -o jsonpath='{.data.gpuctl-hosts\\.server}'",
        )
    };
    let restarted_at = || {
        kubectl(
            &lab,
            "-n kube-system get deployment coredns -o jsonpath='{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}'",
        )
    };
    assert!(
        block().contains("10.9.0.5 registry.lab.example"),
        "{}",
        block()
    );
    let first = restarted_at();
    assert!(!first.is_empty(), "CoreDNS was not restarted");

    // Everything checked again on the hosts and the cluster: nothing to change, no restart.
    let verify = install(&lab, &["--verify"]).success();
    assert!(
        verify.stdout.contains("0 changes made"),
        "{}",
        verify.stdout
    );
    assert_eq!(restarted_at(), first);

    // A changed entry replaces the old one, and CoreDNS restarts once more.
    std::thread::sleep(Duration::from_millis(1100));
    with_dns("{ ip: 10.9.0.6, names: [registry2.lab.example] }");
    let changed = install(&lab, &[]).success();
    let node1 = host_part(&changed, "node1");
    assert!(
        node1.contains("rollout restart deployment/coredns"),
        "{}",
        changed.stdout
    );
    let now = block();
    assert!(now.contains("10.9.0.6 registry2.lab.example"), "{now}");
    assert!(!now.contains("10.9.0.5"), "{now}");
    assert_ne!(restarted_at(), first);
}

#[test]
fn users_converge_and_a_removed_user_leaves_only_the_data_volume() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    let with_users = |list: &str| set_section(&lab, "users", &format!("  list: [{list}]\n"));
    set_section(
        &lab,
        "storage",
        "  nfs: { server: 10.9.0.9, export: /data }\n",
    );
    let alice = "{ name: alice, email: alice@lab.example, tier: mid, data_path: /data/shared }";
    let bob = "{ name: bob, email: bob@lab.example }";
    with_users(&format!("{alice}, {bob}"));
    install(&lab, &[]).success();
    for user in ["alice", "bob"] {
        assert_eq!(
            kubectl(&lab, &format!("get namespace {user} -o name")),
            format!("namespace/{user}")
        );
        assert_eq!(
            kubectl(
                &lab,
                &format!("-n {user} get resourcequota gpuctl-tier -o name")
            ),
            "resourcequota/gpuctl-tier"
        );
        assert_eq!(
            kubectl(
                &lab,
                &format!(
                    "-n {user} get rolebinding gpuctl-user-edit -o jsonpath='{{.subjects[0].name}}'"
                )
            ),
            format!("{user}@lab.example")
        );
    }
    assert_eq!(
        kubectl(
            &lab,
            "get persistentvolume gpuctl-data-alice -o jsonpath='{.spec.nfs.server}'"
        ),
        "10.9.0.9"
    );

    // Nothing changed: the users stage is skipped.
    let again = install(&lab, &[]).success();
    assert!(
        host_part(&again, "node1").contains("users      skipped"),
        "{}",
        again.stdout
    );

    // alice leaves: her namespace and what was in it go, the shared data volume stays,
    // bob is untouched.
    with_users(bob);
    install(&lab, &[]).success();
    let gone = lab.exec(
        "node1",
        "k3s kubectl get namespace alice -o name 2>&1; k3s kubectl -n alice get resourcequota gpuctl-tier -o name 2>&1; true",
    );
    assert!(!gone.contains("namespace/alice"), "{gone}");
    assert!(!gone.contains("resourcequota/gpuctl-tier"), "{gone}");
    assert_eq!(
        kubectl(&lab, "get persistentvolume gpuctl-data-alice -o name"),
        "persistentvolume/gpuctl-data-alice"
    );
    assert_eq!(kubectl(&lab, "get namespace bob -o name"), "namespace/bob");
}

#[test]
fn users_add_list_and_remove_edit_the_inventory_and_converge_the_cluster() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    set_section(
        &lab,
        "storage",
        "  nfs: { server: 10.9.0.9, export: /data }\n",
    );
    set_section(
        &lab,
        "users",
        "  # people of the lab\n  list:\n    - { name: bob, email: bob@lab.example }   # bob\n",
    );
    install(&lab, &[]).success();
    let inventory = || std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let before = inventory();
    let add = [
        "users",
        "add",
        "--user",
        "alice",
        "--email",
        "alice@lab.example",
        "--tier",
        "mid",
        "--data-path",
        "/data/shared",
    ];

    // A tier the inventory lacks: refused, nothing written, nothing applied.
    let mut bad = add.to_vec();
    bad[7] = "huge";
    let refused = gpuctl(&lab, &bad).code(2);
    assert!(refused.stderr.contains("huge"), "{}", refused.stderr);
    assert_eq!(inventory(), before);

    // Added: one line after bob's, comments kept, and the objects made at once.
    let added = gpuctl(&lab, &add).success();
    assert!(added.stdout.contains("added alice to"), "{}", added.stdout);
    assert!(added.stdout.contains("users"), "{}", added.stdout);
    let text = inventory();
    assert!(
        text.contains("    - { name: bob, email: bob@lab.example }   # bob\n    - { name: alice, email: alice@lab.example, tier: mid, data_path: /data/shared }\n"),
        "{text}"
    );
    assert!(text.contains("  # people of the lab\n"), "{text}");
    assert_eq!(
        kubectl(&lab, "get namespace alice -o name"),
        "namespace/alice"
    );
    assert_eq!(
        kubectl(
            &lab,
            "-n alice get persistentvolumeclaim shared-data -o name"
        ),
        "persistentvolumeclaim/shared-data"
    );

    // The same add again changes nothing.
    gpuctl(&lab, &add).success().stdout_has("already");
    assert_eq!(inventory(), text);

    // The table: alice's mid quota with her one claim, bob in the default tier.
    let listed = gpuctl(&lab, &["users", "list"]).success();
    let row = |user: &str| {
        listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{user} ")))
            .unwrap_or_else(|| panic!("no row for {user}:\n{}", listed.stdout))
            .to_string()
    };
    let alice = row("alice");
    assert!(
        alice.contains(" mid ") && alice.contains("0/24.5"),
        "{alice}"
    );
    assert!(alice.contains("1/5") && alice.ends_with("ok"), "{alice}");
    assert!(row("bob").ends_with("ok"), "{}", listed.stdout);

    // Removing asks first; without a terminal it needs --yes, and nothing changed.
    let asked = gpuctl(&lab, &["users", "remove", "--user", "alice"]).code(2);
    assert!(asked.stderr.contains("--yes"), "{}", asked.stderr);
    assert_eq!(inventory(), text);

    // Removed: her line and namespace go, the data volume stays; bob is untouched.
    gpuctl(&lab, &["users", "remove", "--user", "alice", "--yes"]).success();
    assert_eq!(inventory(), before);
    let gone = lab.exec(
        "node1",
        "k3s kubectl get namespace alice -o name 2>&1; k3s kubectl get namespaces -l gpuctl.io/user=alice -o name; true",
    );
    assert!(!gone.contains("namespace/alice"), "{gone}");
    assert_eq!(
        kubectl(&lab, "get persistentvolume gpuctl-data-alice -o name"),
        "persistentvolume/gpuctl-data-alice"
    );
    assert_eq!(kubectl(&lab, "get namespace bob -o name"), "namespace/bob");

    // With --purge the volume object goes too.
    gpuctl(&lab, &add).success();
    gpuctl(
        &lab,
        &["users", "remove", "--user", "alice", "--yes", "--purge"],
    )
    .success();
    let pv = lab.exec(
        "node1",
        "k3s kubectl get persistentvolumes -o name 2>&1; true",
    );
    assert!(!pv.contains("gpuctl-data-alice"), "{pv}");
    assert_eq!(inventory(), before);
    gpuctl(&lab, &["users", "remove", "--user", "alice", "--yes"])
        .code(2)
        .stderr_has("no user alice in users.list (it lists bob)");
}

/// The fixture component (tests/fixtures/stack/kubeflow-core) as bundle files.
fn kubeflow_core_files() -> Vec<(String, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stack");
    let mut out = Vec::new();
    let mut dirs = vec![root.join("kubeflow-core")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
        {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(&root)
                    .map(|p| p.display().to_string());
                let rel = rel.unwrap_or_else(|e| panic!("{e}"));
                let bytes = std::fs::read(e.path()).unwrap_or_else(|e| panic!("{e}"));
                out.push((format!("manifests/{rel}"), bytes));
            }
        }
    }
    out
}

#[test]
fn the_stack_applies_crds_first_waits_for_workloads_names_a_stuck_one_and_removes_components() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    add_to_bundle(&lab, &kubeflow_core_files());
    // A component whose Deployment can never start: no image.
    add_to_bundle(
        &lab,
        &[(
            "manifests/broken/deploy.yaml".to_string(),
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: stuck, namespace: default }\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - { name: c, image: \"\" }\n".to_vec(),
        )],
    );
    set_section(
        &lab,
        "registry",
        "  mirror: registry.lab:5000\n  insecure: true\n",
    );
    set_section(
        &lab,
        "stack",
        "  components: [kubeflow-core]\n  timeout: 60\n  tls: { cert: ./gw.crt, key: ./gw.key, namespace: kubeflow }\n",
    );
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7labkey\n-----END PRIVATE KEY-----\n";
    std::fs::write(lab.dir().join("gw.key"), key).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        lab.dir().join("gw.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIBlabGatewayCert\n-----END CERTIFICATE-----\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // With Kubeflow's profiles in the stack a user also gets a Profile (after the stack:
    // its CRD comes from there).
    set_section(
        &lab,
        "users",
        "  list:\n    - { name: alice, email: alice@lab.example }\n",
    );
    let first = install(&lab, &[]).success();
    assert_eq!(
        kubectl(
            &lab,
            "get profiles.kubeflow.org alice -o jsonpath='{.spec.owner.name}'"
        ),
        "alice@lab.example"
    );
    // The gateway's TLS secret, its key nowhere in what gpuctl printed.
    assert_eq!(
        kubectl(
            &lab,
            "-n kubeflow get secret kubeflow-gateway-tls -o jsonpath='{.type}'"
        ),
        "kubernetes.io/tls"
    );
    let key_b64 = data_encoding::BASE64.encode(key.as_bytes());
    for text in [&first.stdout, &first.stderr] {
        assert!(!text.contains("MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7labkey"));
        assert!(!text.contains(&key_b64));
    }
    assert!(
        host_part(&first, "node1").contains("stack "),
        "{}",
        first.stdout
    );
    // CRDs, custom resources and workloads are there, labelled, their images from the mirror
    // (in a ConfigMap's content too).
    assert_eq!(
        kubectl(
            &lab,
            "get customresourcedefinition -l gpuctl.io/component=kubeflow-core -o name | sort"
        ),
        "customresourcedefinition.apiextensions.k8s.io/notebooks.kubeflow.org\n\
         customresourcedefinition.apiextensions.k8s.io/profiles.kubeflow.org\n\
         customresourcedefinition.apiextensions.k8s.io/pytorchjobs.kubeflow.org"
    );
    assert_eq!(
        kubectl(
            &lab,
            "get profiles.kubeflow.org kubeflow-user-example-com -o name"
        ),
        "profile.kubeflow.org/kubeflow-user-example-com"
    );
    assert_eq!(
        kubectl(
            &lab,
            "-n kubeflow get deployment centraldashboard -o jsonpath='{.spec.template.spec.containers[0].image}'"
        ),
        "registry.lab:5000/kubeflownotebookswg/centraldashboard:v1.8.0"
    );
    let config = kubectl(
        &lab,
        "-n kubeflow get configmap jupyter-web-app-config -o yaml",
    );
    assert!(
        config.contains("registry.lab:5000/kubeflownotebookswg/jupyter-pytorch-cuda-full:v1.8.0")
            && !config.contains("\"kubeflownotebookswg/"),
        "{config}"
    );

    // Nothing changed: skipped.
    let again = install(&lab, &[]).success();
    assert!(
        host_part(&again, "node1").contains("stack      skipped"),
        "{}",
        again.stdout
    );

    // A component that never gets ready fails the stage within its timeout, naming the
    // Deployment and its last condition.
    set_section(
        &lab,
        "stack",
        "  components: [kubeflow-core, broken]\n  timeout: 10\n",
    );
    let stuck = install(&lab, &[]).code(1);
    let node1 = host_part(&stuck, "node1");
    assert!(
        node1.contains(
            "stack      FAILED: not every workload of kubeflow-core, broken ready after 10s"
        ),
        "{}",
        stuck.stdout
    );
    assert!(
        node1.contains(
            "deployment default/stuck (component broken): 0/1 ready; Available=False (MinimumReplicasUnavailable)"
        ),
        "{}",
        stuck.stdout
    );

    // Taken out of the inventory: what was applied for both components goes, and the
    // users stage lets alice's Profile go with its CRD; her namespace stays.
    set_section(&lab, "stack", "  components: []\n");
    install(&lab, &[]).success();
    assert_eq!(
        kubectl(&lab, "get namespace alice -o name"),
        "namespace/alice"
    );
    let left = lab.exec(
        "node1",
        "k3s kubectl get customresourcedefinition -l gpuctl.io/component -o name && \
         k3s kubectl get deployments -A -l gpuctl.io/component -o name && \
         k3s kubectl get profiles.kubeflow.org -o name 2>&1 | grep -v 'have a resource type' ; \
         ls -A /var/lib/gpuctl/manifests/stack/",
    );
    assert_eq!(left.trim(), "", "left behind: {left}");
}

#[test]
fn storage_brings_one_local_path_with_the_inventory_path_and_the_nfs_provisioner() {
    let lab = Lab::up(&LabSpec::new(2));
    k3s_bundle(&lab);
    set_section(
        &lab,
        "storage",
        "  local_path: { path: /data/k8s/lp, default: true }\n  nfs: { server: 10.9.0.9, export: /data, provisioner: true }\n",
    );
    let first = install(&lab, &[]).success();
    assert!(
        host_part(&first, "node1").contains("storage "),
        "{}",
        first.stdout
    );
    // k3s's own local-path is disabled: gpuctl's is the only one, with the inventory's path.
    let config = lab.exec("node1", "cat /etc/rancher/k3s/config.yaml");
    assert!(config.contains("- local-storage"), "{config}");
    let classes = kubectl(
        &lab,
        "get storageclass -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class};{end}'",
    );
    assert_eq!(classes, "local-path=true;nfs-client=false;");
    assert!(
        kubectl(
            &lab,
            "-n local-path-storage get configmap local-path-config -o yaml"
        )
        .contains("/data/k8s/lp"),
        "the local-path ConfigMap lacks the inventory's path"
    );
    assert_eq!(
        kubectl(&lab, "-n nfs-provisioner get deployment -o name"),
        "deployment.apps/nfs-client-provisioner"
    );

    // The NFS provisioner turned off: its objects go, local-path stays.
    set_section(
        &lab,
        "storage",
        "  local_path: { path: /data/k8s/lp, default: true }\n  nfs: { server: 10.9.0.9, export: /data, provisioner: false }\n",
    );
    install(&lab, &[]).success();
    let left = lab.exec(
        "node1",
        "k3s kubectl get storageclass -o name; k3s kubectl -n nfs-provisioner get deployment -o name 2>&1; true",
    );
    assert!(
        left.contains("storageclass.storage.k8s.io/local-path"),
        "{left}"
    );
    assert!(!left.contains("nfs-client"), "{left}");
    lab.exec(
        "node1",
        "test ! -e /var/lib/gpuctl/manifests/storage/nfs-provisioner.yaml",
    );
}

/// `gpuctl doctor --json` over the cluster layers: `(id, host) → severity`, and the exit
/// code.
fn doctor_cluster(lab: &Lab) -> (i32, Vec<(String, String, String)>) {
    doctor_json(lab, &["--only", "kubernetes,network,storage,stack"])
}

/// `doctor --smoke` with the cluster read and the GPU and network layers shown.
fn doctor_smoke(lab: &Lab) -> (i32, Vec<(String, String, String)>) {
    doctor_json(
        lab,
        &[
            "--smoke",
            "--smoke-timeout",
            "20",
            "--only",
            "kubernetes,gpu,network",
        ],
    )
}

pub(crate) fn doctor_json(lab: &Lab, extra: &[&str]) -> (i32, Vec<(String, String, String)>) {
    let out = Gpuctl::new()
        .args(["doctor", "--json"])
        .args(extra.iter().copied())
        .inventory(&lab.inventory)
        .spawn()
        .wait(crate::kubernetes::RUN_DEADLINE);
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}\n{}", out.stdout, out.stderr));
    let findings = report["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("host"), s("severity"))
        })
        .collect();
    (out.code, findings)
}

#[test]
fn doctor_reads_the_installed_cluster_names_each_fault_and_install_repairs_them() {
    let lab = Lab::up(&LabSpec::new(2).gpu(1));
    k3s_bundle(&lab);
    gpu_runtime(&lab);
    set_section(
        &lab,
        "dns",
        "  hosts: [{ ip: 10.9.0.5, names: [registry.lab.example] }]\n",
    );
    set_section(
        &lab,
        "storage",
        "  local_path: { path: /data/k8s/lp, default: true }\n",
    );

    // Before install: every cluster check says it does not apply yet.
    let (code, before) = doctor_cluster(&lab);
    assert_eq!(code, 0, "{before:?}");
    for id in ["K5", "K3", "K8", "A1", "A2", "S1", "N5"] {
        assert!(
            before
                .iter()
                .any(|(i, h, s)| i == id && h == "cluster" && s == "skip"),
            "{id}: {before:?}"
        );
    }

    install(&lab, &[]).success();
    let (code, healthy) = doctor_cluster(&lab);
    assert_eq!(code, 0, "{healthy:?}");
    let want = [
        ("K2", "node1"),
        ("K2", "node2"),
        ("K5", "cluster"),
        ("K3", "node1"),
        ("K3", "node2"),
        ("K8", "node2"),
        ("K7", "cluster"),
        ("K1", "cluster"),
        ("K6", "cluster"),
        ("N2", "node1"),
        ("N2", "node2"),
        ("A1", "cluster"),
        ("A2", "node2"),
        ("S1", "cluster"),
        ("S2", "cluster"),
        ("S2", "node1"),
        ("S2", "node2"),
        ("S4", "cluster"),
        ("N5", "cluster"),
        // No stack here; the webhook half of A5 is judged all the same.
        ("A5", "cluster"),
    ];
    for (id, host) in want {
        assert!(
            healthy
                .iter()
                .any(|(i, h, s)| i == id && h == host && s == "ok"),
            "{id} on {host}: {healthy:?}"
        );
    }

    // R1 and R6 are of the runtime layer, and read with the cluster all the same.
    assert_eq!(runtime_checks(&lab), ["ok", "ok", "ok"]);

    // --smoke: a GPU pod on node2 and the dns.hosts lookup pod run to the end, and their
    // namespace is gone afterwards. (The gpu layer's other checks judge device nodes the
    // lab's GPU node does not have.)
    let (_, smoke) = doctor_smoke(&lab);
    for (id, host) in [("R8", "node2"), ("N6", "cluster")] {
        assert!(
            smoke
                .iter()
                .any(|(i, h, s)| i == id && h == host && s == "ok"),
            "{id}: {smoke:?}"
        );
    }
    assert!(
        !kubectl(&lab, "get namespaces -o name").contains("gpuctl-smoke"),
        "the smoke namespace stayed"
    );

    // Faults: the gpu label taken off node2 (so the device plugin leaves it too), a
    // second default class, coredns-custom emptied by hand, a system pod whose image
    // cannot be pulled.
    kubectl(&lab, "label node node2 gpu-");
    lab.exec(
        "node1",
        "printf '%s\\n' 'apiVersion: v1' 'kind: Pod' 'metadata:' '  name: stuck' '  namespace: kube-system' 'spec:' '  containers:' '  - { name: c, image: \"\" }' | k3s kubectl apply -f -",
    );
    lab.exec(
        "node1",
        "printf '%s\\n' 'apiVersion: storage.k8s.io/v1' 'kind: StorageClass' 'metadata:' '  name: extra' '  annotations:' '    storageclass.kubernetes.io/is-default-class: \"true\"' 'provisioner: example.com/x' | k3s kubectl apply -f -",
    );
    lab.exec(
        "node1",
        "printf '%s\\n' 'apiVersion: v1' 'kind: ConfigMap' 'metadata:' '  name: coredns-custom' '  namespace: kube-system' | k3s kubectl apply -f -",
    );
    // ... the GPU pods' RuntimeClass deleted ...
    kubectl(&lab, "delete runtimeclass nvidia");
    // ... local-path volumes sent back to k3s's default directory on the root disk ...
    lab.exec(
        "node1",
        r#"k3s kubectl apply -f - <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-path-config
  namespace: local-path-storage
data:
  config.json: |
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/var/lib/rancher/k3s/storage"]}]}
EOF"#,
    );
    // ... a webhook whose service has no pods behind it ...
    lab.exec(
        "node1",
        r#"k3s kubectl apply -f - <<'EOF'
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: gone-webhook
webhooks:
- name: check.gone.example
  clientConfig:
    service: { namespace: kube-system, name: gone }
  admissionReviewVersions: [v1]
  sideEffects: None
  rules: []
EOF"#,
    );
    // ... a system DaemonSet that does not tolerate a taint node2 gets ...
    kubectl(&lab, "taint node node2 lab=x:NoSchedule");
    lab.exec(
        "node1",
        r#"k3s kubectl apply -f - <<'EOF'
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: log-agent
  namespace: kube-system
spec:
  selector: { matchLabels: { app: log-agent } }
  template:
    metadata: { labels: { app: log-agent } }
    spec:
      containers: [{ name: a, image: "docker.io/library/busybox:1.36" }]
EOF"#,
    );
    // ... node2's local-path directory gone ...
    lab.exec("node2", "rm -rf /data/k8s/lp");
    // ... and a certificate of k3s's that ended in 2021.
    let expired = expired_certificate();
    lab.exec(
        "node1",
        &format!("printf '%s' '{expired}' > /var/lib/rancher/k3s/server/tls/client-old.crt"),
    );
    let (code, broken) = doctor_cluster(&lab);
    assert_eq!(code, 1, "{broken:?}");
    assert!(
        broken
            .iter()
            .any(|(i, h, s)| i == "K7" && h == "cluster" && s == "warn"),
        "the taint: {broken:?}"
    );
    assert_eq!(runtime_checks(&lab), ["ok", "ok", "error"]);
    // The smoke pod finds no GPU to run on.
    let (_, smoke) = doctor_smoke(&lab);
    assert!(
        smoke
            .iter()
            .any(|(i, h, s)| i == "R8" && h == "node2" && s == "error"),
        "{smoke:?}"
    );
    for (id, host) in [
        ("K8", "node2"),
        ("K7", "cluster"),
        ("A1", "cluster"),
        ("A2", "node2"),
        ("S1", "cluster"),
        ("N5", "cluster"),
        ("K6", "cluster"),
        ("S2", "cluster"),
        ("S2", "node2"),
        ("A5", "cluster"),
    ] {
        assert!(
            broken
                .iter()
                .any(|(i, h, s)| i == id && h == host && s == "error"),
            "{id} on {host}: {broken:?}"
        );
    }

    // The class is the admin's to remove; the rest is gpuctl's, and --verify repairs it:
    // the labels' guard sees the label gone, the dns manifest's guard the emptied ConfigMap.
    kubectl(&lab, "delete storageclass extra");
    kubectl(&lab, "-n kube-system delete pod stuck");
    lab.exec("node1", "rm /var/lib/rancher/k3s/server/tls/client-old.crt");
    kubectl(&lab, "delete validatingwebhookconfiguration gone-webhook");
    kubectl(&lab, "-n kube-system delete daemonset log-agent");
    kubectl(&lab, "taint node node2 lab=x:NoSchedule-");
    install(&lab, &["--verify"]).success();
    let (code, repaired) = doctor_cluster(&lab);
    assert_eq!(code, 0, "{repaired:?}");
    // A5's webhook half is ok again (its stack half skips: no stack here).
    assert!(
        repaired.iter().any(|(i, _, s)| i == "A5" && s == "ok")
            && !repaired.iter().any(|(i, _, s)| i == "A5" && s == "error"),
        "{repaired:?}"
    );
    assert_eq!(runtime_checks(&lab), ["ok", "ok", "ok"]);
    assert!(
        repaired
            .iter()
            .filter(|(i, _, _)| {
                ["K2", "K6", "K7", "K8", "A1", "A2", "S1", "S2", "S4", "N5"].contains(&i.as_str())
            })
            .all(|(_, _, s)| s == "ok"),
        "{repaired:?}"
    );
}

#[test]
fn the_nfs_server_exports_to_the_nodes_once_and_says_what_it_lacks() {
    let lab = Lab::up(&LabSpec::new(2));
    set_roles(&lab, "node2", "[worker, nfs]");
    set_section(
        &lab,
        "storage",
        "  nfs: { server: node2, export: /srv/nfs/share }\n",
    );
    let ip1 = lab.node("node1").ip.clone();

    // Without the server's packages the stage fails before writing anything, saying how.
    let out = install(&lab, &["--only", "nfs"]).code(1);
    assert!(
        host_part(&out, "node2").contains("exportfs is missing on node2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("packages/<os>/nfs/"), "{}", out.stdout);
    lab.exec(
        "node2",
        "test ! -e /etc/exports || ! grep -q gpuctl /etc/exports",
    );

    lab.install_fixture("node2", "exportfs", "/usr/sbin/exportfs");
    install(&lab, &["--only", "nfs"]).success();
    let exports = lab.exec("node2", "cat /etc/exports");
    assert_eq!(
        exports.matches("# BEGIN gpuctl exports").count(),
        1,
        "{exports}"
    );
    assert!(
        exports.contains(&format!(
            "/srv/nfs/share {ip1}(rw,sync,no_subtree_check,no_root_squash)"
        )),
        "{exports}"
    );
    let active = lab.exec("node2", "/usr/sbin/exportfs -s");
    assert!(
        active.contains(&format!("/srv/nfs/share {ip1}(")),
        "{active}"
    );
    lab.exec("node2", "test -d /srv/nfs/share");
    // node1 is no NFS server: nothing there.
    lab.exec(
        "node1",
        "test ! -e /etc/exports || ! grep -q gpuctl /etc/exports",
    );

    // Checked again: the block once, the export active, nothing to change.
    let verify = install(&lab, &["--only", "nfs", "--verify"]).success();
    assert!(
        verify.stdout.contains("0 changes made"),
        "{}",
        verify.stdout
    );
    assert_eq!(
        lab.exec("node2", "cat /etc/exports")
            .matches("# BEGIN gpuctl exports")
            .count(),
        1
    );

    // doctor S3: node2 serves the export; neither lab node has the NFS client
    // (nfs-common is not in the lab image), which is what S3 must say on each.
    let s3 = |host: &str| -> Vec<String> {
        let (_, findings) = doctor_json(&lab, &["--only", "storage"]);
        findings
            .into_iter()
            .filter(|(i, h, _)| i == "S3" && h == host)
            .map(|(_, _, s)| s)
            .collect()
    };
    assert_eq!(s3("node1"), ["error"]);
    let mut on_server = s3("node2");
    on_server.sort();
    assert_eq!(on_server, ["error", "ok"]);

    // reset takes the block out and withdraws the export.
    gpuctl(&lab, &["reset", "--yes"]).success();
    lab.exec(
        "node2",
        "test ! -e /etc/exports || ! grep -q gpuctl /etc/exports",
    );
    assert_eq!(lab.exec("node2", "/usr/sbin/exportfs -s").trim(), "");
}

/// A real certificate (PEM) valid only in 2020.
fn expired_certificate() -> String {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = rcgen::CertificateParams::new(vec!["old.lab".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("{e}"))
        .pem()
}

/// The severities of R1 on node1 and node2 and of R6, from `doctor --only runtime` (their
/// layer; they are read with the cluster all the same).
fn runtime_checks(lab: &Lab) -> [String; 3] {
    let (_, findings) = doctor_json(lab, &["--only", "runtime"]);
    [("R1", "node1"), ("R1", "node2"), ("R6", "cluster")].map(|(id, host)| {
        findings
            .iter()
            .find(|(i, h, _)| i == id && h == host)
            .map_or_else(|| "absent".into(), |(_, _, s)| s.clone())
    })
}
