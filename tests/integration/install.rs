//! `gpuctl plan` and `gpuctl install` against real lab nodes: what plan shows and leaves
//! alone, what install converges, checkpoints and resume, a node dying mid-stage, and the
//! lock that keeps two installs apart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::lab::{Lab, LabSpec};

const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// The stages these tests leave out: they need a bundle with k3s (see kubernetes.rs).
const HOST_ONLY: &str = "kubernetes,ready,kubeconfig";

fn install(lab: &Lab, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["install", "--yes"])
        .args(extra.iter().copied())
        .inventory(&lab.inventory)
        .run()
}

/// A digest of every file under /etc and /var/lib/gpuctl on a node (as root).
fn etc_digest(lab: &Lab, node: &str) -> String {
    lab.exec(
        node,
        "find /etc /var/lib/gpuctl -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum",
    )
}

/// The cluster's state directory beside the lab inventory.
fn state_dir(lab: &Lab) -> PathBuf {
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: lab-"))
        .unwrap_or_else(|| panic!("no cluster name in {}", lab.inventory.display()));
    lab.dir().join(".gpuctl").join(format!("lab-{name}"))
}

/// Waits until `path` exists on `node`, at most `deadline`.
fn wait_for_file(lab: &Lab, node: &str, path: &str, deadline: Duration) {
    let start = Instant::now();
    while !lab
        .exec_output(node, &format!("test -e {path}"))
        .status
        .success()
    {
        assert!(
            start.elapsed() < deadline,
            "{path} did not appear on {node} within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `modprobe` that says it started (`/tmp/modprobe-started`) and then waits while
/// `/tmp/hold` exists (at most 120 s): a stage that is visibly in the middle of applying.
/// sudo's secure_path puts /usr/local/sbin first, so the os stage's apply script finds it.
/// The node also gets a modules directory for its kernel: without one the probe knows no
/// module can be loaded there and the stage would not try.
fn hold_modprobe(lab: &Lab, node: &str) {
    lab.exec(
        node,
        "touch /tmp/hold && printf '%s\\n' '#!/bin/sh' 'touch /tmp/modprobe-started' \
         'i=0; while [ -e /tmp/hold ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done' \
         > /usr/local/sbin/modprobe && chmod 755 /usr/local/sbin/modprobe \
         && mkdir -p /lib/modules/$(uname -r)",
    );
}

fn table_row<'a>(out: &'a Outcome, host: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host) && l.contains('s'))
        .filter(|l| !l.starts_with("=="))
        .unwrap_or_else(|| panic!("no table row for {host}:\n{}", out.stdout))
}

#[test]
fn plan_shows_the_changes_and_writes_nothing_nor_does_an_unconfirmed_install() {
    let lab = Lab::up(&LabSpec::new(2));
    let before: Vec<String> = ["node1", "node2"]
        .iter()
        .map(|n| etc_digest(&lab, n))
        .collect();

    let out = Gpuctl::new()
        .args(["plan", "--skip", HOST_ONLY])
        .inventory(&lab.inventory)
        .run()
        .success();
    let node1_ip = &lab.node("node1").ip;
    let node2_ip = &lab.node("node2").ip;
    for needle in [
        "== node1",
        "== node2",
        "preflight  ok",
        "~ block hosts in /etc/hosts",
        "+# BEGIN gpuctl hosts",
        &format!("+{node1_ip} node1"),
        &format!("+{node2_ip} node2"),
        "~ block os in /etc/sysctl.d/90-gpuctl.conf",
        "+net.ipv4.ip_forward = 1",
        "+br_netfilter",
        "to make",
    ] {
        assert!(
            out.stdout.contains(needle),
            "plan lacks {needle:?}:\n{}",
            out.stdout
        );
    }
    // Without a terminal to confirm on, install refuses unless told --yes, before it
    // touches anything.
    Gpuctl::new()
        .args(["install", "--skip", HOST_ONLY])
        .inventory(&lab.inventory)
        .run()
        .code(2)
        .stderr_has("pass --yes");
    let after: Vec<String> = ["node1", "node2"]
        .iter()
        .map(|n| etc_digest(&lab, n))
        .collect();
    assert_eq!(
        before, after,
        "plan or an unconfirmed install changed files on a node"
    );
    assert!(
        !state_dir(&lab).join("state.json").exists(),
        "plan wrote a journal"
    );
    assert!(!state_dir(&lab).join("install.lock").exists());
}

#[test]
fn install_converges_skips_when_done_and_reruns_only_what_changed() {
    let lab = Lab::up(&LabSpec::new(2));
    lab.exec("node2", "echo '/swapfile none swap sw 0 0' >> /etc/fstab");
    // The lab's /etc/hosts is a bind mount, as in every container: rename onto it fails.
    lab.exec("node1", "grep -q ' /etc/hosts ' /proc/self/mountinfo");

    let out = install(&lab, &["--only", "os"]).success();
    assert!(out.stdout.contains("changes made"), "{}", out.stdout);
    let (ip1, ip2) = (&lab.node("node1").ip, &lab.node("node2").ip);
    for node in ["node1", "node2"] {
        let hosts = lab.exec(node, "cat /etc/hosts");
        assert!(
            hosts.contains(&format!(
                "# BEGIN gpuctl hosts\n{ip1} node1\n{ip2} node2\n# END gpuctl hosts\n"
            )),
            "{node}:\n{hosts}"
        );
        // Docker's own lines are still there.
        assert!(hosts.contains("localhost"), "{hosts}");
        let sysctl = lab.exec(node, "cat /etc/sysctl.d/90-gpuctl.conf");
        assert!(sysctl.contains("net.ipv4.ip_forward = 1\n"), "{sysctl}");
        assert!(
            sysctl.contains("net.bridge.bridge-nf-call-iptables = 1\n"),
            "{sysctl}"
        );
        assert!(
            sysctl.contains("fs.inotify.max_user_watches = 655360\n"),
            "{sysctl}"
        );
        let modules = lab.exec(node, "cat /etc/modules-load.d/gpuctl.conf");
        assert_eq!(
            modules,
            "# BEGIN gpuctl os\noverlay\nbr_netfilter\n# END gpuctl os\n"
        );
        lab.exec(node, "test ! -e /var/lib/gpuctl/install.lock");
        let journal = lab.exec(node, "cat /var/lib/gpuctl/state.json");
        assert!(
            journal.contains("\"os\"") && journal.contains("success"),
            "{journal}"
        );
    }
    let fstab = lab.exec("node2", "cat /etc/fstab");
    assert!(fstab.contains("# /swapfile none swap sw 0 0"), "{fstab}");
    // The in-place write kept a backup of the bind-mounted file.
    lab.exec("node1", "test -f /etc/hosts.gpuctl-backup");

    let again = install(&lab, &["--only", "os"]).success();
    assert!(
        again.stdout.contains("skipped: done since"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("0 changes made"), "{}", again.stdout);
    let plan = Gpuctl::new()
        .args(["plan", "--skip", HOST_ONLY])
        .inventory(&lab.inventory)
        .run()
        .success();
    assert!(plan.stdout.contains("0 changes to make"), "{}", plan.stdout);

    // --verify probes os again: on hosts in sync that is one round trip between facts and
    // the lock's release, and the host's journal, with nothing new to say, is not rewritten
    // (a container's read-only /proc/sys and missing modules are not even tried).
    let journal_mtime = "stat -c %.9Y /var/lib/gpuctl/state.json";
    let before = lab.exec("node1", journal_mtime);
    let verify = install(&lab, &["--only", "os", "--verify"]).success();
    assert!(
        verify.stdout.contains("0 changes made"),
        "{}",
        verify.stdout
    );
    assert_eq!(lab.exec("node1", journal_mtime), before);
    let runs = state_dir(&lab).join("runs");
    let last = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max()
        .unwrap_or_else(|| panic!("no run logs in {}", runs.display()));
    let log = std::fs::read_to_string(last.join("node1.log")).unwrap_or_default();
    let commands = log
        .lines()
        .filter(|l| l.ends_with(" run (as root):"))
        .count();
    assert_eq!(commands, 3, "facts, one probe, the lock's release:\n{log}");

    // A full install runs preflight (never checkpointed) and skips os; then a new data
    // directory in the inventory re-runs os, and only os, on every host.
    let full = install(&lab, &["--skip", HOST_ONLY]).success();
    assert!(full.stdout.contains("preflight  ok"), "{}", full.stdout);
    assert!(
        full.stdout.contains("os         skipped"),
        "{}",
        full.stdout
    );
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let text = text.replacen(
        "cluster:\n",
        "cluster:\n  data_dir: /srv/gpuctl-test/k3s\n",
        1,
    );
    std::fs::write(&lab.inventory, text).unwrap_or_else(|e| panic!("{e}"));
    let changed = install(&lab, &["--skip", HOST_ONLY]).success();
    for node in ["node1", "node2"] {
        lab.exec(node, "test -d /srv/gpuctl-test/k3s");
    }
    assert_eq!(
        changed
            .stdout
            .matches("~ command `mkdir -p -m 0755 /srv/gpuctl-test/k3s`")
            .count(),
        2,
        "{}",
        changed.stdout
    );
    assert!(changed.stdout.contains("1 changed"), "{}", changed.stdout);
    assert!(
        changed.stdout.contains("2 changes made"),
        "{}",
        changed.stdout
    );
}

#[test]
fn a_node_killed_mid_stage_fails_alone_and_a_rerun_resumes_it() {
    let lab = Lab::up(&LabSpec::new(3));
    hold_modprobe(&lab, "node3");
    let running = Gpuctl::new()
        .args(["install", "--yes", "--only", "os"])
        .inventory(&lab.inventory)
        .spawn();
    wait_for_file(
        &lab,
        "node3",
        "/tmp/modprobe-started",
        Duration::from_secs(60),
    );
    lab.kill("node3");
    let out = running.wait(RUN_DEADLINE).code(1);

    assert!(table_row(&out, "node1").contains("ok"), "{}", out.stdout);
    assert!(table_row(&out, "node2").contains("ok"), "{}", out.stdout);
    let row = table_row(&out, "node3");
    assert!(
        row.contains("os") && row.contains("FAILED"),
        "{}",
        out.stdout
    );
    let resume = format!(
        "resume with: gpuctl install --inventory {} --only os --yes",
        lab.inventory.display()
    );
    assert!(out.stdout.contains(&resume), "{}", out.stdout);
    let journal = std::fs::read_to_string(state_dir(&lab).join("state.json")).unwrap_or_default();
    assert!(journal.contains("\"failed\""), "{journal}");

    lab.start("node3");
    lab.exec("node3", "rm -f /tmp/hold /usr/local/sbin/modprobe");
    // The host's own journal was marked before os changed anything, so a workstation
    // that reads it does not take os for done.
    let host_journal = lab.exec("node3", "cat /var/lib/gpuctl/state.json");
    assert!(
        host_journal.contains("its run ended while it was changing the host"),
        "{host_journal}"
    );
    // The lock the killed run left on node3 belongs to a gpuctl that has ended.
    lab.exec("node3", "test -e /var/lib/gpuctl/install.lock");
    let again = install(&lab, &["--only", "os"]).success();
    assert!(
        again.stdout.contains("took over the host lock"),
        "{}",
        again.stdout
    );
    let node3 = again
        .stdout
        .split("== ")
        .find(|s| s.starts_with("node3"))
        .unwrap_or_default();
    assert!(
        !node3.contains("os         skipped"),
        "node3 should re-run os:\n{}",
        again.stdout
    );
    // Docker rewrote /etc/hosts when the node started again: the re-run repairs it.
    assert!(
        node3.contains("~ block hosts in /etc/hosts"),
        "{}",
        again.stdout
    );
    for node in ["node1", "node2"] {
        let part = again
            .stdout
            .split("== ")
            .find(|s| s.starts_with(node))
            .unwrap_or_default();
        assert!(part.contains("os         skipped"), "{}", again.stdout);
    }
    let hosts = lab.exec("node3", "cat /etc/hosts");
    assert!(hosts.contains("# END gpuctl hosts"), "{hosts}");
    lab.exec("node3", "test ! -e /var/lib/gpuctl/install.lock");
}

#[test]
fn a_failing_preflight_stops_that_host_only() {
    let lab = Lab::up(&LabSpec::new(2));
    lab.exec("node2", "mv /usr/bin/nsenter /usr/bin/nsenter.off");
    let out = install(&lab, &["--skip", HOST_ONLY]).code(1);
    let row = table_row(&out, "node2");
    assert!(
        row.contains("preflight") && row.contains("FAILED"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("H6 missing commands: nsenter"),
        "{}",
        out.stdout
    );
    assert!(table_row(&out, "node1").contains("ok"), "{}", out.stdout);
    lab.exec("node2", "test ! -e /etc/sysctl.d/90-gpuctl.conf");
    lab.exec("node1", "test -e /etc/sysctl.d/90-gpuctl.conf");

    lab.exec("node2", "mv /usr/bin/nsenter.off /usr/bin/nsenter");
    let again = install(&lab, &["--skip", HOST_ONLY]).success();
    lab.exec("node2", "test -e /etc/sysctl.d/90-gpuctl.conf");
    assert!(
        again.stdout.contains("os         skipped"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_second_install_is_refused_while_one_runs_and_a_stale_lock_says_how_to_break_it() {
    let lab = Lab::up(&LabSpec::new(1));
    hold_modprobe(&lab, "node1");
    let first = Gpuctl::new()
        .args(["install", "--yes", "--only", "os"])
        .inventory(&lab.inventory)
        .spawn();
    wait_for_file(
        &lab,
        "node1",
        "/tmp/modprobe-started",
        Duration::from_secs(60),
    );
    let second = install(&lab, &["--only", "os"]).code(1);
    assert!(
        second
            .stderr
            .contains("another `gpuctl install` is running for this cluster"),
        "{}",
        second.stderr
    );
    lab.exec("node1", "rm -f /tmp/hold");
    first.wait(RUN_DEADLINE).success();

    // A lock whose gpuctl is gone: refused, with the exact command that removes it.
    let lock = state_dir(&lab).join("install.lock");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    std::fs::write(
        &lock,
        format!(
            "{{\"owner\":\"ops@{}\",\"pid\":0,\"started\":\"2025-01-01T00:00:00.000Z\",\"run\":\"old\"}}\n",
            host.trim()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stale = install(&lab, &["--only", "os"]).code(1);
    let fix = format!("rm {}", lock.display());
    assert!(
        stale.stderr.contains("stale install lock"),
        "{}",
        stale.stderr
    );
    assert!(stale.stderr.contains(&fix), "{}", stale.stderr);
    std::fs::remove_file(&lock).unwrap_or_else(|e| panic!("{e}"));
    install(&lab, &["--only", "os"]).success();
}
