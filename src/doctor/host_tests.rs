//! Host checks: evidence text in, findings out.

use crate::doctor::Severity::{Error, Ok, Skip, Warn};
use crate::doctor::testing::{Case, assert_clean, one};
use crate::transport::SudoMode;

#[test]
fn a_healthy_server_and_gpu_worker_pass_everything() {
    assert_clean(&Case::healthy("cp1", false).findings());
    assert_clean(&Case::healthy("gpu1", true).findings());
}

#[test]
fn no_root_and_a_small_server_are_errors() {
    let mut case = Case::healthy("cp1", false)
        .replace("@@t kv nproc=4", "@@t kv nproc=1")
        .replace("@@t kv meminfo_kib=16384000", "@@t kv meminfo_kib=1024000");
    case.sudo = SudoMode::Unavailable;
    let f = case.findings();
    let root = &f
        .iter()
        .filter(|f| f.id == "H1" && f.severity == Error)
        .collect::<Vec<_>>();
    assert_eq!(root.len(), 2, "{f:#?}");
    assert!(root[0].title.contains("ops cannot become root"));
    assert!(
        root[0]
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("/etc/sudoers.d/ops"))
    );
    assert!(
        root[1]
            .title
            .contains("1 CPU(s), a server needs at least 2")
    );
    assert!(root[1].title.contains("1000 MiB of memory"));
}

#[test]
fn missing_kernel_options_are_named_and_an_unreadable_config_is_a_skip() {
    let f = Case::healthy("cp1", false)
        .without("CONFIG_VXLAN")
        .replace("CONFIG_OVERLAY_FS=m", "# CONFIG_OVERLAY_FS is not set")
        .findings();
    let h3 = one(&f, "H3", Error);
    assert!(
        h3.title.ends_with("lacks CONFIG_VXLAN, CONFIG_OVERLAY_FS"),
        "{}",
        h3.title
    );
    let f = Case::healthy("cp1", false)
        .without("@@t kv kconfig_source")
        .findings();
    assert!(one(&f, "H3", Skip).title.contains("config not readable"));
    let f = Case::healthy("cp1", false)
        .replace(
            "@@t kv kernel=6.1.0-18-amd64",
            "@@t kv kernel=4.4.0-210-generic",
        )
        .findings();
    assert!(one(&f, "H3", Warn).title.contains("older than 4.19"));
}

#[test]
fn cgroup_v1_warns_and_missing_controllers_are_errors() {
    let f = Case::healthy("cp1", false)
        .replace("@@t kv cgroup_fs=cgroup2fs", "@@t kv cgroup_fs=tmpfs")
        .with("@@t kv cgroup_dirs=blkio cpu cpuacct cpuset devices freezer memory pids systemd")
        .findings();
    assert!(
        one(&f, "H4", Warn)
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("systemd.unified_cgroup_hierarchy=1"))
    );
    let f = Case::healthy("cp1", false)
        .replace(
            "@@t kv cgroup_controllers=cpuset cpu io memory hugetlb pids rdma misc",
            "@@t kv cgroup_controllers=cpu io pids",
        )
        .findings();
    assert!(one(&f, "H4", Error).title.contains("cpuset, memory"));
}

#[test]
fn missing_binaries_name_their_package_and_old_nft_iptables_is_an_error() {
    let f = Case::healthy("cp1", false)
        .without("@@t kv bin.mount=")
        .without("@@t kv bin.nsenter=")
        .findings();
    let h6 = one(&f, "H6", Error);
    assert_eq!(h6.title, "missing mount, nsenter");
    assert!(
        h6.fix
            .as_deref()
            .is_some_and(|x| x.starts_with("sudo apt-get install -y mount util-linux"))
    );
    let f = Case::healthy("cp1", false)
        .replace("iptables v1.8.9 (nf_tables)", "iptables v1.8.2 (nf_tables)")
        .findings();
    assert!(
        one(&f, "H6", Error)
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("iptables-legacy"))
    );
    assert_eq!(
        super::parse_iptables("iptables v1.6.1"),
        Some(((1, 6, 1), "legacy".to_string()))
    );
}

#[test]
fn hostnames_must_be_dns1123_resolve_and_survive_a_reboot() {
    let f = Case::healthy("GPU_01", false).findings();
    let h7 = one(&f, "H7", Error);
    assert!(
        h7.title
            .contains("\"GPU_01\" is not a valid Kubernetes node name")
    );
    assert_eq!(
        h7.fix.as_deref(),
        Some("sudo hostnamectl set-hostname gpu-01")
    );

    let f = Case::healthy("cp1", false)
        .replace("@@t status getent 0", "@@t status getent 2")
        .findings();
    assert_eq!(
        one(&f, "H7", Error).fix.as_deref(),
        Some("echo '10.0.0.1 cp1' | sudo tee -a /etc/hosts")
    );

    let mut case = Case::healthy("cp1", false);
    let at = case
        .lines
        .iter()
        .position(|l| l == "@@t file /etc/hostname")
        .unwrap_or(0);
    case.lines[at + 1] = "cp2".into();
    let f = case.findings();
    assert!(
        one(&f, "H7", Warn)
            .title
            .contains("changes from cp1 to cp2 at the next reboot")
    );
    assert!(super::is_dns1123("gpu01.lab"));
    assert!(!super::is_dns1123("-gpu"));
}

#[test]
fn a_route_inside_the_pod_cidr_is_an_error_but_cluster_interfaces_are_not() {
    let f = Case::healthy("cp1", false)
        .replace(
            "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1",
            "10.42.0.0/24 dev eth1 proto kernel scope link src 10.42.0.5",
        )
        .findings();
    let h10 = one(&f, "H10", Error);
    assert!(
        h10.evidence[0].contains("overlaps cluster.pod_cidr 10.42.0.0/16"),
        "{h10:?}"
    );
    let f = Case::healthy("cp1", false)
        .with("@@t cmd ip_route")
        .with("default via 10.0.0.254 dev eth0")
        .with("10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink")
        .with("@@t status ip_route 0")
        .findings();
    one(&f, "H10", Ok);
}

#[test]
fn time_sync_and_disk_usage() {
    let f = Case::healthy("cp1", false).replace("yes", "no").findings();
    assert!(one(&f, "H12", Warn).title.contains("not synchronised"));
    let f = Case::healthy("cp1", false)
        .without("@@t cmd ntp_sync")
        .without("yes")
        .without("@@t status ntp_sync")
        .findings();
    assert!(one(&f, "H12", Warn).title.contains("no time sync client"));
    let f = Case::healthy("cp1", false)
        .replace(
            "/dev/sda1 102400 40960 61440 40% /",
            "/dev/sda1 102400 99000 3400 97% /",
        )
        .findings();
    let h13 = one(&f, "H13", Error);
    assert_eq!(h13.title, "/ (/): 97% of space used");
    assert!(!f.iter().any(|f| f.id == "H13" && f.severity == Ok));
}
