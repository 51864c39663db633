//! What goes wrong at the air-gapped side, and what the admin is told: a damaged bundle, a
//! wrong password, a registry certificate from an unknown CA, a bad images file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{PASSWORD_VAR, Work, count, pull, push, small_bundle};
use crate::support::gpuctl::Gpuctl;
use crate::support::images::single_arch;
use crate::support::registry::TestRegistry;
use crate::support::tcp_proxy::TcpProxy;

#[test]
fn a_corrupted_blob_is_reported_before_anything_is_pushed() {
    let work = Work::new();
    let bundle = small_bundle(&work);
    // Flip one byte in the largest blob (a layer).
    let blobs = bundle.join("blobs/sha256");
    let largest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&largest).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&largest, bytes).unwrap();

    let mirror = TestRegistry::plain();
    let via = TcpProxy::start(&mirror.addr, None);
    let out = push(&bundle, &via.addr, &mirror, &[]).code(1);
    assert!(
        out.stderr.contains("damaged or missing blob"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&largest.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was pushed"), "{}", out.stderr);
    // The registry was asked only whether it already holds the image (the ping and one
    // manifest HEAD, a few hundred bytes): no upload started.
    assert!(
        via.bytes_up() < 2048,
        "{} bytes went to the registry",
        via.bytes_up()
    );
    assert!(
        mirror.stored_repositories().is_empty(),
        "{:?}",
        mirror.stored_repositories()
    );
}

#[test]
fn a_wrong_password_is_a_clear_authentication_error() {
    let work = Work::new();
    let bundle = small_bundle(&work);
    let mirror = TestRegistry::basic_auth("alice", "right-Pa55");
    let wrong = "wrong-Pa55-9d1e";
    let out = Gpuctl::new()
        .args([
            "mirror-images",
            "push",
            "--insecure",
            "--username",
            "alice",
            "--password-env",
            PASSWORD_VAR,
        ])
        .args([
            "--bundle".to_string(),
            bundle.display().to_string(),
            "--to".into(),
            mirror.addr.clone(),
        ])
        .env(PASSWORD_VAR, wrong)
        .run()
        .code(1)
        .stderr_has("refused the credentials of user \"alice\"");
    assert!(out.stderr.contains(&mirror.addr), "{}", out.stderr);
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "the password leaked"
    );
    assert!(mirror.stored_repositories().is_empty());

    // An unset variable is bad input, said before any connection.
    Gpuctl::new()
        .args([
            "mirror-images",
            "push",
            "--insecure",
            "--username",
            "alice",
            "--password-env",
            "GPUCTL_TEST_UNSET_VAR",
        ])
        .args([
            "--bundle".to_string(),
            bundle.display().to_string(),
            "--to".into(),
            mirror.addr.clone(),
        ])
        .run()
        .code(2)
        .stderr_has("GPUCTL_TEST_UNSET_VAR is not set");
}

#[test]
fn an_untrusted_certificate_names_the_ca_option_and_the_ca_fixes_it() {
    let work = Work::new();
    let bundle = small_bundle(&work);
    let mirror = TestRegistry::tls();
    let base = || {
        Gpuctl::new()
            .args(["mirror-images", "push", "--bundle"])
            .args([
                bundle.display().to_string(),
                "--to".into(),
                mirror.addr.clone(),
            ])
    };
    let out = base().run().code(1);
    assert!(out.stderr.contains("--ca-file"), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(mirror.stored_repositories().is_empty());

    let ca = mirror.ca_file.clone().unwrap();
    let ok = base()
        .args(["--ca-file".to_string(), ca.display().to_string()])
        .run()
        .success();
    assert_eq!(count(&ok.stdout, "blobs uploaded"), 3, "{}", ok.stdout);
    assert_eq!(mirror.stored_repositories(), vec!["team/app".to_string()]);
}

#[test]
fn bad_images_files_and_flags_are_bad_input() {
    let work = Work::new();
    let images = work.path("images.txt");
    std::fs::write(&images, "nginx:1.27\nteam/App:1\n# fine\nfoo bar\n").unwrap();
    let bundle = work.path("bundle");
    let out = Gpuctl::new()
        .args(["mirror-images", "pull", "--images"])
        .args([
            images.display().to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
        ])
        .run()
        .code(2);
    let file = images.display().to_string();
    assert!(out.stderr.contains(&format!("{file}:2:")), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("{file}:4:")), "{}", out.stderr);
    assert!(
        !out.stderr.contains(&format!("{file}:1:")),
        "{}",
        out.stderr
    );
    assert!(!bundle.exists(), "nothing is written for bad input");

    Gpuctl::new()
        .args([
            "mirror-images",
            "pull",
            "--images",
            "/nonexistent/images.txt",
            "--bundle",
        ])
        .args([bundle.display().to_string()])
        .run()
        .code(2)
        .stderr_has("cannot read the images file /nonexistent/images.txt");

    std::fs::write(&images, "nginx:1.27\n").unwrap();
    Gpuctl::new()
        .args(["mirror-images", "pull", "--platform", "linux", "--images"])
        .args([
            images.display().to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
        ])
        .run()
        .code(2)
        .stderr_has("os/architecture");

    Gpuctl::new()
        .args(["mirror-images", "push", "--bundle"])
        .args([
            work.path("none").display().to_string(),
            "--to".into(),
            "https://registry.lab:5000".into(),
        ])
        .run()
        .code(2)
        .stderr_has("host[:port]");
    Gpuctl::new()
        .args(["mirror-images", "push", "--bundle"])
        .args([
            work.path("none").display().to_string(),
            "--to".into(),
            "registry.lab:5000".into(),
        ])
        .run()
        .code(2)
        .stderr_has("not an image bundle");
    // A password is never taken on the command line.
    Gpuctl::new()
        .args([
            "mirror-images",
            "push",
            "--bundle",
            "b",
            "--to",
            "r:5000",
            "--password",
            "x",
        ])
        .run()
        .code(2);
}

#[test]
fn help_describes_pull_push_and_check() {
    let out = Gpuctl::new()
        .args(["mirror-images", "--help"])
        .run()
        .success();
    for needle in ["pull", "push", "check"] {
        assert!(out.stdout.contains(needle), "{}", out.stdout);
    }
    let out = Gpuctl::new()
        .args(["mirror-images", "push", "--help"])
        .run()
        .success();
    for needle in [
        "--password-env",
        "--ca-file",
        "--insecure",
        "--prefix",
        "--chunk-size",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    let out = Gpuctl::new()
        .args(["mirror-images", "check", "--help"])
        .run()
        .success();
    for needle in ["--bundle", "--lock", "--images", "--to"] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
}

#[test]
fn a_missing_tag_fails_its_image_and_the_others_are_still_pulled() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let layout = single_arch(&work.path("layout"), "1", 1, 8 * 1024);
    upstream.copy_layout(&layout, "1", "team/app", None);
    let images = work.images_file(&[
        format!("{}/team/app:1", upstream.addr),
        format!("{}/team/app:no-such-tag", upstream.addr),
    ]);
    let bundle = work.path("bundle");
    let out = pull(&images, &bundle, &upstream.addr, &[]).code(1);
    assert_eq!(count(&out.stdout, "blobs downloaded"), 2, "{}", out.stdout);
    let failure = out
        .stderr
        .lines()
        .find(|l| l.starts_with("failed:"))
        .unwrap_or_else(|| panic!("no failure line: {}", out.stderr));
    for part in ["team/app:no-such-tag", "line 3", "MANIFEST_UNKNOWN", "404"] {
        assert!(failure.contains(part), "{part:?} missing from: {failure}");
    }
    let lock = std::fs::read_to_string(bundle.join("images.lock.yaml")).unwrap();
    assert!(
        lock.contains("team/app:1") && !lock.contains("no-such-tag"),
        "{lock}"
    );
}
