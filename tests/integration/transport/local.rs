//! The local transport: the same API and the same put protocol on this machine.

use std::time::{Duration, Instant};

use gpuctl::transport::{
    Command, ConnectOptions, Connection, Endpoint, PutOptions, SudoMode, TransportError, temp_path,
};

use super::{expect_err, local_sha256, make_file};

async fn local() -> Connection {
    Connection::connect("localhost", &Endpoint::Local, &ConnectOptions::default())
        .await
        .unwrap()
}

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commands_behave_like_remote_ones() {
    let conn = local().await;
    let out = conn
        .run(&Command::new("echo out; echo err >&2; exit 4"))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout_str(), out.stderr_str()),
        (Some(4), "out\n".into(), "err\n".into())
    );
    let out = conn
        .run(&Command::new("tr a-z A-Z").stdin("quiet please"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "QUIET PLEASE");
    let out = conn
        .run(&Command::new("(sleep 0.3; echo late) & exit 0"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "late\n");

    let started = Instant::now();
    let (err, _) = expect_err(
        conn.run(&Command::new("sleep 30").timeout(Duration::from_millis(500)))
            .await,
        "a local command over its timeout",
    );
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sudo_as_root_runs_directly() {
    assert!(
        is_root(),
        "this test expects to run as root, as in the project's CI container; run it as root"
    );
    let conn = local().await;
    assert_eq!(conn.sudo_mode(), SudoMode::Root);
    let out = conn.run(&Command::new("id -u").sudo(true)).await.unwrap();
    assert_eq!(out.stdout_str(), "0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_put_resumes_verifies_and_skips_unchanged() {
    let conn = local().await;
    let src = make_file("local-put-24m.bin", 24 << 20, 42);
    let sha = local_sha256(&src);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("new dir/it's.bin");
    let dest_s = dest.to_str().unwrap().to_string();
    let temp = temp_path(&dest_s, &sha);

    // A broken earlier transfer left the first 10 MiB.
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let content = std::fs::read(&src).unwrap();
    std::fs::write(&temp, &content[..10 << 20]).unwrap();
    let report = conn
        .put(&src, &dest_s, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(report.bytes_sent, (24 << 20) - (10 << 20));
    assert_eq!(report.sha256, sha);
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert!(!std::path::Path::new(&temp).exists());

    let again = conn
        .put(&src, &dest_s, &PutOptions::default())
        .await
        .unwrap();
    assert!(again.unchanged && again.bytes_sent == 0);

    // A partial file that does not match the source: caught by the hash, removed, and
    // the next put starts afresh.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(&temp, vec![0u8; 1 << 20]).unwrap();
    let (err, text) = expect_err(
        conn.put(&src, &dest_s, &PutOptions::default()).await,
        "a put resuming a corrupt partial file",
    );
    match &err {
        TransportError::PutVerify {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha);
            assert_ne!(actual, &sha);
        }
        other => panic!("expected PutVerify, got {other:?}"),
    }
    assert!(text.contains(&dest_s), "{text}");
    assert!(
        !std::path::Path::new(&temp).exists(),
        "the bad partial file is removed"
    );
    assert!(
        !dest.exists(),
        "nothing half-verified reaches the destination"
    );
    let fresh = conn
        .put(
            &src,
            &dest_s,
            &PutOptions {
                mode: Some(0o640),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(fresh.bytes_sent, 24 << 20);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o640
    );

    // Mode of an existing file is kept when none is given.
    let other = make_file("local-put-1m.bin", 1 << 20, 43);
    conn.put(&other, &dest_s, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(local_sha256(&dest), local_sha256(&other));

    // get reads it back; a missing file is NotFound.
    assert_eq!(
        conn.get(&dest_s, false).await.unwrap(),
        std::fs::read(&other).unwrap()
    );
    let (err, _) = expect_err(
        conn.get("/nonexistent/x", false).await,
        "get of a missing file",
    );
    assert!(matches!(err, TransportError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_empty_file_is_put_into_a_new_directory_then_left_alone() {
    let conn = local().await;
    let src = make_file("local-put-empty.bin", 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("fresh/empty.list");
    let dest_s = dest.to_str().unwrap().to_string();
    let report = conn
        .put(&src, &dest_s, &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("an empty file: {e}"));
    assert!(!report.unchanged);
    assert_eq!(std::fs::read(&dest).unwrap(), b"");
    let again = conn
        .put(&src, &dest_s, &PutOptions::default())
        .await
        .unwrap();
    assert!(again.unchanged);
}
