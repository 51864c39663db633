//! SSH user authentication: identity files, then the ssh-agent, then a password.
//!
//! A failure lists every method that was tried, so "permission denied" never leaves the
//! user guessing which key was offered. Secrets named by the inventory (key passphrase,
//! login password) are loaded once per process and shared by every connection, so fifty
//! hosts never prompt fifty times.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use russh::client::Handle;
use russh::keys::{self, Algorithm, PrivateKeyWithHashAlg};

use super::{SshTarget, TransportError};
use crate::secret::{Secret, SecretSource};

/// Loads a secret once per source for the whole process.
pub async fn load_secret(
    host: &str,
    source: &SecretSource,
    what: &str,
) -> Result<Secret, TransportError> {
    type Loaded = tokio::sync::Mutex<Vec<(SecretSource, Secret)>>;
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    // Held across the prompt: a second connection waits for the first answer instead of
    // prompting again.
    let mut loaded = LOADED
        .get_or_init(|| tokio::sync::Mutex::new(Vec::new()))
        .lock()
        .await;
    if let Some((_, s)) = loaded.iter().find(|(src, _)| src == source) {
        return Ok(s.clone());
    }
    let (src, what_owned) = (source.clone(), what.to_string());
    let secret = tokio::task::spawn_blocking(move || Secret::load(&src, &what_owned))
        .await
        .map_err(|e| TransportError::Other {
            host: host.to_string(),
            what: what.to_string(),
            reason: format!("internal error: {e}"),
        })?
        .map_err(|source| TransportError::Secret {
            host: host.to_string(),
            source,
        })?;
    loaded.push((source.clone(), secret.clone()));
    Ok(secret)
}

async fn identity(
    host: &str,
    target: &SshTarget,
    path: &Path,
) -> Result<keys::PrivateKey, TransportError> {
    let file_err = |reason: String| TransportError::IdentityFile {
        host: host.to_string(),
        file: path.to_path_buf(),
        reason,
    };
    match keys::load_secret_key(path, None) {
        Ok(k) => Ok(k),
        Err(keys::Error::KeyIsEncrypted) => {
            let Some(source) = &target.identity_passphrase else {
                return Err(file_err(
                    "it is encrypted and no passphrase is configured; set ssh.identity_passphrase in the inventory, or load the key into ssh-agent".into(),
                ));
            };
            let pass = load_secret(host, source, "identity file passphrase").await?;
            keys::load_secret_key(path, Some(pass.expose())).map_err(|e| {
                file_err(format!(
                    "cannot decrypt it with the passphrase from {} ({e}); check the passphrase",
                    source.describe()
                ))
            })
        }
        Err(keys::Error::IO(e)) => Err(file_err(format!(
            "cannot read it ({e}); check the path and its permissions"
        ))),
        Err(e) => Err(file_err(format!(
            "cannot parse it as an OpenSSH or PEM private key ({e}); point the inventory at the private key, not the .pub file"
        ))),
    }
}

/// Authenticates `target.user` on an open connection, trying each method in order.
pub async fn authenticate<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    host: &str,
    addr: &str,
    target: &SshTarget,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let ssh_err = |what: &str, e: russh::Error| TransportError::Ssh {
        host: host.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let mut tried: Vec<String> = Vec::new();

    for path in &target.identity_files {
        let key = identity(host, target, path).await?;
        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| ssh_err("negotiating the RSA signature", e))?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let result = handle
            .authenticate_publickey(user, key)
            .await
            .map_err(|e| ssh_err("public key authentication", e))?;
        tried.push(format!("identity file {}", path.display()));
        if result.success() {
            return Ok(());
        }
    }

    if target.use_agent {
        match std::env::var_os("SSH_AUTH_SOCK") {
            None => tried.push("ssh-agent (not used: SSH_AUTH_SOCK is not set)".into()),
            Some(_) => match keys::agent::client::AgentClient::connect_env().await {
                Err(e) => tried.push(format!("ssh-agent (cannot connect: {e})")),
                Ok(mut agent) => {
                    let ids = agent.request_identities().await.unwrap_or_default();
                    let mut offered = 0;
                    for id in ids {
                        let key = id.public_key().into_owned();
                        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
                            handle
                                .best_supported_rsa_hash()
                                .await
                                .map_err(|e| ssh_err("negotiating the RSA signature", e))?
                                .flatten()
                        } else {
                            None
                        };
                        offered += 1;
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(()),
                            Ok(_) | Err(_) => {}
                        }
                    }
                    tried.push(format!("ssh-agent ({offered} keys)"));
                }
            },
        }
    }

    if let Some(source) = &target.password {
        let pw = load_secret(host, source, "ssh login password").await?;
        let result = handle
            .authenticate_password(user, pw.expose())
            .await
            .map_err(|e| ssh_err("password authentication", e))?;
        tried.push(format!("password from {}", source.describe()));
        if result.success() {
            return Ok(());
        }
    }

    if tried.is_empty() {
        tried.push("nothing: no identity file, ssh-agent or password is configured".into());
    }
    Err(TransportError::AuthFailed {
        host: host.to_string(),
        user: user.to_string(),
        addr: addr.to_string(),
        tried: tried.join(", "),
    })
}
