//! A push killed in the middle of an upload, then run again: it completes, skips what
//! already arrived, and the registry serves whole, valid images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::{Work, assert_same_image, count, pull};
use crate::support::gpuctl::Gpuctl;
use crate::support::images::{multi_arch, single_arch};
use crate::support::registry::TestRegistry;
use crate::support::tcp_proxy::TcpProxy;

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_push_killed_halfway_completes_when_run_again() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    // Four layers of about 256 KiB: no single blob is half of the whole.
    let big = single_arch(&work.path("big"), "1", 4, 256 * 1024);
    upstream.copy_layout(&big, "1", "team/big", None);
    let multi = multi_arch(&work.path("multi"), "1", 64 * 1024);
    upstream.copy_layout(&multi, "1", "team/multi", None);
    let images = work.images_file(&[
        format!("{}/team/big:1", upstream.addr),
        format!("{}/team/multi:1", upstream.addr),
    ]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, &[]).success();
    let total: u64 = std::fs::read_dir(bundle.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();

    // The proxy lets half of the bytes through, then freezes mid-request; the process is
    // killed while its upload hangs there.
    let mirror = TestRegistry::plain();
    let via = TcpProxy::start(&mirror.addr, Some(total / 2));
    let mut child = Gpuctl::new()
        .args([
            "mirror-images",
            "push",
            "--insecure",
            "--concurrency",
            "1",
            "--chunk-size",
            "64K",
        ])
        .args([
            "--bundle".to_string(),
            bundle.display().to_string(),
            "--to".into(),
            via.addr.clone(),
        ])
        .spawn_detached();
    let frozen = via.wait_frozen(DEADLINE);
    let _ = child.kill();
    let status = child.wait().expect("wait for the killed push");
    assert!(
        frozen,
        "the push never sent half of the bundle ({total} bytes)"
    );
    assert!(!status.success(), "the push finished before it was killed");
    let stored_after_kill = mirror.stored_blobs();
    assert!(stored_after_kill > 0, "no blob arrived before the kill");
    drop(via);

    let out = Gpuctl::new()
        .args(["mirror-images", "push", "--insecure", "--chunk-size", "64K"])
        .args([
            "--bundle".to_string(),
            bundle.display().to_string(),
            "--to".into(),
            mirror.addr.clone(),
        ])
        .run()
        .success();
    assert!(count(&out.stdout, "already present") >= 1, "{}", out.stdout);
    assert!(count(&out.stdout, "blobs uploaded") >= 1, "{}", out.stdout);
    for (repository, tag) in [("team/big", "1"), ("team/multi", "1")] {
        assert_same_image(&upstream, &mirror, repository, tag, &work);
    }
}
