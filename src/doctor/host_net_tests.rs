use super::covered;
use crate::doctor::Severity;
use crate::doctor::testing::{Case, one};

fn listening(case: Case, lines: &[&str]) -> Case {
    let mut c = case.with("@@t cmd listen");
    for l in lines {
        c = c.with(l);
    }
    c.with("@@t status listen 0")
}

const SSH: &str = "tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*";

#[test]
fn free_ports_pass_and_a_taken_port_names_its_role() {
    let ok = listening(Case::healthy("s1", false), &[SSH]).findings();
    assert!(one(&ok, "H8", Severity::Ok).title.contains("6443/tcp"));

    let taken = listening(
        Case::healthy("s1", false),
        &[
            SSH,
            "tcp LISTEN 0 5 0.0.0.0:10250 0.0.0.0:* users:((\"python3\",pid=7,fd=3))",
        ],
    )
    .findings();
    let f = one(&taken, "H8", Severity::Error);
    assert!(f.title.contains("port 10250/tcp (kubelet)"), "{f:?}");
    assert!(f.evidence[0].contains("python3"));
    assert!(
        f.fix
            .as_deref()
            .is_some_and(|x| x.contains("sport = :10250"))
    );
}

#[test]
fn after_install_the_listeners_are_the_clusters_own() {
    let f = listening(
        Case::healthy("s1", false).with("@@t kv bin.k3s=/usr/local/bin/k3s"),
        &[
            SSH,
            "tcp LISTEN 0 4096 *:6443 *:*",
            "tcp LISTEN 0 4096 *:10250 *:*",
        ],
    )
    .findings();
    assert!(one(&f, "H8", Severity::Ok).title.contains("its own"));
}

#[test]
fn an_enabled_ufw_warns_with_the_ports_to_allow() {
    let f = listening(Case::healthy("s1", false), &[SSH])
        .with("@@t file /etc/ufw/ufw.conf")
        .with("ENABLED=yes")
        .findings();
    let w = one(&f, "H8", Severity::Warn);
    let fix = w.fix.as_deref().unwrap_or("");
    assert!(
        fix.contains("sudo ufw allow 6443/tcp") && fix.contains("8472/udp"),
        "{fix}"
    );
}

#[test]
fn no_proxy_coverage_follows_the_usual_rules() {
    let e: Vec<String> = "localhost,127.0.0.1,10.0.0.0/8,.lab,mirror.site:5000"
        .split(',')
        .map(str::to_string)
        .collect();
    assert!(covered(&e, "10.42.0.0/16"));
    assert!(covered(&e, "10.0.0.7"));
    assert!(covered(&e, "registry.lab:5000"));
    assert!(covered(&e, "mirror.site:5000"));
    assert!(!covered(&e, "192.168.1.5"));
    assert!(!covered(&e, "lab.example"));
    assert!(covered(&["*".to_string()], "anything"));
}

#[test]
fn a_daemon_proxy_without_the_cluster_in_no_proxy_is_an_error_with_the_full_line() {
    let f = Case::healthy("s1", false)
        .with("@@t file /etc/systemd/system/containerd.service.d/http-proxy.conf")
        .with("[Service]")
        .with("Environment=\"HTTPS_PROXY=http://proxy:3128\" \"NO_PROXY=localhost,127.0.0.1\"")
        .findings();
    let e = one(&f, "H9", Severity::Error);
    assert!(e.title.contains("containerd.service"), "{e:?}");
    assert!(e.title.contains("10.42.0.0/16") && e.title.contains("10.43.0.0/16"));
    let fix = e.fix.as_deref().unwrap_or("");
    assert!(
        fix.contains("NO_PROXY=localhost,127.0.0.1,10.42.0.0/16,10.43.0.0/16")
            && fix.contains("/etc/systemd/system/containerd.service.d/zz-no-proxy.conf")
            && fix.contains("systemctl restart containerd.service"),
        "{fix}"
    );

    let ok = Case::healthy("s1", false)
        .with("@@t cmd proxy_env")
        .with("https_proxy=http://proxy:3128")
        .with("no_proxy=localhost,127.0.0.1,10.0.0.0/8")
        .with("@@t status proxy_env 0")
        .findings();
    one(&ok, "H9", Severity::Ok);
    let none = Case::healthy("s1", false).findings();
    assert_eq!(one(&none, "H9", Severity::Ok).title, "no proxy configured");
}
