//! `mirror-images check`: every locked image, for every locked platform, served by the
//! mirror; what is missing is listed and the exit code is 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use super::{Work, children, pull, push};
use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::images::{multi_arch, single_arch};
use crate::support::registry::TestRegistry;

fn check(bundle: &std::path::Path, to: &str, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args([
            "mirror-images",
            "check",
            "--insecure",
            "--to",
            to,
            "--bundle",
        ])
        .args([bundle.display().to_string()])
        .args(extra.iter().copied())
        .run()
}

/// An upstream registry with team/multi:1 (linux/amd64 and linux/arm64/v8) and team/app:1
/// (linux/amd64 only).
fn multi_and_app() -> (Work, TestRegistry) {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let multi = multi_arch(&work.path("multi"), "1", 8 * 1024);
    upstream.copy_layout(&multi, "1", "team/multi", None);
    let app = single_arch(&work.path("app"), "1", 1, 8 * 1024);
    upstream.copy_layout(&app, "1", "team/app", None);
    (work, upstream)
}

#[test]
fn check_lists_missing_platforms_and_images() {
    let (work, upstream) = multi_and_app();
    let images = work.images_file(&[
        format!("{}/team/multi:1", upstream.addr),
        format!("{}/team/app:1", upstream.addr),
    ]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, &[]).success();
    let mirror = TestRegistry::plain();
    push(&bundle, &mirror.addr, &mirror, &[]).success();

    check(&bundle, &mirror.addr, &[])
        .success()
        .stdout_has("all 2 images are in");

    // Nothing under another prefix.
    let out = check(&bundle, &mirror.addr, &["--prefix", "elsewhere"]).code(1);
    assert_eq!(
        out.stdout.matches("not in the mirror").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("2 of 2 images are incomplete"),
        "{}",
        out.stderr
    );

    // Remove the arm64 manifest from the mirror: only that platform is reported.
    let index = upstream.skopeo_raw_manifest("team/multi", "1");
    let (arm, _) = children(&index)
        .into_iter()
        .find(|(_, a)| a == "arm64")
        .unwrap();
    let out = Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{}/team/multi@{arm}", mirror.addr))
        .output()
        .expect("run skopeo delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(&bundle, &mirror.addr, &[]).code(1);
    assert!(
        out.stdout
            .contains(&format!("linux/arm64/v8 manifest {arm}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 2 images are incomplete"),
        "{}",
        out.stderr
    );
    let app_line = out.stdout.lines().find(|l| l.contains("team/app")).unwrap();
    assert!(app_line.trim_end().ends_with("ok"), "{}", out.stdout);

    // --images narrows the check; an image the lock does not have is bad input.
    let only_app = work.path("only-app.txt");
    std::fs::write(&only_app, format!("{}/team/app:1\n", upstream.addr)).unwrap();
    check(
        &bundle,
        &mirror.addr,
        &["--images", only_app.to_str().unwrap()],
    )
    .success()
    .stdout_has("all 1 images are in");
    std::fs::write(&only_app, format!("{}/team/other:1\n", upstream.addr)).unwrap();
    check(
        &bundle,
        &mirror.addr,
        &["--images", only_app.to_str().unwrap()],
    )
    .code(2)
    .stderr_has("is not in the lock file");
}

#[test]
fn check_asks_every_image_for_every_node_platform() {
    let (work, upstream) = multi_and_app();
    let mirror = TestRegistry::plain();

    // One bundle keeps both platforms of team/multi, the other only amd64.
    let images = work.images_file(&[
        format!("{}/team/multi:1", upstream.addr),
        format!("{}/team/app:1", upstream.addr),
    ]);
    let full = work.path("full");
    pull(&images, &full, &upstream.addr, &[]).success();
    push(&full, &mirror.addr, &mirror, &[]).success();
    let amd_only = work.path("amd-only");
    pull(
        &images,
        &amd_only,
        &upstream.addr,
        &["--platform", "linux/amd64"],
    )
    .success();

    check(&full, &mirror.addr, &["--platform", "linux/amd64"])
        .success()
        .stdout_has("all 2 images are in");
    let out = check(
        &full,
        &mirror.addr,
        &["--platform", "linux/amd64,linux/arm64"],
    )
    .code(1);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.stdout))
            .to_string()
    };
    assert!(
        line("team/multi").trim_end().ends_with("ok"),
        "{}",
        out.stdout
    );
    assert!(
        line("team/app").contains(
            "linux/arm64: a node runs linux/arm64, the image is built for linux/amd64 only"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 2 images are incomplete"),
        "{}",
        out.stderr
    );

    let out = check(&amd_only, &mirror.addr, &["--platform", "linux/arm64"]).code(1);
    assert!(
        out.stdout
            .contains("the pull's --platform left it out of the bundle"),
        "{}",
        out.stdout
    );

    check(&full, &mirror.addr, &["--platform", "linux"])
        .code(2)
        .stderr_has("--platform: platform \"linux\" is not os/architecture");
}

#[test]
fn check_with_an_inventory_reads_its_bundle_and_registry() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let app = single_arch(&work.path("app"), "1", 1, 8 * 1024);
    upstream.copy_layout(&app, "1", "team/app", None);
    let images = work.images_file(&[format!("{}/team/app:1", upstream.addr)]);
    // Where `bundle create` leaves images: <bundle>/images.
    pull(
        &images,
        &work.path("site/bundle/images"),
        &upstream.addr,
        &[],
    )
    .success();
    let mirror = TestRegistry::plain();
    push(&work.path("site/bundle/images"), &mirror.addr, &mirror, &[]).success();
    let inventory = work.path("site/lab.yaml");
    std::fs::write(
        &inventory,
        format!(
            "cluster: {{ name: chk }}\nssh: {{ user: ops }}\nbundle: ./bundle\nregistry: {{ mirror: \"{}\", insecure: true }}\nhosts:\n  - {{ name: cp1, address: 10.0.0.1, roles: [server] }}\n",
            mirror.addr
        ),
    )
    .unwrap();
    // --platform names the nodes' platform, so no host is asked.
    let run = |platform: &str| {
        Gpuctl::new()
            .args([
                "mirror-images",
                "check",
                "--platform",
                platform,
                "--inventory",
            ])
            .args([inventory.display().to_string()])
            .run()
    };
    run("linux/amd64")
        .success()
        .stdout_has("all 1 images are in");
    run("linux/arm64")
        .code(1)
        .stdout_has("the image is built for linux/amd64 only");
}
