//! Finding, once per connection, how the login user becomes root.
//!
//! One round trip asks for the uid and tries `sudo -n true`; only when sudo wants a
//! password and the inventory has one does a second round trip check that password
//! (`sudo -k -S -p '' true`). Commands then wrap themselves according to the
//! [`SudoMode`] found here (see [`super::shell::command_line`]).
//!
//! A connection may also defer the probe ([`SudoProbe::Deferred`]): a command the caller
//! runs anyway (doctor's evidence script) answers the same questions through
//! [`PROBE_VARS`], and [`SudoCell::settle`] takes that answer instead of a round trip of
//! its own. Until then the connection has no sudo.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use zeroize::Zeroizing;

use super::exec::{Exec, Feed, Stdin};
use super::shell::{self, Elevation};
use super::{SudoMode, TransportError};
use crate::secret::{self, Secret};

/// How long the probes may take; sudo sleeps a couple of seconds after a wrong password.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// When a connection finds its sudo mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SudoProbe {
    /// While connecting: one more round trip, and every command knows at once.
    #[default]
    AtConnect,
    /// When the caller settles it ([`super::Connection::settle_sudo`]), with the answer
    /// of a script that ran [`PROBE_VARS`], or else with a probe of its own.
    Deferred,
}

/// The probe as shell: sets `U` (the uid), `N` (the login name, empty when unknown) and
/// `S` (`root`, `sudo-ok`, `sudo-password` or `sudo-missing`), with at most one `sudo -n
/// true` and, where `/proc` or the login's environment does not tell, one `id`: doctor's
/// evidence script runs this on fifty hosts at once, where every process counts.
pub const PROBE_VARS: &str = r#"U=""; N=${USER:-$LOGNAME}
if [ -r /proc/self/status ]; then
  while read -r k r e rest; do [ "$k" = Uid: ] && { U=$e; break; }; done < /proc/self/status
fi
if [ -z "$U" ] || [ -z "$N" ]; then
  I=$(id); I=${I#uid=}; U=${I%%[!0-9]*}
  case $I in "$U("*) N=${I#"$U("}; N=${N%%")"*};; esac
fi
if [ "$U" = 0 ]; then S=root
elif ! command -v sudo >/dev/null 2>&1; then S=sudo-missing
elif sudo -n true 2>/dev/null; then S=sudo-ok
else S=sudo-password; fi"#;

/// What [`PROBE_VARS`] found on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub uid: String,
    pub user: String,
    pub sudo: String,
}

impl ProbeAnswer {
    /// A uid, and one of the words [`PROBE_VARS`] sets `S` to.
    pub fn is_well_formed(&self) -> bool {
        self.uid.parse::<u32>().is_ok()
            && matches!(
                self.sudo.as_str(),
                "root" | "sudo-ok" | "sudo-password" | "sudo-missing"
            )
    }
}

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
    fn placeholder(user: &str) -> SudoState {
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

/// Asks the host how `user` gets root. `password` is the inventory's sudo password.
pub async fn probe<E: Exec>(
    host: &E,
    password: Option<&Secret>,
) -> Result<SudoState, TransportError> {
    let script = format!("{PROBE_VARS}\nprintf '%s\\n%s\\n%s\\n' \"$U\" \"$N\" \"$S\"");
    let line = shell::command_line(&script, Elevation::None, None);
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
    let (Some(uid), Some(user), Some(sudo)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(unexpected(host.host(), &text, &out.stderr_str()));
    };
    let answer = ProbeAnswer {
        uid: uid.to_string(),
        user: user.to_string(),
        sudo: sudo.to_string(),
    };
    if !answer.is_well_formed() {
        return Err(unexpected(host.host(), &text, &out.stderr_str()));
    }
    decide(host, &answer, password).await
}

fn unexpected(host: &str, stdout: &str, stderr: &str) -> TransportError {
    TransportError::Other {
        host: host.to_string(),
        what: "finding the user id and sudo".into(),
        reason: format!(
            "unexpected answer {:?} (stderr {:?}); is the login shell a POSIX-like shell?",
            stdout.trim(),
            stderr.trim()
        ),
    }
}

/// The sudo state a well-formed `answer` means; checks the inventory's password when sudo
/// wants one.
async fn decide<E: Exec>(
    host: &E,
    answer: &ProbeAnswer,
    password: Option<&Secret>,
) -> Result<SudoState, TransportError> {
    let name = host.host().to_string();
    let (uid, user, sudo) = (
        answer.uid.as_str(),
        answer.user.as_str(),
        answer.sudo.as_str(),
    );
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

/// A connection's sudo state: known from the start ([`SudoProbe::AtConnect`]) or once
/// settled ([`SudoProbe::Deferred`]); until then, no sudo.
pub struct SudoCell {
    known: OnceLock<SudoState>,
    pending: SudoState,
    password: Option<Secret>,
}

impl SudoCell {
    pub fn new(user: &str, password: Option<Secret>) -> SudoCell {
        SudoCell {
            known: OnceLock::new(),
            pending: SudoState::placeholder(user),
            password,
        }
    }

    pub fn get(&self) -> &SudoState {
        self.known.get().unwrap_or(&self.pending)
    }

    /// The sudo mode, found now if it is not known yet: from `answer` (what a script
    /// that ran [`PROBE_VARS`] printed) when it is well formed, else by a probe.
    pub async fn settle<E: Exec>(
        &self,
        host: &E,
        answer: Option<&ProbeAnswer>,
    ) -> Result<SudoMode, TransportError> {
        if let Some(state) = self.known.get() {
            return Ok(state.mode);
        }
        let state = match answer.filter(|a| a.is_well_formed()) {
            Some(a) => decide(host, a, self.password.as_ref()).await?,
            None => probe(host, self.password.as_ref()).await?,
        };
        Ok(self.known.get_or_init(|| state).mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the probe's shell under this machine's `sh` with `env` (and nothing else).
    fn answer(env: &[(&str, &str)]) -> ProbeAnswer {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{PROBE_VARS}\nprintf '%s\\n%s\\n%s\\n' \"$U\" \"$N\" \"$S\""
            ))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let mut next = || lines.next().unwrap_or_default().to_string();
        ProbeAnswer {
            uid: next(),
            user: next(),
            sudo: next(),
        }
    }

    fn id(flag: &str) -> String {
        let out = std::process::Command::new("id")
            .arg(flag)
            .output()
            .unwrap_or_else(|e| panic!("id: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn the_probe_reads_the_uid_from_proc_and_the_name_from_the_login() {
        let a = answer(&[("USER", "someone")]);
        assert_eq!(a.uid, id("-u"));
        assert_eq!(a.user, "someone");
        assert!(a.is_well_formed(), "{a:?}");
        if a.uid == "0" {
            assert_eq!(a.sudo, "root");
        }
    }

    #[test]
    fn without_a_login_name_the_probe_asks_id() {
        let a = answer(&[]);
        assert_eq!(a.uid, id("-u"));
        assert_eq!(a.user, id("-un"));
        assert!(a.is_well_formed(), "{a:?}");
    }

    #[test]
    fn only_what_the_probe_prints_is_well_formed() {
        let a = |uid: &str, sudo: &str| ProbeAnswer {
            uid: uid.into(),
            user: "ops".into(),
            sudo: sudo.into(),
        };
        assert!(a("1000", "sudo-ok").is_well_formed());
        assert!(a("0", "root").is_well_formed());
        assert!(!a("", "sudo-ok").is_well_formed(), "no uid");
        assert!(
            !a("1000", "").is_well_formed(),
            "an old script without the sudo line"
        );
        assert!(!a("1000", "yes").is_well_formed());
    }
}
