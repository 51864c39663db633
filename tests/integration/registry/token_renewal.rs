//! Bearer tokens over a long run, against the scripted token service (the real
//! distribution registry's token mode needs a JWT-issuing service that Debian does not
//! package): a token past its renewal point is renewed before the request, a token the
//! registry stops accepting is renewed once, a registry that refuses every new token fails
//! clearly, and an identity token is spent as an OAuth2 refresh token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gpuctl::registry::manifest::DOCKER_MANIFEST;
use gpuctl::registry::{ClientOptions, Credentials, Digest, RegistryClient, RegistryError};
use gpuctl::secret::Secret;

use crate::support::fake_registry::{FakeRegistry, FakeRequest, FakeResponse};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
const PASSWORD: &str = "renew-Pa55word-3k";

fn client(addr: &str, username: &str, password: &str) -> RegistryClient {
    RegistryClient::new(
        addr,
        ClientOptions {
            insecure: true,
            credentials: Some(Credentials {
                username: username.to_string(),
                password: Secret::new(password),
            }),
            ..ClientOptions::default()
        },
    )
    .expect("build the client")
}

/// A registry whose token service numbers its tokens (`tok-1`, `tok-2`, …) with the given
/// lifetime, and whose manifest endpoint accepts tokens numbered `accepted_from` or later
/// (`usize::MAX`: none).
fn numbered(
    expires_in: u64,
    accepted_from: Arc<AtomicUsize>,
) -> impl Fn(&str, &FakeRequest) -> FakeResponse + Send + Sync + 'static {
    let issued = Arc::new(AtomicUsize::new(0));
    move |addr, r| {
        let challenge = format!(
            "Bearer realm=\"http://{addr}/token\",service=\"fake\",scope=\"repository:team/app:pull\""
        );
        if r.path == "/token" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            return FakeResponse::new(200).body(format!(
                r#"{{"token":"tok-{n}","expires_in":{expires_in}}}"#
            ));
        }
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        let number: usize = auth
            .strip_prefix("Bearer tok-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if number == 0 || number < accepted_from.load(Ordering::SeqCst) {
            return FakeResponse::new(401)
                .header("WWW-Authenticate", &challenge)
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}"#);
        }
        FakeResponse::new(200)
            .header("Content-Type", DOCKER_MANIFEST)
            .header(
                "Docker-Content-Digest",
                &Digest::sha256_of(MANIFEST.as_bytes()).to_string(),
            )
            .body(MANIFEST)
    }
}

fn token_requests(server: &FakeRegistry) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path == "/token")
        .count()
}

/// The Authorization header of every manifest request, in order.
fn manifest_auth(server: &FakeRegistry) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .map(|r| r.headers.get("authorization").cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_registry_stops_accepting_is_renewed_once_and_the_run_goes_on() {
    let accepted_from = Arc::new(AtomicUsize::new(1));
    let server = FakeRegistry::start(numbered(300, accepted_from.clone())).await;
    let c = client(&server.addr, "bob", PASSWORD);
    for _ in 0..2 {
        c.get_manifest("team/app", "v1").await.expect("first token");
    }
    assert_eq!(token_requests(&server), 1, "a 300 s token is reused");
    // The registry revokes tok-1 mid-run (expired on its clock, or revoked).
    accepted_from.store(2, Ordering::SeqCst);
    c.get_manifest("team/app", "v1")
        .await
        .expect("renewed after one 401");
    assert_eq!(token_requests(&server), 2);
    assert_eq!(
        manifest_auth(&server),
        [
            "",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_the_new_token_too_fails_clearly_after_one_renewal() {
    let accepted_from = Arc::new(AtomicUsize::new(1));
    let server = FakeRegistry::start(numbered(300, accepted_from.clone())).await;
    let c = client(&server.addr, "bob", PASSWORD);
    c.get_manifest("team/app", "v1").await.expect("first token");
    // Mid-run, the registry stops accepting any token.
    accepted_from.store(usize::MAX, Ordering::SeqCst);
    let err = c
        .get_manifest("team/app", "v1")
        .await
        .expect_err("every token is refused");
    assert!(matches!(err, RegistryError::TokenRefused { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        server.addr.as_str(),
        "team/app",
        "repository:team/app:pull",
        "UNAUTHORIZED",
        "authenticated again",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    assert!(!msg.contains(PASSWORD), "{msg}");
    // The first token, one renewal, then the clear failure: no loop.
    assert_eq!(token_requests(&server), 2);
    assert_eq!(
        manifest_auth(&server),
        ["", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_renewed_before_it_expires_without_a_401() {
    // expires_in 1: renewed 0.8 s after it was asked for.
    let server = FakeRegistry::start(numbered(1, Arc::new(AtomicUsize::new(1)))).await;
    let c = client(&server.addr, "bob", PASSWORD);
    c.get_manifest("team/app", "v1").await.expect("first token");
    let before = server.requests().len();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.get_manifest("team/app", "v1")
        .await
        .expect("renewed token");
    let after: Vec<FakeRequest> = server.requests()[before..].to_vec();
    let paths: Vec<&str> = after.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/token", "/v2/team/app/manifests/v1"],
        "the token is renewed first, and the request is sent once"
    );
    assert_eq!(
        after[1].headers.get("authorization").map(String::as_str),
        Some("Bearer tok-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_token_is_posted_as_an_oauth2_refresh_token() {
    let server = FakeRegistry::start(|addr: &str, r: &FakeRequest| {
        let body = String::from_utf8_lossy(&r.body).to_string();
        if r.path == "/token" {
            if r.method == "POST"
                && body.contains("grant_type=refresh_token")
                && body.contains("refresh_token=id-T0ken-55")
                && !r.headers.contains_key("authorization")
            {
                return FakeResponse::new(200).body(r#"{"access_token":"oauth-ok"}"#);
            }
            return FakeResponse::new(401);
        }
        if r.headers.get("authorization").map(String::as_str) == Some("Bearer oauth-ok") {
            return FakeResponse::new(200)
                .header("Content-Type", DOCKER_MANIFEST)
                .body(MANIFEST);
        }
        FakeResponse::new(401).header(
            "WWW-Authenticate",
            &format!(
                "Bearer realm=\"http://{addr}/token\",service=\"fake\",scope=\"repository:team/app:pull\""
            ),
        )
    })
    .await;
    let c = client(&server.addr, "<token>", "id-T0ken-55");
    let m = c
        .get_manifest("team/app", "v1")
        .await
        .expect("identity token accepted");
    assert_eq!(m.bytes.as_ref(), MANIFEST.as_bytes());
    let token = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    let body = String::from_utf8_lossy(&token.body).to_string();
    assert!(
        body.contains("service=fake") && body.contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{body}"
    );
}
