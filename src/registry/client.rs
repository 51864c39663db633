//! An HTTP client for one Distribution v2 registry: `/v2/` ping, Basic and Bearer
//! authentication, manifests fetched byte-for-byte and verified against their digest, and
//! blob existence checks.
//!
//! TLS is rustls with the system's roots, plus the roots of a CA file when one is given.
//! Plain HTTP is used only when `insecure` is set: it never happens as a silent fallback,
//! since a downgrade would let anyone on the path swap images.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};

use super::auth::{Challenge, Credentials, TokenReply, parse_challenge, pull_scope};
use super::digest::Digest;
use super::error::{RegistryCode, RegistryError, Target};
use super::manifest::{self, Kind, Manifest, ManifestHead};

/// Docker Hub's API lives on a different host than the name people write.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// containerd's limit, and the size the distribution spec asks registries to accept: a
/// larger "manifest" is a wrong URL or a hostile server, not something to buffer.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Speak plain HTTP. Only for registries that have no TLS at all.
    pub insecure: bool,
    /// A PEM file of extra CA certificates, trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
}

/// The authentication a registry asked for on `/v2/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Anonymous,
    Basic,
    Bearer,
}

/// A client bound to one registry (`localhost:5000`, `ghcr.io`, `docker.io`).
pub struct RegistryClient {
    registry: String,
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    state: Mutex<AuthState>,
}

/// What the registry asked for, and the Bearer tokens fetched so far, by scope.
#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, String>,
}

struct Call<'a> {
    method: Method,
    what: &'static str,
    url: String,
    target: &'a Target,
    scope: Option<String>,
    /// Send the Accept header listing the manifest types we handle.
    manifest: bool,
}

impl RegistryClient {
    /// Builds a client for `registry` (host[:port], as in a [`super::Reference`]).
    pub fn new(registry: &str, options: ClientOptions) -> Result<RegistryClient, RegistryError> {
        // reqwest is built without a crypto provider; ring is the one russh already uses.
        // An error only means a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("gpuctl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|source| RegistryError::CaFile {
                registry: registry.to_string(),
                path: path.clone(),
                source,
            })?;
            let ca_parse = |detail: String| RegistryError::CaParse {
                registry: registry.to_string(),
                path: path.clone(),
                detail,
            };
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_parse(error_chain(&e)))?;
            if certs.is_empty() {
                return Err(ca_parse(
                    "no \"-----BEGIN CERTIFICATE-----\" block found".to_string(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| RegistryError::Setup {
            registry: registry.to_string(),
            detail: error_chain(&e),
        })?;
        let host = if registry == super::reference::DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(RegistryClient {
            registry: registry.to_string(),
            base: format!("{scheme}://{host}"),
            http,
            credentials: options.credentials,
            state: Mutex::new(AuthState::default()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `GET /v2/`: checks that the registry speaks the v2 API and that the credentials (if
    /// any) are accepted; says which authentication it uses.
    pub async fn ping(&self) -> Result<AuthKind, RegistryError> {
        let target = self.target(None, None);
        let call = Call {
            method: Method::GET,
            what: "GET /v2/",
            url: format!("{}/v2/", self.base),
            target: &target,
            scope: None,
            manifest: false,
        };
        let resp = self.send(&call).await?;
        Self::expect_success(&call, resp).await?;
        Ok(match self.lock().challenge {
            None => AuthKind::Anonymous,
            Some(Challenge::Basic) => AuthKind::Basic,
            Some(Challenge::Bearer { .. }) => AuthKind::Bearer,
        })
    }

    /// Fetches a manifest (tag or digest) byte-for-byte and checks its digest against the
    /// requested one and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let target = self.target(Some(repository), Some(reference));
        let call = self.manifest_call(Method::GET, "GET manifest", &target, reference);
        let resp = self.send(&call).await?;
        let resp = Self::expect_success(&call, resp).await?;
        let content_type = header_str(&resp, header::CONTENT_TYPE);
        let header_digest = header_str(&resp, "docker-content-digest");
        let bytes = self.read_limited(&call, resp, MAX_MANIFEST_BYTES).await?;

        let media_type = match manifest::classify(content_type.as_deref(), &bytes) {
            Kind::Supported(mt) => mt,
            Kind::Schema1(media_type) => {
                return Err(RegistryError::Schema1 {
                    target: Box::new(target),
                    media_type,
                });
            }
            Kind::Unsupported(media_type) => {
                return Err(RegistryError::UnsupportedMediaType {
                    target: Box::new(target),
                    media_type,
                });
            }
        };
        let requested = Digest::parse(reference).ok();
        let from_header = match header_digest {
            Some(value) => {
                Some(
                    Digest::parse(&value).map_err(|_| RegistryError::BadDigestHeader {
                        target: Box::new(target.clone()),
                        value,
                    })?,
                )
            }
            None => None,
        };
        for expected in requested.iter().chain(from_header.iter()) {
            if !expected.matches(&bytes) {
                return Err(RegistryError::DigestMismatch {
                    target: Box::new(target),
                    expected: expected.clone(),
                    actual: Digest::sha256_of(&bytes),
                });
            }
        }
        let digest = requested
            .or(from_header)
            .unwrap_or_else(|| Digest::sha256_of(&bytes));
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// `HEAD` on a manifest: `None` when the registry does not have it.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let target = self.target(Some(repository), Some(reference));
        let call = self.manifest_call(Method::HEAD, "HEAD manifest", &target, reference);
        let resp = self.send(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::expect_success(&call, resp).await?;
        let digest = match header_str(&resp, "docker-content-digest") {
            Some(value) => {
                Some(
                    Digest::parse(&value).map_err(|_| RegistryError::BadDigestHeader {
                        target: Box::new(target),
                        value,
                    })?,
                )
            }
            None => None,
        };
        Ok(Some(ManifestHead {
            media_type: header_str(&resp, header::CONTENT_TYPE),
            digest,
            size: header_str(&resp, header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        }))
    }

    /// `HEAD /v2/<repository>/blobs/<digest>`: whether the registry already has the blob.
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let reference = digest.to_string();
        let target = self.target(Some(repository), Some(&reference));
        let call = Call {
            method: Method::HEAD,
            what: "HEAD blob",
            url: format!("{}/v2/{repository}/blobs/{reference}", self.base),
            target: &target,
            scope: Some(pull_scope(repository)),
            manifest: false,
        };
        let resp = self.send(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect_success(&call, resp).await.map(|_| true)
    }

    fn manifest_call<'a>(
        &self,
        method: Method,
        what: &'static str,
        target: &'a Target,
        reference: &str,
    ) -> Call<'a> {
        let repository = target.repository.as_deref().unwrap_or_default();
        Call {
            method,
            what,
            url: format!("{}/v2/{repository}/manifests/{reference}", self.base),
            target,
            scope: Some(pull_scope(repository)),
            manifest: true,
        }
    }

    /// Sends a request, answering one 401 challenge (Basic, or a Bearer token for the
    /// call's scope) and retrying once.
    async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut answered = false;
        loop {
            let mut request = self.http.request(call.method.clone(), &call.url);
            if call.manifest {
                request = request.header(header::ACCEPT, manifest::SUPPORTED.join(", "));
            }
            let request = self.authorize(request, call.scope.as_deref());
            let resp = request
                .send()
                .await
                .map_err(|e| self.connect_error(call, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = header_str(&resp, header::WWW_AUTHENTICATE);
            let code = RegistryCode::from_body(&resp.bytes().await.unwrap_or_default());
            let (Some(challenge_text), false) = (challenge, answered) else {
                return Err(self.refused(call.target, 401, code));
            };
            let challenge =
                parse_challenge(&challenge_text).map_err(|detail| RegistryError::Challenge {
                    target: Box::new(call.target.clone()),
                    challenge: challenge_text.clone(),
                    detail,
                })?;
            match &challenge {
                Challenge::Basic if self.credentials.is_none() => {
                    return Err(self.refused(call.target, 401, code));
                }
                Challenge::Basic => {}
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                } => {
                    // Cached under the call's own scope, which is what `authorize` looks
                    // up; the challenge's scope is only a fallback for what to ask for.
                    let wanted = call.scope.as_deref().or(scope.as_deref());
                    let token = self
                        .fetch_token(call.target, realm, service.as_deref(), wanted)
                        .await?;
                    self.lock()
                        .tokens
                        .insert(call.scope.clone().unwrap_or_default(), token);
                }
            }
            self.lock().challenge = Some(challenge);
            answered = true;
        }
    }

    fn authorize(&self, request: RequestBuilder, scope: Option<&str>) -> RequestBuilder {
        let state = self.lock();
        match (&state.challenge, &self.credentials) {
            (Some(Challenge::Basic), Some(creds)) => {
                request.basic_auth(&creds.username, Some(creds.password.expose()))
            }
            (Some(Challenge::Bearer { .. }), _) => {
                match state.tokens.get(scope.unwrap_or_default()) {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            }
            _ => request,
        }
    }

    async fn fetch_token(
        &self,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Challenge {
            target: Box::new(target.clone()),
            challenge: format!("Bearer realm=\"{realm}\""),
            detail: format!("the realm is not a URL ({e})"),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let call = Call {
            method: Method::GET,
            what: "GET token",
            url: url.to_string(),
            target,
            scope: None,
            manifest: false,
        };
        let mut request = self.http.get(url);
        if let Some(creds) = &self.credentials {
            request = request.basic_auth(&creds.username, Some(creds.password.expose()));
        }
        let resp = request
            .send()
            .await
            .map_err(|e| self.connect_error(&call, &e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.connect_error(&call, &e))?;
        let token_error = |code| RegistryError::Token {
            target: Box::new(target.clone()),
            realm: realm.to_string(),
            status: status.as_u16(),
            code,
        };
        if !status.is_success() {
            return Err(token_error(RegistryCode::from_body(&body)));
        }
        serde_json::from_slice::<TokenReply>(&body)
            .ok()
            .and_then(TokenReply::into_token)
            .ok_or_else(|| {
                token_error(RegistryCode {
                    code: None,
                    message: Some("the reply holds no token".to_string()),
                })
            })
    }

    /// Reads a body of at most `limit` bytes, stopping as soon as it is exceeded.
    async fn read_limited(
        &self,
        call: &Call<'_>,
        mut resp: Response,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        let too_large = |size: u64| RegistryError::TooLarge {
            target: Box::new(call.target.clone()),
            size,
            limit,
        };
        if let Some(len) = resp.content_length()
            && len > limit as u64
        {
            return Err(too_large(len));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.connect_error(call, &e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(too_large(body.len() as u64));
            }
        }
        Ok(Bytes::from(body))
    }

    async fn expect_success(call: &Call<'_>, resp: Response) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Bytes = resp.bytes().await.unwrap_or_default();
        Err(RegistryError::Status {
            target: Box::new(call.target.clone()),
            method: call.what,
            status: status.as_u16(),
            code: RegistryCode::from_body(&body),
        })
    }

    fn refused(&self, target: &Target, status: u16, code: RegistryCode) -> RegistryError {
        match &self.credentials {
            Some(creds) => RegistryError::AuthRejected {
                target: Box::new(target.clone()),
                username: creds.username.clone(),
                status,
                code,
            },
            None => RegistryError::AuthRequired {
                target: Box::new(target.clone()),
                code,
            },
        }
    }

    fn connect_error(&self, call: &Call<'_>, error: &reqwest::Error) -> RegistryError {
        let detail = crate::secret::redact(&error_chain(error));
        RegistryError::Connect {
            target: Box::new(call.target.clone()),
            method: call.method.to_string(),
            url: call.url.clone(),
            hint: connect_hint(&detail),
            detail,
        }
    }

    fn target(&self, repository: Option<&str>, reference: Option<&str>) -> Target {
        Target {
            registry: self.registry.clone(),
            repository: repository.map(str::to_string),
            reference: reference.map(str::to_string),
        }
    }

    fn lock(&self) -> MutexGuard<'_, AuthState> {
        // The state is a cache: after a panic elsewhere it is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn header_str(resp: &Response, name: impl header::AsHeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What to do about a failed connection, from what rustls and hyper said.
fn connect_hint(detail: &str) -> &'static str {
    if detail.contains("certificate") {
        "the registry's TLS certificate is not trusted: give the CA file that signed it"
    } else if detail.contains("InvalidContentType") || detail.contains("corrupt message") {
        "the registry answered in plain HTTP: use the insecure setting only if it really has no TLS"
    } else {
        "check that the registry is up and reachable on that address"
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
