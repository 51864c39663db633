use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::inventory::{self, LoadOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn opts() -> LoadOptions {
    LoadOptions {
        no_ssh_config: true,
        home: Some(root().join("tests/fixtures/inventory/home")),
        user: Some("tester".into()),
        ..LoadOptions::default()
    }
}

fn example(name: &str) -> Inventory {
    inventory::load(&root().join("inventories").join(name), &opts())
        .unwrap_or_else(|e| panic!("{name} should load: {e}"))
}

fn from_text(text: &str) -> Inventory {
    inventory::load_text(text, Path::new("t.yaml"), root(), &opts())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn embedded() -> Templates {
    Templates::load(None).unwrap_or_else(|e| panic!("{e}"))
}

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

fn docs(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_embedded_list_is_exactly_the_templates_directory() {
    let on_disk = files_under(&root().join("templates"));
    let listed: BTreeSet<String> = embedded::TEMPLATES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(
        on_disk, listed,
        "src/render/embedded.rs must list every file of templates/"
    );
}

#[test]
fn every_example_renders_to_valid_kubernetes_objects() {
    for name in [
        "single-box.yaml",
        "lab-ha-bastion.yaml",
        "kubeadm-calico.yaml",
    ] {
        let inv = example(name);
        let rendered = embedded()
            .render_all(&inv)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!rendered.is_empty(), "{name} rendered nothing");
        for r in rendered.iter().filter(|r| r.name.ends_with(".yaml")) {
            let objects = docs(&r.text);
            assert!(!objects.is_empty(), "{name}: {} has no object", r.name);
            for o in &objects {
                for key in ["apiVersion", "kind"] {
                    assert!(
                        o.get(key).and_then(|v| v.as_str()).is_some(),
                        "{name}: {} has an object without {key}:\n{}",
                        r.name,
                        r.text
                    );
                }
                let named = o
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str());
                assert!(
                    named.is_some_and(|n| !n.is_empty()),
                    "{name}: {} unnamed",
                    r.name
                );
            }
        }
    }
}

/// `value` deserialized into the Kubernetes type `T` and serialized back: fields the type
/// does not know are dropped on the way, so they show up as differences.
fn through<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Kubeflow's Profile (kubeflow.org/v1), as far as the users template writes it; unknown
/// fields are refused like the Kubernetes types refuse them (by dropping them).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Profile {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ProfileSpec,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    owner: k8s_openapi::api::rbac::v1::Subject,
}

/// The first place where `want` and `got` differ, as a dotted path.
fn first_difference(want: &serde_json::Value, got: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let here = format!("{at}.{k}");
                match g.get(k) {
                    Some(gv) => {
                        if let Some(d) = first_difference(v, gv, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{here}: not a field of this kind")),
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{at}.{k}: added by the type"))
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{at}[{i}]"))),
        _ if want == got => None,
        _ => Some(format!("{at}: {want} became {got}")),
    }
}

/// A typo in a template (`imagePullPolicy` misspelt, a field at the wrong level) would be
/// ignored by a lenient apply and surface as a pod that behaves differently: every object
/// every example renders must survive a trip through the Kubernetes API types of its kind
/// unchanged.
#[test]
fn every_rendered_object_is_exactly_a_kubernetes_object() {
    use k8s_openapi::api::{apps, core, node, rbac, storage};
    let mut checked = 0;
    let mut wrong = Vec::new();
    for name in [
        "single-box.yaml",
        "lab-ha-bastion.yaml",
        "kubeadm-calico.yaml",
    ] {
        let inv = example(name);
        for r in embedded()
            .render_all(&inv)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .filter(|r| r.name.ends_with(".yaml"))
        {
            for o in docs(&r.text) {
                let value = serde_json::to_value(&o).unwrap_or_else(|e| panic!("{e}"));
                let kind = value["kind"].as_str().unwrap_or_default().to_string();
                let back = match kind.as_str() {
                    "Namespace" => through::<core::v1::Namespace>(&value),
                    "ConfigMap" => through::<core::v1::ConfigMap>(&value),
                    "Service" => through::<core::v1::Service>(&value),
                    "ServiceAccount" => through::<core::v1::ServiceAccount>(&value),
                    "ResourceQuota" => through::<core::v1::ResourceQuota>(&value),
                    "PersistentVolume" => through::<core::v1::PersistentVolume>(&value),
                    "PersistentVolumeClaim" => through::<core::v1::PersistentVolumeClaim>(&value),
                    "Deployment" => through::<apps::v1::Deployment>(&value),
                    "DaemonSet" => through::<apps::v1::DaemonSet>(&value),
                    "ClusterRole" => through::<rbac::v1::ClusterRole>(&value),
                    "ClusterRoleBinding" => through::<rbac::v1::ClusterRoleBinding>(&value),
                    "RoleBinding" => through::<rbac::v1::RoleBinding>(&value),
                    "StorageClass" => through::<storage::v1::StorageClass>(&value),
                    "RuntimeClass" => through::<node::v1::RuntimeClass>(&value),
                    "Profile" => through::<Profile>(&value),
                    other => Err(format!("kind {other} is not checked: add it to this test")),
                };
                checked += 1;
                let problem = match back {
                    Ok(back) => first_difference(&value, &back, &kind),
                    Err(e) => Some(e),
                };
                if let Some(p) = problem {
                    wrong.push(format!("{name}: {}: {p}", r.name));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} objects checked");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check itself catches a misspelt field.
    let typo = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x"}, "spec": {"replicass": 1, "selector": {}, "template": {}}});
    let back = through::<apps::v1::Deployment>(&typo).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first_difference(&typo, &back, "Deployment").as_deref(),
        Some("Deployment.spec.replicass: not a field of this kind")
    );
}

#[test]
fn the_single_box_renders_as_expected() {
    let rendered = embedded()
        .render_all(&example("single-box.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut all = String::new();
    for r in &rendered {
        all.push_str(&format!("=== {}\n{}", r.name, r.text));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn components_the_inventory_turns_off_render_no_file() {
    let inv = from_text(
        "cluster: { name: t }\nssh: { user: ops }\ngpu: { device_plugin: false }\nhosts:\n  - { name: a, address: 10.0.0.1, roles: [server] }\n",
    );
    let names: Vec<String> = embedded()
        .render_all(&inv)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| r.name)
        .collect();
    for off in [
        "gpu/device-plugin.yaml",
        "gpu/dcgm-exporter.yaml",
        "storage/nfs-provisioner.yaml",
        "storage/exports",
        "dns/hosts.server",
    ] {
        assert!(!names.iter().any(|n| n == off), "{off} rendered: {names:?}");
    }
    assert!(
        names.iter().any(|n| n == "gpu/runtimeclass.yaml"),
        "{names:?}"
    );
}

#[test]
fn dns_hosts_become_one_server_block_in_coredns_custom() {
    let inv = from_text(
        "cluster: { name: t }\nssh: { user: ops }\ndns:\n  hosts:\n    - { ip: 192.168.3.14, names: [login.lab.example, lab.example] }\n    - { ip: 192.168.3.20, names: [nas.lab.example] }\nhosts:\n  - { name: a, address: 10.0.0.1, roles: [server] }\n",
    );
    let rendered = embedded()
        .render_all(&inv)
        .unwrap_or_else(|e| panic!("{e}"));
    let cm = rendered
        .iter()
        .find(|r| r.name == "dns/coredns-custom.yaml")
        .unwrap_or_else(|| panic!("no coredns-custom"));
    let objects = docs(&cm.text);
    let server = objects[0]["data"]["gpuctl-hosts.server"]
        .as_str()
        .unwrap_or_else(|| panic!("no server block:\n{}", cm.text));
    assert!(
        server.starts_with("lab.example:53 login.lab.example:53 nas.lab.example:53 {"),
        "{server}"
    );
    assert!(
        server.contains("192.168.3.14 login.lab.example lab.example\n"),
        "{server}"
    );
    assert!(
        server.contains("192.168.3.20 nas.lab.example\n"),
        "{server}"
    );
    assert!(server.contains("fallthrough"), "{server}");
}

#[test]
fn exports_open_the_share_to_every_node_only() {
    let inv = example("single-box.yaml");
    let rendered = embedded()
        .render_all(&inv)
        .unwrap_or_else(|e| panic!("{e}"));
    let exports = rendered
        .iter()
        .find(|r| r.name == "storage/exports")
        .unwrap_or_else(|| panic!("no exports"));
    assert_eq!(
        exports.text,
        "/data/share 192.168.3.14(rw,sync,no_subtree_check,no_root_squash)\n"
    );
}

#[test]
fn users_get_a_namespace_and_their_tier_quota() {
    let rendered = embedded()
        .render_all(&example("single-box.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let users = rendered
        .iter()
        .find(|r| r.name == "users/profiles.yaml")
        .unwrap_or_else(|| panic!("no profiles"));
    let objects = docs(&users.text);
    let quota = objects
        .iter()
        .find(|o| o["kind"] == "ResourceQuota" && o["metadata"]["namespace"] == "alice")
        .unwrap_or_else(|| panic!("no quota for alice:\n{}", users.text));
    let tiers = crate::inventory::default_tiers();
    let mid = &tiers["mid"];
    assert_eq!(quota["spec"]["hard"]["requests.cpu"], mid.cpu.as_str());
    assert_eq!(
        quota["spec"]["hard"]["requests.memory"],
        mid.memory.as_str()
    );
    assert_eq!(
        quota["spec"]["hard"]["requests.nvidia.com/gpu"],
        mid.gpu.to_string().as_str()
    );
    let pv = objects
        .iter()
        .find(|o| o["kind"] == "PersistentVolume" && o["metadata"]["name"] == "gpuctl-data-bob")
        .unwrap_or_else(|| panic!("no data volume for bob"));
    assert_eq!(pv["spec"]["nfs"]["path"], "/data/share/bob");
    assert_eq!(pv["spec"]["accessModes"][0], "ReadOnlyMany");
}

#[test]
fn a_user_data_path_without_nfs_is_a_clear_error() {
    let inv = from_text(
        "cluster: { name: t }\nssh: { user: ops }\nusers:\n  list:\n    - { name: carol, email: c@x.example, tier: small, data_path: /data/carol }\nhosts:\n  - { name: a, address: 10.0.0.1, roles: [server] }\n",
    );
    let err = match embedded().render_all(&inv) {
        Ok(_) => panic!("rendered a data volume without an NFS server"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("carol") && err.contains("storage.nfs"),
        "{err}"
    );
}

#[test]
fn the_images_templates_name_are_the_mirrors_lists() {
    // Render with everything on so every image appears.
    let inv = from_text(
        "cluster: { name: t }\nssh: { user: ops }\ngpu: { dcgm_exporter: true }\nstorage:\n  local_path: { path: /data/lp }\n  nfs: { server: a, export: /data/share, provisioner: true }\nhosts:\n  - { name: a, address: 10.0.0.1, roles: [server, nfs] }\n",
    );
    let mut found = BTreeSet::new();
    for r in embedded()
        .render_all(&inv)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|r| r.name.ends_with(".yaml"))
    {
        for doc in docs(&r.text) {
            for hit in crate::mirror::scan::scan(&doc) {
                found.insert(hit.reference.to_string());
            }
        }
    }
    let mut listed = BTreeSet::new();
    for file in files_under(&root().join("mirrors")) {
        if file.ends_with(".images") {
            let path: PathBuf = root().join("mirrors").join(&file);
            for line in crate::mirror::images_file::read(&path).unwrap_or_else(|e| panic!("{e}")) {
                listed.insert(line.reference.to_string());
            }
        }
    }
    assert_eq!(
        found, listed,
        "templates/ and mirrors/*.images name different images"
    );
}

#[test]
fn a_missing_value_names_the_template_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("gpu")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("gpu/runtimeclass.yaml.hbs"),
        "kind: RuntimeClass\nmetadata:\n  name: {{gpu.runtime_klass}}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let templates = Templates::load(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        templates.sources().get("gpu/runtimeclass.yaml.hbs"),
        Some(Source::Override(_))
    ));
    let err = match templates.render_all(&example("single-box.yaml")) {
        Ok(_) => panic!("a missing value rendered"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("gpu/runtimeclass.yaml.hbs"), "{err}");
    assert!(err.contains("runtime_klass"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn an_override_that_replaces_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("gpu")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("gpu/device-plugn.yaml.hbs"), "x: 1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let err = match Templates::load(Some(dir.path())) {
        Ok(_) => panic!("a typo'd override was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("gpu/device-plugn.yaml.hbs replaces no template"),
        "{err}"
    );
    assert!(err.contains("gpu/device-plugin.yaml.hbs"), "{err}");
}

#[test]
fn user_names_become_dns_labels() {
    assert_eq!(context::namespace_for("Jane.Doe"), "jane-doe");
    assert_eq!(context::namespace_for("_bob_"), "bob");
}
