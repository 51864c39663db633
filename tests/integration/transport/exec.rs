//! Running commands over SSH: output, exit codes, stdin, late output, timeouts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpuctl::transport::{Command, Connection, Stream, TransportError};

use super::{connect, expect_err, shared};

async fn check_node(conn: Connection, node: &'static str) {
    // stdout, stderr and the exit code, kept apart.
    let out = conn
        .run(&Command::new("hostname; echo to-stderr >&2; exit 7"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), format!("{node}\n"));
    assert_eq!(out.stderr_str(), "to-stderr\n");
    assert_eq!(out.status, Some(7));
    assert!(!out.success());

    // Output written after the shell exited (by a background child) still arrives.
    let out = conn
        .run(&Command::new("(sleep 0.5; echo late) & exit 5"))
        .await
        .unwrap();
    assert_eq!(out.status, Some(5));
    assert_eq!(out.stdout_str(), "late\n", "on {node}");

    // stdin reaches the command byte for byte, then EOF.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = conn
        .run(&Command::new("wc -c; printf x").stdin(payload.clone()))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), format!("{}\nx", payload.len()));
    let out = conn
        .run(&Command::new("cat").stdin(payload.clone()))
        .await
        .unwrap();
    assert!(
        out.stdout == payload,
        "cat echoed what it was given on {node}"
    );

    // Quoting: the script reaches sh unchanged.
    let out = conn
        .run(&Command::new("printf '%s|' \"it's\" '$HOME' \"a  b\""))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "it's|$HOME|a  b|");

    // The sink sees output as it arrives, in order.
    let seen = Arc::new(Mutex::new(Vec::<(Stream, String)>::new()));
    let sink_seen = Arc::clone(&seen);
    let cmd = Command::new("echo one; sleep 0.2; echo two >&2").sink(Arc::new(move |s, b| {
        sink_seen
            .lock()
            .unwrap()
            .push((s, String::from_utf8_lossy(b).into_owned()))
    }));
    conn.run(&cmd).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Stream::Stdout, "one\n".to_string()),
            (Stream::Stderr, "two\n".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_three_nodes_including_one_behind_a_bastion() {
    let lab = shared();
    let mut tasks = Vec::new();
    for node in ["node1", "node2", "node3"] {
        let conn = connect(lab, node).await;
        tasks.push(tokio::spawn(check_node(conn, node)));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_runs_too_long_is_stopped_on_the_host() {
    let lab = shared();
    for node in ["node1", "node3"] {
        let conn = connect(lab, node).await;
        let marker = format!("sleep 31{}", &node[4..]);
        let started = Instant::now();
        let (err, text) = expect_err(
            conn.run(
                &Command::new(format!("echo started; {marker}; echo never"))
                    .timeout(Duration::from_secs(1)),
            )
            .await,
            "a command over its timeout",
        );
        assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert!(
            text.contains(node) && text.contains("echo started"),
            "{text}"
        );
        // Nothing is left running on the host.
        // (`[s]leep` keeps pgrep from finding the shell that runs it.)
        let left = lab.exec_output(node, &format!("pgrep -f '[s]{}'", &marker[1..]));
        assert!(
            !left.status.success(),
            "still running on {node}: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        // The session is still usable afterwards.
        let out = conn.run(&Command::new("echo ok")).await.unwrap();
        assert_eq!(out.stdout_str(), "ok\n");
        conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commands_share_one_session_at_once() {
    let lab = shared();
    let conn = connect(lab, "node1").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let out = conn
                .run(&Command::new(format!("sleep 0.3; echo {i}")))
                .await
                .unwrap();
            assert_eq!(out.stdout_str(), format!("{i}\n"));
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    // Concurrent channels, not one after another (20 × 0.3 s = 6 s).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A command whose caller goes away gets SIGTERM through the channel. (Not through sudo:
/// the login user may not signal a root process; sudo commands stop at their timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_command_is_stopped_on_the_host() {
    let lab = shared();
    let conn = connect(lab, "node1").await;
    let cmd = Command::new("sleep 3171");
    // The caller gives up (a fleet-wide cancel, say): the future is dropped.
    let run = conn.run(&cmd);
    assert!(
        tokio::time::timeout(Duration::from_millis(800), run)
            .await
            .is_err()
    );
    let mut gone = false;
    for _ in 0..50 {
        if !lab
            .exec_output("node1", "pgrep -f '[s]leep 3171'")
            .status
            .success()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "`sleep 3171` still runs on node1 after its caller went away"
    );
}

/// Heavy traffic both ways through a bastion: 32 MiB into `cat` on node3 (behind node1)
/// and the same bytes back, while the upload keeps waiting for window and the target's
/// output and window adjustments arrive on the bastion's channel. The timeout turns a
/// hang into a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_carries_uploads_and_downloads_at_once() {
    let lab = shared();
    let conn = connect(lab, "node3").await;
    let payload: Vec<u8> = (0..32u32 << 20).map(|i| (i * 13 % 253) as u8).collect();
    let out = conn
        .run(
            &Command::new("cat")
                .stdin(payload.clone())
                .timeout(Duration::from_secs(240)),
        )
        .await
        .unwrap_or_else(|e| panic!("echo through the bastion: {e}"));
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout.len(), payload.len());
    assert!(out.stdout == payload, "every byte came back in order");
}
