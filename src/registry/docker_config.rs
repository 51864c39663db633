//! Registry credentials from Docker's client configuration, `$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`, read the way the docker CLI reads them, so a machine where
//! `docker login` (or a cloud credential helper) works needs no second setup:
//!
//! 1. `credHelpers[<registry>]`: the program `docker-credential-<name>` for that registry;
//! 2. else `credsStore`: the program `docker-credential-<name>` for every registry; when it
//!    has nothing for the registry, the `auths` entry (if any) is used;
//! 3. else `auths[<registry>]`: `auth` (base64 `user:password`), or `username` and
//!    `password`, or `identitytoken` (an OAuth2 refresh token for the Bearer flow).
//!
//! A credential helper is run as `docker-credential-<name> get` with the server address on
//! standard input; it answers `{"ServerURL":…,"Username":…,"Secret":…}`. A username of
//! `<token>` means the secret is an identity token, as in Docker. Every secret read here is
//! a [`Secret`] (registered for redaction); no value is ever part of an error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::auth::{Credentials, IDENTITY_TOKEN_USER};
use super::reference::DOCKER_HUB;
use crate::secret::Secret;

/// The key `docker login` uses for Docker Hub, and the server address its helpers get.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
const HELPER_PREFIX: &str = "docker-credential-";
/// What helpers print when they hold nothing for a server (docker-credential-helpers).
const NOT_FOUND: &str = "credentials not found";

/// A parsed `config.json` (only the parts about registries).
#[derive(Debug, Default)]
pub struct DockerConfig {
    pub path: PathBuf,
    auths: BTreeMap<String, AuthEntry>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Credentials found for a registry, with where they came from (for `--verbose`).
#[derive(Debug)]
pub struct Found {
    pub credentials: Credentials,
    /// E.g. `credHelpers → docker-credential-ecr-login in /root/.docker/config.json`.
    pub source: String,
}

impl DockerConfig {
    /// Where the docker CLI would read its configuration: `$DOCKER_CONFIG/config.json`,
    /// else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    /// Reads the file at the default path; no file means no credentials (not an error).
    pub fn load_default() -> Result<Option<DockerConfig>, String> {
        match Self::default_path() {
            Some(path) if path.exists() => Self::load(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads one file; the error names it and what is wrong (never a value from it).
    pub fn load(path: &Path) -> Result<DockerConfig, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read the docker config {}: {e}", path.display()))?;
        let file: File = serde_json::from_slice(&text).map_err(|e| {
            // serde_json's message quotes no input, only line and column.
            format!(
                "the docker config {} is not valid JSON ({e}); fix it or point DOCKER_CONFIG at another directory",
                path.display()
            )
        })?;
        Ok(DockerConfig {
            path: path.to_path_buf(),
            auths: file.auths,
            cred_helpers: file.cred_helpers,
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// The credentials for `registry` (`host[:port]` as in a reference), if the config
    /// holds any.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Found>, String> {
        let in_file = format!("in {}", self.path.display());
        if let Some(helper) = self
            .cred_helpers
            .iter()
            .find(|(key, _)| same_registry(key, registry))
            .map(|(_, helper)| helper)
        {
            return Ok(run_helper(helper, registry)?.map(|credentials| Found {
                credentials,
                source: format!("credHelpers → {HELPER_PREFIX}{helper} {in_file}"),
            }));
        }
        if let Some(store) = &self.creds_store
            && let Some(credentials) = run_helper(store, registry)?
        {
            return Ok(Some(Found {
                credentials,
                source: format!("credsStore → {HELPER_PREFIX}{store} {in_file}"),
            }));
        }
        let Some((key, entry)) = self
            .auths
            .iter()
            .find(|(key, _)| same_registry(key, registry))
        else {
            return Ok(None);
        };
        let source = format!("auths[\"{key}\"] {in_file}");
        entry.credentials(key, &self.path).map(|c| {
            c.map(|credentials| Found {
                credentials,
                source,
            })
        })
    }
}

impl AuthEntry {
    fn credentials(&self, key: &str, path: &Path) -> Result<Option<Credentials>, String> {
        let bad = |what: &str| {
            format!(
                "the docker config {}: auths[\"{key}\"] {what}; run `docker login` again or fix the entry",
                path.display()
            )
        };
        if let Some(token) = self.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                username: IDENTITY_TOKEN_USER.to_string(),
                password: Secret::new(token),
            }));
        }
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = data_encoding::BASE64
                .decode(auth.trim().as_bytes())
                .map_err(|_| bad("has an `auth` value that is not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad("has an `auth` value that is not UTF-8 text"))?;
            let secret = Secret::new(text);
            let Some((user, password)) = secret.expose().split_once(':') else {
                return Err(bad(
                    "has an `auth` value that is not base64 of user:password",
                ));
            };
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: Secret::new(password),
            }));
        }
        match (&self.username, &self.password) {
            (Some(user), Some(password)) if !user.is_empty() => Ok(Some(Credentials {
                username: user.clone(),
                password: Secret::new(password.as_str()),
            })),
            (Some(_), None) => Err(bad("has a username but no password")),
            _ => Ok(None),
        }
    }
}

/// Whether a config key (`registry.lab:5000`, `https://registry.lab:5000/v2/`,
/// `https://index.docker.io/v1/`) names `registry`.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    let hub = |h: &str| {
        matches!(
            h,
            DOCKER_HUB | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        )
    };
    host.eq_ignore_ascii_case(registry) || (hub(host) && hub(registry))
}

/// What a helper gets on standard input: Docker Hub under its historic URL, else the host.
fn server_address(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    }
}

/// `docker-credential-<name> get`; `None` when the helper holds nothing for the server.
fn run_helper(name: &str, registry: &str) -> Result<Option<Credentials>, String> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let program = format!("{HELPER_PREFIX}{name}");
    let fail =
        |what: String| format!("credential helper {program} for registry {registry}: {what}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run it ({e}); install it on PATH or remove it from the docker config"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit code below.
        let _ = stdin.write_all(server_address(registry).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("it did not finish ({e})")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let said = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        if said.contains(NOT_FOUND) {
            return Ok(None);
        }
        // What a failing helper prints is an error message, never the JSON reply; it is
        // still cut short and passed through the redactor.
        let first = said.lines().next().unwrap_or_default();
        let first: String = first.chars().take(200).collect();
        return Err(fail(format!(
            "it exited with {}: {}",
            out.status,
            crate::secret::redact(first.trim())
        )));
    }
    let reply: Reply = serde_json::from_str(&stdout).map_err(|_| {
        fail("its reply is not the JSON {\"Username\":…,\"Secret\":…} of the credential-helper protocol".to_string())
    })?;
    if reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: reply.username,
        password: Secret::new(reply.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{e}"));
        let config = DockerConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        (dir, config)
    }

    fn user_and_password(found: Option<Found>) -> (String, String) {
        let found = found.unwrap_or_else(|| panic!("no credentials found"));
        (
            found.credentials.username,
            found.credentials.password.expose().to_string(),
        )
    }

    #[test]
    fn auths_entries_in_every_form() {
        let auth = data_encoding::BASE64.encode(b"alice:s3cret:with-colon");
        let (_dir, c) = config(&format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{auth}"}},
                "registry.lab:5000":{{"username":"bob","password":"pw-of-bob"}},
                "http://ghcr.io/v2/":{{"identitytoken":"refresh-me"}},
                "empty.lab":{{}}
            }}}}"#
        ));
        let found = |r: &str| c.credentials_for(r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            user_and_password(found("docker.io")),
            ("alice".into(), "s3cret:with-colon".into())
        );
        assert_eq!(
            user_and_password(found("registry.lab:5000")),
            ("bob".into(), "pw-of-bob".into())
        );
        assert_eq!(
            user_and_password(found("ghcr.io")),
            (IDENTITY_TOKEN_USER.into(), "refresh-me".into())
        );
        assert!(found("empty.lab").is_none());
        assert!(
            found("registry.lab").is_none(),
            "the port is part of the name"
        );
        assert!(found("quay.io").is_none());
        let source = found("registry.lab:5000")
            .map(|f| f.source)
            .unwrap_or_default();
        assert!(
            source.starts_with("auths[\"registry.lab:5000\"] in "),
            "{source}"
        );
    }

    #[test]
    fn broken_entries_and_files_are_named_without_their_values() {
        let (_dir, c) = config(r#"{"auths":{"r.lab":{"auth":"%%not-base64-secretish%%"}}}"#);
        let err = c.credentials_for("r.lab").err().unwrap_or_default();
        assert!(
            err.contains("auths[\"r.lab\"]") && err.contains("not base64"),
            "{err}"
        );
        assert!(!err.contains("secretish"), "{err}");

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"r":{"password":"leaky-value"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = DockerConfig::load(&path).err().unwrap_or_default();
        assert!(
            err.contains("not valid JSON") && !err.contains("leaky"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_helper_is_a_clear_error() {
        let (_dir, c) = config(r#"{"credHelpers":{"r.lab":"gpuctl-test-absent"}}"#);
        let err = c.credentials_for("r.lab").err().unwrap_or_default();
        assert!(
            err.contains("docker-credential-gpuctl-test-absent") && err.contains("PATH"),
            "{err}"
        );
        // Other registries do not use that helper.
        assert!(c.credentials_for("other.lab").is_ok_and(|f| f.is_none()));
    }
}
