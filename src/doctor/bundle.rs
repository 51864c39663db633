//! `--support-bundle FILE.tar.gz`: everything doctor saw, in one file to carry out of an
//! air-gapped site: the report (JSON and table), and per host the raw evidence the checks
//! judged (or why the host could not be read).
//!
//! Redaction happens twice: files that may hold credentials were already filtered on the
//! host (see `evidence.rs`), and every text put in the bundle passes through
//! [`crate::secret::redact`] (secrets gpuctl loaded) and [`redact_credentials`] (any
//! `password`/`token`/`auth`/`secret` key left anywhere). The archive is written next to
//! its destination and renamed into place, mode 0600, so a half-written bundle never
//! exists under the name asked for.

use std::path::Path;

use anyhow::Context as _;

/// One file of the bundle.
pub struct Entry {
    pub path: String,
    pub text: String,
}

/// Replaces the value of every credential-looking key on a line with `<redacted>`: the
/// text after the first `:` or `=` that follows a key containing `password`, `token`,
/// `auth` or `secret` (any case).
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let lower = body.to_ascii_lowercase();
        let hit = ["password", "token", "auth", "secret"]
            .iter()
            .filter_map(|k| lower.find(k).map(|i| i + k.len()))
            .min();
        let cut = hit.and_then(|start| {
            let rest = &lower[start..];
            let sep = rest.find([':', '='])?;
            // Only when the key runs straight into the separator (`password:`, `"auth" =`).
            let between = &rest[..sep];
            between
                .chars()
                .all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' ')
                })
                .then_some(start + sep + 1)
        });
        match cut {
            Some(at)
                if !body[at..].trim().is_empty() && !body[at..].trim().starts_with(['{', '[']) =>
            {
                out.push_str(&body[..at]);
                out.push_str(" <redacted>");
            }
            _ => out.push_str(body),
        }
        out.push_str(nl);
    }
    out
}

/// Writes `entries` as a gzip-compressed tar at `dest` (atomically, mode 0600).
pub fn write(dest: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let file = opts
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = crate::tar::TarWriter::new(gz);
        for e in entries {
            let text = redact_credentials(&crate::secret::redact(&e.text));
            tar.append_bytes(&e.path, text.as_bytes())
                .with_context(|| format!("bundle entry {}", e.path))?;
        }
        let gz = tar.finish()?;
        let file = gz.finish()?;
        file.sync_all()?;
        std::fs::rename(&tmp, dest)
            .with_context(|| format!("cannot move the bundle to {}", dest.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing the support bundle {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_cut_and_structure_kept() {
        let text =
            "ID=debian\n  password: hunter2\n\"auth\": \"abc\",\n\"auths\": {\nrequest_timeout=5\n";
        assert_eq!(
            redact_credentials(text),
            "ID=debian\n  password: <redacted>\n\"auth\": <redacted>\n\"auths\": {\nrequest_timeout=5\n"
        );
    }

    /// The archive is a real tar.gz: the system's `tar` lists and extracts it.
    #[test]
    fn the_bundle_is_a_tar_gz_that_tar_reads() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("support.tar.gz");
        let long = "x".repeat(700);
        write(
            &dest,
            &[
                Entry {
                    path: "report.json".into(),
                    text: "{}\n".into(),
                },
                Entry {
                    path: "hosts/node1/evidence.txt".into(),
                    text: format!("token = K10secret\n{long}\n"),
                },
            ],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let list = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(&dest)
            .output()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&list.stdout),
            "report.json\nhosts/node1/evidence.txt\n"
        );
        let out = std::process::Command::new("tar")
            .arg("-xzOf")
            .arg(&dest)
            .arg("hosts/node1/evidence.txt")
            .output()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("token = <redacted>\nxxx"), "{text}");
        assert_eq!(text.len(), "token = <redacted>\n".len() + 701);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dest)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
