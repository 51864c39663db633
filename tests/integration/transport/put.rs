//! Putting files over SSH: 1 GiB to three nodes at once, verified on the hosts; unchanged
//! files are not sent again; sudo puts (with a sudo password too); bind-mounted targets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gpuctl::transport::{Command, PutOptions, TransportError};

use super::{GIB, big_file, connect, expect_err, local_sha256, make_file, node_sha256, shared};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_to_three_nodes_then_unchanged() {
    let lab = shared();
    let src = big_file();
    let want = local_sha256(&src);
    let dest = "/data/put-1g.bin";

    let mut conns = Vec::new();
    for node in ["node1", "node2", "node3"] {
        conns.push((node, connect(lab, node).await));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (node, conn) in &conns {
        let (conn, src, node) = (conn.clone(), src.clone(), *node);
        let last = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&last);
        let opts = PutOptions {
            progress: Some(Arc::new(move |n| {
                // Cumulative and never going back.
                let before = seen.swap(n, Ordering::SeqCst);
                assert!(n >= before, "progress went from {before} back to {n}");
            })),
            ..PutOptions::default()
        };
        tasks.push(tokio::spawn(async move {
            let report = conn.put(&src, dest, &opts).await;
            (node, report, last.load(Ordering::SeqCst))
        }));
    }
    for t in tasks {
        let (node, report, last) = t.await.unwrap();
        let report = report.unwrap_or_else(|e| panic!("put to {node}: {e}"));
        assert_eq!(report.bytes_total, GIB);
        assert_eq!(report.bytes_sent, GIB, "{node}");
        assert!(!report.unchanged);
        assert_eq!(report.sha256, want);
        assert_eq!(last, GIB, "progress ended at the total on {node}");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "put 1 GiB to 3 nodes (one behind a bastion): {secs:.1} s, {:.0} MB/s aggregate",
        3.0 * GIB as f64 / secs / 1e6
    );

    // Checked on the hosts themselves, independently of our own verification.
    for (node, _) in &conns {
        assert_eq!(node_sha256(lab, node, dest), want, "{node}");
        let listing = lab.exec(node, "ls -a /data");
        assert!(
            !listing.contains(".part"),
            "temp file left on {node}: {listing}"
        );
        // A new file gets 0644, owned by the login user.
        assert_eq!(
            lab.exec(node, &format!("stat -c '%a %U' {dest}")).trim(),
            "644 ops"
        );
    }

    for (node, conn) in &conns {
        let report = conn.put(&src, dest, &PutOptions::default()).await.unwrap();
        assert!(report.unchanged, "{node}");
        assert_eq!(report.bytes_sent, 0, "{node}");
        assert_eq!(report.sha256, want);
    }
    for (node, _) in &conns {
        lab.exec(node, &format!("rm -f {dest}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_puts_with_and_without_a_sudo_password() {
    let lab = shared();
    let src = make_file("put-sudo-9m.bin", 9 << 20, 7);
    let want = local_sha256(&src);
    for node in ["node1", "node2"] {
        let conn = connect(lab, node).await;
        let dest = "/opt/gpuctl-test/sub dir/it's.bin";
        let opts = PutOptions {
            sudo: true,
            mode: Some(0o750),
            owner: Some("root:ops".into()),
            ..PutOptions::default()
        };
        let report = conn
            .put(&src, dest, &opts)
            .await
            .unwrap_or_else(|e| panic!("{node}: {e}"));
        assert_eq!(report.bytes_sent, 9 << 20);
        // With sudo -S the password line is read by sudo alone: every byte after it must
        // reach the file, or the hash would differ.
        assert_eq!(node_sha256(lab, node, dest), want, "{node}");
        assert_eq!(
            lab.exec(node, &format!("stat -c '%a %U %G' \"{dest}\""))
                .trim(),
            "750 root ops"
        );
        // The login user cannot write there without sudo: a clear error naming the path.
        let (err, text) = expect_err(
            conn.put(&src, "/opt/gpuctl-test/plain.bin", &PutOptions::default())
                .await,
            "a put into a root-owned directory without sudo",
        );
        assert!(matches!(err, TransportError::Put { .. }), "{err:?}");
        assert!(
            text.contains(node) && text.contains("/opt/gpuctl-test/plain.bin"),
            "{text}"
        );
        // get reads it back (through sudo), and a missing file is NotFound.
        let back = conn.get(dest, true).await.unwrap();
        assert_eq!(back, std::fs::read(&src).unwrap());
        let (err, _) = expect_err(
            conn.get("/nonexistent/file", true).await,
            "get of a missing file",
        );
        assert!(matches!(err, TransportError::NotFound { .. }), "{err:?}");
        lab.exec(node, "rm -rf /opt/gpuctl-test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_mounted_etc_hosts_is_written_in_place_with_a_backup() {
    let lab = shared();
    let node = "node1";
    let conn = connect(lab, node).await;
    let before = lab.exec(node, "cat /etc/hosts");
    let inode_before = lab.exec(node, "stat -c %i /etc/hosts");
    // The rename really is refused there (that is what this test is about).
    let mv = lab.exec_output(node, "cp /etc/hosts /etc/.h && mv -f /etc/.h /etc/hosts");
    assert!(
        String::from_utf8_lossy(&mv.stderr).contains("Device or resource busy"),
        "expected EBUSY from mv onto /etc/hosts: {}",
        String::from_utf8_lossy(&mv.stderr)
    );
    lab.exec(node, "rm -f /etc/.h");

    let content = format!("{before}10.99.0.1 gpuctl-test-entry\n");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hosts");
    std::fs::write(&src, &content).unwrap();
    let report = conn
        .put(
            &src,
            "/etc/hosts",
            &PutOptions {
                sudo: true,
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!report.unchanged);
    assert_eq!(lab.exec(node, "cat /etc/hosts"), content);
    assert_eq!(lab.exec(node, "cat /etc/hosts.gpuctl-backup"), before);
    assert_eq!(lab.exec(node, "stat -c %i /etc/hosts"), inode_before);
    assert_eq!(
        lab.exec(node, "stat -c '%a %U' /etc/hosts").trim(),
        "644 root"
    );
    assert!(!lab.exec(node, "ls -a /etc").contains(".part"));
    // The name resolves through the file we wrote.
    let out = conn
        .run(&Command::new("getent hosts gpuctl-test-entry"))
        .await
        .unwrap();
    assert!(
        out.stdout_str().starts_with("10.99.0.1"),
        "{}",
        out.stdout_str()
    );
    // And a second put of the same content changes nothing.
    let again = conn
        .put(
            &src,
            "/etc/hosts",
            &PutOptions {
                sudo: true,
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(again.unchanged);
    // Put the original back for the other tests that share this lab.
    std::fs::write(&src, &before).unwrap();
    conn.put(
        &src,
        "/etc/hosts",
        &PutOptions {
            sudo: true,
            ..PutOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(lab.exec(node, "cat /etc/hosts"), before);
}
