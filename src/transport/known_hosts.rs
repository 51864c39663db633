//! known_hosts files: reading, matching a server's key, recording new keys.
//!
//! Our own reader rather than russh's: russh matches names exactly and fails the whole
//! check on one line it cannot parse, while real known_hosts files carry hashed names
//! (`|1|salt|hash`), comma lists, wildcards, `@revoked`/`@cert-authority` markers and the
//! odd key type nobody can parse. Here a bad line is skipped with a warning (once per
//! file and line per process), and every line that names the host counts.
//!
//! Recording a new key (`--accept-new-host-keys`) happens under one process-wide lock, and
//! the file is re-read under it, so parallel first connections to many hosts neither
//! interleave their writes nor record the same host twice.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// The name a host goes by in known_hosts: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's fingerprint format: `SHA256:` and unpadded base64, as `ssh-keygen -l` prints.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug)]
enum Pattern {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Glob { pattern: String, negated: bool },
}

/// One usable line of a known_hosts file.
#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    marker: Marker,
    patterns: Vec<Pattern>,
    key: PublicKey,
}

/// A parsed known_hosts file: the lines we understood and why the others were skipped.
#[derive(Debug, Default)]
pub struct KnownHostsFile {
    entries: Vec<Entry>,
    /// `(line, reason)` for each line that was skipped.
    pub skipped: Vec<(usize, String)>,
}

impl KnownHostsFile {
    pub fn parse(text: &str) -> KnownHostsFile {
        let mut file = KnownHostsFile::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_line(trimmed) {
                Ok((marker, patterns, key)) => file.entries.push(Entry {
                    line,
                    marker,
                    patterns,
                    key,
                }),
                Err(reason) => file.skipped.push((line, reason)),
            }
        }
        file
    }

    /// Lines that name `name` and are plain host keys (not CA or revocation lines).
    fn host_entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.marker == Marker::None && line_matches(&e.patterns, name))
    }
}

fn parse_line(line: &str) -> Result<(Marker, Vec<Pattern>, PublicKey), String> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(format!("unknown marker {m}")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("no host names after the marker")?;
    }
    let patterns = first
        .split(',')
        .filter(|p| !p.is_empty())
        .map(parse_pattern)
        .collect::<Result<Vec<_>, _>>()?;
    let keytype = fields.next().ok_or("no key type")?;
    let blob = fields.next().ok_or("no key")?;
    let key = PublicKey::from_openssh(&format!("{keytype} {blob}"))
        .map_err(|e| format!("cannot parse a key of type `{keytype}` ({e})"))?;
    Ok((marker, patterns, key))
}

fn parse_pattern(p: &str) -> Result<Pattern, String> {
    if let Some(rest) = p.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or("malformed hashed host name")?;
        let salt = BASE64
            .decode(salt.as_bytes())
            .map_err(|_| "malformed salt in hashed host name")?;
        let hash = BASE64
            .decode(hash.as_bytes())
            .map_err(|_| "malformed hash in hashed host name")?;
        return Ok(Pattern::Hashed { salt, hash });
    }
    if p.starts_with('|') {
        return Err("unsupported hashed host name format".into());
    }
    match p.strip_prefix('!') {
        Some(rest) => Ok(Pattern::Glob {
            pattern: rest.to_string(),
            negated: true,
        }),
        None => Ok(Pattern::Glob {
            pattern: p.to_string(),
            negated: false,
        }),
    }
}

/// OpenSSH semantics: a negated pattern that matches rules the line out; otherwise any
/// positive match counts.
fn line_matches(patterns: &[Pattern], name: &str) -> bool {
    let mut positive = false;
    for p in patterns {
        match p {
            Pattern::Hashed { salt, hash } => {
                if hashed_matches(salt, hash, name) {
                    positive = true;
                }
            }
            Pattern::Glob { pattern, negated } => {
                if glob(pattern.as_bytes(), name.as_bytes()) {
                    if *negated {
                        return false;
                    }
                    positive = true;
                }
            }
        }
    }
    positive
}

fn hashed_matches(salt: &[u8], hash: &[u8], name: &str) -> bool {
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
}

/// `*` and `?` wildcards, case-insensitive like OpenSSH's host matching.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What the known_hosts files say about a server's key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// No line names the host.
    Unknown,
    /// Lines name the host but none has this key; the first such line.
    Changed {
        file: PathBuf,
        line: usize,
    },
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

/// Reads a file; a missing file is an empty one. Skipped lines are warned about once.
pub fn load(path: &Path) -> KnownHostsFile {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return KnownHostsFile::default(),
        Err(e) => {
            warn_once(path, 0, &format!("cannot read it: {e}"));
            return KnownHostsFile::default();
        }
    };
    let file = KnownHostsFile::parse(&text);
    for (line, reason) in &file.skipped {
        warn_once(path, *line, reason);
    }
    file
}

fn warn_once(path: &Path, line: usize, reason: &str) {
    static SEEN: OnceLock<Mutex<HashSet<(PathBuf, usize)>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    if let Ok(mut seen) = seen.lock()
        && seen.insert((path.to_path_buf(), line))
    {
        eprintln!("warning: {}:{line}: line skipped: {reason}", path.display());
    }
}

/// Checks `key` for `name` against `files` in order.
pub fn check(files: &[(PathBuf, KnownHostsFile)], name: &str, key: &PublicKey) -> Verdict {
    for (path, file) in files {
        for e in &file.entries {
            if e.marker == Marker::Revoked && e.key.key_data() == key.key_data() {
                return Verdict::Revoked {
                    file: path.clone(),
                    line: e.line,
                };
            }
        }
    }
    let mut first_other: Option<(PathBuf, usize)> = None;
    for (path, file) in files {
        for e in file.host_entries(name) {
            if e.key.key_data() == key.key_data() {
                return Verdict::Known;
            }
            if first_other.is_none() {
                first_other = Some((path.clone(), e.line));
            }
        }
    }
    match first_other {
        Some((file, line)) => Verdict::Changed { file, line },
        None => Verdict::Unknown,
    }
}

/// Key algorithms already recorded for `name`, so that the server is asked for a key
/// type we can check (OpenSSH does the same) instead of one we have never seen.
pub fn known_algorithms(files: &[(PathBuf, KnownHostsFile)], name: &str) -> Vec<Algorithm> {
    let mut out: Vec<Algorithm> = Vec::new();
    for (_, file) in files {
        for e in file.host_entries(name) {
            let alg = e.key.algorithm();
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
    }
    out
}

/// Serialises every append to a known_hosts file in this process.
fn write_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Appends `name keytype base64` to `path` unless a line for `name` with this key is
/// already there (another connection may have recorded it while we waited for the
/// lock). Creates the directory (0700) and the file (0600) when missing.
pub async fn record(path: &Path, name: &str, key: &PublicKey) -> Result<(), String> {
    let _guard = write_lock().lock().await;
    let path = path.to_path_buf();
    let name = name.to_string();
    let key = key.clone();
    tokio::task::spawn_blocking(move || record_blocking(&path, &name, &key))
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

fn record_blocking(path: &Path, name: &str, key: &PublicKey) -> Result<(), String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.to_string()),
    };
    let parsed = KnownHostsFile::parse(&existing);
    if parsed
        .host_entries(name)
        .any(|e| e.key.key_data() == key.key_data())
    {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut line = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        line.push('\n');
    }
    let openssh = key.to_openssh().map_err(|e| e.to_string())?;
    // to_openssh appends the comment, if any; known_hosts wants `type base64` only.
    let mut parts = openssh.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("cannot encode the key".into());
    };
    line.push_str(&format!("{name} {kind} {blob}\n"));
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    f.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0XXnElnlhtx1VqyruLGFGqcyxjvN7UXzIHugff9a1a";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key parses")
    }

    fn files(text: &str) -> Vec<(PathBuf, KnownHostsFile)> {
        vec![(PathBuf::from("/kh"), KnownHostsFile::parse(text))]
    }

    /// `|1|salt|hash` for `name`, as `ssh-keygen -H` writes it.
    fn hashed(name: &str) -> String {
        let salt = b"0123456789abcdefghij";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(name.as_bytes())
            .finalize()
            .into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&mac))
    }

    #[test]
    fn names_carry_the_port_unless_22() {
        assert_eq!(host_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(host_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn plain_and_bracketed_names_match_exactly() {
        let f = files(&format!("[127.0.0.1]:2222 {ED1}\nnode1 {ED2}\n"));
        assert_eq!(check(&f, "[127.0.0.1]:2222", &key(ED1)), Verdict::Known);
        assert_eq!(check(&f, "127.0.0.1", &key(ED1)), Verdict::Unknown);
        assert_eq!(check(&f, "[127.0.0.1]:2223", &key(ED1)), Verdict::Unknown);
        assert_eq!(check(&f, "NODE1", &key(ED2)), Verdict::Known);
    }

    #[test]
    fn comma_lists_and_wildcards_match() {
        let f = files(&format!(
            "a,b.lab,[127.0.0.1]:2222 {ED1}\n*.corp,!bad.corp {ED2}\n"
        ));
        assert_eq!(check(&f, "b.lab", &key(ED1)), Verdict::Known);
        assert_eq!(check(&f, "[127.0.0.1]:2222", &key(ED1)), Verdict::Known);
        assert_eq!(check(&f, "x.corp", &key(ED2)), Verdict::Known);
        assert_eq!(check(&f, "bad.corp", &key(ED2)), Verdict::Unknown);
    }

    #[test]
    fn hashed_names_match() {
        let f = files(&format!("{} {ED1}\n", hashed("[127.0.0.1]:2222")));
        assert_eq!(check(&f, "[127.0.0.1]:2222", &key(ED1)), Verdict::Known);
        assert_eq!(check(&f, "[127.0.0.1]:2223", &key(ED1)), Verdict::Unknown);
    }

    #[test]
    fn hashed_names_written_by_ssh_keygen_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("[10.1.2.3]:2200 {ED1}\n")).unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client) must be installed for this test");
        assert!(status.status.success());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        let f = files(&text);
        assert_eq!(check(&f, "[10.1.2.3]:2200", &key(ED1)), Verdict::Known);
    }

    #[test]
    fn a_different_key_is_a_change_naming_the_line() {
        let f = files(&format!("# comment\n\nnode1 {ED1}\n"));
        assert_eq!(
            check(&f, "node1", &key(ED2)),
            Verdict::Changed {
                file: PathBuf::from("/kh"),
                line: 3
            }
        );
    }

    #[test]
    fn bad_lines_are_skipped_not_fatal() {
        let text = format!(
            "garbage\nnode1 ssh-ed25519 not-base64!!\n@weird node1 {ED1}\n|2|x|y {ED1}\nnode1 {ED1}\n"
        );
        let f = KnownHostsFile::parse(&text);
        assert_eq!(
            f.skipped.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let all = vec![(PathBuf::from("/kh"), f)];
        assert_eq!(check(&all, "node1", &key(ED1)), Verdict::Known);
    }

    #[test]
    fn markers_are_honoured() {
        let f = files(&format!(
            "@cert-authority *.lab {ED2}\n@revoked * {ED1}\nnode1 {ED1}\n"
        ));
        // A CA line is not a host key for the host.
        assert_eq!(check(&f, "x.lab", &key(ED2)), Verdict::Unknown);
        assert_eq!(
            check(&f, "node1", &key(ED1)),
            Verdict::Revoked {
                file: PathBuf::from("/kh"),
                line: 2
            }
        );
    }

    #[test]
    fn later_files_are_consulted() {
        let all = vec![
            (PathBuf::from("/a"), KnownHostsFile::parse("")),
            (
                PathBuf::from("/b"),
                KnownHostsFile::parse(&format!("node1 {ED1}\n")),
            ),
        ];
        assert_eq!(check(&all, "node1", &key(ED1)), Verdict::Known);
        assert_eq!(known_algorithms(&all, "node1"), vec![Algorithm::Ed25519]);
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        std::fs::write(&path, format!("{ED1}\n")).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client) must be installed for this test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let theirs = text
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert!(theirs.starts_with("SHA256:"), "{text}");
        assert_eq!(fingerprint(&key(ED1)), theirs);
    }

    #[tokio::test]
    async fn recording_creates_the_file_once_even_when_racing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let k = key(ED1);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (path, k) = (path.clone(), k.clone());
            tasks.push(tokio::spawn(async move {
                record(&path, "[127.0.0.1]:2222", &k).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("[127.0.0.1]:2222 {ED1}\n"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let f = files(&text);
        assert_eq!(check(&f, "[127.0.0.1]:2222", &k), Verdict::Known);
    }

    #[tokio::test]
    async fn recording_appends_after_a_missing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("node1 {ED2}")).unwrap();
        record(&path, "node2", &key(ED1)).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("node1 {ED2}\nnode2 {ED1}\n"));
    }
}
