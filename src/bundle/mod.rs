//! The offline bundle: a directory of artifacts (packages, binaries, images, manifests)
//! described by `bundle.yaml`, which names every file with its sha256 and size.
//!
//! ```yaml
//! name: lab-2025-01
//! versions: { k3s: v1.30.6+k3s1 }          # optional, informational
//! files:
//!   - path: packages/debian-12/jq_1.6-2.1+deb12u3_amd64.deb
//!     sha256: 3f1c…                          # 64 lowercase hex digits
//!     size: 63084
//! ```
//!
//! A bundle is checked before any host is touched: [`Bundle::load`] reads the manifest and
//! checks that every listed file exists with its size and that no package lies in
//! `packages/` unlisted (an unlisted file is an unverified one); [`Bundle::verify`] hashes
//! the files a run is about to send. Every problem is listed at once, each naming the file
//! and what to do.
//!
//! Packages live in `packages/<os-id>-<os-version>/` (`debian-12`, `ubuntu-22.04`, the
//! `ID` and `VERSION_ID` of the host's `/etc/os-release`), named `<name>_<version>_<arch>.deb`
//! as `apt-get download` names them (an epoch's `:` written `%3a`). Packages for the hosts of
//! one role only go one level down, `packages/debian-12/<role>/` (`nfs` for the NFS
//! server's nfs-kernel-server).

pub mod create;
mod deb;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use deb::Deb;

/// The manifest's file name inside the bundle directory.
pub const MANIFEST: &str = "bundle.yaml";

/// Where packages live inside a bundle.
pub const PACKAGES_DIR: &str = "packages";

/// Where stack components live inside a bundle, `manifests/<component>/`.
pub const MANIFESTS_DIR: &str = "manifests";

/// A loaded bundle whose listed files exist with the listed sizes.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub name: String,
    pub versions: BTreeMap<String, String>,
    pub files: Vec<BundleFile>,
}

/// One file of the bundle, as `bundle.yaml` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Relative to the bundle directory, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    #[serde(default)]
    versions: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<BundleFile>,
}

/// Everything wrong with a bundle, each problem on its own line.
#[derive(Debug, thiserror::Error)]
pub struct BundleError {
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the bundle {} has {n} problem{}:",
            self.dir.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Bundle {
    /// Reads `<dir>/bundle.yaml` and checks it against the directory (existence, sizes,
    /// unlisted packages). Does not hash: see [`Bundle::verify`].
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let fail = |problems: Vec<String>| BundleError {
            dir: dir.to_path_buf(),
            problems,
        };
        let manifest_path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(fail(vec![format!(
                "the directory does not exist; fix `bundle:` in the inventory or create the \
                 bundle there (its format is in docs/offline-bundle.md)"
            )]));
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            fail(vec![format!(
                "{MANIFEST} cannot be read ({e}); every bundle has one naming each file with \
                 its sha256 and size (see docs/offline-bundle.md)"
            )])
        })?;
        let manifest: Manifest = serde_yaml::from_str(&text).map_err(|e| {
            fail(vec![format!(
                "{MANIFEST} is not a bundle manifest: {e}; expected `name:` and `files:` \
                 with `path`, `sha256` and `size` for each file"
            )])
        })?;
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in manifest.files.iter().enumerate() {
            let at = format!("{MANIFEST} files[{i}] ({})", f.path);
            if let Err(why) = relative_path(&f.path) {
                problems.push(format!("{at}: {why}"));
                continue;
            }
            if !seen.insert(f.path.clone()) {
                problems.push(format!("{at}: listed twice; keep one entry"));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "{at}: sha256 must be 64 hex digits (`sha256sum FILE` prints it)"
                ));
            }
            if f.path.starts_with(&format!("{PACKAGES_DIR}/"))
                && let Err(why) = Deb::parse(f)
            {
                problems.push(format!("{at}: {why}"));
            }
            let local = dir.join(&f.path);
            match std::fs::metadata(&local) {
                Err(_) => problems.push(format!(
                    "{at}: the file is missing; put it at {} or remove its entry",
                    local.display()
                )),
                Ok(m) if !m.is_file() => problems.push(format!("{at}: not a regular file")),
                Ok(m) if m.len() != f.size => problems.push(format!(
                    "{at}: the file has {} bytes, the manifest says {}; the file is \
                     truncated or not the one listed",
                    m.len(),
                    f.size
                )),
                Ok(_) => {}
            }
        }
        for path in unlisted_manifests(dir, &seen) {
            problems.push(format!(
                "{path} is in the bundle but not in {MANIFEST}; add it, or remove it: gpuctl \
                 applies only files it can verify. Its entry:\n  - {{ path: {path}, sha256: {}, size: {} }}",
                sha256_hex(&dir.join(&path)),
                std::fs::metadata(dir.join(&path)).map_or(0, |m| m.len()),
            ));
        }
        for path in unlisted_packages(dir, &seen) {
            problems.push(format!(
                "{path} is in the bundle but not in {MANIFEST}; add it (with its sha256 \
                 and size) or remove it: gpuctl installs only files it can verify"
            ));
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let mut files = manifest.files;
        for f in &mut files {
            f.sha256.make_ascii_lowercase();
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            name: manifest.name,
            versions: manifest.versions,
            files,
        })
    }

    /// Hashes every listed file under `prefix` (e.g. `packages/`) and compares it with the
    /// manifest. Hashes are cached per file version for the process, so the uploads that
    /// follow do not hash again.
    pub async fn verify(&self, prefix: &str) -> Result<(), BundleError> {
        let mut problems = Vec::new();
        for f in self.files.iter().filter(|f| f.path.starts_with(prefix)) {
            let local = self.local_path(f);
            match crate::transport::sha256_file(&local).await {
                Err(e) => problems.push(format!("{}: cannot be read: {e}", f.path)),
                Ok((_, sha)) if sha != f.sha256 => problems.push(format!(
                    "{}: sha256 is {sha}, {MANIFEST} says {}; the file is corrupt or not \
                     the one listed: replace it (or, if it is the right file, fix the manifest)",
                    f.path, f.sha256
                )),
                Ok(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BundleError {
                dir: self.dir.clone(),
                problems,
            })
        }
    }

    /// The file on this machine.
    pub fn local_path(&self, f: &BundleFile) -> PathBuf {
        self.dir.join(&f.path)
    }

    /// The `packages/<dir>/` directories the bundle has packages in (`debian-12`, ...),
    /// counting those only in role directories (`packages/debian-12/nfs/`).
    pub fn package_dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| {
                let rest = f.path.strip_prefix(&format!("{PACKAGES_DIR}/"))?;
                Some(rest.split_once('/')?.0.to_string())
            })
            .collect();
        dirs.dedup();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Whether `packages/<os_dir>/` or one of its role directories holds a package for
    /// dpkg architecture `arch`.
    pub fn has_debs_for(&self, os_dir: &str, arch: &str) -> bool {
        let prefix = format!("{PACKAGES_DIR}/{os_dir}/");
        self.files
            .iter()
            .filter(|f| f.path.starts_with(&prefix))
            .filter_map(|f| Deb::parse(f).ok())
            .any(|d| d.arch == "all" || d.arch == arch)
    }

    /// The packages in `packages/<os_dir>/` for a host of dpkg architecture `arch`
    /// (`amd64`, `arm64`; `all` packages always), in manifest order.
    pub fn debs(&self, os_dir: &str, arch: &str) -> Vec<Deb> {
        let prefix = format!("{PACKAGES_DIR}/{os_dir}/");
        self.files
            .iter()
            .filter(|f| f.path.starts_with(&prefix) && !f.path[prefix.len()..].contains('/'))
            .filter_map(|f| Deb::parse(f).ok())
            .filter(|d| d.arch == "all" || d.arch == arch)
            .collect()
    }
}

/// A manifest path must stay inside the bundle.
fn relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err("the path must be relative to the bundle directory".into());
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("the path must not contain empty, `.` or `..` parts".into());
    }
    Ok(())
}

/// Files under `manifests/` (any depth) that the manifest does not list.
fn unlisted_manifests(dir: &Path, listed: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![(dir.join(MANIFESTS_DIR), MANIFESTS_DIR.to_string())];
    while let Some((path, rel)) = dirs.pop() {
        for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                dirs.push((e.path(), child));
            } else if !listed.contains(&child) {
                out.push(child);
            }
        }
    }
    out.sort();
    out
}

/// The sha256 of a small local file, for a ready-to-paste manifest entry.
fn sha256_hex(path: &Path) -> String {
    use sha2::Digest as _;
    std::fs::read(path).map_or_else(
        |_| "<sha256sum of the file>".to_string(),
        |bytes| hex::encode(sha2::Sha256::digest(&bytes)),
    )
}

/// Files under `packages/<dir>/` that the manifest does not list.
fn unlisted_packages(dir: &Path, listed: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(os_dirs) = std::fs::read_dir(dir.join(PACKAGES_DIR)) else {
        return out;
    };
    // `packages/<os>/` and its role directories `packages/<os>/<role>/`.
    let mut dirs: Vec<(std::path::PathBuf, String)> = os_dirs
        .flatten()
        .map(|d| {
            let rel = format!("{PACKAGES_DIR}/{}", d.file_name().to_string_lossy());
            (d.path(), rel)
        })
        .collect();
    let mut i = 0;
    while i < dirs.len() {
        let (path, rel) = dirs[i].clone();
        let depth = rel.matches('/').count();
        for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            if e.path().is_file() && !listed.contains(&child) {
                out.push(child);
            } else if e.path().is_dir() && depth == 1 {
                dirs.push((e.path(), child));
            }
        }
        i += 1;
    }
    out.sort();
    out
}

/// `debian-12` for the host's `/etc/os-release` ID and VERSION_ID.
pub fn os_dir(os_id: &str, os_version: &str) -> String {
    format!("{os_id}-{os_version}")
}

/// The dpkg architecture of a `uname -m`.
pub fn dpkg_arch(uname_m: &str) -> &str {
    match uname_m {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" => "armhf",
        "ppc64le" => "ppc64el",
        other => other,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
