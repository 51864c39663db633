#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;
use crate::bundle::BundleFile;
use crate::stages::sample;

/// A bundle whose `manifests/kubeflow-core/` is the test fixture (hashes are not checked
/// when planning; `Bundle::load` does that before a run).
pub fn fixture_bundle() -> Arc<Bundle> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stack");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "yaml") {
                let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                files.push(BundleFile {
                    path: format!("manifests/{rel}"),
                    sha256: "0".repeat(64),
                    size: 1,
                });
            }
        }
    }
    // The bundle's directory is where `manifests/` would be: the fixture's parent layout
    // is recreated by pointing `dir` at a directory whose `manifests` is the fixture.
    let dir = tempfile::tempdir().unwrap().keep();
    std::os::unix::fs::symlink(&root, dir.join("manifests")).unwrap();
    Arc::new(Bundle {
        dir,
        name: "stack-fixture".into(),
        versions: Default::default(),
        files,
    })
}

fn inventory(components: &str) -> Inventory {
    sample::load(&format!(
        "{}registry: {{ mirror: \"registry.lab:5000\", insecure: true }}\nstack: {{ components: [{components}], timeout: 30 }}\n",
        sample::YAML
    ))
}

fn plan(inv: &Inventory) -> anyhow::Result<Vec<Op>> {
    StackStage {
        bundle: Some(fixture_bundle()),
    }
    .plan(inv, &sample::cluster_facts(inv, "cp1"))
}

fn file<'a>(ops: &'a [Op], suffix: &str) -> &'a str {
    ops.iter()
        .find_map(|op| match op {
            Op::File { path, content, .. } if path.ends_with(suffix) => Some(content.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no file {suffix} in {ops:?}"))
}

#[test]
fn crds_first_then_namespaces_then_the_parts_in_order_all_labelled_and_mirrored() {
    let inv = inventory("kubeflow-core");
    let ops = plan(&inv).unwrap();
    assert!(
        matches!(&ops[0], Op::Command { run, .. } if run.contains("stack/*/")),
        "the first Op removes components no longer listed: {:?}",
        ops[0]
    );
    let crds = file(&ops, "stack/kubeflow-core/crds.yaml");
    let crd_docs = crate::mirror::discover::parse_yaml("crds", crds).unwrap();
    let names: Vec<&str> = crd_docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    // profiles, training-operator, notebook-controller: the parts' order.
    assert_eq!(
        names,
        [
            "profiles.kubeflow.org",
            "pytorchjobs.kubeflow.org",
            "notebooks.kubeflow.org"
        ]
    );
    let resources = file(&ops, "stack/kubeflow-core/resources.yaml");
    let docs = crate::mirror::discover::parse_yaml("resources", resources).unwrap();
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace/kubeflow",
            "ServiceAccount/profiles-controller-service-account",
            "Deployment/profiles-deployment",
            "Deployment/training-operator",
            "Deployment/notebook-controller-deployment",
            "ConfigMap/jupyter-web-app-config",
            "PyTorchJob/smoke-mnist",
            "Deployment/centraldashboard",
            "Service/centraldashboard",
            "Profile/kubeflow-user-example-com",
        ]
    );
    let mut images = 0;
    for doc in crd_docs.iter().chain(&docs) {
        assert_eq!(
            doc["metadata"]["labels"][COMPONENT_LABEL], "kubeflow-core",
            "{doc:?}"
        );
        for hit in crate::mirror::scan::scan(doc) {
            images += 1;
            assert_eq!(hit.reference.registry, "registry.lab:5000", "{}", hit.path);
        }
    }
    assert!(images >= 12, "only {images} images seen");
    assert!(
        resources.contains("--pytorch-init-container-image=registry.lab:5000/library/alpine:3.10"),
        "{resources}"
    );

    // The CRDs' apply waits for them to be Established before it is recorded.
    let crd_apply = ops
        .iter()
        .find_map(|op| match op {
            Op::Command { run, .. } if run.contains("crds.yaml.applied") => Some(run),
            _ => None,
        })
        .unwrap();
    assert!(
        crd_apply.contains(
            "wait --for=condition=Established customresourcedefinition -l \
             gpuctl.io/component=kubeflow-core --timeout=120s || exit 1"
        ),
        "{crd_apply}"
    );

    let Some(Finish::Wait(w)) =
        StackStage { bundle: None }.finish(&inv, &sample::facts(&inv, "cp1"))
    else {
        panic!("no wait")
    };
    assert_eq!(w.timeout, Duration::from_secs(30));
    assert!(
        w.command
            .contains("get daemonsets --all-namespaces -l gpuctl.io/component")
    );
}

#[test]
fn components_that_collide_with_the_inventory_or_are_missing_are_refused_by_name() {
    let err = plan(&inventory("nvidia-device-plugin"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "stack component nvidia-device-plugin: the gpu stage applies the device plugin already"
        ),
        "{err}"
    );
    let err = plan(&inventory("calico")).unwrap_err().to_string();
    assert!(err.contains("cluster.cni: calico"), "{err}");
    let err = plan(&inventory("kubeflow-core, mlflow"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stack component mlflow: the bundle lists no manifests/mlflow/*.yaml"),
        "{err}"
    );
    let err = StackStage { bundle: None }
        .plan(
            &inventory("kubeflow-core"),
            &sample::facts(&sample::inventory(), "cp1"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no bundle is loaded"), "{err}");
}

#[test]
fn without_components_only_the_removal_of_earlier_ones_is_planned() {
    let inv = sample::inventory();
    let ops = StackStage { bundle: None }
        .plan(&inv, &sample::facts(&inv, "cp1"))
        .unwrap();
    let [
        Op::Command {
            run, guard, undo, ..
        },
        Op::Command { run: tls, .. },
    ] = &ops[..]
    else {
        panic!("{ops:?}")
    };
    assert!(tls.contains("stack/tls.yaml.applied"), "{tls}");
    assert!(run.contains("case '  ' in"), "{run}");
    assert!(guard.contains("exit 1"), "{guard}");
    assert!(undo.is_some());
    assert!(
        StackStage { bundle: None }
            .finish(&inv, &sample::facts(&inv, "cp1"))
            .is_none()
    );
}

#[test]
fn calico_gets_the_inventory_pod_cidr() {
    let mut inv = inventory("calico");
    inv.cluster.cni = crate::inventory::Cni::Calico;
    let mut docs = vec![
        serde_yaml::from_str::<Value>(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\nspec:\n  template:\n    spec:\n      containers:\n      - name: calico-node\n        image: docker.io/calico/node:v3.28.0\n        env:\n        - {name: CALICO_IPV4POOL_CIDR, value: 192.168.0.0/16}\n",
        )
        .unwrap(),
    ];
    prepare(&inv, "calico", &mut docs, None);
    let env = &docs[0]["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["value"], inv.cluster.pod_cidr.to_string().as_str());
}

#[test]
fn parts_order_files_and_unknown_components_go_by_path() {
    assert!(
        components::order("kubeflow-core", "profiles/x.yaml")
            < components::order("kubeflow-core", "centraldashboard/a.yaml")
    );
    assert!(
        components::order("kubeflow-core", "top.yaml")
            < components::order("kubeflow-core", "profiles/x.yaml")
    );
    assert!(
        components::order("kubeflow-core", "centraldashboard/a.yaml")
            < components::order("kubeflow-core", "zz-extra/a.yaml")
    );
    assert!(components::order("mine", "a/x.yaml") < components::order("mine", "b/a.yaml"));
}

#[test]
fn the_gateway_tls_secret_is_a_secret_manifest_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nMIIEkeymaterial\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut inv = inventory("kubeflow-core");
    inv.stack.tls = Some(crate::inventory::StackTls {
        cert: cert.clone(),
        key: key.clone(),
        name: "kubeflow-gateway-tls".into(),
        namespace: "istio-system".into(),
    });
    let ops = plan(&inv).unwrap();
    let Some(Op::File {
        content, secret, ..
    }) = ops
        .iter()
        .find(|op| matches!(op, Op::File { path, .. } if path.ends_with("stack/tls.yaml")))
    else {
        panic!("{ops:?}")
    };
    assert!(*secret, "the key must never show in a diff");
    let doc: Value = serde_yaml::from_str(content).unwrap();
    assert_eq!(doc["type"], "kubernetes.io/tls");
    assert_eq!(doc["metadata"]["namespace"], "istio-system");
    let crt = data_encoding::BASE64
        .decode(doc["data"]["tls.crt"].as_str().unwrap().as_bytes())
        .unwrap();
    assert!(String::from_utf8(crt).unwrap().contains("MIIBcert"));
    // Whatever picks the key up on its way is redacted.
    assert!(!crate::secret::redact(content).contains(doc["data"]["tls.key"].as_str().unwrap()));
    // The TLS manifest comes after the components (their namespaces first).
    let last_file = ops
        .iter()
        .filter_map(|op| match op {
            Op::File { path, .. } if path.ends_with(".yaml") => Some(path.as_str()),
            _ => None,
        })
        .next_back();
    assert_eq!(last_file, Some("/var/lib/gpuctl/manifests/stack/tls.yaml"));

    // Swapped files are refused, naming the key that is wrong.
    inv.stack.tls.as_mut().unwrap().cert = key.clone();
    let err = plan(&inv).unwrap_err().to_string();
    assert!(
        err.contains("stack.tls.cert") && err.contains("BEGIN CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn stack_tls_in_the_inventory_needs_cert_and_key_and_defaults_the_rest() {
    let inv = sample::load(&format!(
        "{}stack: {{ tls: {{ cert: ./gw.crt, key: ./gw.key }} }}\n",
        sample::YAML
    ));
    let tls = inv.stack.tls.unwrap();
    assert!(tls.cert.ends_with("gw.crt") && tls.cert.is_absolute());
    assert_eq!(
        (tls.name.as_str(), tls.namespace.as_str()),
        ("kubeflow-gateway-tls", "istio-system")
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
    let err = crate::inventory::load_text(
        &format!("{}stack: {{ tls: {{ crt: ./gw.crt }} }}\n", sample::YAML),
        &fixtures.join("sample.yaml"),
        &fixtures,
        &crate::inventory::LoadOptions {
            no_ssh_config: true,
            home: Some(fixtures.join("home")),
            user: Some("tester".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("write `cert:`"), "{err}");
    assert!(err.contains("stack.tls") && err.contains("key"), "{err}");
}
