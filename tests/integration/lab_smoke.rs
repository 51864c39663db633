//! The lab itself works as the other integration tests assume: real sshd with per-node host
//! keys, strict known_hosts, sudo with and without a password, hidden nodes behind a bastion,
//! the GPU fixture, and each fault doing what it says.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::lab::{Lab, LabSpec};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

/// Runs `cmd` on `node` over SSH as ops and returns stdout; panics with stderr on failure.
fn ssh_ok(lab: &Lab, node: &str, cmd: &str) -> String {
    let out = run(lab.ssh(node).arg(cmd));
    assert!(
        out.status.success(),
        "ssh {node} `{cmd}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ssh_fails(lab: &Lab, node: &str, cmd: &str) -> String {
    let out = run(lab.ssh(node).arg(cmd));
    assert!(
        !out.status.success(),
        "ssh {node} `{cmd}` should have failed but printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn known_host_key(lab: &Lab, host: &str) -> String {
    let text = std::fs::read_to_string(&lab.known_hosts)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", lab.known_hosts.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{host} ")).map(str::to_string))
        .unwrap_or_else(|| panic!("no known_hosts entry for {host} in:\n{text}"))
}

fn docker_port(container: &str) -> String {
    let out = run(Command::new("docker").args(["port", container, "22"]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_nodes_one_gpu_ssh_sudo_kill_start_cut() {
    let lab = Lab::up(&LabSpec::new(2).gpu(1));
    let (n1, n2) = (lab.node("node1").clone(), lab.node("node2").clone());

    for node in ["node1", "node2"] {
        assert_eq!(ssh_ok(&lab, node, "hostname").trim(), node);
        ssh_ok(&lab, node, "sudo -n true");
        assert_eq!(ssh_ok(&lab, node, "stat -c %U /data").trim(), "ops");
    }
    let (p1, p2) = (n1.port.unwrap_or(0), n2.port.unwrap_or(0));
    assert!(
        p1 > 0 && p2 > 0 && p1 != p2,
        "both nodes published: {p1} {p2}"
    );
    let key1 = known_host_key(&lab, &format!("[127.0.0.1]:{p1}"));
    let key2 = known_host_key(&lab, &format!("[127.0.0.1]:{p2}"));
    assert!(key1.starts_with("ssh-ed25519 "), "{key1}");
    assert_ne!(key1, key2, "every node has its own host key");
    assert_eq!(
        known_host_key(&lab, &n1.ip),
        key1,
        "the lab IP entry matches"
    );

    // The GPU node is the last one; the other has no nvidia-smi at all.
    assert!(n2.gpu && !n1.gpu);
    let list = ssh_ok(&lab, "node2", "/usr/bin/nvidia-smi -L");
    let gpus: Vec<&str> = list.lines().filter(|l| l.contains("Tesla T4")).collect();
    assert_eq!(gpus.len(), 4, "{list}");
    let query = ssh_ok(
        &lab,
        "node2",
        "nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid \
         --format=csv,noheader,nounits",
    );
    assert!(
        query.starts_with("0, Tesla T4, 15360, 535.183.01, GPU-"),
        "{query}"
    );
    ssh_fails(&lab, "node1", "command -v nvidia-smi");

    // /data is the host directory beside the lab.
    ssh_ok(&lab, "node1", "echo hello > /data/probe");
    let probe = lab.data_dir("node1").join("probe");
    assert_eq!(
        std::fs::read_to_string(&probe).unwrap_or_default(),
        "hello\n"
    );

    // kill + start: same port, same host key (the strict client still accepts it).
    lab.kill("node1");
    ssh_fails(&lab, "node1", "true");
    lab.start("node1");
    assert_eq!(docker_port(&n1.container), format!("127.0.0.1:{p1}"));
    assert_eq!(ssh_ok(&lab, "node1", "hostname").trim(), "node1");
    assert_eq!(known_host_key(&lab, &format!("[127.0.0.1]:{p1}")), key1);

    // cut: neither this machine nor the other node reaches it; uncut brings it back.
    let probe_node1 = format!("timeout 3 bash -c '</dev/tcp/{}/22'", n1.ip);
    lab.exec("node2", &probe_node1);
    lab.cut("node1");
    ssh_fails(&lab, "node1", "true");
    assert!(!lab.exec_output("node2", &probe_node1).status.success());
    lab.uncut("node1");
    assert_eq!(ssh_ok(&lab, "node1", "hostname").trim(), "node1");
    lab.exec("node2", &probe_node1);
}

#[test]
fn hidden_node_behind_bastion_sudo_password_and_rekey() {
    let lab = Lab::up(&LabSpec::new(3).hidden(&["node3"]).sudo_password(&["node2"]));
    let n1 = lab.node("node1").clone();
    let n3 = lab.node("node3").clone();

    // node3 is not published and refuses SSH from this machine; through node1 it answers.
    assert!(n3.hidden && n3.port.is_none());
    assert_eq!(docker_port(&n3.container), "");
    let direct = run(Command::new("ssh")
        .arg("-F")
        .arg(&lab.ssh_config)
        .arg(format!("ops@{}", n3.ip))
        .arg("true")
        .stdin(Stdio::null()));
    assert!(
        !direct.status.success(),
        "node3 must not answer this machine directly"
    );
    let jumped = run(Command::new("ssh")
        .arg("-F")
        .arg(&lab.ssh_config)
        .arg("-J")
        .arg(format!("ops@127.0.0.1:{}", n1.port.unwrap_or(0)))
        .arg(format!("ops@{}", n3.ip))
        .arg("hostname")
        .stdin(Stdio::null()));
    assert!(
        jumped.status.success(),
        "ssh -J through node1: {}",
        String::from_utf8_lossy(&jumped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&jumped.stdout).trim(), "node3");

    // node2's sudo wants the password; the others don't.
    let password = lab.sudo_password().unwrap_or_default();
    assert!(password.len() >= 16, "a random password was generated");
    ssh_ok(&lab, "node1", "sudo -n true");
    let refused = ssh_fails(&lab, "node2", "sudo -n true");
    assert!(refused.contains("password is required"), "{refused}");
    let mut child = lab
        .ssh("node2")
        .arg("sudo -S -p '' id -u")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ssh: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{password}").unwrap_or_else(|e| panic!("writing to ssh: {e}"));
    }
    let sudo = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for ssh: {e}"));
    assert!(
        sudo.status.success(),
        "{}",
        String::from_utf8_lossy(&sudo.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&sudo.stdout).trim(), "0");

    // Password login works too (the key is switched off for this attempt).
    let askpass = lab.dir().join("askpass");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\ncat '{}'\n",
            lab.dir().join("sudo_password").display()
        ),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", askpass.display()));
    run(Command::new("chmod").arg("755").arg(&askpass));
    let by_password = run(lab
        .ssh("node1")
        .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password", "hostname"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force"));
    assert!(
        by_password.status.success(),
        "password login: {}",
        String::from_utf8_lossy(&by_password.stderr)
    );

    // rekey: the strict client refuses the node's new key.
    lab.rekey("node1");
    let changed = ssh_fails(&lab, "node1", "true");
    assert!(
        changed.contains("Host key verification failed"),
        "{changed}"
    );
    ssh_ok(&lab, "node2", "true");
}
