//! Transport errors. Every variant names the host and says what to do.
//!
//! `host` is always the inventory name of the host the caller asked for; `addr` is the SSH
//! hop where things went wrong (`user@address:port`, followed by `via ...` when the hop was
//! reached through bastions), so an error at a bastion is still reported under the host
//! that needed it.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "{host}: cannot connect to {addr}: {reason}; check that the host is up and that sshd listens on that address and port"
    )]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error(
        "{host}: connecting to {addr} timed out after {after:?}; check the address, the port and any firewall in between, or raise --connect-timeout"
    )]
    ConnectTimeout {
        host: String,
        addr: String,
        after: Duration,
    },
    #[error(
        "{host}: host key of {addr} is not known ({fingerprint}); check it, then re-run with --accept-new-host-keys to record it in {known_hosts}"
    )]
    HostKeyUnknown {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "{host}: HOST KEY CHANGED for {name}: it now presents {fingerprint}, but {file}:{line} records a different key. This may be an attack; if the host was really reinstalled, remove the old entry with `ssh-keygen -R '{name}' -f {file}` and connect again"
    )]
    HostKeyChanged {
        host: String,
        /// The hop as written in known_hosts (`[host]:port` or `host`).
        name: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    #[error(
        "{host}: host key of {addr} ({fingerprint}) is marked @revoked in {file}:{line}; the host must get a new key"
    )]
    HostKeyRevoked {
        host: String,
        addr: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    #[error(
        "{host}: cannot record the host key of {addr} in {file}: {reason}; check that the file and its directory are writable"
    )]
    KnownHostsWrite {
        host: String,
        addr: String,
        file: PathBuf,
        reason: String,
    },
    #[error("{host}: identity file {file}: {reason}")]
    IdentityFile {
        host: String,
        file: PathBuf,
        reason: String,
    },
    #[error("{host}: {source}")]
    Secret {
        host: String,
        #[source]
        source: crate::secret::SecretError,
    },
    #[error(
        "{host}: authentication as {user} at {addr} failed; tried {tried}. Check the user name, that the public key is in ~{user}/.ssh/authorized_keys, or the password"
    )]
    AuthFailed {
        host: String,
        user: String,
        addr: String,
        /// Human list of every method tried (identity files by path, agent, password).
        tried: String,
    },
    #[error("{host}: ssh {what} failed: {reason}")]
    Ssh {
        host: String,
        what: String,
        reason: String,
    },
    #[error(
        "{host}: the connection was lost while running `{command}`; check that the host is still up, then run again"
    )]
    ConnectionLost { host: String, command: String },
    #[error(
        "{host}: `{command}` did not finish within {after:?} and was stopped; raise its timeout or find out why it hangs"
    )]
    Timeout {
        host: String,
        command: String,
        after: Duration,
    },
    #[error(
        "{host}: `{command}` stalled: the host accepted no data for {after:?}; the connection or the host is stuck. Check the host (disk, load, network), then run again: a put resumes where it stopped"
    )]
    Stalled {
        host: String,
        command: String,
        after: Duration,
    },
    #[error(
        "{host}: this needs root, but {user} cannot use sudo ({reason}); give {user} passwordless sudo (NOPASSWD in /etc/sudoers.d) or set ssh.sudo_password in the inventory"
    )]
    SudoUnavailable {
        host: String,
        user: String,
        reason: String,
    },
    #[error(
        "{host}: sudo password rejected on {host} for {user}; check ssh.sudo_password (the same password is used on every host)"
    )]
    SudoPasswordRejected { host: String, user: String },
    #[error("{host}: cannot read local file {path}: {reason}")]
    LocalFile {
        host: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "{host}: {path} arrived corrupted (sha256 on the host {actual}, expected {expected}); the partial copy was removed, run again to send it afresh"
    )]
    PutVerify {
        host: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{host}: cannot put {path} ({step}): {reason}")]
    Put {
        host: String,
        path: String,
        step: String,
        reason: String,
    },
    #[error("{host}: {path} does not exist")]
    NotFound { host: String, path: String },
    #[error("{host}: cannot read {path}: {reason}")]
    Get {
        host: String,
        path: String,
        reason: String,
    },
    #[error("{host}: {what}: {reason}")]
    Other {
        host: String,
        what: String,
        reason: String,
    },
}

impl TransportError {
    /// The inventory name of the host the error is about.
    pub fn host(&self) -> &str {
        use TransportError::*;
        match self {
            Connect { host, .. }
            | ConnectTimeout { host, .. }
            | HostKeyUnknown { host, .. }
            | HostKeyChanged { host, .. }
            | HostKeyRevoked { host, .. }
            | KnownHostsWrite { host, .. }
            | IdentityFile { host, .. }
            | Secret { host, .. }
            | AuthFailed { host, .. }
            | Ssh { host, .. }
            | ConnectionLost { host, .. }
            | Timeout { host, .. }
            | Stalled { host, .. }
            | SudoUnavailable { host, .. }
            | SudoPasswordRejected { host, .. }
            | LocalFile { host, .. }
            | PutVerify { host, .. }
            | Put { host, .. }
            | NotFound { host, .. }
            | Get { host, .. }
            | Other { host, .. } => host,
        }
    }

    /// True when the fault is in what the user gave us (keys, known_hosts, passwords)
    /// rather than in the host or the network: retrying will not help.
    pub fn is_configuration(&self) -> bool {
        use TransportError::*;
        matches!(
            self,
            HostKeyUnknown { .. }
                | HostKeyChanged { .. }
                | HostKeyRevoked { .. }
                | IdentityFile { .. }
                | Secret { .. }
                | AuthFailed { .. }
                | SudoUnavailable { .. }
                | SudoPasswordRejected { .. }
        )
    }
}
