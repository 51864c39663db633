//! Transport errors. Every variant names the host and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: cannot connect to {addr}: {reason}")]
    Connect {
        host: String,
        addr: String,
        reason: String,
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
    #[error("{host}: {what}: {reason}")]
    Other {
        host: String,
        what: String,
        reason: String,
    },
}
