#![allow(clippy::unwrap_used)]

use super::*;
use crate::bundle::BundleFile;
use crate::secret::Secret;

const TOKEN_VALUE: &str = "K10aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990000::server:0123456789abcdef0123456789abcdef";

fn example(name: &str) -> Inventory {
    crate::stages::sample::example(name)
}

fn file(path: &str) -> BundleFile {
    BundleFile {
        path: path.into(),
        sha256: format!("{:0>64}", path.len()),
        size: 1,
    }
}

fn stage() -> Kubernetes {
    Kubernetes {
        bundle: Some(Arc::new(Bundle {
            dir: "/srv/bundle".into(),
            name: "sample".into(),
            versions: Default::default(),
            files: vec![
                file("bin/k3s"),
                file("bin/k3s-arm64"),
                file("images/k3s-airgap-images-amd64.tar.zst"),
                file("images/k3s-airgap-images-arm64.tar.zst"),
                file("images/other.tar"),
                file("packages/debian-12/jq_1.6-2.1+deb12u3_amd64.deb"),
            ],
        })),
        // The HA example names a registry password; this stands for the loaded one.
        registry_password: Some(Secret::new("example-registry-password")),
    }
}

/// Facts of an amd64 host, with the first server's token handed over.
fn facts(inv: &Inventory, host: &str) -> HostFacts {
    let h = inv.hosts.iter().find(|h| h.name == host).unwrap();
    let mut hf = HostFacts::bare(h);
    hf.facts.arch = "x86_64".into();
    hf.handed
        .insert(TOKEN.into(), Handed::Value(Secret::new(TOKEN_VALUE)));
    hf
}

fn plan(inv: &Inventory, host: &str) -> Vec<Op> {
    stage().plan(inv, &facts(inv, host)).unwrap()
}

/// The Ops with the token replaced, as the snapshots (and everything printed) show them.
fn masked(ops: &[Op]) -> Vec<Op> {
    let text = serde_json::to_string(ops)
        .unwrap()
        .replace(TOKEN_VALUE, "<token>");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn single_box_first_server_with_docker_and_its_own_data_dir() {
    let inv = example("single-box");
    let ops = plan(&inv, "astro");
    insta::assert_yaml_snapshot!(ops);
    assert!(
        !serde_json::to_string(&ops).unwrap().contains(TOKEN_VALUE),
        "the first server makes its token; it is written nowhere by gpuctl"
    );
    assert_eq!(
        stage().hands_over(&inv, &inv.hosts[0]),
        [(TOKEN, "/home/data/k3s/var/server/token".to_string())]
    );
    assert!(stage().waits_for(&inv, &inv.hosts[0]).is_empty());
}

#[test]
fn ha_bastion_lab_first_server_joining_server_agent_and_non_nodes() {
    let inv = example("lab-ha-bastion");
    insta::assert_yaml_snapshot!("ha_first_server", plan(&inv, "ctl1"));
    insta::assert_yaml_snapshot!("ha_joining_server", masked(&plan(&inv, "ctl2")));
    let agent = plan(&inv, "gpu01");
    insta::assert_yaml_snapshot!("ha_gpu_agent", masked(&agent));
    assert!(plan(&inv, "nas1").is_empty());
    assert!(plan(&inv, "registry").is_empty());

    // The token is only in the agent's env file, and that file is a secret Op.
    let with_token: Vec<&Op> = agent
        .iter()
        .filter(|op| serde_json::to_string(op).unwrap().contains(TOKEN_VALUE))
        .collect();
    assert!(
        matches!(with_token.as_slice(), [Op::File { path, secret: true, mode: 0o600, .. }]
            if path == "/etc/systemd/system/k3s-agent.service.env"),
        "{with_token:?}"
    );
    let gpu01 = inv.hosts.iter().find(|h| h.name == "gpu01").unwrap();
    assert_eq!(
        stage().waits_for(&inv, gpu01),
        [Await {
            host: "ctl1".into(),
            stage: "kubernetes",
            why: "the first server, whose join token this node needs".into()
        }]
    );
    assert!(stage().hands_over(&inv, gpu01).is_empty());
}

const MATERIAL: &str = "token=abcdef.0123456789abcdef\nhash=sha256:\
    1111111111111111111111111111111111111111111111111111111111111111\nkey=\
    2222222222222222222222222222222222222222222222222222222222222222\n";

fn kubeadm_stage() -> Kubernetes {
    let mut s = stage();
    if let Some(b) = s.bundle.as_mut() {
        let b = Arc::make_mut(b);
        for name in ["kubeadm", "kubelet", "kubectl"] {
            b.files.push(file(&format!("bin/{name}")));
        }
    }
    s
}

fn kubeadm_facts(inv: &Inventory, host: &str) -> HostFacts {
    let mut hf = facts(inv, host);
    hf.handed
        .insert(JOIN.into(), Handed::Value(Secret::new(MATERIAL)));
    hf
}

#[test]
fn kubeadm_first_server_inits_and_leaves_the_join_material_workers_join_with_it() {
    let inv = example("kubeadm-calico");
    let stage = kubeadm_stage();
    let cp1 = stage.plan(&inv, &kubeadm_facts(&inv, "cp1")).unwrap();
    insta::assert_yaml_snapshot!("kubeadm_first_server", cp1);
    let worker = stage.plan(&inv, &kubeadm_facts(&inv, "worker1")).unwrap();
    let text = serde_json::to_string(&worker).unwrap();
    let masked = text
        .replace("abcdef.0123456789abcdef", "<token>")
        .replace(&"2".repeat(64), "<key>");
    let masked: Vec<Op> = serde_json::from_str(&masked).unwrap();
    insta::assert_yaml_snapshot!("kubeadm_worker", masked);

    // The token is only in the join configuration, a secret 0600 file; a worker gets no
    // certificate key (that is for servers).
    let with_token: Vec<&Op> = worker
        .iter()
        .filter(|op| {
            serde_json::to_string(op)
                .unwrap()
                .contains("abcdef.0123456789abcdef")
        })
        .collect();
    assert!(
        matches!(with_token.as_slice(), [Op::File { path, secret: true, mode: 0o600, .. }]
            if path == kubeadm::JOIN_CONFIG),
        "{with_token:?}"
    );
    assert!(
        !text.contains(&"2".repeat(64)),
        "a worker got the certificate key"
    );
    // Nothing secret in the first server's Ops: kubeadm makes the token there.
    assert!(!serde_json::to_string(&cp1).unwrap().contains("abcdef."));

    let first = &inv.hosts[0];
    assert_eq!(
        stage.hands_over(&inv, first),
        [(JOIN, kubeadm::JOIN_MATERIAL.to_string())]
    );
    assert!(
        stage
            .leaves(&inv, first)
            .contains(&"/etc/kubernetes".to_string())
    );
}

#[test]
fn kubeadm_join_material_is_checked_and_a_joining_server_gets_the_key() {
    assert!(
        kubeadm::JoinMaterial::parse("token=a.b\nhash=sha256:c\n")
            .unwrap_err()
            .to_string()
            .contains("no key= line")
    );
    let mut inv = example("kubeadm-calico");
    inv.hosts[1].roles = [crate::inventory::Role::Server].into();
    let ops = kubeadm_stage()
        .plan(&inv, &kubeadm_facts(&inv, "worker1"))
        .unwrap();
    let join = ops
        .iter()
        .find_map(|op| match op {
            Op::File { path, content, .. } if path == kubeadm::JOIN_CONFIG => Some(content),
            _ => None,
        })
        .unwrap();
    assert!(
        join.contains(&format!("certificateKey: '{}'", "2".repeat(64)))
            || join.contains(&format!("certificateKey: \"{}\"", "2".repeat(64)))
            || join.contains(&format!("certificateKey: {}", "2".repeat(64))),
        "{join}"
    );
    assert!(
        join.contains("key: node-role.kubernetes.io/control-plane"),
        "{join}"
    );
    // Two servers: the material command uploads the certificates, and its guard asks for them.
    let (run, guard) = kubeadm::material_command(&inv);
    assert!(run.contains("upload-certs"), "{run}");
    assert!(guard.contains("kubeadm-certs"), "{guard}");
    let (run, _) = kubeadm::material_command(&example("kubeadm-calico"));
    assert!(!run.contains("upload-certs"), "{run}");
}

#[test]
fn kubeadm_images_follow_the_version() {
    let images = kubeadm::images("v1.30.6").unwrap();
    assert_eq!(
        images,
        [
            "registry.k8s.io/kube-apiserver:v1.30.6",
            "registry.k8s.io/kube-controller-manager:v1.30.6",
            "registry.k8s.io/kube-scheduler:v1.30.6",
            "registry.k8s.io/kube-proxy:v1.30.6",
            "registry.k8s.io/coredns/coredns:v1.11.3",
            "registry.k8s.io/pause:3.9",
            "registry.k8s.io/etcd:3.5.15-0",
        ]
    );
    assert!(kubeadm::images("v1.29.4").is_none());
    let mut inv = example("kubeadm-calico");
    inv.cluster.version = "v1.31.1".into();
    assert_eq!(kubeadm::pause_image(&inv), "registry.k8s.io/pause:3.10");
}

#[test]
fn kubeadm_without_its_binaries_in_the_bundle_fails_naming_them() {
    let inv = example("kubeadm-calico");
    let err = stage()
        .plan(&inv, &kubeadm_facts(&inv, "cp1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no bin/kubeadm"), "{err}");
}

#[test]
fn a_joiner_without_the_token_fails_and_a_dry_run_plans_with_a_placeholder() {
    let inv = example("lab-ha-bastion");
    let mut hf = facts(&inv, "gpu02");
    hf.handed.insert(
        TOKEN.into(),
        Handed::Missing("ctl1 made no token within 180s".into()),
    );
    let err = stage().plan(&inv, &hf).unwrap_err().to_string();
    assert_eq!(err, "ctl1 made no token within 180s");
    hf.handed.clear();
    let err = stage().plan(&inv, &hf).unwrap_err().to_string();
    assert!(err.contains("the join token of ctl1"), "{err}");
    hf.handed.insert(TOKEN.into(), Handed::Later);
    let ops = stage().plan(&inv, &hf).unwrap();
    assert!(
        serde_json::to_string(&ops)
            .unwrap()
            .contains("(the join token ctl1 makes)")
    );
}

#[test]
fn an_arm64_host_gets_the_arm64_binary_and_images_and_a_bundle_without_them_fails() {
    let inv = example("lab-ha-bastion");
    let mut hf = facts(&inv, "gpu03");
    hf.facts.arch = "aarch64".into();
    let ops = stage().plan(&inv, &hf).unwrap();
    let uploads: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Upload { src, .. } => Some(src.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        uploads,
        [
            "/srv/bundle/bin/k3s-arm64",
            "/srv/bundle/images/k3s-airgap-images-arm64.tar.zst"
        ]
    );
    hf.facts.arch = "riscv64".into();
    let err = stage().plan(&inv, &hf).unwrap_err().to_string();
    assert!(err.contains("has no bin/k3s-riscv64"), "{err}");
    // Reset plans without the bundle: the binary's destination is still known.
    let none = Kubernetes {
        bundle: None,
        ..stage()
    };
    let ops = none.plan(&inv, &facts(&inv, "gpu03")).unwrap();
    assert!(
        matches!(&ops[0], Op::Upload { dest, .. } if dest == BIN),
        "{ops:?}"
    );
}

#[test]
fn reset_removes_what_k3s_makes_on_nodes_only() {
    let inv = example("lab-ha-bastion");
    let nas = inv.hosts.iter().find(|h| h.name == "nas1").unwrap();
    assert!(stage().leaves(&inv, nas).is_empty());
    assert_eq!(
        stage().leaves(&inv, &inv.hosts[0]),
        [
            "/var/lib/rancher/k3s",
            "/etc/rancher",
            "/run/k3s",
            "/run/flannel",
            "/var/lib/kubelet"
        ]
    );
}

#[test]
fn registry_credentials_and_ca_reach_registries_yaml_which_is_then_a_secret_file() {
    let mut inv = example("lab-ha-bastion");
    inv.cluster.container_runtime = crate::inventory::ContainerRuntime::Containerd;
    let r = inv.registry.as_mut().unwrap();
    r.insecure = false;
    r.ca_file = Some("/etc/ssl/mirror-ca.pem".into());
    r.username = Some("puller".into());
    r.password = Some(crate::secret::SecretSource::Env {
        env: "GPUCTL_TEST_REGISTRY_PASSWORD".into(),
    });
    let mirror = r.mirror.clone();
    // Without the loaded password the stage refuses rather than write a file lacking it.
    let without = Kubernetes {
        registry_password: None,
        ..stage()
    };
    let err = without
        .plan(&inv, &facts(&inv, "ctl1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("registry password"), "{err}");

    let with = Kubernetes {
        registry_password: Some(Secret::new("s3cret-pull")),
        ..stage()
    };
    let ops = with.plan(&inv, &facts(&inv, "ctl1")).unwrap();
    let Some(Op::File {
        content,
        secret,
        mode,
        ..
    }) = ops
        .iter()
        .find(|op| matches!(op, Op::File { path, .. } if path == k3s::REGISTRIES))
    else {
        panic!("{ops:?}")
    };
    assert!(*secret && *mode == 0o600);
    let doc: serde_yaml::Value = serde_yaml::from_str(content).unwrap();
    let config = &doc["configs"][mirror.as_str()];
    assert_eq!(config["auth"]["username"], "puller");
    assert_eq!(config["auth"]["password"], "s3cret-pull");
    assert_eq!(
        config["tls"]["ca_file"],
        format!("/etc/containerd/certs.d/{mirror}/ca.crt").as_str()
    );
    assert_eq!(
        doc["mirrors"]["docker.io"]["endpoint"][0],
        format!("https://{mirror}").as_str()
    );
    // Without credentials or CA: no configs, not a secret.
    let mut plain = inv.clone();
    let r = plain.registry.as_mut().unwrap();
    (r.ca_file, r.username, r.password) = (None, None, None);
    let text = k3s::registries_yaml(&plain, None).unwrap();
    assert!(!text.contains("configs"), "{text}");
}

#[test]
fn containerd_hosts_toml_sends_each_registry_to_the_mirror() {
    let mut inv = example("lab-ha-bastion");
    inv.cluster.container_runtime = crate::inventory::ContainerRuntime::Containerd;
    let files = k3s::containerd_hosts(&inv).unwrap();
    let mirror = inv.registry.as_ref().unwrap().mirror.clone();
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.contains(&"docker.io/hosts.toml") && names.contains(&"nvcr.io/hosts.toml"));
    let (_, docker) = files
        .iter()
        .find(|(p, _)| p == "docker.io/hosts.toml")
        .unwrap();
    assert_eq!(
        docker,
        &format!(
            "# Written by gpuctl: images of docker.io come from the mirror {mirror}.\n\
             server = \"https://registry-1.docker.io\"\n\n\
             [host.\"https://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
             ca = \"/etc/containerd/certs.d/{mirror}/ca.crt\"\n"
        )
    );
    // A plain-HTTP mirror: an http:// host, no CA.
    inv.registry.as_mut().unwrap().insecure = true;
    let files = k3s::containerd_hosts(&inv).unwrap();
    assert!(
        files[0].1.contains(&format!("[host.\"http://{mirror}\"]")),
        "{}",
        files[0].1
    );
    assert!(!files[0].1.contains("ca ="), "{}", files[0].1);
    inv.registry = None;
    assert!(k3s::containerd_hosts(&inv).is_none());
}
