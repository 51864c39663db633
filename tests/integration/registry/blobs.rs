//! Blob transfer against the real registry (download with resume, monolithic, chunked and
//! mounted uploads, recovery of a chunked upload from the registry's own offset, manifest
//! push), and against the scripted server for what the real one will not do (a corrupt
//! blob, 503s, a relative Location with its own query, a lying digest on manifest push).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gpuctl::registry::manifest::OCI_MANIFEST;
use gpuctl::registry::{
    BlobFile, ClientOptions, Digest, Manifest, Mount, RegistryClient, RegistryError, RetryPolicy,
};

use crate::support::fake_registry::{FakeRegistry, FakeResponse};
use crate::support::registry::TestRegistry;

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
    }
}

fn client(addr: &str) -> RegistryClient {
    let options = ClientOptions {
        insecure: true,
        retry: quick_retries(),
        ..ClientOptions::default()
    };
    RegistryClient::new(addr, options).expect("build the client")
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ (std::process::id() as u64) << 17;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    state ^= seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn blob_file(dir: &std::path::Path, bytes: &[u8]) -> BlobFile {
    let path = dir.join("blob.bin");
    std::fs::write(&path, bytes).expect("write blob");
    BlobFile {
        digest: Digest::sha256_of(bytes),
        path,
        size: bytes.len() as u64,
    }
}

/// Downloads `digest` from `repository` and returns the file's bytes.
async fn download(
    c: &RegistryClient,
    repository: &str,
    digest: &Digest,
    dir: &std::path::Path,
) -> Vec<u8> {
    let dest = dir.join(format!("dl-{}", digest.hex()));
    c.download_blob(repository, digest, None, &dir.join("partial"), &dest, None)
        .await
        .unwrap_or_else(|e| panic!("download {digest}: {e}"));
    std::fs::read(dest).expect("read the download")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_monolithic_chunked_and_mounted_then_downloads_with_resume() {
    let registry = TestRegistry::plain();
    let dir = tempfile::tempdir().expect("temp dir");
    let c = client(&registry.addr);

    // Monolithic: one PUT.
    let small = random_bytes(10_000);
    let small_blob = blob_file(dir.path(), &small);
    let sent = c
        .upload_blob("team/a", &small_blob, 64 * 1024, None, None)
        .await
        .unwrap_or_else(|e| panic!("monolithic upload: {e}\n{}", registry.log()));
    assert_eq!(sent, small.len() as u64);
    assert_eq!(
        download(&c, "team/a", &small_blob.digest, dir.path()).await,
        small
    );

    // Chunked: 300 000 bytes in 64 KiB PATCHes (the last one short).
    let big = random_bytes(300_000);
    let big_dir = tempfile::tempdir().expect("temp dir");
    let big_blob = blob_file(big_dir.path(), &big);
    let sent = c
        .upload_blob("team/a", &big_blob, 64 * 1024, None, None)
        .await
        .unwrap_or_else(|e| panic!("chunked upload: {e}\n{}", registry.log()));
    assert_eq!(sent, big.len() as u64);
    assert!(
        c.blob_exists("team/a", &big_blob.digest)
            .await
            .expect("head")
    );

    // Mount into another repository: nothing uploaded.
    assert!(
        !c.blob_exists("team/b", &big_blob.digest)
            .await
            .expect("head")
    );
    match c.mount_blob("team/b", &big_blob.digest, "team/a").await {
        Ok(Mount::Mounted) => {}
        Ok(Mount::Upload(_)) => panic!("the registry did not mount"),
        Err(e) => panic!("mount: {e}"),
    }
    assert!(
        c.blob_exists("team/b", &big_blob.digest)
            .await
            .expect("head")
    );

    // Resume: half of the blob already in the partial file; only the rest is fetched.
    let partial = dir.path().join("resume.partial");
    let dest = dir.path().join("resume.blob");
    std::fs::write(&partial, &big[..150_000]).expect("write partial");
    let done = c
        .download_blob(
            "team/b",
            &big_blob.digest,
            Some(300_000),
            &partial,
            &dest,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("resumed download: {e}"));
    assert_eq!(done.resumed_from, 150_000);
    assert_eq!(done.transferred, 150_000);
    assert_eq!(std::fs::read(&dest).expect("read"), big);
    assert!(!partial.exists(), "the partial file was renamed into place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_carries_on_from_the_offset_the_registry_reports() {
    let registry = TestRegistry::plain();
    let dir = tempfile::tempdir().expect("temp dir");
    let c = client(&registry.addr);
    let data = random_bytes(200_000);
    let blob = blob_file(dir.path(), &data);

    // A first run sent one chunk, then died; the session is all that is left.
    let mut session = c.start_upload("team/resume").await.expect("start upload");
    let offset = c
        .patch_chunk(&mut session, &blob.path, 0, 70_000, None)
        .await
        .unwrap_or_else(|e| panic!("first chunk: {e}"));
    assert_eq!(offset, 70_000);
    assert_eq!(
        c.upload_offset(&mut session).await.expect("GET offset"),
        70_000
    );

    // The next run does not know the offset: it asks, and sends only the rest.
    let sent = c
        .upload_chunks(&mut session, &blob, 50_000, None, None)
        .await
        .unwrap_or_else(|e| panic!("resumed chunked upload: {e}\n{}", registry.log()));
    assert_eq!(sent, 130_000);
    assert_eq!(
        download(&c, "team/resume", &blob.digest, dir.path()).await,
        data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_pushed_with_their_media_type_and_bytes() {
    let registry = TestRegistry::plain();
    let dir = tempfile::tempdir().expect("temp dir");
    let c = client(&registry.addr);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_blob = blob_file(dir.path(), config);
    c.upload_blob("team/m", &config_blob, 1 << 20, None, None)
        .await
        .expect("upload config");
    // Unusual spacing on purpose: re-serialising would change the digest.
    let text = format!(
        "{{\"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\",\n \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{}\", \"size\": {}}}, \"layers\": []}}",
        config_blob.digest,
        config.len()
    );
    let manifest = Manifest {
        media_type: OCI_MANIFEST.to_string(),
        bytes: bytes::Bytes::from(text.clone()),
        digest: Digest::sha256_of(text.as_bytes()),
    };
    let pushed = c
        .put_manifest("team/m", "v1", &manifest)
        .await
        .unwrap_or_else(|e| panic!("put manifest: {e}\n{}", registry.log()));
    assert_eq!(pushed, manifest.digest);
    assert_eq!(
        registry.skopeo_raw_manifest("team/m", "v1"),
        text.as_bytes()
    );

    // A manifest whose config is missing is refused with the registry's code.
    let orphan = text.replace(
        &config_blob.digest.to_string(),
        &Digest::sha256_of(b"nope").to_string(),
    );
    let orphan = Manifest {
        media_type: OCI_MANIFEST.to_string(),
        digest: Digest::sha256_of(orphan.as_bytes()),
        bytes: bytes::Bytes::from(orphan),
    };
    let err = c
        .put_manifest("team/m", "v2", &orphan)
        .await
        .expect_err("orphan manifest");
    assert_eq!(err.code(), Some("MANIFEST_BLOB_UNKNOWN"), "{err}");
    assert!(
        err.to_string().contains("team/m") && err.to_string().contains("v2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_deleted_and_reported() {
    let good = b"the real content".to_vec();
    let digest = Digest::sha256_of(&good);
    let server = FakeRegistry::start(|_, _| FakeResponse::new(200).body("tampered content")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (partial, dest) = (dir.path().join("p"), dir.path().join("d"));
    let err = client(&server.addr)
        .download_blob("team/app", &digest, None, &partial, &dest, None)
        .await
        .expect_err("a corrupt blob must be refused");
    assert!(matches!(err, RegistryError::BlobMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("team/app") && msg.contains(&digest.to_string()),
        "{msg}"
    );
    assert!(
        !partial.exists() && !dest.exists(),
        "nothing may be left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_reported_with_the_registry_code() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = FakeRegistry::start(move |_, r| {
        if r.path.starts_with("/v2/flaky/") && seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return FakeResponse::new(503)
                .body(r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#);
        }
        if r.path.starts_with("/v2/down/") {
            return FakeResponse::new(429)
                .body(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#);
        }
        FakeResponse::new(200)
    })
    .await;
    let c = client(&server.addr);
    let digest = Digest::sha256_of(b"x");
    assert!(
        c.blob_exists("flaky/app", &digest)
            .await
            .expect("third try succeeds")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let err = c
        .get_manifest("down/app", "v1")
        .await
        .expect_err("always 429");
    assert_eq!(err.code(), Some("TOOMANYREQUESTS"));
    let msg = err.to_string();
    for part in [
        server.addr.as_str(),
        "down/app",
        "v1",
        "429",
        "after 3 attempts",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_location_keeps_its_query_and_gets_the_digest_added() {
    let server = FakeRegistry::start(|_, r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v2/team/app/blobs/uploads/") => {
            FakeResponse::new(202).header("Location", "/upload/session-1?token=abc%3D&part=1")
        }
        ("PUT", "/upload/session-1") => FakeResponse::new(201),
        _ => FakeResponse::new(404),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let blob = blob_file(dir.path(), b"some layer bytes");
    client(&server.addr)
        .upload_blob("team/app", &blob, 1 << 20, None, None)
        .await
        .unwrap_or_else(|e| panic!("upload: {e}"));
    let put = server
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("a PUT was sent");
    assert_eq!(
        put.raw_query,
        format!("token=abc%3D&part=1&digest=sha256%3A{}", blob.digest.hex())
    );
    assert_eq!(put.body, b"some layer bytes");
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_stores_another_digest_is_caught() {
    let server = FakeRegistry::start(|_, _| {
        FakeResponse::new(201).header(
            "Docker-Content-Digest",
            &Digest::sha256_of(b"other").to_string(),
        )
    })
    .await;
    let text = r#"{"schemaVersion":2}"#;
    let manifest = Manifest {
        media_type: OCI_MANIFEST.to_string(),
        bytes: bytes::Bytes::from(text),
        digest: Digest::sha256_of(text.as_bytes()),
    };
    let err = client(&server.addr)
        .put_manifest("team/app", "v1", &manifest)
        .await
        .expect_err("a different digest must be refused");
    assert!(
        matches!(err, RegistryError::PushedDigestMismatch { .. }),
        "{err:?}"
    );
    let put = server
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("PUT sent");
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some(OCI_MANIFEST)
    );
    assert_eq!(put.body, text.as_bytes());
}
