//! An HTTP client for one Distribution v2 registry: `/v2/` ping, Basic and Bearer
//! authentication, and the one `send` every request goes through (authentication
//! challenges answered, transient failures retried with backoff).
//!
//! What is asked of the registry lives beside it: `fetch.rs` (manifests, blob downloads),
//! `upload.rs` (blob uploads, mounts, manifest pushes).
//!
//! TLS is rustls with the system's roots, plus the roots of a CA file when one is given.
//! Plain HTTP is used only when `insecure` is set: it never happens as a silent fallback,
//! since a downgrade would let anyone on the path swap images.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderName;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::{Challenge, Credentials, TokenReply, parse_challenge};
use super::error::{RegistryCode, RegistryError, Target};
use super::manifest;
use super::retry::{RetryPolicy, retryable_error, retryable_status};
use super::token_cache::{CachedToken, TokenCache};
use crate::secret::Secret;

/// Docker Hub's API lives on a different host than the name people write.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Called with the number of bytes just moved, for progress displays.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Speak plain HTTP. Only for registries that have no TLS at all.
    pub insecure: bool,
    /// A PEM file of extra CA certificates, trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// How often a request that failed for a transient reason is tried.
    pub retry: RetryPolicy,
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
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) credentials: Option<Credentials>,
    pub(super) retry: RetryPolicy,
    state: Mutex<AuthState>,
}

/// What the registry asked for, and the Bearer tokens fetched so far, by scope.
#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: TokenCache,
}

/// A request body that can be produced again for a retry or an authentication round.
#[derive(Clone)]
pub(super) enum BodySource {
    Bytes(Bytes),
    /// `len` bytes of a local file from `offset`, streamed (never held in memory).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        progress: Option<ProgressFn>,
    },
}

/// One request, described so that it can be sent more than once.
pub(super) struct Call<'a> {
    pub method: Method,
    pub what: &'static str,
    pub url: String,
    pub target: &'a Target,
    /// The Bearer scope(s), space-separated (`repository:a:pull,push repository:b:pull`).
    pub scope: Option<String>,
    /// Send the Accept header listing the manifest types we handle.
    pub manifest: bool,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<BodySource>,
    /// Whether sending it twice is harmless. A PATCH or a PUT with data is not: half a
    /// body may already sit in the upload session, so the caller recovers instead.
    pub idempotent: bool,
    /// How many tries the last `send` took, for error messages.
    pub attempts: AtomicU32,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, what: &'static str, url: String, target: &'a Target) -> Self {
        Call {
            method,
            what,
            url,
            target,
            scope: None,
            manifest: false,
            headers: Vec::new(),
            body: None,
            idempotent: true,
            attempts: AtomicU32::new(0),
        }
    }

    pub fn scope(mut self, scope: String) -> Self {
        self.scope = Some(scope);
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: BodySource) -> Self {
        self.body = Some(body);
        self
    }

    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed).max(1)
    }
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
            retry: options.retry,
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
        let call = Call::new(
            Method::GET,
            "GET /v2/",
            format!("{}/v2/", self.base),
            &target,
        );
        let resp = self.send(&call).await?;
        Self::expect_success(&call, resp).await?;
        Ok(match self.lock().challenge {
            None => AuthKind::Anonymous,
            Some(Challenge::Basic) => AuthKind::Basic,
            Some(Challenge::Bearer { .. }) => AuthKind::Bearer,
        })
    }

    /// Sends a call, retrying transient failures (429, 5xx, dropped connections) with
    /// backoff when the call is idempotent. The last reply is returned as it is, so the
    /// caller's error carries the registry's status and code.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            call.attempts.store(attempt, Ordering::Relaxed);
            let more = call.idempotent && attempt < self.retry.attempts;
            match self.send_authorized(call).await {
                Ok(resp) if more && retryable_status(resp.status()) => {
                    let after = header_str(&resp, header::RETRY_AFTER).and_then(|v| v.parse().ok());
                    tokio::time::sleep(self.retry.delay(attempt, after)).await;
                }
                Err(RegistryError::Connect { detail, .. }) if more && retryable_error(&detail) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
                other => return other,
            }
            attempt += 1;
        }
    }

    /// Sends a request, answering one 401 challenge (Basic, or a Bearer token for the
    /// call's scope) and sending it again. A Bearer token near its expiry is renewed
    /// before the request goes out; a token the registry refuses is renewed once, and a
    /// second refusal fails the call.
    async fn send_authorized(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut answered = false;
        loop {
            self.renew_if_stale(call).await?;
            let mut request = self.http.request(call.method.clone(), &call.url);
            if call.manifest {
                request = request.header(header::ACCEPT, manifest::SUPPORTED.join(", "));
            }
            for (name, value) in &call.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &call.body {
                let (body, len) = self.open_body(call, body).await?;
                request = request.header(header::CONTENT_LENGTH, len).body(body);
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
            let call_scope = call.scope.clone().unwrap_or_default();
            let bearer = matches!(self.lock().challenge, Some(Challenge::Bearer { .. }));
            self.lock().tokens.forget(&call_scope);
            let (Some(challenge_text), false) = (challenge, answered) else {
                if answered && bearer && self.credentials.is_some() {
                    return Err(RegistryError::TokenRefused {
                        target: Box::new(call.target.clone()),
                        scope: call_scope,
                        code,
                    });
                }
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
                    self.lock().tokens.insert(&call_scope, token);
                }
            }
            self.lock().challenge = Some(challenge);
            answered = true;
        }
    }

    /// Once the registry is known to want Bearer tokens: fetches one for the call's scope
    /// when none is cached or the cached one is near its expiry.
    async fn renew_if_stale(&self, call: &Call<'_>) -> Result<(), RegistryError> {
        let scope = call.scope.clone().unwrap_or_default();
        let (realm, service) = {
            let state = self.lock();
            match &state.challenge {
                Some(Challenge::Bearer { realm, service, .. })
                    if state.tokens.get(&scope, Instant::now()).is_none() =>
                {
                    (realm.clone(), service.clone())
                }
                _ => return Ok(()),
            }
        };
        let token = self
            .fetch_token(
                call.target,
                &realm,
                service.as_deref(),
                call.scope.as_deref(),
            )
            .await?;
        self.lock().tokens.insert(&scope, token);
        Ok(())
    }

    async fn open_body(
        &self,
        call: &Call<'_>,
        body: &BodySource,
    ) -> Result<(reqwest::Body, u64), RegistryError> {
        match body {
            BodySource::Bytes(bytes) => {
                Ok((reqwest::Body::from(bytes.clone()), bytes.len() as u64))
            }
            BodySource::File {
                path,
                offset,
                len,
                progress,
            } => {
                let local = |source: std::io::Error| RegistryError::LocalFile {
                    target: Box::new(call.target.clone()),
                    path: path.clone(),
                    source,
                };
                let mut file = tokio::fs::File::open(path).await.map_err(local)?;
                file.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(local)?;
                let reader =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), 256 * 1024);
                let progress = progress.clone();
                let stream = futures::StreamExt::inspect(reader, move |chunk| {
                    if let (Ok(chunk), Some(progress)) = (chunk, &progress) {
                        progress(chunk.len() as u64);
                    }
                });
                Ok((reqwest::Body::wrap_stream(stream), *len))
            }
        }
    }

    fn authorize(&self, request: RequestBuilder, scope: Option<&str>) -> RequestBuilder {
        let state = self.lock();
        match (&state.challenge, &self.credentials) {
            (Some(Challenge::Basic), Some(creds)) => {
                request.basic_auth(&creds.username, Some(creds.password.expose()))
            }
            (Some(Challenge::Bearer { .. }), _) => {
                match state.tokens.get(scope.unwrap_or_default(), Instant::now()) {
                    Some(token) => request.bearer_auth(token.expose()),
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
    ) -> Result<CachedToken, RegistryError> {
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
            // A mount needs two scopes; token services take them as repeated parameters.
            for scope in scope.iter().flat_map(|s| s.split_whitespace()) {
                query.append_pair("scope", scope);
            }
        }
        let asked = Instant::now();
        let request = match &self.credentials {
            // An identity token is an OAuth2 refresh token: POSTed, never sent as Basic.
            Some(creds) if creds.is_identity_token() => {
                let form = oauth_form(&url, creds.password.expose());
                let mut post = url.clone();
                post.set_query(None);
                self.http
                    .post(post)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
            }
            Some(creds) => self
                .http
                .get(url.clone())
                .basic_auth(&creds.username, Some(creds.password.expose())),
            None => self.http.get(url.clone()),
        };
        let mut shown = url;
        shown.set_query(None);
        let call = Call::new(Method::GET, "GET token", shown.to_string(), target);
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
        let reply = serde_json::from_slice::<TokenReply>(&body).ok();
        let lifetime = reply
            .as_ref()
            .and_then(|r| r.expires_in)
            .map(Duration::from_secs);
        let token = reply.and_then(TokenReply::into_token).ok_or_else(|| {
            token_error(RegistryCode {
                code: None,
                message: Some("the reply holds no token".to_string()),
            })
        })?;
        Ok(CachedToken::new(Secret::new(token), asked, lifetime))
    }

    /// Reads a body of at most `limit` bytes, stopping as soon as it is exceeded.
    pub(super) async fn read_limited(
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

    pub(super) async fn expect_success(
        call: &Call<'_>,
        resp: Response,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(Self::status_error(call, resp).await)
    }

    /// The error for a reply that was not what the call needed.
    pub(super) async fn status_error(call: &Call<'_>, resp: Response) -> RegistryError {
        let status = resp.status();
        let body: Bytes = resp.bytes().await.unwrap_or_default();
        RegistryError::Status {
            target: Box::new(call.target.clone()),
            method: call.what,
            status: status.as_u16(),
            code: RegistryCode::from_body(&body),
            attempts: call.attempts(),
        }
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

    pub(super) fn connect_error(&self, call: &Call<'_>, error: &reqwest::Error) -> RegistryError {
        let detail = crate::secret::redact(&error_chain(error));
        RegistryError::Connect {
            target: Box::new(call.target.clone()),
            method: call.method.to_string(),
            url: call.url.clone(),
            hint: connect_hint(&detail),
            detail,
            attempts: call.attempts(),
        }
    }

    pub(super) fn target(&self, repository: Option<&str>, reference: Option<&str>) -> Target {
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

/// The OAuth2 refresh-token grant Docker uses with an identity token: the realm's
/// service and scopes, the token, and a client id.
fn oauth_form(url: &Url, refresh_token: &str) -> String {
    let mut form = Url::parse("http://form.invalid/").unwrap_or_else(|_| url.clone());
    {
        let mut pairs = form.query_pairs_mut();
        pairs.clear();
        pairs.append_pair("grant_type", "refresh_token");
        pairs.append_pair("refresh_token", refresh_token);
        pairs.append_pair("client_id", "gpuctl");
        for (key, value) in url.query_pairs() {
            if key == "service" || key == "scope" {
                pairs.append_pair(&key, &value);
            }
        }
    }
    form.query().unwrap_or_default().to_string()
}

pub(super) fn header_str(resp: &Response, name: impl header::AsHeaderName) -> Option<String> {
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
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
