//! sudo: found once per connection; a password never shows up in output or errors.

use gpuctl::secret::Secret;
use gpuctl::transport::{
    Command, ProbeAnswer, SUDO_PROBE_VARS, SudoMode, SudoProbe, TransportError,
};

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

/// A deferred probe: the connection has no sudo until it is settled, takes the answer of
/// a script that ran the probe's shell (no round trip of its own), checks the inventory's
/// password when sudo wants one, and settles by itself before a sudo command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_sudo_probe_takes_a_scripts_answer() {
    let lab = shared();
    let mut opts = options(lab);
    opts.sudo_probe = SudoProbe::Deferred;
    let script = format!("{SUDO_PROBE_VARS}\nprintf '%s\\n%s\\n%s\\n' \"$U\" \"$N\" \"$S\"");
    for (node, want) in [
        ("node1", SudoMode::NoPassword),
        ("node2", SudoMode::Password),
    ] {
        let conn = try_connect(lab, node, &opts).await.unwrap();
        assert_eq!(
            conn.sudo_mode(),
            SudoMode::Unavailable,
            "{node}: not found yet"
        );
        let out = conn.run(&Command::new(script.as_str())).await.unwrap();
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        let [uid, user, sudo] = lines[..] else {
            panic!("{node}: the probe's shell printed {text:?}");
        };
        assert_eq!((uid, user), ("1000", "ops"), "{node}");
        let answer = ProbeAnswer {
            uid: uid.into(),
            user: user.into(),
            sudo: sudo.into(),
        };
        assert_eq!(
            conn.settle_sudo(Some(&answer)).await.unwrap(),
            want,
            "{node}"
        );
        assert_eq!(conn.sudo_mode(), want, "{node}: settled once");
        let out = conn.run(&Command::new("id -u").sudo(true)).await.unwrap();
        assert_eq!(out.stdout_str(), "0\n", "{node}: {}", out.stderr_str());
    }

    // Never settled: the first sudo command probes first.
    let conn = try_connect(lab, "node2", &opts).await.unwrap();
    let out = conn.run(&Command::new("id -u").sudo(true)).await.unwrap();
    assert_eq!(out.stdout_str(), "0\n", "{}", out.stderr_str());
    assert_eq!(conn.sudo_mode(), SudoMode::Password);

    // An answer that is not the probe's (an older script): the probe runs instead.
    let conn = try_connect(lab, "node1", &opts).await.unwrap();
    let junk = ProbeAnswer {
        uid: "1000".into(),
        user: "ops".into(),
        sudo: String::new(),
    };
    assert_eq!(
        conn.settle_sudo(Some(&junk)).await.unwrap(),
        SudoMode::NoPassword
    );
}
