//! SSH user authentication: identity files, then the ssh-agent, then a password.
//!
//! A failure lists every method that was tried, so "permission denied" never leaves the
//! user guessing which key was offered. Secrets named by the inventory (key passphrase,
//! login password) are loaded once per process and shared by every connection, so fifty
//! hosts never prompt fifty times.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// Loads (and decrypts) an identity file once per process: decrypting an OpenSSH key
/// runs a deliberately slow KDF, which fifty hosts should not pay fifty times.
async fn identity(
    host: &str,
    target: &SshTarget,
    path: &Path,
) -> Result<Arc<keys::PrivateKey>, TransportError> {
    type Loaded = tokio::sync::Mutex<HashMap<PathBuf, Arc<keys::PrivateKey>>>;
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(|| tokio::sync::Mutex::new(HashMap::new()))
        .lock()
        .await;
    if let Some(k) = loaded.get(path) {
        return Ok(Arc::clone(k));
    }
    let file_err = |reason: String| TransportError::IdentityFile {
        host: host.to_string(),
        file: path.to_path_buf(),
        reason,
    };
    let load = |pass: Option<Secret>| {
        let path = path.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                keys::load_secret_key(&path, pass.as_ref().map(Secret::expose))
            })
            .await
            .unwrap_or(Err(keys::Error::CouldNotReadKey))
        }
    };
    let key = match load(None).await {
        Ok(k) => k,
        Err(keys::Error::KeyIsEncrypted) => {
            let Some(source) = &target.identity_passphrase else {
                return Err(file_err(
                    "it is encrypted and no passphrase is configured; set ssh.identity_passphrase in the inventory, or load the key into ssh-agent".into(),
                ));
            };
            let pass = load_secret(host, source, "identity file passphrase").await?;
            load(Some(pass)).await.map_err(|e| {
                file_err(format!(
                    "cannot decrypt it with the passphrase from {} ({e}); check the passphrase",
                    source.describe()
                ))
            })?
        }
        Err(keys::Error::IO(e)) => {
            return Err(file_err(format!(
                "cannot read it ({e}); check the path and its permissions"
            )));
        }
        Err(e) => {
            return Err(file_err(format!(
                "cannot parse it as an OpenSSH or PEM private key ({e}); point the inventory at the private key, not the .pub file"
            )));
        }
    };
    let key = Arc::new(key);
    loaded.insert(path.to_path_buf(), Arc::clone(&key));
    Ok(key)
}

/// Everything a login needs from this machine, gathered before connecting so that a
/// passphrase prompt or a slow key never eats into the connect timeout, and a bad key
/// file is reported without touching the network.
pub struct Credentials {
    /// Each identity file, or why it cannot be used. An unusable file does not stop the
    /// others from being tried; it is reported when nothing else works.
    keys: Vec<(PathBuf, Result<Arc<keys::PrivateKey>, TransportError>)>,
    /// The login password and where it came from.
    password: Option<(Secret, String)>,
}

pub async fn prepare(host: &str, target: &SshTarget) -> Result<Credentials, TransportError> {
    let mut keys = Vec::new();
    for path in &target.identity_files {
        keys.push((path.clone(), identity(host, target, path).await));
    }
    // With nothing else to try, a bad key file is the whole story: say so before
    // connecting.
    if !target.use_agent && target.password.is_none() && keys.iter().all(|(_, k)| k.is_err()) {
        if let Some((_, Err(e))) = keys.into_iter().next() {
            return Err(e);
        }
        return Ok(Credentials {
            keys: Vec::new(),
            password: None,
        });
    }
    let password = match &target.password {
        Some(source) => Some((
            load_secret(host, source, "ssh login password").await?,
            source.describe(),
        )),
        None => None,
    };
    Ok(Credentials { keys, password })
}

/// Authenticates `target.user` on an open connection, trying each method in order.
pub async fn authenticate<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    host: &str,
    addr: &str,
    target: &SshTarget,
    creds: &Credentials,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let ssh_err = |what: &str, e: russh::Error| TransportError::Ssh {
        host: host.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let mut tried: Vec<String> = Vec::new();

    let mut unusable: Option<&TransportError> = None;
    for (path, key) in &creds.keys {
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                if !matches!(e, TransportError::IdentityFile { .. }) {
                    tried.push(format!("identity file {} (unusable: {e})", path.display()));
                } else {
                    tried.push(format!("identity file {} (unusable)", path.display()));
                }
                unusable = unusable.or(Some(e));
                continue;
            }
        };
        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| ssh_err("negotiating the RSA signature", e))?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::clone(key), hash);
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

    if let Some((pw, from)) = &creds.password {
        let result = handle
            .authenticate_password(user, pw.expose())
            .await
            .map_err(|e| ssh_err("password authentication", e))?;
        tried.push(format!("password from {from}"));
        if result.success() {
            return Ok(());
        }
    }

    if let Some(TransportError::IdentityFile { file, reason, .. }) = unusable {
        // The unusable key is the likely culprit; name it first.
        return Err(TransportError::IdentityFile {
            host: host.to_string(),
            file: file.clone(),
            reason: format!(
                "{reason} (and every other method failed: {})",
                tried.join(", ")
            ),
        });
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
