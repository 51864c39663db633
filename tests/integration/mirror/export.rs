//! `mirror-images export --format tar`: the tarball is loaded by this machine's real Docker
//! engine (`docker load`) and imported by its real containerd (`ctr images import`), and
//! skopeo reads it both as `oci-archive:` and as `docker-archive:`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Work, children, digest_of, pull};
use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::images::{multi_arch, single_arch};
use crate::support::registry::TestRegistry;

/// containerd sockets, in the order tried: a standalone containerd, then Docker's own.
const CONTAINERD_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
];

fn export(bundle: &Path, out: &Path, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["mirror-images", "export", "--format", "tar", "--bundle"])
        .args([bundle.display().to_string()])
        .args(["--out".to_string(), out.display().to_string()])
        .args(extra.iter().copied())
        .run()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}): install Debian's docker.io package (it brings containerd and ctr)"
        )
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The config digest (Docker's image ID) of an image manifest.
fn config_digest(manifest: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    json["config"]["digest"].as_str().unwrap().to_string()
}

/// Images loaded into Docker by a test, removed again when it ends (pass or fail).
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["image", "rm", "--force", name])
                .output();
        }
    }
}

/// A containerd namespace of the test's own, emptied and removed when it ends.
struct CtrNamespace {
    socket: String,
    name: String,
}

impl CtrNamespace {
    fn ctr(&self, args: &[&str]) -> Output {
        let mut all = vec!["--address", &self.socket, "--namespace", &self.name];
        all.extend_from_slice(args);
        run("ctr", &all)
    }
}

impl Drop for CtrNamespace {
    fn drop(&mut self) {
        let listed = self.ctr(&["images", "ls", "--quiet"]);
        for image in String::from_utf8_lossy(&listed.stdout).lines() {
            let _ = self.ctr(&["images", "rm", "--sync", image]);
        }
        let snapshots = self.ctr(&["snapshots", "ls"]);
        for line in String::from_utf8_lossy(&snapshots.stdout).lines().skip(1) {
            if let Some(key) = line.split_whitespace().next() {
                let _ = self.ctr(&["snapshots", "rm", key]);
            }
        }
        let _ = run(
            "ctr",
            &["--address", &self.socket, "namespaces", "rm", &self.name],
        );
    }
}

/// A bundle with a Docker schema 2 image and a two-platform OCI index. The index's lock
/// entry is renamed to a Docker Hub reference, as if pulled from there (the blobs are the
/// same either way): the tarball must carry the upstream name, normalised.
struct Fixture {
    work: Work,
    upstream: TestRegistry,
    bundle: PathBuf,
    app: String,
    hub: String,
}

fn fixture(platform_filter: &[&str]) -> Fixture {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let app = single_arch(&work.path("app-layout"), "1.0", 2, 16 * 1024);
    upstream.copy_layout(&app, "1.0", "team/app", Some("v2s2"));
    let multi = multi_arch(&work.path("multi-layout"), "2.0", 16 * 1024);
    upstream.copy_layout(&multi, "2.0", "library/multi", None);
    let images = work.images_file(&[
        format!("{}/team/app:1.0", upstream.addr),
        format!("{}/library/multi:2.0", upstream.addr),
    ]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, platform_filter).success();

    let unique = format!(
        "gpuctl-export-{}-{}",
        std::process::id(),
        upstream.addr.rsplit(':').next().unwrap()
    );
    let hub = format!("docker.io/library/{unique}:2.0");
    let lock_path = bundle.join("images.lock.yaml");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let from = format!("reference: {}/library/multi:2.0", upstream.addr);
    assert!(lock.contains(&from), "{lock}");
    std::fs::write(
        &lock_path,
        lock.replace(&from, &format!("reference: {hub}")),
    )
    .unwrap();
    Fixture {
        app: format!("{}/team/app:1.0", upstream.addr),
        work,
        upstream,
        bundle,
        hub,
    }
}

/// The amd64 manifest of `library/multi:2.0` upstream, as bytes.
fn multi_amd64(upstream: &TestRegistry) -> Vec<u8> {
    let index = upstream.skopeo_raw_manifest("library/multi", "2.0");
    let (amd, _) = children(&index)
        .into_iter()
        .find(|(_, arch)| arch == "amd64")
        .unwrap();
    upstream.skopeo_raw_manifest("library/multi", &amd)
}

#[test]
fn the_tarball_loads_into_docker_and_containerd_under_upstream_names() {
    let f = fixture(&[]);
    let out = f.work.path("images.tar");
    let done = export(&f.bundle, &out, &["--platform", "linux/amd64"]).success();
    assert!(done.stdout.contains("exported 2 images"), "{}", done.stdout);
    let app_manifest = f.upstream.skopeo_raw_manifest("team/app", "1.0");
    let amd_manifest = multi_amd64(&f.upstream);
    let expected = [(f.app.clone(), app_manifest), (f.hub.clone(), amd_manifest)];
    for (name, manifest) in &expected {
        assert!(
            done.stdout
                .contains(&format!("{name} linux/amd64 {}", digest_of(manifest))),
            "{name}: {}",
            done.stdout
        );
    }
    // Nothing but the tarball is left beside it.
    let beside: Vec<_> = std::fs::read_dir(f.work.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");

    // skopeo reads it as a Docker archive (by RepoTag), and the OCI image as an OCI archive
    // (the manifest bytes are upstream's; skopeo's oci-archive skips index entries with
    // Docker media types, which containerd reads, so the v2s2 image is not asked for).
    for (name, manifest) in &expected {
        if name == &f.hub {
            let oci = run(
                "skopeo",
                &[
                    "inspect",
                    "--raw",
                    &format!("oci-archive:{}:{name}", out.display()),
                ],
            );
            assert!(oci.status.success(), "oci-archive {name}: {}", text(&oci));
            assert_eq!(digest_of(&oci.stdout), digest_of(manifest), "{name}");
        }
        let docker = run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--config",
                &format!("docker-archive:{}:{name}", out.display()),
            ],
        );
        assert!(
            docker.status.success(),
            "docker-archive {name}: {}",
            text(&docker)
        );
        assert_eq!(
            digest_of(&docker.stdout).to_string(),
            config_digest(manifest),
            "{name}: docker-archive config"
        );
    }

    // This machine's Docker engine loads it; the image ID is the config digest.
    let _cleanup = DockerImages(expected.iter().map(|(n, _)| n.clone()).collect());
    let loaded = run("docker", &["load", "-i", &out.display().to_string()]);
    assert!(loaded.status.success(), "docker load: {}", text(&loaded));
    for (name, manifest) in &expected {
        let inspect = run(
            "docker",
            &[
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{json .RepoTags}}",
                name,
            ],
        );
        assert!(
            inspect.status.success(),
            "docker image inspect {name}: {}",
            text(&inspect)
        );
        let shown = String::from_utf8_lossy(&inspect.stdout);
        assert!(
            shown.starts_with(&format!("{} ", config_digest(manifest))),
            "{name}: {shown}"
        );
        // Docker prints Hub names in their short form.
        let familiar = name.trim_start_matches("docker.io/library/");
        assert!(
            shown.contains(&format!("\"{familiar}\"")),
            "{name}: {shown}"
        );
    }

    // containerd imports it too, with both names and the platform manifests' digests.
    let socket = CONTAINERD_SOCKETS
        .iter()
        .find(|s| Path::new(s).exists())
        .unwrap_or_else(|| {
            panic!(
                "no containerd socket at {CONTAINERD_SOCKETS:?}: start dockerd (Debian's docker.io) or containerd"
            )
        });
    let ns = CtrNamespace {
        socket: socket.to_string(),
        name: format!("gpuctl-test-{}", std::process::id()),
    };
    let imported = ns.ctr(&["images", "import", &out.display().to_string()]);
    assert!(imported.status.success(), "ctr import: {}", text(&imported));
    let listed = ns.ctr(&["images", "ls"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    for (name, manifest) in &expected {
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not imported: {listing}"));
        assert!(
            line.contains(&digest_of(manifest).to_string()),
            "{name}: {line}"
        );
        assert!(line.contains("linux/amd64"), "{name}: {line}");
    }
}

#[test]
fn one_image_and_another_platform_can_be_chosen() {
    let f = fixture(&[]);
    let out = f.work.path("arm.tar");
    let done = export(
        &f.bundle,
        &out,
        &["--images", &f.hub, "--platform", "linux/arm64"],
    )
    .success();
    assert!(done.stdout.contains("exported 1 image "), "{}", done.stdout);
    let index: serde_json::Value = serde_json::from_slice(
        &run("tar", &["-xOf", &out.display().to_string(), "index.json"]).stdout,
    )
    .unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["platform"]["architecture"], "arm64", "{index}");
    assert_eq!(
        entries[0]["annotations"]["io.containerd.image.name"],
        f.hub.as_str()
    );
    let docker: serde_json::Value = serde_json::from_slice(
        &run(
            "tar",
            &["-xOf", &out.display().to_string(), "manifest.json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(docker[0]["RepoTags"][0], f.hub.as_str(), "{docker}");
    let layer = docker[0]["Layers"][0].as_str().unwrap();
    assert!(layer.starts_with("blobs/sha256/"), "{docker}");
}

#[test]
fn bad_bundles_unknown_images_and_missing_platforms_are_clear_errors() {
    let f = fixture(&["--platform", "linux/arm64"]);
    let out = f.work.path("images.tar");

    let not_a_bundle = f.work.path("empty");
    std::fs::create_dir_all(&not_a_bundle).unwrap();
    let e = export(&not_a_bundle, &out, &[]).code(2);
    assert!(e.stderr.contains("not an image bundle"), "{}", e.stderr);

    let e = export(&f.bundle, &out, &["--images", "busybox:1.36"]).code(2);
    assert!(
        e.stderr
            .contains("not in the bundle: docker.io/library/busybox:1.36; it holds")
            && e.stderr.contains(&f.hub),
        "{}",
        e.stderr
    );

    // The pull kept arm64 only; amd64 (the default) was left out.
    let e = export(&f.bundle, &out, &["--images", &f.hub]).code(2);
    assert!(
        e.stderr
            .contains("platform linux/amd64 is not in the bundle")
            && e.stderr.contains("pull again with --platform linux/amd64"),
        "{}",
        e.stderr
    );
    // The single-platform image is amd64.
    let e = export(
        &f.bundle,
        &out,
        &["--images", &f.app, "--platform", "linux/arm64"],
    )
    .code(2);
    assert!(
        e.stderr.contains("single-platform image for linux/amd64"),
        "{}",
        e.stderr
    );
    assert!(!out.exists());

    // A blob damaged in the bundle stops the export; no tarball, no temp file is left.
    let app_manifest = f.upstream.skopeo_raw_manifest("team/app", "1.0");
    let json: serde_json::Value = serde_json::from_slice(&app_manifest).unwrap();
    let layer = json["layers"][0]["digest"].as_str().unwrap();
    let path = f
        .bundle
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = export(&f.bundle, &out, &["--images", &f.app]).code(1);
    assert!(
        e.stderr.contains("nothing was written there") && e.stderr.contains("hashes to"),
        "{}",
        e.stderr
    );
    let left: Vec<_> = std::fs::read_dir(f.work.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("images.tar"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
