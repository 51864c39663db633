//! Putting a file on a host: atomic, verified, resumable; and reading one back.
//!
//! The protocol, written once for both transports:
//! 1. hash the local file (cached per file version, see [`super::hash`]);
//! 2. one round trip: is `dest` already this content? how much of the temp file
//!    `<dir>/.<name>.gpuctl-<sha256[..16]>.part` did an earlier, broken transfer leave?
//! 3. one round trip: stream the rest with `cat >> TEMP` on the command's stdin; after
//!    EOF the same script checks TEMP's size (short: kept for the next put to resume),
//!    hashes it on the host, applies mode and owner, and runs `mv -f TEMP dest`.
//!
//! A host that stops accepting data fails the put with `Stalled` after
//! `PutOptions::stall_timeout` instead of hanging it; what arrived stays for the resume.
//!
//! The temp name carries the content hash, so a partial file is only ever resumed with the
//! same content. When `mv` is refused with EBUSY because `dest` is a mount point (bind
//! mounted files like `/etc/hosts` in containers), the content is written in place after
//! a one-time backup to `dest.gpuctl-backup`.
//!
//! Mode and owner: `PutOptions.mode`/`owner` when given; otherwise a file that already
//! exists keeps its mode (and, when writing as root, its owner), and a new file gets
//! 0644 and the writing user. The transfer itself happens in a 0600 temp file.

use std::path::Path;
use std::time::Duration;

use super::exec::{Exec, Feed, run_script};
use super::shell::quote;
use super::sudo::SudoCell;
use super::{PutOptions, PutReport, TransportError};

const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(600);

/// Hashes with openssl when the host has it: several times faster than coreutils'
/// sha256sum, which matters for multi-GiB artifacts.
const HASH_FN: &str = "h() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r < \"$1\"; else sha256sum < \"$1\"; fi | cut -c1-64; }";

/// `dir`, `name` of an absolute or relative path (`/a/b` → `/a`, `b`; `b` → `.`, `b`).
fn split(dest: &str) -> (String, String) {
    match dest.rsplit_once('/') {
        Some(("", name)) => ("/".to_string(), name.to_string()),
        Some((dir, name)) => (dir.to_string(), name.to_string()),
        None => (".".to_string(), dest.to_string()),
    }
}

/// The deterministic temp file for putting content `sha256` at `dest`.
pub fn temp_path(dest: &str, sha256: &str) -> String {
    let (dir, name) = split(dest);
    let short = sha256.get(..16).unwrap_or(sha256);
    let dir = if dir == "/" { String::new() } else { dir };
    format!("{dir}/.{name}.gpuctl-{short}.part")
}

fn attrs_script(target: &str, opts: &PutOptions, from: Option<&str>) -> String {
    let mut s = String::new();
    match (opts.mode, from) {
        (Some(mode), _) => s.push_str(&format!("chmod {mode:o} {target} || exit 1\n")),
        (None, Some(existing)) => s.push_str(&format!(
            "if [ -e {existing} ]; then chmod --reference={existing} {target} || exit 1; else chmod 644 {target} || exit 1; fi\n"
        )),
        (None, None) => {}
    }
    match (&opts.owner, from) {
        (Some(owner), _) => s.push_str(&format!("chown {} {target} || exit 1\n", quote(owner))),
        (None, Some(existing)) => s.push_str(&format!(
            "if [ -e {existing} ] && [ \"$(id -u)\" = 0 ]; then chown --reference={existing} {target} || exit 1; fi\n"
        )),
        (None, None) => {}
    }
    s
}

/// Opens `temp` on fd 9 with `open` (`exec 9<` or `exec 9>>`) and takes a `flock` on it
/// (`-s` to read its size, `-x` to append), waiting up to a minute.
///
/// Why: a transfer that was given up (stalled, interrupted) can leave its `cat` on the
/// host still appending what was already in flight. The lock makes the next put wait for
/// it, so it reads the final size and appends after it, never between. Hosts without
/// `flock` (util-linux) still work, without that guard.
fn lock_script(temp: &str, open: &str, mode: &str) -> String {
    format!(
        "{open}{temp} || exit 1; if command -v flock >/dev/null 2>&1; then flock {mode} -w 60 9 || {{ printf '%s is still being written by an earlier transfer\\n' {temp} >&2; exit 1; }}; fi; "
    )
}

pub async fn put<E: Exec>(
    host: &E,
    sudo: &SudoCell,
    src: &Path,
    dest: &str,
    opts: &PutOptions,
) -> Result<PutReport, TransportError> {
    let name = host.host().to_string();
    let fail = |step: &str, reason: String| TransportError::Put {
        host: name.clone(),
        path: dest.to_string(),
        step: step.to_string(),
        reason,
    };
    if dest.is_empty() || dest.ends_with('/') {
        return Err(fail(
            "checking the destination",
            "it must name a file".into(),
        ));
    }
    let (total, sha) =
        super::hash::sha256_file(src)
            .await
            .map_err(|e| TransportError::LocalFile {
                host: name.clone(),
                path: src.to_path_buf(),
                reason: e.to_string(),
            })?;
    let (dir, _) = split(dest);
    let (d, t) = (quote(dest), quote(&temp_path(dest, &sha)));
    let progress = |n: u64| {
        if let Some(p) = &opts.progress {
            p(n);
        }
    };

    let probe = format!(
        "LC_ALL=C; export LC_ALL\n{HASH_FN}\n\
         if [ -d {d} ]; then echo 'it is a directory' >&2; exit 2; fi\n\
         if [ -f {d} ] && [ \"$(stat -c %s {d})\" = {total} ] && [ \"$(h {d})\" = {sha} ]; then\n\
         {attrs}echo unchanged; exit 0; fi\n\
         n=0; if [ -f {t} ]; then {wait_writer}n=$(stat -c %s {t}); fi\n\
         if [ \"$n\" -gt {total} ]; then rm -f {t}; n=0; fi\n\
         echo \"partial $n\"\n",
        attrs = attrs_script(&d, opts, None),
        wait_writer = lock_script(&t, "exec 9<", "-s"),
    );
    let out = run_script(
        host,
        sudo,
        &probe,
        opts.sudo,
        Feed::Empty,
        Some(ROUND_TRIP_TIMEOUT),
        None,
        Some(&format!("checking {dest}")),
    )
    .await?
    .output;
    if !out.success() {
        return Err(fail(
            "checking the destination",
            out.stderr_str().trim().to_string(),
        ));
    }
    let answer = out.stdout_str();
    if answer.trim() == "unchanged" {
        progress(total);
        return Ok(PutReport {
            bytes_total: total,
            bytes_sent: 0,
            sha256: sha,
            unchanged: true,
        });
    }
    let offset: u64 = answer
        .trim()
        .strip_prefix("partial ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            fail(
                "checking the destination",
                format!("unexpected answer {answer:?}"),
            )
        })?;

    // Sending and finishing share one round trip: after EOF, `cat` ends and the same
    // script verifies the temp file and moves it into place.
    let finish = format!(
        "LC_ALL=C; export LC_ALL\n{HASH_FN}\n\
         got=$(h {t})\n\
         if [ \"$got\" != {sha} ]; then rm -f {t}; echo \"mismatch $got\"; exit 0; fi\n\
         {place}",
        place = place_script(dest, &t, opts),
    );
    // An empty file has nothing to resume but still needs its directory and temp file.
    let (script, feed, timeout) = if offset < total || total == 0 {
        progress(offset);
        // A short temp file after EOF means the sender gave up (it stalled, or the caller
        // was interrupted): keep what arrived for the next put to resume, rather than let
        // the hash check below throw it away.
        let send = format!(
            "(umask 022; mkdir -p {dir}) || exit 1\n\
             umask 077; {lock}umask 022\n\
             if [ \"$(stat -c %s {t})\" != {offset} ]; then printf '%s changed after it was checked (another transfer of the same file?); run again\\n' {t} >&2; exit 1; fi\n\
             cat >&9 || exit 1\n\
             n=$(stat -c %s {t}) || exit 1\n\
             if [ \"$n\" != {total} ]; then echo \"the transfer stopped at $n of {total} bytes; run again to resume\" >&2; exit 1; fi\n\
             {finish}",
            dir = quote(&dir),
            lock = lock_script(&t, "exec 9>>", "-x"),
        );
        let feed = Feed::File {
            path: src.to_path_buf(),
            offset,
            progress: opts.progress.clone(),
            stall: opts.stall_timeout.unwrap_or(super::STALL_TIMEOUT),
        };
        (send, feed, None)
    } else {
        (finish, Feed::Empty, Some(ROUND_TRIP_TIMEOUT))
    };
    let label = format!("putting {dest}");
    let outcome = run_script(
        host,
        sudo,
        &script,
        opts.sudo,
        feed,
        timeout,
        None,
        Some(&label),
    )
    .await?;
    let (out, sent) = (outcome.output, outcome.fed);
    let answer = out.stdout_str();
    let answer = answer.trim();
    if let Some(actual) = answer.strip_prefix("mismatch ") {
        return Err(TransportError::PutVerify {
            host: name,
            path: dest.to_string(),
            expected: sha,
            actual: actual.to_string(),
        });
    }
    if !out.success() || !matches!(answer, "moved" | "copied") {
        return Err(fail(
            "writing it",
            format!("{} {}", out.stderr_str().trim(), answer)
                .trim()
                .to_string(),
        ));
    }
    progress(total);
    Ok(PutReport {
        bytes_total: total,
        bytes_sent: sent,
        sha256: sha,
        unchanged: false,
    })
}

/// How long a script that carries file contents ([`inline_script`]) may grow: the whole
/// command line reaches the host as one argument, which Linux caps at 128 KiB; the rest is
/// room for the command's own wrapping (sudo, timeout, quoting).
pub const SCRIPT_MAX: usize = 96 * 1024;

/// A script that writes `content` at `dest` with the same guarantees as [`put`] — a temp
/// file beside `dest`, mode and owner as `opts` says (or kept from the file it replaces),
/// an atomic `mv`, and the in-place fallback with a one-time backup for a bind-mounted
/// `dest` — for content small enough to travel in the script itself (see [`SCRIPT_MAX`]).
/// Writing config files this way costs no round trip of its own: it runs inside a
/// larger script (converge's apply script). It fails (non-zero, why on stderr) without
/// leaving its temp file behind.
pub fn inline_script(dest: &str, content: &[u8], opts: &PutOptions) -> String {
    let (dir, _) = split(dest);
    let sha = {
        use sha2::{Digest as _, Sha256};
        data_encoding::HEXLOWER.encode(&Sha256::digest(content))
    };
    let t = quote(&temp_path(dest, &sha));
    format!(
        "(umask 022; mkdir -p {dir}) || exit 1\n\
         (umask 077; printf '%s' '{b64}' | base64 -d > {t}) || {{ rm -f {t}; exit 1; }}\n\
         {place}",
        dir = quote(&dir),
        b64 = data_encoding::BASE64.encode(content),
        place = place_script(dest, &t, opts),
    )
    .trim_end()
    .to_string()
}

/// The end of every put: the complete temp file `t` gets its mode and owner and is renamed
/// onto `dest` (`moved`); a bind-mounted `dest` refuses the rename (EBUSY) and is written
/// in place after a one-time backup (`copied`). A failure removes the temp file.
fn place_script(dest: &str, t: &str, opts: &PutOptions) -> String {
    let d = quote(dest);
    let fail = format!("{{ rm -f {t}; exit 1; }}");
    format!(
        "{attrs_temp}\
         if err=$(mv -f {t} {d} 2>&1); then echo moved; exit 0; fi\n\
         case \"$err\" in *'Device or resource busy'*) ;; *) rm -f {t}; echo \"$err\" >&2; exit 1;; esac\n\
         [ -e {bak} ] || cp -p {d} {bak} || {fail}\n\
         cat {t} > {d} || {fail}\n\
         {attrs_dest}\
         rm -f {t}; echo copied\n",
        attrs_temp = attrs_script(t, opts, Some(&d)).replace("|| exit 1", &format!("|| {fail}")),
        attrs_dest = attrs_script(&d, opts, None).replace("|| exit 1", &format!("|| {fail}")),
        bak = quote(&format!("{dest}.gpuctl-backup")),
    )
}

/// Marker on stderr for a missing file, so it is told apart from sudo's own failures.
const MISSING: &str = "gpuctl: no such file";

pub async fn get<E: Exec>(
    host: &E,
    sudo: &SudoCell,
    path: &str,
    as_root: bool,
) -> Result<Vec<u8>, TransportError> {
    let p = quote(path);
    let script = format!("if [ ! -e {p} ]; then echo '{MISSING}' >&2; exit 3; fi\nexec cat -- {p}");
    let out = run_script(
        host,
        sudo,
        &script,
        as_root,
        Feed::Empty,
        Some(ROUND_TRIP_TIMEOUT),
        None,
        Some(&format!("reading {path}")),
    )
    .await?
    .output;
    if out.success() {
        return Ok(out.stdout);
    }
    let stderr = out.stderr_str();
    if out.status == Some(3) && stderr.contains(MISSING) {
        return Err(TransportError::NotFound {
            host: host.host().to_string(),
            path: path.to_string(),
        });
    }
    Err(TransportError::Get {
        host: host.host().to_string(),
        path: path.to_string(),
        reason: stderr.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_sit_beside_the_destination() {
        let sha = "0123456789abcdef0123";
        assert_eq!(
            temp_path("/etc/hosts", sha),
            "/etc/.hosts.gpuctl-0123456789abcdef.part"
        );
        assert_eq!(temp_path("/x", sha), "/.x.gpuctl-0123456789abcdef.part");
        assert_eq!(temp_path("rel", sha), "./.rel.gpuctl-0123456789abcdef.part");
    }

    /// The script runs under this machine's `sh`: a new file gets the mode asked for, a
    /// replaced one keeps its mode, and no temp file is left either way.
    #[test]
    fn an_inline_script_writes_atomically_under_sh() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let run = |script: String| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let new = dir.path().join("sub dir/new.conf");
        let new = new.display().to_string();
        let opts = PutOptions {
            mode: Some(0o600),
            ..PutOptions::default()
        };
        run(inline_script(&new, b"a = 'b'\n\x00\xff", &opts));
        assert_eq!(
            std::fs::read(&new).ok(),
            Some(b"a = 'b'\n\x00\xff".to_vec())
        );
        let mode = |p: &str| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o7777)
                .ok()
        };
        assert_eq!(mode(&new), Some(0o600));
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640))
            .unwrap_or_else(|e| panic!("{e}"));
        run(inline_script(&new, b"", &PutOptions::default()));
        assert_eq!(std::fs::read(&new).ok(), Some(Vec::new()));
        assert_eq!(mode(&new), Some(0o640));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub dir"))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn explicit_attributes_win_over_the_existing_file() {
        let opts = PutOptions {
            mode: Some(0o755),
            owner: Some("root:root".into()),
            ..PutOptions::default()
        };
        let s = attrs_script("T", &opts, Some("D"));
        assert_eq!(s, "chmod 755 T || exit 1\nchown root:root T || exit 1\n");
        let s = attrs_script("T", &PutOptions::default(), Some("D"));
        assert!(s.contains("chmod --reference=D T"), "{s}");
        assert!(s.contains("chmod 644 T"), "{s}");
    }
}
