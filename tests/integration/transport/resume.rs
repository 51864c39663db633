//! A node killed in the middle of a put: the next put resumes from what reached the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gpuctl::transport::{PutOptions, temp_path};

use super::{GIB, big_file, connect, local_sha256, node_sha256};
use crate::support::lab::{Lab, LabSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_short_by_a_dead_node_resumes_after_restart() {
    let lab = Arc::new(Lab::up(&LabSpec::new(1)));
    let src = big_file();
    let want = local_sha256(&src);
    let dest = "/data/resume.bin";
    let temp = temp_path(dest, &want);

    let conn = connect(&lab, "node1").await;
    let (killed_tx, killed_rx) = tokio::sync::oneshot::channel::<()>();
    let killed_tx = std::sync::Mutex::new(Some(killed_tx));
    let fired = Arc::new(AtomicBool::new(false));
    let killer_lab = Arc::clone(&lab);
    let opts = PutOptions {
        progress: Some(Arc::new(move |n| {
            if n > GIB * 3 / 10 && !fired.swap(true, Ordering::SeqCst) {
                let lab = Arc::clone(&killer_lab);
                let tx = killed_tx.lock().ok().and_then(|mut t| t.take());
                std::thread::spawn(move || {
                    lab.kill("node1");
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                });
            }
        })),
        ..PutOptions::default()
    };
    let first = conn.put(&src, dest, &opts).await;
    let err = match first {
        Ok(r) => panic!("the put survived its node being killed: {r:?}"),
        Err(e) => e.to_string(),
    };
    eprintln!("the interrupted put failed with: {err}");
    assert!(err.contains("node1"), "{err}");
    killed_rx.await.expect("the node was killed");

    {
        let lab = Arc::clone(&lab);
        tokio::task::spawn_blocking(move || lab.start("node1"))
            .await
            .unwrap();
    }
    // What an earlier transfer left is there, short of the whole file.
    let partial: u64 = lab
        .exec("node1", &format!("stat -c %s {temp}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        partial > 0 && partial < GIB,
        "partial temp file of {partial} bytes"
    );

    let conn = connect(&lab, "node1").await;
    let report = conn
        .put(&src, dest, &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("resumed put: {e}"));
    assert_eq!(report.sha256, want);
    assert!(!report.unchanged);
    assert_eq!(
        report.bytes_sent,
        GIB - partial,
        "only the missing part is sent"
    );
    assert_eq!(node_sha256(&lab, "node1", dest), want);
    let gone = lab.exec_output("node1", &format!("test -e {temp}"));
    assert!(!gone.status.success(), "the temp file {temp} is gone");
}

/// A host that stops reading (frozen: its connections stay open, nothing answers) must fail
/// the put within its stall timeout instead of hanging it, keep what arrived, and let the
/// next put resume once the host is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_to_a_frozen_node_stalls_then_resumes_after_thaw() {
    use std::time::Duration;

    let lab = Arc::new(Lab::up(&LabSpec::new(1)));
    let src = big_file();
    let want = local_sha256(&src);
    let dest = "/data/stall.bin";
    let temp = temp_path(dest, &want);

    let conn = connect(&lab, "node1").await;
    let fired = Arc::new(AtomicBool::new(false));
    let freezer_lab = Arc::clone(&lab);
    let (frozen_tx, frozen_rx) = tokio::sync::oneshot::channel::<()>();
    let frozen_tx = std::sync::Mutex::new(Some(frozen_tx));
    let opts = PutOptions {
        progress: Some(Arc::new(move |n| {
            if n > GIB / 10 && !fired.swap(true, Ordering::SeqCst) {
                let lab = Arc::clone(&freezer_lab);
                let tx = frozen_tx.lock().ok().and_then(|mut t| t.take());
                std::thread::spawn(move || {
                    lab.freeze("node1");
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                });
            }
        })),
        stall_timeout: Some(Duration::from_secs(3)),
        ..PutOptions::default()
    };
    let first = conn.put(&src, dest, &opts).await;
    frozen_rx.await.expect("the node was frozen");
    {
        let lab = Arc::clone(&lab);
        tokio::task::spawn_blocking(move || lab.thaw("node1"))
            .await
            .unwrap();
    }
    let err = match first {
        Ok(r) => panic!("the put finished although its node was frozen: {r:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("node1") && err.contains("stalled"), "{err}");
    assert!(
        err.contains("run again"),
        "the error says what to do: {err}"
    );

    // The thawed node's `cat` sees EOF and the script keeps the short temp file.
    let conn = connect(&lab, "node1").await;
    let report = conn
        .put(&src, dest, &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put after thaw: {e}"));
    assert_eq!(report.sha256, want);
    assert!(
        report.bytes_sent < GIB,
        "the put after thaw resumed instead of sending all {GIB} bytes again"
    );
    assert_eq!(node_sha256(&lab, "node1", dest), want);
    let gone = lab.exec_output("node1", &format!("test -e {temp}"));
    assert!(!gone.status.success(), "the temp file {temp} is gone");
}
