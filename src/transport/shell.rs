//! Building remote command lines: POSIX single-quote escaping and the `sh -c` / `sudo` /
//! `timeout` wrappers every command goes through.
//!
//! The login shell of a remote user may be bash, zsh or fish; wrapping every script in
//! `sh -c '...'` makes scripts run under POSIX sh everywhere, and quoting is the one place
//! where a stray `'` in a path could turn into a different command, so it lives here with
//! its tests.

use std::time::Duration;

use super::SudoMode;

/// Quotes `s` for a POSIX shell: `'...'`, with each `'` written as `'\''`.
///
/// Plain words made only of safe characters are left bare so logs stay readable.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b':' | b'@' | b'=' | b'+' | b','
                )
        });
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Grace period between the TERM that `timeout` sends and the KILL that follows.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How a command reaches root, decided per command from the connection's [`SudoMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elevation {
    /// Run as the login user (or root already).
    None,
    /// `sudo -n`: no password needed.
    NoPassword,
    /// `sudo -k -S -p ''`: the password line comes first on stdin.
    Password,
}

impl Elevation {
    /// What a `sudo: true` command needs on a connection in `mode`; `None` when sudo is
    /// unavailable (the caller reports that).
    pub fn for_mode(mode: SudoMode) -> Option<Elevation> {
        match mode {
            SudoMode::Root => Some(Elevation::None),
            SudoMode::NoPassword => Some(Elevation::NoPassword),
            SudoMode::Password => Some(Elevation::Password),
            SudoMode::Unavailable => None,
        }
    }
}

/// The full command line for `script`: `[sudo ...] [timeout ...] sh -c 'SCRIPT'`.
///
/// `timeout` runs inside sudo so that it can kill a root process group when the time is
/// up; it sends TERM, then KILL after [`KILL_GRACE`].
///
/// With a password, `-k` makes sudo ignore cached credentials so it *always* reads the
/// password line: a cached timestamp would otherwise leave the password on the script's
/// stdin.
pub fn command_line(script: &str, elevation: Elevation, timeout: Option<Duration>) -> String {
    let mut line = String::new();
    match elevation {
        Elevation::None => {}
        Elevation::NoPassword => line.push_str("sudo -n -- "),
        Elevation::Password => line.push_str("sudo -k -S -p '' -- "),
    }
    if let Some(t) = timeout {
        line.push_str(&format!(
            "timeout -k {} {} ",
            seconds(KILL_GRACE),
            seconds(t)
        ));
    }
    line.push_str("sh -c ");
    line.push_str(&quote(script));
    line
}

/// A duration as GNU `timeout` reads it (`1.5s`); never zero, which would mean "no limit".
fn seconds(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// The first line of a script, shortened, for error messages.
pub fn first_line(script: &str) -> String {
    let line = script.trim().lines().next().unwrap_or("");
    let more = script.trim().lines().nth(1).is_some();
    let mut short: String = line.chars().take(80).collect();
    if line.chars().count() > 80 || more {
        short.push_str(" ...");
    }
    short
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn sh(line: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quote_leaves_plain_words_bare() {
        assert_eq!(quote("/etc/hosts"), "/etc/hosts");
        assert_eq!(quote("a-b_c.d:1@x=y,z+w"), "a-b_c.d:1@x=y,z+w");
    }

    #[test]
    fn quote_escapes_everything_else() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn quoted_strings_survive_a_real_shell() {
        for s in [
            "it's a 'test'",
            "$(rm -rf /) `x` $HOME \\ \" ; | & > <",
            "new\nline",
            "''''",
            "ünïcödé ✓",
        ] {
            assert_eq!(sh(&format!("printf %s {}", quote(s))), s, "for {s:?}");
        }
    }

    #[test]
    fn command_lines_wrap_as_documented() {
        assert_eq!(
            command_line("echo 'hi'", Elevation::None, None),
            "sh -c 'echo '\\''hi'\\'''"
        );
        assert_eq!(
            command_line("id -u", Elevation::NoPassword, None),
            "sudo -n -- sh -c 'id -u'"
        );
        assert_eq!(
            command_line("id -u", Elevation::Password, None),
            "sudo -k -S -p '' -- sh -c 'id -u'"
        );
        assert_eq!(
            command_line(
                "sleep 9",
                Elevation::NoPassword,
                Some(Duration::from_millis(1500))
            ),
            "sudo -n -- timeout -k 2s 1.500s sh -c 'sleep 9'"
        );
    }

    #[test]
    fn wrapped_script_runs_unchanged() {
        let script = "a='x y'; printf '%s|' \"$a\" it\\'s";
        assert_eq!(
            sh(&command_line(script, Elevation::None, None)),
            "x y|it's|"
        );
    }

    #[test]
    fn timeout_wrapper_kills_and_reports_124() {
        let line = command_line("sleep 5", Elevation::None, Some(Duration::from_millis(200)));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .status()
            .expect("sh runs");
        assert_eq!(status.code(), Some(124));
    }

    #[test]
    fn elevation_follows_sudo_mode() {
        assert_eq!(Elevation::for_mode(SudoMode::Root), Some(Elevation::None));
        assert_eq!(Elevation::for_mode(SudoMode::Unavailable), None);
    }

    #[test]
    fn first_line_is_short() {
        assert_eq!(
            first_line("  apt-get update\napt-get install x"),
            "apt-get update ..."
        );
        assert_eq!(first_line("true"), "true");
        assert_eq!(first_line(&"x".repeat(100)).len(), 84);
    }
}
