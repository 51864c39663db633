//! What breaks after a reboot: live and persisted state in, findings out.

use crate::doctor::Severity::{Error, Info, Ok, Warn};
use crate::doctor::testing::{Case, one};

#[test]
fn swap_now_and_swap_in_fstab_are_both_errors() {
    let f = Case::healthy("cp1", false)
        .with("@@t file /proc/swaps")
        .with("Filename Type Size Used Priority")
        .with("/swapfile file 2097148 0 -2")
        .with("@@t file /etc/fstab")
        .with("# swap was on /dev/sda5 during installation")
        .with("UUID=1 / ext4 defaults 0 1")
        .with("/swapfile none swap sw 0 0")
        .with("/dev/sdb2 none swap noauto 0 0")
        .findings();
    let live = f
        .iter()
        .find(|f| f.id == "H2" && f.title.starts_with("swap is on"));
    assert_eq!(live.and_then(|f| f.fix.as_deref()), Some("sudo swapoff -a"));
    let boot = f
        .iter()
        .find(|f| f.id == "H2" && f.title.contains("fstab"))
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(boot.severity, Error);
    assert_eq!(boot.evidence, ["/etc/fstab:3: /swapfile none swap sw 0 0"]);
    assert!(
        boot.fix
            .as_deref()
            .is_some_and(|x| x.contains("/etc/fstab"))
    );
}

#[test]
fn an_unpersisted_sysctl_is_an_error_with_the_line_that_persists_it() {
    let f = Case::healthy("cp1", false)
        .without("net.ipv4.ip_forward = 1")
        .findings();
    let h5 = one(&f, "H5", Error);
    assert_eq!(
        h5.title,
        "net.ipv4.ip_forward = 1 is not persisted: it is lost at the next reboot"
    );
    assert_eq!(
        h5.fix.as_deref(),
        Some("echo 'net.ipv4.ip_forward = 1' | sudo tee -a /etc/sysctl.d/99-kubernetes.conf")
    );
}

#[test]
fn a_later_file_that_turns_a_sysctl_off_wins_and_is_named() {
    let f = Case::healthy("cp1", false)
        .with("@@t file /etc/sysctl.d/99-zz-local.conf")
        .with("# local tuning")
        .with("net.ipv4.ip_forward=0")
        .findings();
    let h5 = one(&f, "H5", Error);
    assert!(
        h5.title
            .starts_with("/etc/sysctl.d/99-zz-local.conf:2 sets net.ipv4.ip_forward = 0"),
        "{}",
        h5.title
    );
    assert_eq!(
        h5.fix.as_deref(),
        Some("sudo sed -i '2s/.*/net.ipv4.ip_forward = 1/' /etc/sysctl.d/99-zz-local.conf")
    );
    // /etc hides a same-named file in /usr/lib, whatever it says.
    let f = Case::healthy("cp1", false)
        .with("@@t file /usr/lib/sysctl.d/99-kubernetes.conf")
        .with("net.ipv4.ip_forward = 0")
        .findings();
    one(&f, "H5", Ok);
}

#[test]
fn live_values_off_are_errors_with_the_command_that_sets_them() {
    let f = Case::healthy("cp1", false)
        .replace(
            "@@t kv sysctl.net.ipv4.ip_forward=1",
            "@@t kv sysctl.net.ipv4.ip_forward=0",
        )
        .findings();
    assert_eq!(
        one(&f, "H5", Error).fix.as_deref(),
        Some("sudo sysctl -w net.ipv4.ip_forward=1")
    );
    // br_netfilter not loaded: the bridge sysctl does not exist, the module is absent.
    let f = Case::healthy("cp1", false)
        .without("@@t kv sysctl.net.bridge")
        .without("@@t kv module=br_netfilter")
        .findings();
    let errors: Vec<_> = f
        .iter()
        .filter(|f| f.id == "H5" && f.severity == Error)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].title,
        "module br_netfilter is not loaded: bridged pod traffic skips iptables"
    );
    assert_eq!(errors[0].fix.as_deref(), Some("sudo modprobe br_netfilter"));
    assert!(
        errors[1]
            .title
            .contains("does not exist: br_netfilter is not loaded")
    );
}

#[test]
fn a_loaded_module_missing_from_modules_load_d_breaks_at_reboot() {
    let f = Case::healthy("cp1", false)
        .replace("br_netfilter", "# br_netfilter")
        .findings();
    let h5 = one(&f, "H5", Error);
    assert!(
        h5.title
            .contains("module br_netfilter is loaded now but not at boot")
    );
    assert_eq!(
        h5.fix.as_deref(),
        Some("echo br_netfilter | sudo tee -a /etc/modules-load.d/kubernetes.conf")
    );
    // Debian's /etc/modules counts too.
    let f = Case::healthy("cp1", false)
        .replace("br_netfilter", "# br_netfilter")
        .with("@@t file /etc/modules")
        .with("br_netfilter")
        .findings();
    one(&f, "H5", Ok);
}

#[test]
fn a_builtin_module_missing_from_modules_load_d_is_only_info() {
    // A kernel without module support: no /proc/modules, br_netfilter built in.
    let f = Case::healthy("cp1", false)
        .replace("@@t kv proc_modules=yes", "@@t kv proc_modules=no")
        .without("@@t kv module=")
        .replace("br_netfilter", "# br_netfilter")
        .findings();
    let info = one(&f, "H5", Info);
    assert!(
        info.title
            .starts_with("br_netfilter is built into this kernel")
    );
    assert!(info.fix.is_some());
    assert!(
        !f.iter().any(|f| f.id == "H5" && f.severity == Error),
        "{f:#?}"
    );
}

#[test]
fn kernel_limits_warn_when_low_and_say_when_persisted_but_not_applied() {
    let f = Case::healthy("cp1", false)
        .replace(
            "@@t kv sysctl.fs.inotify.max_user_instances=8192",
            "@@t kv sysctl.fs.inotify.max_user_instances=128",
        )
        .findings();
    let h11 = one(&f, "H11", Warn);
    assert!(h11.title.contains("is 128 (want ≥ 1280); /etc/sysctl.d/99-kubernetes.conf:3 sets 8192 but it is not applied"), "{}", h11.title);
    assert_eq!(h11.fix.as_deref(), Some("sudo sysctl --system"));
    let f = Case::healthy("cp1", false)
        .replace(
            "@@t kv sysctl.fs.inotify.max_user_instances=8192",
            "@@t kv sysctl.fs.inotify.max_user_instances=128",
        )
        .without("fs.inotify.max_user_instances = 8192")
        .findings();
    assert!(one(&f, "H11", Warn).fix.as_deref().is_some_and(|x| {
        x.starts_with("echo 'fs.inotify.max_user_instances = 1280' | sudo tee -a")
    }));
}

#[test]
fn kernel_limits_warn_when_a_file_lowers_a_good_live_value_at_boot() {
    let f = Case::healthy("cp1", false)
        .replace(
            "fs.inotify.max_user_instances = 8192",
            "fs.inotify.max_user_instances = 128",
        )
        .findings();
    let h11 = one(&f, "H11", Warn);
    assert!(
        h11.title.contains(
            "is 8192 now, but /etc/sysctl.d/99-kubernetes.conf:3 lowers it to 128 at boot"
        ),
        "{}",
        h11.title
    );
    assert_eq!(
        h11.fix.as_deref(),
        Some(
            "sudo sed -i '3s/.*/fs.inotify.max_user_instances = 1280/' /etc/sysctl.d/99-kubernetes.conf"
        )
    );
}
