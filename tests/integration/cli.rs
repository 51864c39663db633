//! The commands as an admin runs them: the real binary against real sshd in lab nodes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::gpuctl::Gpuctl;
use crate::support::lab::{Lab, LabSpec};

#[test]
fn help_lists_only_working_commands() {
    let out = Gpuctl::new().args(["--help"]).run().success();
    let commands: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "init",
            "inventory",
            "ping",
            "exec",
            "copy",
            "install",
            "plan",
            "doctor",
            "mirror-images",
            "reset",
            "kubeconfig",
            "render",
            "users",
            "bundle",
            "help"
        ],
        "{}",
        out.stdout
    );
}

/// Every file under `.gpuctl/` beside the inventory: the run logs.
fn run_logs(inventory: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let base = inventory.parent().unwrap_or(Path::new("."));
    walk(&base.join(".gpuctl"), &mut files);
    files
}

#[test]
fn ping_exec_and_copy_on_three_nodes() {
    let lab = Lab::up(&LabSpec::new(3).gpu(1).hidden(&["node3"]));

    let ping = Gpuctl::new()
        .args(["ping"])
        .inventory(&lab.inventory)
        .run()
        .success();
    for node in ["node1", "node2", "node3"] {
        assert!(ping.stdout.contains(node), "{}", ping.stdout);
    }
    let gpu_row = ping
        .stdout
        .lines()
        .find(|l| l.starts_with("node3"))
        .unwrap_or_default();
    assert!(gpu_row.contains("4× Tesla T4"), "{}", ping.stdout);
    assert!(gpu_row.contains("nopasswd"), "{}", ping.stdout);
    assert!(gpu_row.contains("Debian GNU/Linux 12"), "{}", ping.stdout);
    // Without a driver the cards still show on the PCI bus (the lab's lspci fixture).
    lab.exec("node3", "mv /usr/bin/nvidia-smi /usr/bin/nvidia-smi.off");
    let ping = Gpuctl::new()
        .args(["ping", "--hosts", "node3"])
        .inventory(&lab.inventory)
        .run()
        .success();
    assert!(
        ping.stdout.contains("4 on PCI, nvidia-smi sees none"),
        "{}",
        ping.stdout
    );
    lab.exec("node3", "mv /usr/bin/nvidia-smi.off /usr/bin/nvidia-smi");

    // Identical answers fold into one group; different ones stay apart.
    Gpuctl::new()
        .args(["exec"])
        .inventory(&lab.inventory)
        .args(["--", "echo", "same"])
        .run()
        .success()
        .stdout_has("== node1,node2,node3 (exit 0) ==\nsame\n");
    let out = Gpuctl::new()
        .args(["exec", "--hosts", "node[12]"])
        .inventory(&lab.inventory)
        .args(["--", "hostname"])
        .run()
        .success();
    assert_eq!(
        out.stdout,
        "== node1 (exit 0) ==\nnode1\n== node2 (exit 0) ==\nnode2\n"
    );

    // One host failing fails the run, and the run names it.
    Gpuctl::new()
        .args(["exec"])
        .inventory(&lab.inventory)
        .args(["--", "test \"$(hostname)\" != node2"])
        .run()
        .code(1)
        .stdout_has("== node2 (exit 1) ==")
        .stderr_has("the command exited non-zero on: node2");

    // copy: atomic put with sha256, then unchanged on a second run.
    let src = lab.dir().join("payload.bin");
    let payload = b"gpuctl copy payload\n".repeat(1000);
    fs::write(&src, &payload).unwrap_or_else(|e| panic!("{e}"));
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&payload));
    let src_arg = src.display().to_string();
    Gpuctl::new()
        .args(["copy"])
        .inventory(&lab.inventory)
        .args([src_arg.as_str(), "/data/payload.bin"])
        .run()
        .success()
        .stdout_has("copied");
    let again = Gpuctl::new()
        .args(["copy"])
        .inventory(&lab.inventory)
        .args([src_arg.as_str(), "/data/payload.bin"])
        .run()
        .success();
    assert_eq!(
        again.stdout.matches("unchanged").count(),
        3,
        "{}",
        again.stdout
    );
    for node in ["node1", "node2", "node3"] {
        let sum = lab.exec(node, "sha256sum /data/payload.bin");
        assert!(
            sum.starts_with(&expected),
            "{node}: {sum} (expected {expected})"
        );
    }

    // Every command of those runs is in a per-host log.
    let logs = run_logs(&lab.inventory);
    assert!(
        logs.iter().any(|p| p.ends_with("node2.log")),
        "no run logs: {logs:?}"
    );
}

#[test]
fn unreachable_host_is_reported_with_the_others_still_done() {
    let lab = Lab::up(&LabSpec::new(3));
    lab.kill("node2");
    Gpuctl::new()
        .args(["exec", "--connect-timeout", "5"])
        .inventory(&lab.inventory)
        .args(["--", "echo", "up"])
        .run()
        .code(1)
        .stdout_has("== node1,node3 (exit 0) ==\nup\n")
        .stderr_has("1 of 3 hosts failed")
        .stderr_has("node2: ");
}

#[test]
fn sudo_password_works_and_never_reaches_a_log() {
    let lab = Lab::up(&LabSpec::new(3).sudo_password(&["node2"]));
    let password = lab
        .sudo_password()
        .unwrap_or_else(|| panic!("the lab wrote no sudo password"));
    // The lab's inventory names `ssh.sudo_password: { env: GPUCTL_SUDO_PASSWORD }`.
    let inventory = lab.inventory.clone();
    let out = Gpuctl::new()
        .args(["exec", "--sudo"])
        .inventory(&inventory)
        .env("GPUCTL_SUDO_PASSWORD", &password)
        .args(["--", "id -u; echo $SUDO_USER"])
        .run()
        .success()
        .stdout_has("== node1,node2,node3 (exit 0) ==\n0\nops\n");
    let ping = Gpuctl::new()
        .args(["ping"])
        .inventory(&inventory)
        .env("GPUCTL_SUDO_PASSWORD", &password)
        .run()
        .success();
    let row = ping
        .stdout
        .lines()
        .find(|l| l.starts_with("node2"))
        .unwrap_or_default();
    assert!(row.contains("password"), "{}", ping.stdout);

    // A wrong password fails on that host only, and is not printed either.
    let wrong = Gpuctl::new()
        .args(["exec", "--sudo"])
        .inventory(&inventory)
        .env("GPUCTL_SUDO_PASSWORD", "not-the-password-123")
        .args(["--", "true"])
        .run()
        .code(1)
        .stderr_has("node2");

    for text in [
        &out.stdout,
        &out.stderr,
        &ping.stdout,
        &ping.stderr,
        &wrong.stdout,
        &wrong.stderr,
    ] {
        assert!(!text.contains(&password), "the password was printed");
        assert!(
            !text.contains("not-the-password-123"),
            "a password was printed"
        );
    }
    let logs = run_logs(&inventory);
    assert!(
        logs.len() >= 9,
        "expected a log per host and run, got {logs:?}"
    );
    for log in logs {
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.contains(&password),
            "the password is in {}",
            log.display()
        );
        assert!(
            !text.contains("not-the-password-123"),
            "a password is in {}",
            log.display()
        );
    }
}

#[test]
fn ctrl_c_stops_every_host_and_says_so() {
    use std::time::{Duration, Instant};

    let lab = Lab::up(&LabSpec::new(2));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpuctl"))
        .args(["exec", "--inventory"])
        .arg(&lab.inventory)
        .args(["--", "sleep 300 # gpuctl-ctrl-c-test"])
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start gpuctl: {e}"));
    // Wait until the command runs on both nodes, then interrupt as a terminal would.
    let started = Instant::now();
    while ["node1", "node2"].iter().any(|n| {
        !lab.exec(n, "pgrep -f 'gpuctl-ctrl-c-[t]est' || true")
            .contains(char::is_numeric)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the command never started on both nodes within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success());
    let interrupted = Instant::now();
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap_or(None) {
            break child
                .wait_with_output()
                .unwrap_or_else(|e| panic!("cannot read gpuctl's output: {e}"));
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(20),
            "gpuctl did not stop within 20 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("2 of 2 hosts failed (interrupted)"),
        "{stderr}"
    );
    // Nothing is left running on the hosts.
    let deadline = Instant::now();
    for node in ["node1", "node2"] {
        loop {
            let left = lab.exec(node, "pgrep -f 'gpuctl-ctrl-c-[t]est' || true");
            if !left.contains(char::is_numeric) {
                break;
            }
            assert!(
                deadline.elapsed() < Duration::from_secs(10),
                "the command still runs on {node} after Ctrl-C: {left}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn ssh_agent_logs_in_when_no_key_file_is_named() {
    use std::process::Command;

    let lab = Lab::up(&LabSpec::new(2));
    // An agent holding the lab key, and an inventory that names no identity file, run with
    // an empty home so no default key (~/.ssh/id_*) can be what logs in.
    let home = lab.dir().join("agent-home");
    fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
    let sock = lab.dir().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .args(["-a"])
        .arg(&sock)
        .output()
        .unwrap_or_else(|e| panic!("ssh-agent (openssh-client) must be installed: {e}"));
    assert!(agent.status.success(), "ssh-agent failed: {agent:?}");
    let agent_pid = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no SSH_AGENT_PID in {agent:?}"));
    struct StopAgent(String);
    impl Drop for StopAgent {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(&self.0).status();
        }
    }
    let _stop = StopAgent(agent_pid);
    let added = Command::new("ssh-add")
        .arg(&lab.key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-add: {e}"));
    assert!(added.status.success(), "ssh-add failed: {added:?}");

    let text = fs::read_to_string(&lab.inventory).unwrap_or_else(|e| panic!("{e}"));
    let without_key: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("identity_file:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        text, without_key,
        "the lab inventory names no identity file to drop"
    );
    let inventory = lab.dir().join("inventory-agent.yaml");
    fs::write(&inventory, without_key).unwrap_or_else(|e| panic!("{e}"));
    let sock = sock.display().to_string();
    let home = home.display().to_string();

    Gpuctl::new()
        .args(["exec"])
        .inventory(&inventory)
        .env("HOME", &home)
        .env("SSH_AUTH_SOCK", &sock)
        .args(["--", "echo", "via-agent"])
        .run()
        .success()
        .stdout_has("== node1,node2 (exit 0) ==\nvia-agent\n");
    // Without the agent the same inventory has no way in, and says what it tried.
    Gpuctl::new()
        .args(["exec"])
        .inventory(&inventory)
        .env("HOME", &home)
        .args(["--", "true"])
        .run()
        .code(1)
        .stderr_has("2 of 2 hosts failed");
}
