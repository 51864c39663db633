//! sudo: found once per connection; a password never shows up in output or errors.

use gpuctl::secret::Secret;
use gpuctl::transport::{Command, SudoMode, TransportError};

use super::{connect, expect_err, options, shared, try_connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_modes_are_found_and_used() {
    let lab = shared();
    let password = lab.sudo_password().expect("node2 asks for a sudo password");

    let n1 = connect(lab, "node1").await;
    assert_eq!(n1.sudo_mode(), SudoMode::NoPassword);
    let n2 = connect(lab, "node2").await;
    assert_eq!(n2.sudo_mode(), SudoMode::Password);

    for conn in [&n1, &n2] {
        let out = conn.run(&Command::new("id -u").sudo(true)).await.unwrap();
        assert_eq!(
            out.stdout_str(),
            "0\n",
            "{}: {}",
            conn.host(),
            out.stderr_str()
        );
        let out = conn.run(&Command::new("id -u")).await.unwrap();
        assert_eq!(out.stdout_str(), "1000\n");
        // stdin after sudo's password line reaches the command untouched, byte for byte.
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        let out = conn
            .run(&Command::new("cat").sudo(true).stdin(payload.clone()))
            .await
            .unwrap();
        assert!(
            out.stdout == payload,
            "{}: stdin changed on its way",
            conn.host()
        );
        // Even a command that tries to print everything it can see leaks nothing.
        let out = conn
            .run(
                &Command::new("cat; env; cat /proc/self/cmdline")
                    .sudo(true)
                    .stdin("x"),
            )
            .await
            .unwrap();
        let all = format!("{}{}", out.stdout_str(), out.stderr_str());
        assert!(
            !all.contains(&password),
            "the sudo password leaked on {}",
            conn.host()
        );
    }

    // A failing command with sudo: a normal non-zero exit, not a password error.
    let out = n2.run(&Command::new("exit 1").sudo(true)).await.unwrap();
    assert_eq!(out.status, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sudo_password_is_reported_without_showing_it() {
    let lab = shared();
    let mut opts = options(lab);
    let wrong = "not-the-password-4711";
    opts.sudo_password = Some(Secret::new(wrong));
    let (err, text) = expect_err(
        try_connect(lab, "node2", &opts).await,
        "a connection with a wrong sudo password",
    );
    assert!(
        matches!(err, TransportError::SudoPasswordRejected { .. }),
        "{err:?}"
    );
    assert!(text.contains("sudo password rejected on node2"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!format!("{err:?}").contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_sudo_is_unavailable_with_a_clear_error() {
    let lab = shared();
    let mut opts = options(lab);
    opts.sudo_password = None;
    let conn = try_connect(lab, "node2", &opts).await.unwrap();
    assert_eq!(conn.sudo_mode(), SudoMode::Unavailable);
    // Commands without sudo work as usual.
    let out = conn.run(&Command::new("echo fine")).await.unwrap();
    assert_eq!(out.stdout_str(), "fine\n");
    let (err, text) = expect_err(
        conn.run(&Command::new("id -u").sudo(true)).await,
        "a sudo command where sudo needs an unknown password",
    );
    assert!(
        matches!(err, TransportError::SudoUnavailable { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("node2") && text.contains("NOPASSWD") && text.contains("ssh.sudo_password"),
        "{text}"
    );
}
