//! The registry client against a real Distribution registry on 127.0.0.1, with skopeo as
//! the independent client that pushes images and reads manifests back.

// A failed setup step in a test should stop it with the step named, which is what expect does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gpuctl::registry::manifest::OCI_MANIFEST;
use gpuctl::registry::{
    AuthKind, ClientOptions, Credentials, Digest, RegistryClient, RegistryError,
};
use gpuctl::secret::Secret;

use crate::support::registry::TestRegistry;

mod bearer;
mod blobs;
mod token_renewal;

fn client(registry: &TestRegistry, credentials: Option<(&str, &str)>) -> RegistryClient {
    let options = ClientOptions {
        insecure: true,
        ca_file: None,
        credentials: credentials.map(|(user, password)| Credentials {
            username: user.to_string(),
            password: Secret::new(password),
        }),
        ..ClientOptions::default()
    };
    RegistryClient::new(&registry.addr, options).expect("build the registry client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_an_open_registry() {
    let registry = TestRegistry::plain();
    assert_eq!(
        client(&registry, None).ping().await.ok(),
        Some(AuthKind::Anonymous)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_bytes_and_digest_match_what_skopeo_sees() {
    let registry = TestRegistry::plain();
    registry.push_random_image("team/sub/app", "v1");
    let raw = registry.skopeo_raw_manifest("team/sub/app", "v1");
    let expected = Digest::sha256_of(&raw);

    let c = client(&registry, None);
    let by_tag = c
        .get_manifest("team/sub/app", "v1")
        .await
        .expect("get by tag");
    assert_eq!(
        by_tag.bytes.as_ref(),
        raw.as_slice(),
        "bytes differ from skopeo's"
    );
    assert_eq!(by_tag.digest, expected);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);

    let by_digest = c
        .get_manifest("team/sub/app", &expected.to_string())
        .await
        .expect("get by digest");
    assert_eq!(by_digest, by_tag);

    let head = c
        .head_manifest("team/sub/app", "v1")
        .await
        .expect("head")
        .expect("the manifest exists");
    assert_eq!(head.digest.as_ref(), Some(&expected));
    assert_eq!(head.size, Some(raw.len() as u64));

    let json: serde_json::Value = serde_json::from_slice(&raw).expect("manifest is JSON");
    let config = json["config"]["digest"].as_str().expect("config digest");
    let config = Digest::parse(config).expect("valid config digest");
    assert!(
        c.blob_exists("team/sub/app", &config)
            .await
            .expect("head blob")
    );
    let absent = Digest::sha256_of(b"no such blob");
    assert!(
        !c.blob_exists("team/sub/app", &absent)
            .await
            .expect("head blob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_names_repository_tag_and_registry_code() {
    let registry = TestRegistry::plain();
    registry.push_random_image("team/app", "v1");
    let c = client(&registry, None);

    let err = c
        .get_manifest("team/app", "v2")
        .await
        .expect_err("v2 does not exist");
    assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"), "{err}");
    assert_eq!(err.status(), Some(404), "{err}");
    let msg = err.to_string();
    for part in [
        registry.addr.as_str(),
        "team/app",
        "v2",
        "MANIFEST_UNKNOWN",
        "404",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    assert_eq!(c.head_manifest("team/app", "v2").await.ok(), Some(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_accepts_the_right_password_and_never_prints_the_wrong_one() {
    let registry = TestRegistry::basic_auth("alice", "right-Pa55word");
    registry.push_random_image("team/app", "v1");
    let raw = registry.skopeo_raw_manifest("team/app", "v1");

    let good = client(&registry, Some(("alice", "right-Pa55word")));
    assert_eq!(good.ping().await.ok(), Some(AuthKind::Basic));
    let manifest = good
        .get_manifest("team/app", "v1")
        .await
        .expect("authorised get");
    assert_eq!(manifest.bytes.as_ref(), raw.as_slice());

    let wrong_password = "wrong-Pa55word-7f3a";
    let bad = client(&registry, Some(("alice", wrong_password)));
    for err in [
        bad.ping().await.expect_err("wrong password on ping"),
        bad.get_manifest("team/app", "v1")
            .await
            .expect_err("wrong password on get"),
    ] {
        assert!(matches!(err, RegistryError::AuthRejected { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("alice") && msg.contains(&registry.addr),
            "{msg}"
        );
        assert!(msg.contains("check the username and password"), "{msg}");
        assert!(!msg.contains(wrong_password), "password leaked: {msg}");
        assert!(
            !format!("{err:?}").contains(wrong_password),
            "password leaked: {err:?}"
        );
    }

    let err = client(&registry, None)
        .get_manifest("team/app", "v1")
        .await
        .expect_err("no credentials");
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err:?}");
    assert!(
        err.to_string().contains("give a username and password"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_used_only_when_asked() {
    let registry = TestRegistry::plain();
    let tls_only =
        RegistryClient::new(&registry.addr, ClientOptions::default()).expect("build the client");
    let err = tls_only
        .ping()
        .await
        .expect_err("TLS to a plain-HTTP registry must fail");
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("https://{}/v2/", registry.addr)),
        "{msg}"
    );
    assert!(
        msg.contains("answered in plain HTTP: use the insecure setting"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_needs_the_ca_file() {
    let registry = TestRegistry::tls();
    let with_ca = ClientOptions {
        ca_file: registry.ca_file.clone(),
        ..ClientOptions::default()
    };
    let c = RegistryClient::new(&registry.addr, with_ca).expect("build the client");
    match c.ping().await {
        Ok(kind) => assert_eq!(kind, AuthKind::Anonymous),
        Err(e) => panic!("ping with the CA file failed: {e}\n{}", registry.log()),
    }

    let without_ca =
        RegistryClient::new(&registry.addr, ClientOptions::default()).expect("build the client");
    let err = without_ca
        .ping()
        .await
        .expect_err("an unknown CA must be refused");
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&registry.addr), "{msg}");
    assert!(msg.contains("not trusted: give the CA file"), "{msg}");
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("not-a-ca.pem");
    std::fs::write(&path, "just text\n").expect("write file");
    let options = ClientOptions {
        ca_file: Some(path.clone()),
        ..ClientOptions::default()
    };
    match RegistryClient::new("registry.example.com", options) {
        Ok(_) => panic!("a CA file without certificates was accepted"),
        Err(err) => {
            assert!(matches!(err, RegistryError::CaParse { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}

#[test]
fn a_missing_ca_file_is_named() {
    let options = ClientOptions {
        ca_file: Some("/nonexistent/registry-ca.pem".into()),
        ..ClientOptions::default()
    };
    match RegistryClient::new("registry.example.com", options) {
        Ok(_) => panic!("a missing CA file was accepted"),
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains("/nonexistent/registry-ca.pem"), "{msg}");
            assert!(msg.contains("registry.example.com"), "{msg}");
        }
    }
}
