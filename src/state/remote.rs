//! The host side of the state: `/var/lib/gpuctl/install.lock` and
//! `/var/lib/gpuctl/state.json` on each host, as shell snippets the engine runs as root.
//!
//! Taking the host lock and reading the host journal ride along with the facts round
//! trip, so they cost nothing extra. The lock is created with `set -C` (O_EXCL), so two
//! workstations racing for the same host cannot both win.

use super::journal::HostJournal;
use super::lock::LockInfo;
use crate::transport::shell::quote;

pub const DIR: &str = "/var/lib/gpuctl";
pub const LOCK: &str = "/var/lib/gpuctl/install.lock";
pub const JOURNAL: &str = "/var/lib/gpuctl/state.json";

/// Prints `@lock ok` or `@lock held <base64 of the lock>`; with `take_over`, replaces a
/// lock held by exactly that run instead.
pub fn lock_script(info: &LockInfo, take_over: Option<&str>) -> String {
    let text = serde_json::to_string(info).unwrap_or_default();
    let mut s = format!("(umask 022; mkdir -p {DIR}) || exit 1\n");
    if let Some(run) = take_over {
        // Only the lock we decided is stale is replaced; anything else is reported again.
        s.push_str(&format!(
            "if grep -qF {needle} {LOCK} 2>/dev/null; then rm -f {LOCK}; fi\n",
            needle = quote(&format!("\"run\":\"{run}\""))
        ));
    }
    s.push_str(&format!(
        "if (set -C; umask 077; printf '%s\\n' {t} > {LOCK}) 2>/dev/null; then echo '@lock ok'; \
         else echo \"@lock held $(base64 < {LOCK} | tr -d '\\n')\"; fi\n",
        t = quote(&text)
    ));
    s
}

/// Prints `@journal <base64>` when the host has a journal.
pub const READ_JOURNAL: &str = "if [ -f /var/lib/gpuctl/state.json ]; then echo \"@journal $(base64 < /var/lib/gpuctl/state.json | tr -d '\\n')\"; fi\n";

/// What the lock part of the answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAnswer {
    Taken,
    Held(Option<LockInfo>),
    /// The script did not try (dry runs).
    NotAsked,
}

/// Reads `@lock` and `@journal` lines out of a combined answer.
pub fn parse(output: &str) -> (LockAnswer, Option<Result<HostJournal, String>>) {
    let mut lock = LockAnswer::NotAsked;
    let mut journal = None;
    for line in output.lines() {
        if line == "@lock ok" {
            lock = LockAnswer::Taken;
        } else if let Some(b) = line.strip_prefix("@lock held ") {
            let info = data_encoding::BASE64
                .decode(b.trim().as_bytes())
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            lock = LockAnswer::Held(info);
        } else if let Some(b) = line.strip_prefix("@journal ") {
            journal = Some(
                data_encoding::BASE64
                    .decode(b.trim().as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<HostJournal>(&bytes).map_err(|e| e.to_string())
                    }),
            );
        }
    }
    (lock, journal)
}

/// Writes the journal given on stdin atomically: temp, fsync, rename.
pub const WRITE_JOURNAL: &str = "umask 077; mkdir -p /var/lib/gpuctl || exit 1\n\
t=/var/lib/gpuctl/.state.json.tmp\n\
cat > \"$t\" || exit 1\n\
sync \"$t\" 2>/dev/null || sync\n\
mv -f \"$t\" /var/lib/gpuctl/state.json\n";

/// Removes the host lock if this run holds it (the lock is one line, read by the shell).
pub fn unlock_script(run: &str) -> String {
    format!(
        "if read -r l 2>/dev/null <{LOCK} && case $l in *{needle}*) true;; *) false;; esac; then rm -f {LOCK}; fi\n",
        needle = quote(&format!("\"run\":\"{run}\""))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_journal_answers_are_read_back() {
        let info = LockInfo {
            owner: "ops@ws".into(),
            pid: 42,
            started: "t".into(),
            run: "t-42".into(),
        };
        let b = data_encoding::BASE64.encode(serde_json::to_string(&info).unwrap().as_bytes());
        let j = data_encoding::BASE64.encode(br#"{"stages":{}}"#);
        let (lock, journal) = parse(&format!("x=1\n@lock held {b}\n@journal {j}\n"));
        assert_eq!(lock, LockAnswer::Held(Some(info.clone())));
        assert_eq!(journal, Some(Ok(HostJournal::default())));
        assert_eq!(parse("@lock ok\n"), (LockAnswer::Taken, None));
        // The lock text goes into the script quoted, and unlocking matches this run only.
        assert!(lock_script(&info, None).contains("set -C"));
        assert!(unlock_script("t-42").contains(r#"'"run":"t-42"'"#));
    }
}
