//! Logging in: key types, encrypted keys, wrong keys, unreadable keys, password fallback.

use std::path::{Path, PathBuf};

use gpuctl::secret::SecretSource;
use gpuctl::transport::{Command, Connection, Endpoint, TransportError};

use super::{expect_err, options, shared, target};

/// Secrets come from the environment; cargo sets this variable for every test run, and
/// its value is no word that other tests' output would contain (it gets redacted).
const SECRET_VAR: &str = "CARGO_PKG_DESCRIPTION";

fn secret_value() -> String {
    std::env::var(SECRET_VAR)
        .unwrap_or_else(|_| panic!("{SECRET_VAR} is not set: run the tests with `cargo test`"))
}

fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", "", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn authorize(node: &str, key: &Path) {
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    shared().exec(
        node,
        &format!("echo '{}' >> /home/ops/.ssh/authorized_keys", public.trim()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_ecdsa_and_encrypted_keys_log_in() {
    let lab = shared();
    let dir = tempfile::tempdir().unwrap();
    let rsa = keygen(dir.path(), "id_rsa", "rsa", "");
    let ecdsa = keygen(dir.path(), "id_ecdsa", "ecdsa", "");
    let locked = keygen(dir.path(), "id_locked", "ed25519", &secret_value());
    for key in [&rsa, &ecdsa, &locked] {
        authorize("node1", key);
    }
    for key in [&rsa, &ecdsa] {
        let mut t = target(lab, "node1");
        t.identity_files = vec![key.clone()];
        let conn = Connection::connect("node1", &Endpoint::Ssh(t), &options(lab))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let out = conn.run(&Command::new("whoami")).await.unwrap();
        assert_eq!(out.stdout_str(), "ops\n");
    }

    let mut t = target(lab, "node1");
    t.identity_files = vec![locked.clone()];
    let (err, text) = expect_err(
        Connection::connect("node1", &Endpoint::Ssh(t.clone()), &options(lab)).await,
        "an encrypted key without a passphrase",
    );
    assert!(
        matches!(err, TransportError::IdentityFile { .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&locked.display().to_string()) && text.contains("encrypted"),
        "{text}"
    );

    t.identity_passphrase = Some(SecretSource::Env {
        env: SECRET_VAR.into(),
    });
    Connection::connect("node1", &Endpoint::Ssh(t), &options(lab))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_unreadable_keys_say_which_file() {
    let lab = shared();
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "id_stranger", "ed25519", "");

    let mut t = target(lab, "node2");
    t.identity_files = vec![stranger.clone()];
    let (err, text) = expect_err(
        Connection::connect("node2", &Endpoint::Ssh(t.clone()), &options(lab)).await,
        "a key the host does not know",
    );
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err:?}");
    assert!(text.contains("node2"), "{text}");
    assert!(text.contains("ops"), "{text}");
    assert!(text.contains(&stranger.display().to_string()), "{text}");

    // Two keys: the wrong one first, then the right one: both tried, the second works.
    t.identity_files = vec![stranger.clone(), lab.key.clone()];
    Connection::connect("node2", &Endpoint::Ssh(t.clone()), &options(lab))
        .await
        .unwrap();

    // An unusable key file does not stop a usable one, in either order.
    let missing = dir.path().join("missing");
    for keys in [
        vec![missing.clone(), lab.key.clone()],
        vec![lab.key.clone(), missing.clone()],
    ] {
        t.identity_files = keys;
        Connection::connect("node2", &Endpoint::Ssh(t.clone()), &options(lab))
            .await
            .unwrap();
    }
    // When nothing works, the unusable file is named as the likely cause.
    t.identity_files = vec![missing.clone(), stranger.clone()];
    let (err, text) = expect_err(
        Connection::connect("node2", &Endpoint::Ssh(t.clone()), &options(lab)).await,
        "an unusable key and a wrong one",
    );
    assert!(
        matches!(err, TransportError::IdentityFile { .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&missing.display().to_string())
            && text.contains(&stranger.display().to_string()),
        "{text}"
    );

    for (path, what) in [
        (dir.path().join("missing"), "cannot read"),
        (stranger.with_extension("pub"), "cannot parse"),
    ] {
        t.identity_files = vec![path.clone()];
        let (err, text) = expect_err(
            Connection::connect("node2", &Endpoint::Ssh(t.clone()), &options(lab)).await,
            "an unusable key file",
        );
        assert!(
            matches!(err, TransportError::IdentityFile { .. }),
            "{err:?}"
        );
        assert!(
            text.contains(&path.display().to_string()) && text.contains(what),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_tried_after_the_keys() {
    let lab = shared();
    let node = "node1";
    let saved = lab.exec(node, "getent shadow ops | cut -d: -f2");
    lab.exec(node, &format!("echo 'ops:{}' | chpasswd", secret_value()));
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "id_stranger", "ed25519", "");
    let mut t = target(lab, node);
    t.identity_files = vec![stranger.clone()];
    t.password = Some(SecretSource::Env {
        env: SECRET_VAR.into(),
    });
    let result = Connection::connect(node, &Endpoint::Ssh(t), &options(lab)).await;
    lab.exec(node, &format!("usermod -p '{}' ops", saved.trim()));
    let conn = result.unwrap();
    let out = conn.run(&Command::new("whoami")).await.unwrap();
    assert_eq!(out.stdout_str(), "ops\n");
}
