//! The transport layer against real sshd nodes (the lab) and this machine (local).
//!
//! Read-only tests share one lab (3 nodes: node2's sudo wants a password, node3 is hidden
//! behind node1); tests that break a node (kill, rekey) bring up their own small lab.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod exec;
mod host_keys;
mod local;
mod put;
mod resume;
mod sudo;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpuctl::secret::Secret;
use gpuctl::transport::{
    ConnectOptions, Connection, Endpoint, HostKeyPolicy, SshTarget, TransportError,
};

use crate::support::lab::{Lab, LabSpec};

/// The lab shared by tests that leave nodes as they found them. It lives until the test
/// process exits; the next `lab up` removes it (its owner process is gone by then).
pub fn shared() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| Lab::up(&LabSpec::new(3).hidden(&["node3"]).sudo_password(&["node2"])))
}

/// How to log in to `node` as ops with the lab key; hidden nodes go through node1.
pub fn target(lab: &Lab, node: &str) -> SshTarget {
    let n = lab.node(node);
    let mut t = SshTarget {
        host: "127.0.0.1".into(),
        port: n.port.unwrap_or(22),
        user: "ops".into(),
        identity_files: vec![lab.key.clone()],
        identity_passphrase: None,
        password: None,
        use_agent: false,
        jumps: Vec::new(),
    };
    if n.hidden {
        t.host = n.ip.clone();
        t.jumps = vec![target(lab, "node1")];
    }
    t
}

/// Strict host keys against the lab's known_hosts, and the lab's sudo password.
pub fn options(lab: &Lab) -> ConnectOptions {
    ConnectOptions {
        host_keys: HostKeyPolicy {
            known_hosts: vec![lab.known_hosts.clone()],
            accept_new: false,
        },
        sudo_password: lab.sudo_password().map(Secret::new),
        ..ConnectOptions::default()
    }
}

pub async fn try_connect(
    lab: &Lab,
    node: &str,
    opts: &ConnectOptions,
) -> Result<Connection, TransportError> {
    Connection::connect(node, &Endpoint::Ssh(target(lab, node)), opts).await
}

pub async fn connect(lab: &Lab, node: &str) -> Connection {
    try_connect(lab, node, &options(lab))
        .await
        .unwrap_or_else(|e| panic!("connecting to {node}: {e}"))
}

/// The error of something that must fail, as the user would read it.
pub fn expect_err<T>(r: Result<T, TransportError>, what: &str) -> (TransportError, String) {
    match r {
        Ok(_) => panic!("{what} should have failed"),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

/// `sha256sum FILE` inside the node (docker exec, not our transport).
pub fn node_sha256(lab: &Lab, node: &str, path: &str) -> String {
    lab.exec(
        node,
        &format!("sha256sum {}", gpuctl::transport::shell::quote(path)),
    )
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_string()
}

pub const GIB: u64 = 1 << 30;

/// A 1 GiB file of pseudo-random bytes, made once and reused by every run.
pub fn big_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| make_file("random-1g.bin", GIB, 0x9e37_79b9_7f4a_7c15))
        .clone()
}

/// A pseudo-random file of `len` bytes under the target's temp dir; `seed` picks the
/// content, so different seeds give different files.
pub fn make_file(name: &str, len: u64, seed: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("transport");
    std::fs::create_dir_all(&dir).expect("create the test data directory");
    let path = dir.join(name);
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(len) {
        return path;
    }
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&tmp).expect("create the test file"),
    );
    let mut x = seed | 1;
    let mut left = len;
    let mut block = vec![0u8; 1 << 20];
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            // xorshift64: fast, and nothing compresses or deduplicates it.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).expect("write the test file");
        left -= n as u64;
    }
    out.flush().expect("flush the test file");
    drop(out);
    std::fs::rename(&tmp, &path).expect("move the test file into place");
    path
}

/// sha256 of a local file, by `sha256sum`, to check our own hashing independently.
pub fn local_sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) must be installed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
