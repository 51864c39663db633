//! `gpuctl render` and `mirror-images list --inventory`: the templates as an admin sees them.
//! No host is contacted, so no lab is needed.

use std::fs;
use std::path::Path;

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
