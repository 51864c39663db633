//! Secrets: values that must never reach a log, the journal, an error or test output.
//!
//! A [`Secret`] has no `Display` and a `Debug` that prints `***`, so it cannot be
//! formatted by accident. Every secret that is loaded is also registered with the
//! process-wide redactor, so text that *did* pick one up on its way (a remote command's
//! echo, an error message from sudo) is scrubbed by [`redact`] before it is written anywhere.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

/// Where a secret comes from. The inventory names the source, never the value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    /// `{ env: NAME }`: read from the environment variable `NAME`.
    Env { env: String },
    /// `{ prompt: true }`: asked for once on the terminal, never echoed.
    Prompt { prompt: bool },
    /// A file gpuctl wrote itself (the password of the registry it runs); never written
    /// in an inventory.
    #[serde(skip_deserializing)]
    File { file: std::path::PathBuf },
}

impl SecretSource {
    /// A short description for error messages and tables (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env { env } => format!("environment variable {env}"),
            SecretSource::Prompt { .. } => "a terminal prompt".to_string(),
            SecretSource::File { file } => format!("the file {}", file.display()),
        }
    }
}

/// A secret value. Cheap to clone (shared), zeroed when the last copy is dropped.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wraps a value and registers it for redaction.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(Arc::new(Zeroizing::new(value)))
    }

    /// The value itself. Call sites are few and deliberate: sending it to sudo or to an
    /// authentication call.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Loads a secret from its source: the environment, or one prompt on the terminal.
    pub fn load(source: &SecretSource, what: &str) -> Result<Secret, SecretError> {
        match source {
            SecretSource::Env { env } => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(SecretError::MissingEnv {
                    what: what.to_string(),
                    var: env.clone(),
                }),
            },
            SecretSource::Prompt { .. } => {
                let prompt = format!("{what}: ");
                rpassword::prompt_password(prompt)
                    .map(Secret::new)
                    .map_err(|e| SecretError::Prompt {
                        what: what.to_string(),
                        reason: e.to_string(),
                    })
            }
            SecretSource::File { file } => match std::fs::read_to_string(file) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim_end_matches('\n'))),
                _ => Err(SecretError::MissingFile {
                    what: what.to_string(),
                    file: file.clone(),
                }),
            },
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{what}: environment variable {var} is not set or empty; export it before running gpuctl"
    )]
    MissingEnv { what: String, var: String },
    #[error(
        "{what}: could not read it from the terminal ({reason}); set it through an environment variable instead"
    )]
    Prompt { what: String, reason: String },
    #[error(
        "{what}: {} is missing or empty; gpuctl install makes it (stage registry) — run it, or restore the file from a backup",
        file.display()
    )]
    MissingFile {
        what: String,
        file: std::path::PathBuf,
    },
}

fn registry() -> &'static Mutex<Vec<String>> {
    static REGISTRY: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(value: &str) {
    // Very short values would redact ordinary words; they are still kept out of logs by
    // the type, just not scrubbed from free text.
    if value.len() < 4 {
        return;
    }
    if let Ok(mut list) = registry().lock()
        && !list.iter().any(|v| v == value)
    {
        list.push(value.to_string());
    }
}

/// Replaces every registered secret in `text` with `***`.
pub fn redact(text: &str) -> String {
    let Ok(list) = registry().lock() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(
            redact("sudo said hunter2-very-secret twice: hunter2-very-secret"),
            "sudo said *** twice: ***"
        );
    }
}
