//! Cross-host checks: facts of several hosts in, findings out.

use crate::doctor::CLUSTER;
use crate::doctor::Severity::{Error, Ok, Warn};
use crate::doctor::testing::Case;

use super::{Facts, check};

fn facts(cases: &[Case]) -> Vec<Facts> {
    cases.iter().map(Case::facts).collect()
}

#[test]
fn identical_hosts_only_report_the_clock() {
    let f = check(&facts(&[
        Case::healthy("node1", false),
        Case::healthy("node2", true),
        Case::healthy("node3", true),
    ]));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].id.as_str(), f[0].severity, f[0].host.as_str()),
        ("H12", Ok, CLUSTER)
    );
}

#[test]
fn the_odd_kernel_mtu_and_gpu_count_are_flagged_on_their_host() {
    let f = check(&facts(&[
        Case::healthy("node1", true),
        Case::healthy("node2", true)
            .replace(
                "@@t kv kernel=6.1.0-18-amd64",
                "@@t kv kernel=6.1.0-17-amd64",
            )
            .without("GPU 3: "),
        Case::healthy("node3", true).replace(
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP",
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9000 qdisc mq state UP",
        ),
    ]));
    let got: Vec<(&str, &str)> = f
        .iter()
        .filter(|f| f.severity == Warn)
        .map(|f| (f.id.as_str(), f.host.as_str()))
        .collect();
    assert_eq!(
        got,
        [("C1", "node2"), ("N3", "node3"), ("C5", "node2")],
        "{f:#?}"
    );
    let c1 = f.iter().find(|f| f.id == "C1").map(|f| f.title.clone());
    assert_eq!(
        c1.as_deref(),
        Some("kernel is 6.1.0-17-amd64, while 2 other host(s) have 6.1.0-18-amd64")
    );
}

#[test]
fn a_tie_is_a_cluster_finding() {
    let f = check(&facts(&[
        Case::healthy("node1", false),
        Case::healthy("node2", false)
            .replace("iptables v1.8.9 (nf_tables)", "iptables v1.8.9 (legacy)"),
    ]));
    let c4 = f
        .iter()
        .find(|f| f.id == "C4")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!((c4.host.as_str(), c4.severity), (CLUSTER, Warn));
    assert_eq!(c4.evidence, ["nf_tables: node1", "legacy: node2"]);
}

#[test]
fn a_duplicate_hostname_is_an_error_on_the_host_that_is_not_named_so() {
    // node2's /etc/hostname says node1: after a reboot both are node1.
    let mut node2 = Case::healthy("node2", false);
    let at = node2
        .lines
        .iter()
        .position(|l| l == "@@t file /etc/hostname")
        .unwrap_or(0);
    node2.lines[at + 1] = "node1".into();
    let f = check(&facts(&[Case::healthy("node1", false), node2]));
    let h7: Vec<_> = f.iter().filter(|f| f.id == "H7").collect();
    assert_eq!(h7.len(), 1, "{f:#?}");
    assert_eq!((h7[0].host.as_str(), h7[0].severity), ("node2", Error));
    assert!(
        h7[0]
            .title
            .starts_with("hostname node1 is also used by node1")
    );
    assert_eq!(
        h7[0].fix.as_deref(),
        Some("sudo hostnamectl set-hostname node2")
    );
    // Two hosts named alike, neither by its inventory name: both are flagged.
    let f = check(&facts(&[
        Case::healthy("a", false).replace("@@t kv uname_n=a", "@@t kv uname_n=x"),
        Case::healthy("b", false).replace("@@t kv uname_n=b", "@@t kv uname_n=x"),
    ]));
    assert_eq!(
        f.iter()
            .filter(|f| f.id == "H7" && f.severity == Error)
            .count(),
        2
    );
}

#[test]
fn clock_skew_is_an_error_only_when_the_measurement_proves_it() {
    let late = Case::healthy("node2", false);
    let sent = late.sent_ns;
    // node2's clock reads 3 s ahead of this machine's.
    let late = late
        .replace(
            &format!("@@t kv time_start={}", sent + 1_000_000),
            &format!("@@t kv time_start={}", sent + 3_001_000_000),
        )
        .replace(
            &format!("@@t kv time_end={}", sent + 50_000_000),
            &format!("@@t kv time_end={}", sent + 3_050_000_000),
        );
    let f = check(&facts(&[Case::healthy("node1", false), late]));
    let h12 = f
        .iter()
        .find(|f| f.id == "H12")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(h12.severity, Error);
    assert!(
        h12.title
            .starts_with("clocks differ by at least 2.9 s (node2 ahead of node1)"),
        "{}",
        h12.title
    );
}
