//! `gpuctl mirror-images pull` and `push` as an admin runs them: an "upstream" registry
//! filled by skopeo, a bundle on disk, a "mirror" registry, and skopeo again to check that
//! the mirror serves exactly what upstream did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use gpuctl::registry::Digest;

use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::images::{Layout, multi_arch, single_arch};
use crate::support::registry::TestRegistry;
use crate::support::tcp_proxy::TcpProxy;

mod check;
mod credentials;
mod errors;
mod export;
mod harbor;
mod list;
mod resume;

const PASSWORD_VAR: &str = "GPUCTL_TEST_MIRROR_PASSWORD";

/// A scratch directory for layouts, images files and bundles.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        Work {
            dir: tempfile::Builder::new()
                .prefix("gpuctl-mirror-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn images_file(&self, lines: &[String]) -> PathBuf {
        let path = self.path("images.txt");
        std::fs::write(&path, format!("# test images\n{}\n", lines.join("\n")))
            .expect("write images file");
        path
    }
}

/// A bundle with one small image, pulled from a registry that is gone by the time it is
/// used (as on the air-gapped side).
fn small_bundle(work: &Work) -> PathBuf {
    let upstream = TestRegistry::plain();
    let layout = single_arch(&work.path("layout"), "1", 2, 16 * 1024);
    upstream.copy_layout(&layout, "1", "team/app", None);
    let images = work.images_file(&[format!("{}/team/app:1", upstream.addr)]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, &[]).success();
    bundle
}

fn pull(images: &Path, bundle: &Path, upstream: &str, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["mirror-images", "pull", "--images"])
        .args([images.display().to_string()])
        .args(["--bundle".to_string(), bundle.display().to_string()])
        .args(["--insecure-registry", upstream])
        .args(extra.iter().copied())
        .run()
}

fn push(bundle: &Path, to: &str, mirror: &TestRegistry, extra: &[&str]) -> Outcome {
    let mut cmd = Gpuctl::new()
        .args(["mirror-images", "push", "--bundle"])
        .args([bundle.display().to_string()])
        .args(["--to", to]);
    if mirror.ca_file.is_none() {
        cmd = cmd.args(["--insecure"]);
    }
    if let Some((user, password)) = &mirror.basic {
        cmd = cmd
            .args(["--username", user, "--password-env", PASSWORD_VAR])
            .env(PASSWORD_VAR, password);
    }
    cmd.args(extra.iter().copied()).run()
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// The entries of an index manifest: (digest, platform architecture).
fn children(index: &[u8]) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(index).expect("index is JSON");
    json["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["platform"]["architecture"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Asserts that the mirror serves byte-identical manifests (the image and, for an index,
/// every platform) and that skopeo can fetch every blob of it.
fn assert_same_image(
    upstream: &TestRegistry,
    mirror: &TestRegistry,
    repository: &str,
    tag: &str,
    work: &Work,
) {
    let up = upstream.skopeo_raw_manifest(repository, tag);
    let down = mirror.skopeo_raw_manifest(repository, tag);
    assert_eq!(
        digest_of(&down),
        digest_of(&up),
        "{repository}:{tag} differs in the mirror"
    );
    if serde_json::from_slice::<serde_json::Value>(&up).unwrap()["manifests"].is_array() {
        for (child, arch) in children(&up) {
            let up = upstream.skopeo_raw_manifest(repository, &child);
            let down = mirror.skopeo_raw_manifest(repository, &child);
            assert_eq!(
                digest_of(&down),
                digest_of(&up),
                "{repository}@{child} ({arch})"
            );
        }
    }
    let into = work.path(&format!("check-{}-{tag}", repository.replace('/', "-")));
    let (ok, stderr) = mirror.skopeo_fetch_all(&format!("{repository}:{tag}"), &into);
    assert!(
        ok,
        "skopeo cannot copy {repository}:{tag} from the mirror: {stderr}"
    );
}

/// A number before `label` in a summary line (`7 blobs downloaded`).
fn count(text: &str, label: &str) -> usize {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in: {text}"));
    text[..at]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number before {label:?} in: {text}"))
}

/// Upstream with three images: a Docker schema 2 image in two repositories (the same
/// blobs), and a two-platform OCI index.
fn upstream_with_images(work: &Work) -> TestRegistry {
    let upstream = TestRegistry::plain();
    let app: Layout = single_arch(&work.path("app-layout"), "1.0", 2, 48 * 1024);
    upstream.copy_layout(&app, "1.0", "team/app", Some("v2s2"));
    upstream.copy_layout(&app, "1.0", "team/app-copy", Some("v2s2"));
    let multi = multi_arch(&work.path("multi-layout"), "latest", 40 * 1024);
    upstream.copy_layout(&multi, "latest", "library/multi", None);
    upstream
}

#[test]
fn pull_then_push_keeps_every_digest_and_a_second_run_moves_no_blob() {
    let work = Work::new();
    let upstream = upstream_with_images(&work);
    // Every pull goes through a counting proxy: an independent measure of the traffic.
    let via = TcpProxy::start(&upstream.addr, None);
    let images = work.images_file(&[
        format!("{}/team/app:1.0", via.addr),
        format!("{}/team/app-copy:1.0   # same blobs as team/app", via.addr),
        format!("{}/library/multi", via.addr),
    ]);
    let bundle = work.path("bundle");

    let first = pull(&images, &bundle, &via.addr, &["--concurrency", "3"]).success();
    // team/app: config + 2 layers; multi: 2 configs + 2 layers. team/app-copy adds nothing.
    assert_eq!(
        count(&first.stdout, "blobs downloaded"),
        7,
        "{}",
        first.stdout
    );
    assert_eq!(
        count(&first.stdout, "already in the bundle"),
        0,
        "{}",
        first.stdout
    );
    let lock = std::fs::read_to_string(bundle.join("images.lock.yaml")).expect("lock file");
    let multi_digest = digest_of(&upstream.skopeo_raw_manifest("library/multi", "latest"));
    assert!(lock.contains(&format!("digest: {multi_digest}")), "{lock}");
    assert!(lock.contains("platform: linux/arm64/v8"), "{lock}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(3),
        "{index}"
    );

    let down_before = via.bytes_down();
    let second = pull(&images, &bundle, &via.addr, &[]).success();
    assert_eq!(
        count(&second.stdout, "blobs downloaded"),
        0,
        "{}",
        second.stdout
    );
    assert_eq!(
        count(&second.stdout, "already in the bundle"),
        7,
        "{}",
        second.stdout
    );
    assert_eq!(
        count(&second.stdout, "manifests fetched"),
        0,
        "{}",
        second.stdout
    );
    let second_traffic = via.bytes_down() - down_before;
    assert!(
        second_traffic < 40 * 1024,
        "a no-op pull read {second_traffic} bytes"
    );

    let mirror = TestRegistry::basic_auth("mirror-admin", "mirror-Pa55");
    let to = TcpProxy::start(&mirror.addr, None);
    let pushed = push(&bundle, &to.addr, &mirror, &[]).success();
    assert_eq!(
        count(&pushed.stdout, "blobs uploaded"),
        7,
        "{}",
        pushed.stdout
    );
    // team/app-copy gets its three blobs by mounting them from team/app.
    assert_eq!(count(&pushed.stdout, "mounted"), 3, "{}", pushed.stdout);
    assert!(!pushed.stdout.contains("mirror-Pa55") && !pushed.stderr.contains("mirror-Pa55"));
    for (repository, tag) in [
        ("team/app", "1.0"),
        ("team/app-copy", "1.0"),
        ("library/multi", "latest"),
    ] {
        assert_same_image(&upstream, &mirror, repository, tag, &work);
    }

    let up_before = to.bytes_up();
    let again = push(&bundle, &to.addr, &mirror, &[]).success();
    assert_eq!(
        count(&again.stdout, "blobs uploaded"),
        0,
        "{}",
        again.stdout
    );
    assert_eq!(count(&again.stdout, " mounted"), 0, "{}", again.stdout);
    // Every image was whole in the mirror: none of its blobs was read or asked for again.
    assert!(
        again.stdout.contains("3 images to") && again.stdout.contains("(3 already complete there)"),
        "{}",
        again.stdout
    );
    assert_eq!(
        count(&again.stdout, "manifests pushed"),
        0,
        "{}",
        again.stdout
    );
    let again_traffic = to.bytes_up() - up_before;
    assert!(
        again_traffic < 40 * 1024,
        "a no-op push sent {again_traffic} bytes"
    );
}

#[test]
fn a_latest_tag_is_pinned_until_the_pull_is_told_to_update() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let first = single_arch(&work.path("v1"), "latest", 1, 8 * 1024);
    upstream.copy_layout(&first, "latest", "team/pinned", None);
    let pinned = digest_of(&upstream.skopeo_raw_manifest("team/pinned", "latest"));
    let images = work.images_file(&[format!("{}/team/pinned", upstream.addr)]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, &[]).success();

    // Upstream moves `latest`; the bundle and the lock do not follow.
    let second = single_arch(&work.path("v2"), "latest", 1, 8 * 1024);
    upstream.copy_layout(&second, "latest", "team/pinned", None);
    let moved = digest_of(&upstream.skopeo_raw_manifest("team/pinned", "latest"));
    assert_ne!(moved, pinned);
    let again = pull(&images, &bundle, &upstream.addr, &[]).success();
    assert_eq!(
        count(&again.stdout, "blobs downloaded"),
        0,
        "{}",
        again.stdout
    );
    let lock = std::fs::read_to_string(bundle.join("images.lock.yaml")).unwrap();
    assert!(
        lock.contains(&pinned.to_string()) && !lock.contains(&moved.to_string()),
        "{lock}"
    );

    let mirror = TestRegistry::plain();
    push(&bundle, &mirror.addr, &mirror, &[]).success();
    let served = digest_of(&mirror.skopeo_raw_manifest("team/pinned", "latest"));
    assert_eq!(
        served, pinned,
        "the mirror must hold the pinned image, not upstream's new latest"
    );

    let updated = pull(&images, &bundle, &upstream.addr, &["--update"]).success();
    assert_eq!(
        count(&updated.stdout, "blobs downloaded"),
        2,
        "{}",
        updated.stdout
    );
    let lock = std::fs::read_to_string(bundle.join("images.lock.yaml")).unwrap();
    assert!(lock.contains(&moved.to_string()), "{lock}");
}

#[test]
fn a_platform_filter_keeps_upstream_bytes_and_tags_the_one_platform_kept() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let multi = multi_arch(&work.path("multi"), "2.0", 8 * 1024);
    upstream.copy_layout(&multi, "2.0", "team/multi", None);
    let index = upstream.skopeo_raw_manifest("team/multi", "2.0");
    let (arm, _) = children(&index)
        .into_iter()
        .find(|(_, a)| a == "arm64")
        .unwrap();
    let (amd, _) = children(&index)
        .into_iter()
        .find(|(_, a)| a == "amd64")
        .unwrap();

    let images = work.images_file(&[format!("{}/team/multi:2.0", upstream.addr)]);
    let bundle = work.path("bundle");
    let out = pull(
        &images,
        &bundle,
        &upstream.addr,
        &["--platform", "linux/arm64"],
    )
    .success();
    assert_eq!(count(&out.stdout, "blobs downloaded"), 2, "{}", out.stdout);
    let lock = std::fs::read_to_string(bundle.join("images.lock.yaml")).unwrap();
    assert!(lock.contains("platform_filter:\n- linux/arm64"), "{lock}");
    assert!(
        lock.contains(&format!("digest: {}", digest_of(&index))),
        "the index digest is kept: {lock}"
    );
    let skipped = lock.split("skipped:").nth(1).expect("a skipped list");
    assert!(
        skipped.contains(&amd) && skipped.contains("linux/amd64"),
        "{lock}"
    );
    // The index bytes are upstream's, unchanged, in the bundle.
    let stored = std::fs::read(bundle.join("blobs/sha256").join(digest_of(&index).hex())).unwrap();
    assert_eq!(stored, index);

    let mirror = TestRegistry::plain();
    push(&bundle, &mirror.addr, &mirror, &[]).success();
    let tagged = mirror.skopeo_raw_manifest("team/multi", "2.0");
    assert_eq!(
        digest_of(&tagged).to_string(),
        arm,
        "the tag names the arm64 manifest"
    );
    assert_eq!(upstream.skopeo_raw_manifest("team/multi", &arm), tagged);
}
