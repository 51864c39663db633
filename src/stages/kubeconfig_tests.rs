#![allow(clippy::unwrap_used)]

use super::*;
use crate::stages::sample;

const K3S_YAML: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZLXZlcnktc2VjcmV0LWtleS1kYXRh
";

#[test]
fn the_server_is_rewritten_and_everything_named_after_the_cluster() {
    let inv = sample::inventory();
    assert_eq!(server_url(&inv), "https://10.0.0.1:6443");
    let doc = rewrite(K3S_YAML, "sample", &server_url(&inv)).unwrap();
    let text = serde_yaml::to_string(&doc).unwrap();
    insta::assert_snapshot!(text);
    // The client key is registered as a secret the moment it is read.
    assert_eq!(
        crate::secret::redact("key S0VZLXZlcnktc2VjcmV0LWtleS1kYXRh"),
        "key ***"
    );
    let mut with_endpoint = inv.clone();
    with_endpoint.cluster.api_endpoint = Some("k8s.lab.example".into());
    assert_eq!(server_url(&with_endpoint), "https://k8s.lab.example:6443");
    assert!(rewrite("users: []\n", "x", "https://a:6443").is_err());
}

#[test]
fn merging_keeps_other_contexts_and_replaces_ours() {
    let ours = rewrite(K3S_YAML, "sample", "https://10.0.0.1:6443").unwrap();
    let theirs = "apiVersion: v1\nkind: Config\ncurrent-context: work\nclusters:\n- name: work\n  cluster: {server: https://work:6443}\n- name: sample\n  cluster: {server: https://old:6443}\ncontexts:\n- name: work\n  context: {cluster: work, user: work}\nusers:\n- name: work\n  user: {token: abcd-work-token}\n";
    let merged = merge(theirs, &ours).unwrap();
    let names = |key: &str| -> Vec<String> {
        merged[key]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("clusters"), ["work", "sample"]);
    assert_eq!(names("contexts"), ["work", "sample"]);
    assert_eq!(names("users"), ["work", "sample"]);
    assert_eq!(
        merged["clusters"][1]["cluster"]["server"],
        "https://10.0.0.1:6443"
    );
    assert_eq!(merged["current-context"], "work");
    let fresh = merge("", &ours).unwrap();
    assert_eq!(fresh["current-context"], "sample");
    assert!(merge("clusters: {a: 1}\n", &ours).is_err());
}

#[test]
fn save_writes_0600_atomically_and_only_when_different() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/kubeconfig");
    let ours = rewrite(K3S_YAML, "sample", "https://10.0.0.1:6443").unwrap();
    let dry = save(&path, &ours, false, false).unwrap();
    assert!(dry.unwrap().starts_with("write "));
    assert!(!path.exists(), "a dry run writes nothing");
    save(&path, &ours, false, true).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(save(&path, &ours, false, true).unwrap(), None);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(save(&path, &ours, false, true).unwrap().is_some());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}
