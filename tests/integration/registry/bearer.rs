//! Behaviour the real registry cannot be made to show, against a scripted server: the
//! Bearer token flow, schema 1 refusal, and a digest header that does not match the bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gpuctl::registry::fetch::MAX_MANIFEST_BYTES;
use gpuctl::registry::manifest::{DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, SUPPORTED};
use gpuctl::registry::{
    AuthKind, ClientOptions, Credentials, Digest, RegistryClient, RegistryError,
};
use gpuctl::secret::Secret;

use crate::support::fake_registry::{FakeRegistry, FakeRequest, FakeResponse};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
const PASSWORD: &str = "tok3n-Pa55word";

fn client(addr: &str, password: Option<&str>) -> RegistryClient {
    let options = ClientOptions {
        insecure: true,
        ca_file: None,
        credentials: password.map(|p| Credentials {
            username: "bob".to_string(),
            password: Secret::new(p),
        }),
        ..ClientOptions::default()
    };
    RegistryClient::new(addr, options).expect("build the client")
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("bob:{password}").as_bytes())
    )
}

/// A registry whose token service gives `tok:<scope>` to bob with the right password.
fn bearer_registry(addr: &str, r: &FakeRequest) -> FakeResponse {
    // Like real registries: the /v2/ challenge has no scope, a repository's does.
    let scope = if r.path == "/v2/" {
        String::new()
    } else {
        ",scope=\"repository:team/app:pull\"".to_string()
    };
    let challenge =
        format!("Bearer realm=\"http://{addr}/token\",service=\"fake-registry\"{scope}");
    let auth = r.headers.get("authorization").cloned().unwrap_or_default();
    match r.path.as_str() {
        "/token" => {
            if auth != basic(PASSWORD) {
                return FakeResponse::new(401)
                    .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
            }
            let scope = r.query.get("scope").cloned().unwrap_or_default();
            FakeResponse::new(200).body(format!(r#"{{"token":"tok:{scope}","expires_in":300}}"#))
        }
        "/v2/" if auth == "Bearer tok:" => FakeResponse::new(200),
        "/v2/team/app/manifests/v1" if auth == "Bearer tok:repository:team/app:pull" => {
            FakeResponse::new(200)
                .header("Content-Type", DOCKER_MANIFEST)
                .header(
                    "Docker-Content-Digest",
                    &Digest::sha256_of(MANIFEST.as_bytes()).to_string(),
                )
                .body(MANIFEST)
        }
        _ => FakeResponse::new(401)
            .header("WWW-Authenticate", &challenge)
            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_per_scope_with_basic_credentials_and_cached() {
    let server = FakeRegistry::start(bearer_registry).await;
    let c = client(&server.addr, Some(PASSWORD));
    match c.ping().await {
        Ok(kind) => assert_eq!(kind, AuthKind::Bearer),
        Err(e) => panic!("ping failed: {e}"),
    }
    for _ in 0..3 {
        let m = c
            .get_manifest("team/app", "v1")
            .await
            .expect("authorised get");
        assert_eq!(m.bytes.as_ref(), MANIFEST.as_bytes());
        assert_eq!(m.media_type, DOCKER_MANIFEST);
    }
    for r in server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
    {
        let accept = r.headers.get("accept").cloned().unwrap_or_default();
        for media_type in SUPPORTED {
            assert!(
                accept.contains(media_type),
                "{media_type} not in Accept: {accept}"
            );
        }
        assert!(
            !accept.contains("distribution.manifest.v1"),
            "schema 1 must not be asked for: {accept}"
        );
    }
    let tokens: Vec<FakeRequest> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/token")
        .collect();
    let scopes: Vec<Option<&str>> = tokens
        .iter()
        .map(|r| r.query.get("scope").map(String::as_str))
        .collect();
    assert_eq!(
        scopes,
        [None, Some("repository:team/app:pull")],
        "one token for the ping, one for the repository, then the cache"
    );
    for t in &tokens {
        assert_eq!(
            t.query.get("service").map(String::as_str),
            Some("fake-registry")
        );
        assert_eq!(t.headers.get("authorization"), Some(&basic(PASSWORD)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_names_the_realm_and_hides_the_password() {
    let server = FakeRegistry::start(bearer_registry).await;
    let wrong = "wrong-tok3n-pw-91c2";
    let err = client(&server.addr, Some(wrong))
        .get_manifest("team/app", "v1")
        .await
        .expect_err("wrong password");
    assert!(
        matches!(err, RegistryError::Token { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("UNAUTHORIZED"));
    let msg = err.to_string();
    for part in [
        server.addr.as_str(),
        "team/app",
        "v1",
        "/token",
        "UNAUTHORIZED",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    assert!(
        !msg.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_manifests_are_refused_with_a_way_out() {
    let server = FakeRegistry::start(|_, _| {
        FakeResponse::new(200)
            .header("Content-Type", DOCKER_SCHEMA1_SIGNED)
            .body(r#"{"schemaVersion":1,"name":"old/app","tag":"v1"}"#)
    })
    .await;
    let err = client(&server.addr, None)
        .get_manifest("old/app", "v1")
        .await
        .expect_err("schema 1");
    assert!(matches!(err, RegistryError::Schema1 { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        "old/app",
        "v1",
        "schema 1",
        DOCKER_SCHEMA1_SIGNED,
        "push the image again",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_the_digest_are_refused() {
    let lie = Digest::sha256_of(b"something else");
    let header = lie.to_string();
    let server = FakeRegistry::start(move |_, _| {
        FakeResponse::new(200)
            .header("Content-Type", DOCKER_MANIFEST)
            .header("Docker-Content-Digest", &header)
            .body(MANIFEST)
    })
    .await;
    let c = client(&server.addr, None);
    let err = c
        .get_manifest("team/app", "v1")
        .await
        .expect_err("header lies");
    assert!(
        matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == lie),
        "{err:?}"
    );
    // Asking by digest checks the bytes against the requested digest too.
    let err = c
        .get_manifest("team/app", &lie.to_string())
        .await
        .expect_err("bytes do not match the requested digest");
    let msg = err.to_string();
    assert!(
        msg.contains(&Digest::sha256_of(MANIFEST.as_bytes()).to_string()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_refused_without_reading_it_all() {
    let server = FakeRegistry::start(|_, _| {
        FakeResponse::new(200)
            .header("Content-Type", DOCKER_MANIFEST)
            .body(vec![b' '; MAX_MANIFEST_BYTES + 1])
    })
    .await;
    let err = client(&server.addr, None)
        .get_manifest("team/app", "huge")
        .await
        .expect_err("over the limit");
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("team/app") && msg.contains("huge"), "{msg}");
}
