//! Registry errors. Every one names the registry, and where there is one the repository and
//! reference, the HTTP status and the registry's own error code, so a failed pull can be
//! looked up without re-running it. Credentials never appear in any message.

use std::fmt;
use std::path::PathBuf;

use super::digest::Digest;

/// Where a request was going: printed at the head of every error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: Option<String>,
    pub reference: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry {}", self.registry)?;
        if let Some(repo) = &self.repository {
            write!(f, ", repository {repo}")?;
        }
        if let Some(reference) = &self.reference {
            write!(f, ", reference {reference}")?;
        }
        Ok(())
    }
}

/// The first entry of a registry's `{"errors":[{"code":…,"message":…}]}` body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegistryCode {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl fmt::Display for RegistryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, "{c}: {m}"),
            (Some(c), None) => write!(f, "{c}"),
            (None, Some(m)) => write!(f, "{m}"),
            (None, None) => write!(f, "no error code in the reply"),
        }
    }
}

impl RegistryCode {
    /// Reads the error body the distribution spec defines; anything else gives no code.
    pub fn from_body(body: &[u8]) -> RegistryCode {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: Option<String>,
            message: Option<String>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => b
                .errors
                .into_iter()
                .next()
                .map(|e| RegistryCode {
                    code: e.code,
                    message: e.message,
                })
                .unwrap_or_default(),
            Err(_) => RegistryCode::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the CA file {path} for registry {registry}: {source}; check the path")]
    CaFile {
        registry: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} for registry {registry} holds no usable PEM certificate: {detail}")]
    CaParse {
        registry: String,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot set up the HTTP client for registry {registry}: {detail}")]
    Setup { registry: String, detail: String },
    #[error("{target}: {method} {url} failed{}: {detail}; {hint}", tries(*attempts))]
    Connect {
        target: Box<Target>,
        method: String,
        url: String,
        detail: String,
        hint: &'static str,
        attempts: u32,
    },
    #[error(
        "{target}: the registry asks for credentials (HTTP 401, {code}); give a username and password for it"
    )]
    AuthRequired {
        target: Box<Target>,
        code: RegistryCode,
    },
    #[error(
        "{target}: the registry refused the credentials of user \"{username}\" (HTTP {status}, {code}); check the username and password"
    )]
    AuthRejected {
        target: Box<Target>,
        username: String,
        status: u16,
        code: RegistryCode,
    },
    #[error(
        "{target}: the token service {realm} answered HTTP {status} ({code}); check the credentials and that the account may pull this repository"
    )]
    Token {
        target: Box<Target>,
        realm: String,
        status: u16,
        code: RegistryCode,
    },
    #[error(
        "{target}: the registry refused a newly issued token for scope \"{scope}\" (HTTP 401, {code}) after gpuctl authenticated again; check that the account may push and pull this repository"
    )]
    TokenRefused {
        target: Box<Target>,
        scope: String,
        code: RegistryCode,
    },
    #[error(
        "{target}: cannot use the registry's authentication challenge \"{challenge}\": {detail}"
    )]
    Challenge {
        target: Box<Target>,
        challenge: String,
        detail: String,
    },
    #[error("{target}: {method} answered HTTP {status} ({code}){}", tries(*attempts))]
    Status {
        target: Box<Target>,
        method: &'static str,
        status: u16,
        code: RegistryCode,
        attempts: u32,
    },
    #[error("{target}: cannot use the local file {path}: {source}")]
    LocalFile {
        target: Box<Target>,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{target}: the downloaded blob does not match its digest: expected {expected}, the bytes hash to {actual}; the partial file was deleted, run the pull again"
    )]
    BlobMismatch {
        target: Box<Target>,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{target}: the blob is larger than the {expected} bytes its descriptor gives; the partial file was deleted"
    )]
    BlobTooLarge { target: Box<Target>, expected: u64 },
    #[error("{target}: {what}")]
    Protocol { target: Box<Target>, what: String },
    #[error(
        "{target}: the registry stored the manifest as {theirs}, but its bytes hash to {ours}; the registry or a proxy altered it"
    )]
    PushedDigestMismatch {
        target: Box<Target>,
        ours: Digest,
        theirs: Digest,
    },
    #[error(
        "{target}: the manifest is Docker schema 1 ({media_type}), which is deprecated and not supported; push the image again with a current Docker or buildkit so it gets a schema 2 or OCI manifest"
    )]
    Schema1 {
        target: Box<Target>,
        media_type: String,
    },
    #[error(
        "{target}: the manifest has media type \"{media_type}\", which is not a Docker schema 2 or OCI manifest or index"
    )]
    UnsupportedMediaType {
        target: Box<Target>,
        media_type: String,
    },
    #[error(
        "{target}: manifest content does not match its digest: expected {expected}, the bytes hash to {actual}; the registry or a proxy altered it"
    )]
    DigestMismatch {
        target: Box<Target>,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{target}: the manifest is {size} bytes or more, over the {limit}-byte limit for manifests; check the repository and reference"
    )]
    TooLarge {
        target: Box<Target>,
        size: u64,
        limit: usize,
    },
    #[error("{target}: the registry sent an invalid Docker-Content-Digest header \"{value}\"")]
    BadDigestHeader { target: Box<Target>, value: String },
}

/// " after N attempts" when a request was retried, else nothing.
fn tries(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl RegistryError {
    /// The registry's error code (`MANIFEST_UNKNOWN`, `DENIED`, …), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::AuthRequired { code, .. }
            | RegistryError::AuthRejected { code, .. }
            | RegistryError::Token { code, .. }
            | RegistryError::TokenRefused { code, .. }
            | RegistryError::Status { code, .. } => code.code.as_deref(),
            _ => None,
        }
    }

    /// Whether the registry's TLS certificate was refused (it needs a CA file).
    pub fn untrusted_certificate(&self) -> bool {
        matches!(self, RegistryError::Connect { detail, .. } if detail.contains("certificate"))
    }

    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::AuthRequired { .. } | RegistryError::TokenRefused { .. } => Some(401),
            RegistryError::AuthRejected { status, .. }
            | RegistryError::Token { status, .. }
            | RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_registry_error_code() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},{"code":"OTHER"}]}"#;
        let code = RegistryCode::from_body(body);
        assert_eq!(code.code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(code.to_string(), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(
            RegistryCode::from_body(b"<html>502</html>"),
            RegistryCode::default()
        );
        assert_eq!(
            RegistryCode::from_body(br#"{"errors":[]}"#),
            RegistryCode::default()
        );
    }

    #[test]
    fn status_error_names_registry_repository_reference_status_and_code() {
        let mut err = RegistryError::Status {
            target: Box::new(Target {
                registry: "localhost:5000".into(),
                repository: Some("team/app".into()),
                reference: Some("v9".into()),
            }),
            method: "GET manifest",
            status: 404,
            code: RegistryCode {
                code: Some("MANIFEST_UNKNOWN".into()),
                message: Some("manifest unknown".into()),
            },
            attempts: 1,
        };
        assert_eq!(
            err.to_string(),
            "registry localhost:5000, repository team/app, reference v9: GET manifest answered HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(err.status(), Some(404));
        if let RegistryError::Status { attempts, .. } = &mut err {
            *attempts = 4;
        }
        assert!(
            err.to_string()
                .ends_with("(MANIFEST_UNKNOWN: manifest unknown) after 4 attempts"),
            "{err}"
        );
    }
}
