#![allow(clippy::unwrap_used)]

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::*;

/// Writes `files` (relative path → content) and a manifest listing `listed` of them.
fn bundle(files: &[(&str, &[u8])], listed: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("name: test\nversions: { k3s: v1.30.6+k3s1 }\nfiles:\n");
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        if listed.contains(path) {
            yaml.push_str(&format!(
                "  - path: {path}\n    sha256: {}\n    size: {}\n",
                hex::encode(Sha256::digest(content)),
                content.len()
            ));
        }
    }
    std::fs::write(dir.path().join(MANIFEST), yaml).unwrap();
    dir
}

const JQ: &str = "packages/debian-12/jq_1.6-2.1+deb12u3_amd64.deb";
const LIB: &str = "packages/debian-12/libjq1_1.6-2.1+deb12u3_amd64.deb";
const ARM: &str = "packages/debian-12/jq_1.6-2.1+deb12u3_arm64.deb";
const DATA: &str = "packages/ubuntu-22.04/tzdata_2024a-0ubuntu0.22.04_all.deb";
const EPOCH: &str = "packages/ubuntu-22.04/vim_2%3a8.2.3995-1ubuntu2_amd64.deb";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn a_good_bundle_loads_verifies_and_lists_packages_per_os_and_arch() {
    let all = [JQ, LIB, ARM, DATA, EPOCH, "bin/k3s"];
    let files: Vec<(&str, &[u8])> = all.iter().map(|p| (*p, p.as_bytes())).collect();
    let dir = bundle(&files, &all);
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.name, "test");
    assert_eq!(b.versions["k3s"], "v1.30.6+k3s1");
    rt().block_on(b.verify("packages/")).unwrap();
    assert_eq!(b.package_dirs(), ["debian-12", "ubuntu-22.04"]);
    let debs = b.debs("debian-12", "amd64");
    let names: Vec<&str> = debs.iter().map(|d| d.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "jq_1.6-2.1+deb12u3_amd64.deb",
            "libjq1_1.6-2.1+deb12u3_amd64.deb"
        ]
    );
    assert_eq!(debs[0].name, "jq");
    assert_eq!(debs[0].version, "1.6-2.1+deb12u3");
    assert_eq!(debs[0].query_name(), "jq:amd64");
    let ubuntu = b.debs("ubuntu-22.04", "amd64");
    assert_eq!(ubuntu[0].query_name(), "tzdata");
    assert_eq!(ubuntu[1].version, "2:8.2.3995-1ubuntu2");
    assert_eq!(b.debs("debian-12", "arm64").len(), 1);
    assert!(b.debs("debian-11", "amd64").is_empty());
    assert_eq!(dpkg_arch("x86_64"), "amd64");
    assert_eq!(os_dir("debian", "12"), "debian-12");
}

#[test]
fn every_problem_is_listed_at_once_with_what_to_do() {
    let dir = bundle(&[(JQ, b"jq"), (LIB, b"lib"), (ARM, b"arm")], &[JQ, LIB]);
    // A file the manifest lists but that is gone, one that was truncated, one unlisted.
    std::fs::remove_file(dir.path().join(JQ)).unwrap();
    std::fs::write(dir.path().join(LIB), b"li").unwrap();
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("has 3 problems"), "{err}");
    assert!(
        err.contains(&format!("({JQ}): the file is missing")),
        "{err}"
    );
    assert!(
        err.contains("the file has 2 bytes, the manifest says 3"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{ARM} is in the bundle but not in bundle.yaml")),
        "{err}"
    );
}

#[test]
fn a_corrupt_file_fails_verification_naming_both_hashes() {
    let dir = bundle(&[(JQ, b"jq-good")], &[JQ]);
    std::fs::write(dir.path().join(JQ), b"jq-evil").unwrap();
    let b = Bundle::load(dir.path()).unwrap();
    let err = rt()
        .block_on(b.verify("packages/"))
        .unwrap_err()
        .to_string();
    let good = hex::encode(Sha256::digest(b"jq-good"));
    let evil = hex::encode(Sha256::digest(b"jq-evil"));
    assert!(
        err.contains(&format!("sha256 is {evil}, bundle.yaml says {good}")),
        "{err}"
    );
    // Files outside the prefix are not hashed.
    rt().block_on(b.verify("bin/")).unwrap();
}

#[test]
fn bad_manifests_say_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let err = Bundle::load(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the directory does not exist"), "{err}");
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("bundle.yaml cannot be read"), "{err}");
    let write = |text: &str| std::fs::write(dir.path().join(MANIFEST), text).unwrap();
    write("name: x\nfiles:\n  - path: a\n    sha: 1\n");
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unknown field `sha`"), "{err}");
    write(
        "name: x\nfiles:\n  - { path: ../etc/passwd, sha256: x, size: 1 }\n  \
         - { path: packages/debian-12/notadeb.txt, sha256: x, size: 1 }\n",
    );
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("must not contain empty, `.` or `..` parts"),
        "{err}"
    );
    assert!(err.contains("sha256 must be 64 hex digits"), "{err}");
    assert!(err.contains("not a .deb"), "{err}");
    assert!(!Path::new(&dir.path().join("etc")).exists());
}

#[test]
fn deb_names_are_parsed_strictly() {
    let f = |path: &str| BundleFile {
        path: path.into(),
        sha256: "0".repeat(64),
        size: 1,
    };
    assert!(Deb::parse(&f("packages/d/jq.deb")).is_err());
    assert!(Deb::parse(&f("packages/d/jq_1.6_amd64_x.deb")).is_err());
    assert!(Deb::parse(&f("packages/d/Jq_1.6_amd64.deb")).is_err());
    assert!(Deb::parse(&f("packages/d/jq_1.6;rm_amd64.deb")).is_err());
    let d = Deb::parse(&f("packages/d/libonig5_6.9.8-1_amd64.deb")).unwrap();
    assert_eq!(
        (d.name.as_str(), d.version.as_str()),
        ("libonig5", "6.9.8-1")
    );
}
