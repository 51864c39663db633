//! Host keys: unknown keys refused with their fingerprint or recorded once on request,
//! changed keys always refused naming the known_hosts line, every bastion hop checked.

use std::path::Path;

use gpuctl::transport::{ConnectOptions, TransportError};

use super::{expect_err, options, shared, try_connect};
use crate::support::lab::{Lab, LabSpec};

/// The node's ed25519 host key fingerprint as `ssh-keygen -lf` prints it.
fn keygen_fingerprint(lab: &Lab, node: &str, dir: &Path) -> String {
    let public = lab.exec(node, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    let path = dir.join(format!("{node}.pub"));
    std::fs::write(&path, public).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fp = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(fp.starts_with("SHA256:"), "ssh-keygen -lf said {text:?}");
    fp
}

fn with_known_hosts(lab: &Lab, path: &Path, accept_new: bool) -> ConnectOptions {
    let mut opts = options(lab);
    opts.host_keys.known_hosts = vec![path.to_path_buf()];
    opts.host_keys.accept_new = accept_new;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_refused_then_recorded_once_when_accepted() {
    let lab = shared();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("ssh/known_hosts");

    let (err, text) = expect_err(
        try_connect(lab, "node1", &with_known_hosts(lab, &kh, false)).await,
        "a connection to an unknown host",
    );
    let fp = keygen_fingerprint(lab, "node1", dir.path());
    match &err {
        TransportError::HostKeyUnknown { fingerprint, .. } => assert_eq!(fingerprint, &fp),
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    assert!(
        text.contains(&fp) && text.contains("--accept-new-host-keys"),
        "{text}"
    );
    assert!(text.contains("node1"), "{text}");
    assert!(
        !kh.exists(),
        "nothing recorded without --accept-new-host-keys"
    );

    // Three connections per node race to record the same keys.
    let opts = with_known_hosts(lab, &kh, true);
    let mut tasks = Vec::new();
    for node in ["node1", "node2", "node1", "node2", "node1", "node2"] {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            try_connect(shared(), node, &opts).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let text = std::fs::read_to_string(&kh).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per host:\n{text}");
    for node in ["node1", "node2"] {
        let port = lab.node(node).port.unwrap();
        let name = format!("[127.0.0.1]:{port} ");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&name)).count(),
            1,
            "{text}"
        );
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // What was recorded is what strict checking now accepts.
    try_connect(lab, "node1", &with_known_hosts(lab, &kh, false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_of_a_bastion_chain_is_checked() {
    let lab = shared();
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(&lab.known_hosts).unwrap();
    let n1 = lab.node("node1").clone();
    let n3 = lab.node("node3").clone();
    let n2_key = original
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{} ", lab.node("node2").ip)))
        .unwrap()
        .to_string();

    // The hidden node's entry holds another node's key.
    let wrong_hidden = dir.path().join("wrong_hidden");
    let text: String = original
        .lines()
        .map(|l| match l.strip_prefix(&format!("{} ", n3.ip)) {
            Some(_) => format!("{} {n2_key}\n", n3.ip),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&wrong_hidden, &text).unwrap();
    let line = text.lines().position(|l| l.starts_with(&n3.ip)).unwrap() + 1;
    let (err, msg) = expect_err(
        try_connect(lab, "node3", &with_known_hosts(lab, &wrong_hidden, true)).await,
        "node3 with a wrong key for it",
    );
    match &err {
        TransportError::HostKeyChanged { file, line: l, .. } => {
            assert_eq!(file, &wrong_hidden);
            assert_eq!(*l, line);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    assert!(msg.contains(&n3.ip) && msg.contains("node3"), "{msg}");

    // The bastion's entry is wrong: refused at the first hop, before node3 is tried.
    let wrong_bastion = dir.path().join("wrong_bastion");
    let bastion_name = format!("[127.0.0.1]:{}", n1.port.unwrap());
    let text: String = original
        .lines()
        .map(|l| match l.strip_prefix(&format!("{bastion_name} ")) {
            Some(_) => format!("{bastion_name} {n2_key}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&wrong_bastion, &text).unwrap();
    let (err, msg) = expect_err(
        try_connect(lab, "node3", &with_known_hosts(lab, &wrong_bastion, false)).await,
        "node3 through a bastion with a wrong key",
    );
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    assert!(msg.contains(&bastion_name), "{msg}");

    // An unknown hidden node is refused too, with the fingerprint of node3 itself.
    let no_hidden = dir.path().join("no_hidden");
    let text: String = original
        .lines()
        .filter(|l| !l.starts_with(&n3.ip))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&no_hidden, text).unwrap();
    let (err, _) = expect_err(
        try_connect(lab, "node3", &with_known_hosts(lab, &no_hidden, false)).await,
        "node3 unknown",
    );
    match err {
        TransportError::HostKeyUnknown { fingerprint, .. } => {
            assert_eq!(fingerprint, keygen_fingerprint(lab, "node3", dir.path()))
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_naming_file_and_line() {
    let lab = Lab::up(&LabSpec::new(1));
    let port = lab.node("node1").port.unwrap();
    let name = format!("[127.0.0.1]:{port}");
    // Hashed names (`ssh-keygen -H`) and an unparsable line in front must not get in the
    // way of finding the entry.
    let text = std::fs::read_to_string(&lab.known_hosts).unwrap();
    let line = text.lines().position(|l| l.starts_with(&name)).unwrap() + 2;
    let kh = lab.dir().join("known_hosts_hashed");
    std::fs::write(&kh, &text).unwrap();
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(
        hashed.status.success(),
        "{}",
        String::from_utf8_lossy(&hashed.stderr)
    );
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(
        !hashed.contains(&name) && hashed.starts_with("|1|"),
        "{hashed}"
    );
    std::fs::write(&kh, format!("this line is garbage\n{hashed}")).unwrap();

    let conn = try_connect(&lab, "node1", &with_known_hosts(&lab, &kh, false))
        .await
        .unwrap();
    conn.close().await;
    let before = lab.exec("node1", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    lab.rekey("node1");
    let after = lab.exec("node1", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_ne!(before, after, "node1 has new host keys");
    for accept_new in [false, true] {
        let (err, text) = expect_err(
            try_connect(&lab, "node1", &with_known_hosts(&lab, &kh, accept_new)).await,
            "a connection to a host whose key changed",
        );
        match &err {
            TransportError::HostKeyChanged { file, line: l, .. } => {
                assert_eq!(file, &kh);
                assert_eq!(*l, line);
            }
            other => panic!("expected HostKeyChanged, got {other:?}"),
        }
        assert!(
            text.contains(&format!("ssh-keygen -R '{name}' -f {}", kh.display())),
            "{text}"
        );
        assert!(text.contains(&format!("{}:{line}", kh.display())), "{text}");
    }
}
