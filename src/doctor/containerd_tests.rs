use super::{disabled_plugins, registry_of};
use crate::doctor::Severity;
use crate::doctor::reads::{MirrorProbe, ScriptPlan};
use crate::doctor::testing::{Case, cluster, one};
use crate::inventory::{ContainerRuntime, Distribution};

/// A kubeadm host with containerd installed and `config` as its config.toml.
fn kubeadm(config: &[&str]) -> Case {
    let mut c = Case::healthy("w1", false).with("@@t kv bin.containerd=/usr/bin/containerd");
    c.cluster = cluster(ContainerRuntime::Containerd);
    c.cluster.distribution = Distribution::Kubeadm;
    c.plan = ScriptPlan {
        mirror: Some(MirrorProbe {
            mirror: "registry.lab:5000".into(),
            insecure: false,
        }),
        ..ScriptPlan::default()
    };
    c = c.with("@@t file /etc/containerd/config.toml");
    for l in config {
        c = c.with(l);
    }
    c.with("")
}

#[test]
fn parses_disabled_plugins() {
    let lines = vec![
        "# Docker's".to_string(),
        "disabled_plugins = [\"cri\"]".to_string(),
    ];
    assert_eq!(disabled_plugins(&lines), Some((2, vec!["cri".to_string()])));
    assert_eq!(registry_of("registry.k8s.io/pause:3.9"), "registry.k8s.io");
    assert_eq!(registry_of("rancher/mirrored-pause:3.6"), "docker.io");
    assert_eq!(
        registry_of("registry.lab:5000/pause:3.9"),
        "registry.lab:5000"
    );
}

#[test]
fn a_disabled_cri_plugin_is_an_error_with_the_edit() {
    let f = kubeadm(&["disabled_plugins = [\"cri\"]"]).findings();
    let e = one(&f, "R2", Severity::Error);
    assert_eq!(
        e.evidence,
        ["/etc/containerd/config.toml:1: disabled_plugins = [\"cri\"]"]
    );
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|x| x.contains("systemctl restart containerd"))
    );
    let ok = kubeadm(&["version = 2", "disabled_plugins = []"]).findings();
    one(&ok, "R2", Severity::Ok);
}

#[test]
fn the_sandbox_image_must_come_through_the_mirror() {
    let public = kubeadm(&[
        "[plugins.\"io.containerd.grpc.v1.cri\"]",
        "  sandbox_image = \"registry.k8s.io/pause:3.9\"",
    ])
    .findings();
    let e = one(&public, "R7", Severity::Error);
    assert!(e.title.contains("comes from registry.k8s.io"), "{e:?}");
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|x| x.contains("\"registry.lab:5000/pause:3.9\""))
    );

    let direct = kubeadm(&["  sandbox_image = \"registry.lab:5000/pause:3.9\""]).findings();
    one(&direct, "R7", Severity::Ok);

    let rewritten = kubeadm(&[
        "  sandbox_image = \"registry.k8s.io/pause:3.9\"",
        "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry.k8s.io\"]",
        "  endpoint = [\"https://registry.lab:5000\"]",
    ])
    .findings();
    assert!(
        one(&rewritten, "R7", Severity::Ok)
            .title
            .contains("through the mirror")
    );

    let default = kubeadm(&["version = 2"]).findings();
    let e = one(&default, "R7", Severity::Error);
    assert!(e.evidence[0].contains("no sandbox_image (default registry.k8s.io/pause"));
}

#[test]
fn docker_hosts_skip_containerd_checks() {
    let f = Case::healthy("w1", false).findings();
    one(&f, "R2", Severity::Skip);
    one(&f, "R7", Severity::Skip);
}

/// R2's live half: what the running containerd says of its CRI plugin.
#[test]
fn the_running_containerd_must_have_its_cri_plugin_ok() {
    let with_plugins = |rows: &[&str], status: i32| {
        let mut c = kubeadm(&["version = 2"]).with("@@t cmd ctr_plugins");
        c = c
            .with("TYPE                            ID                       PLATFORMS      STATUS");
        for r in rows {
            c = c.with(r);
        }
        c.with(&format!("@@t status ctr_plugins {status}"))
            .findings()
    };
    let content = "io.containerd.content.v1        content                  -              ok";
    let ok = with_plugins(
        &[
            content,
            "io.containerd.grpc.v1           cri                      linux/amd64    ok",
        ],
        0,
    );
    let r2 = one(&ok, "R2", Severity::Ok);
    assert!(r2.title.contains("CRI plugin is ok"), "{r2:?}");
    assert!(r2.evidence[0].starts_with("ctr plugins ls: io.containerd.grpc.v1"));

    let failed = with_plugins(
        &["io.containerd.grpc.v1           cri                      linux/amd64    error"],
        0,
    );
    let e = one(&failed, "R2", Severity::Error);
    assert!(e.title.contains("did not start (error)"), "{e:?}");
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|x| x.contains("journalctl -u containerd"))
    );

    let stale = with_plugins(&[content], 0);
    let e = one(&stale, "R2", Severity::Error);
    assert!(e.title.contains("has not been restarted"), "{e:?}");

    // containerd did not answer (K2 says whether it runs): the config's word stands.
    let down = with_plugins(
        &["ctr: failed to dial \"/run/containerd/containerd.sock\""],
        1,
    );
    let r2 = one(&down, "R2", Severity::Ok);
    assert!(r2.evidence.is_empty(), "{r2:?}");
}
