//! Runtime checks from daemon.json and containerd/k3s files.

use crate::doctor::Severity::{Error, Ok, Skip};
use crate::doctor::testing::{Case, cluster, one};
use crate::inventory::ContainerRuntime;

const HEALTHY_JSON: &str = r#"{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}"#;

#[test]
fn docker_gpu_host_needs_nvidia_registered_and_default() {
    let f = Case::healthy("gpu1", true).findings();
    one(&f, "R5", Ok);
    one(&f, "R4", Ok);

    let f = Case::healthy("gpu1", true)
        .replace(
            HEALTHY_JSON,
            r#"{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}"#,
        )
        .findings();
    let r5 = one(&f, "R5", Error);
    assert!(r5.title.contains("the default runtime is runc"));
    assert_eq!(
        r5.fix.as_deref(),
        Some(
            "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && sudo systemctl restart docker"
        )
    );

    let f = Case::healthy("gpu1", true)
        .replace(HEALTHY_JSON, r#"{"log-driver": "json-file"}"#)
        .findings();
    assert!(one(&f, "R5", Error).title.contains("has no nvidia runtime"));
}

#[test]
fn broken_daemon_json_is_an_error_on_any_host() {
    let f = Case::healthy("cp1", false)
        .without("@@t missing /etc/docker/daemon.json")
        .with("@@t file /etc/docker/daemon.json")
        .with(r#"{"log-driver": "json-file",}"#)
        .findings();
    let r5 = one(&f, "R5", Error);
    assert!(r5.title.contains("is not valid JSON"), "{}", r5.title);
    assert!(r5.title.contains("line 1 column"));
}

#[test]
fn nothing_installed_yet_is_a_skip_and_a_missing_runtime_binary_an_error() {
    let f = Case::healthy("cp1", false).findings();
    assert!(
        one(&f, "R5", Skip)
            .title
            .contains("docker is not installed yet")
    );
    let f = Case::healthy("gpu1", true)
        .without("@@t kv bin.dockerd")
        .without("@@t kv bin.nvidia-container-runtime")
        .findings();
    one(&f, "R5", Ok);
    one(&f, "R4", Skip);
    let f = Case::healthy("gpu1", true)
        .without("@@t kv bin.nvidia-container-runtime")
        .findings();
    assert!(
        one(&f, "R4", Error)
            .title
            .contains("not installed: every container start fails")
    );
}

#[test]
fn k3s_containerd_needs_the_nvidia_runtime_on_gpu_hosts() {
    let mut case = Case::healthy("gpu1", true)
        .with("@@t kv bin.k3s=/usr/local/bin/k3s")
        .with("@@t file /var/lib/rancher/k3s/agent/etc/containerd/config.toml")
        .with("version = 2")
        .with("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]");
    case.cluster = cluster(ContainerRuntime::Containerd);
    let f = case.findings();
    assert!(
        one(&f, "R5", Error)
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("nvidia-container-toolkit"))
    );
    let case = case
        .with("@@t file /var/lib/rancher/k3s/agent/etc/containerd/config.toml")
        .with("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"nvidia\"]")
        .with("  runtime_type = \"io.containerd.runc.v2\"");
    one(&case.findings(), "R5", Ok);
}

#[test]
fn registries_yaml_must_parse() {
    let f = Case::healthy("cp1", false)
        .with("@@t file /etc/rancher/k3s/registries.yaml")
        .with("mirrors:")
        .with("  docker.io:")
        .with("    endpoint: [\"https://registry.lab:5000\"]")
        .with("configs:")
        .with("  registry.lab:5000:")
        .with("    auth: { password: \"<redacted>\" }")
        .findings();
    assert!(one(&f, "M2", Ok).title.ends_with("mirrors for: docker.io"));
    let f = Case::healthy("cp1", false)
        .with("@@t file /etc/rancher/k3s/registries.yaml")
        .with("mirrors:\n  docker.io:\n endpoint: [")
        .findings();
    one(&f, "M2", Error);
}
