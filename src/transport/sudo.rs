//! Finding, once per connection, how the login user becomes root.
//!
//! One round trip asks for the uid and tries `sudo -n true`; only when sudo wants a
//! password and the inventory has one does a second round trip check that password
//! (`sudo -k -S -p '' true`). Commands then wrap themselves according to the
//! [`SudoMode`] found here (see [`super::shell::command_line`]).

use std::time::Duration;

use bytes::Bytes;
use zeroize::Zeroizing;

use super::exec::{Exec, Feed, Stdin};
use super::shell::{self, Elevation};
use super::{SudoMode, TransportError};
use crate::secret::{self, Secret};

/// How long the probes may take; sudo sleeps a couple of seconds after a wrong password.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The sudo facts of one connection.
#[derive(Clone, Debug)]
pub struct SudoState {
    pub mode: SudoMode,
    /// The login user, for messages.
    pub user: String,
    /// Kept only in [`SudoMode::Password`].
    password: Option<Secret>,
    /// Why sudo is unavailable, for the error a `sudo: true` command gets.
    reason: String,
}

impl SudoState {
    /// The state before the probe has run: nothing may use sudo yet.
    pub fn placeholder(user: &str) -> SudoState {
        SudoState {
            mode: SudoMode::Unavailable,
            user: user.to_string(),
            password: None,
            reason: "the sudo probe has not run yet".into(),
        }
    }

    /// The elevation a `sudo: true` command needs, or the error saying how to fix sudo.
    pub fn elevation(&self, host: &str) -> Result<Elevation, TransportError> {
        Elevation::for_mode(self.mode).ok_or_else(|| TransportError::SudoUnavailable {
            host: host.to_string(),
            user: self.user.clone(),
            reason: self.reason.clone(),
        })
    }

    /// `password\n`, the first line a `sudo -S` command gets on stdin.
    pub fn password_line(&self, host: &str) -> Result<Zeroizing<Vec<u8>>, TransportError> {
        let pw = self
            .password
            .as_ref()
            .ok_or_else(|| TransportError::Other {
                host: host.to_string(),
                what: "sudo".into(),
                reason: "internal error: password mode without a password".into(),
            })?;
        let mut line = Zeroizing::new(Vec::with_capacity(pw.expose().len() + 1));
        line.extend_from_slice(pw.expose().as_bytes());
        line.push(b'\n');
        Ok(line)
    }
}

const PROBE: &str = "id -u; id -un; \
if ! command -v sudo >/dev/null 2>&1; then echo sudo-missing; \
elif sudo -n true 2>/dev/null; then echo sudo-ok; \
else echo sudo-password; fi";

/// Asks the host how `user` gets root. `password` is the inventory's sudo password.
pub async fn probe<E: Exec>(
    host: &E,
    password: Option<&Secret>,
) -> Result<SudoState, TransportError> {
    let name = host.host().to_string();
    let line = shell::command_line(PROBE, Elevation::None, None);
    let out = host
        .exec(
            &line,
            Stdin::empty(),
            None,
            Some(PROBE_TIMEOUT),
            "sudo probe",
        )
        .await?
        .output;
    let text = out.stdout_str();
    let mut lines = text.lines().map(str::trim);
    let (uid, user, sudo) = (lines.next(), lines.next(), lines.next());
    let (Some(uid), Some(user), Some(sudo)) = (uid, user, sudo) else {
        return Err(TransportError::Other {
            host: name,
            what: "finding the user id and sudo".into(),
            reason: format!(
                "unexpected answer {:?} (stderr {:?}); is the login shell a POSIX-like shell?",
                text.trim(),
                out.stderr_str().trim()
            ),
        });
    };
    let state = |mode, password, reason: &str| SudoState {
        mode,
        user: user.to_string(),
        password,
        reason: reason.to_string(),
    };
    if uid == "0" {
        return Ok(state(SudoMode::Root, None, ""));
    }
    match sudo {
        "sudo-ok" => return Ok(state(SudoMode::NoPassword, None, "")),
        "sudo-missing" => {
            return Ok(state(SudoMode::Unavailable, None, "sudo is not installed"));
        }
        _ => {}
    }
    let Some(password) = password else {
        return Ok(state(
            SudoMode::Unavailable,
            None,
            "sudo asks for a password and ssh.sudo_password is not set",
        ));
    };
    let mut pw_line = Zeroizing::new(password.expose().as_bytes().to_vec());
    pw_line.push(b'\n');
    let line = shell::command_line("LC_ALL=C sudo -k -S -p '' true", Elevation::None, None);
    let check = host
        .exec(
            &line,
            Stdin {
                password_line: Some(pw_line),
                feed: Feed::Bytes(Bytes::new()),
            },
            None,
            Some(PROBE_TIMEOUT),
            "sudo password check",
        )
        .await?
        .output;
    if check.success() {
        return Ok(state(SudoMode::Password, Some(password.clone()), ""));
    }
    let stderr = secret::redact(&check.stderr_str());
    if super::exec::sudo_rejected(stderr.as_bytes()) {
        return Err(TransportError::SudoPasswordRejected {
            host: name,
            user: user.to_string(),
        });
    }
    let reason = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("sudo refused without saying why")
        .to_string();
    Ok(state(SudoMode::Unavailable, None, &reason))
}
