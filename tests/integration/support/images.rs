//! Test images written as OCI layouts and copied into a real registry with skopeo: a
//! single-platform image (pushed as Docker schema 2) and a two-platform index
//! (linux/amd64 + linux/arm64, OCI), with random layers so every build has new digests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::registry::TestRegistry;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A descriptor as written into manifests.
struct Desc {
    media_type: &'static str,
    digest: String,
    size: usize,
}

impl Desc {
    fn json(&self, extra: &str) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}{extra}}}"#,
            self.media_type, self.digest, self.size
        )
    }
}

/// An OCI layout being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    fn blob(&self, media_type: &'static str, bytes: &[u8]) -> Desc {
        let hex = hex::encode(Sha256::digest(bytes));
        fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        Desc {
            media_type,
            digest: format!("sha256:{hex}"),
            size: bytes.len(),
        }
    }

    /// An image manifest for `arch` with `layers` random gzip layers of about
    /// `layer_size` bytes each.
    fn image(&self, arch: &str, layers: usize, layer_size: usize) -> Desc {
        let mut diff_ids = Vec::new();
        let layer_descs: Vec<Desc> = (0..layers)
            .map(|_| {
                let (gz, diff_id) = random_tar_gz(layer_size);
                diff_ids.push(format!("\"{diff_id}\""));
                self.blob(OCI_LAYER_GZIP, &gz)
            })
            .collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        );
        let config = self.blob(OCI_CONFIG, config.as_bytes());
        let layers_json: Vec<String> = layer_descs.iter().map(|d| d.json("")).collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            config.json(""),
            layers_json.join(",")
        );
        self.blob(OCI_MANIFEST, manifest.as_bytes())
    }

    fn tag(&self, desc: &Desc, tag: &str) {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            desc.json(&format!(
                r#","annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}"#
            ))
        );
        fs::write(self.dir.join("index.json"), index).expect("write index.json");
    }
}

/// Writes a single-platform image (linux/amd64) tagged `tag` into a new layout.
pub fn single_arch(dir: &Path, tag: &str, layers: usize, layer_size: usize) -> Layout {
    let layout = Layout::new(dir);
    let image = layout.image("amd64", layers, layer_size);
    layout.tag(&image, tag);
    layout
}

/// Writes a two-platform index (linux/amd64, linux/arm64) tagged `tag` into a new layout.
pub fn multi_arch(dir: &Path, tag: &str, layer_size: usize) -> Layout {
    let layout = Layout::new(dir);
    let amd = layout.image("amd64", 1, layer_size);
    let arm = layout.image("arm64", 1, layer_size);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{}]}}"#,
        amd.json(r#","platform":{"architecture":"amd64","os":"linux"}"#),
        arm.json(r#","platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#)
    );
    let index = layout.blob(OCI_INDEX, index.as_bytes());
    layout.tag(&index, tag);
    layout
}

impl TestRegistry {
    /// `skopeo copy --all --preserve-digests` of a layout into `repository:tag`; `format`
    /// ("v2s2") converts the manifest on the way.
    pub fn copy_layout(&self, layout: &Layout, tag: &str, repository: &str, format: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet", "--all"]);
        match format {
            Some(f) => {
                cmd.args(["--format", f]);
            }
            None => {
                cmd.arg("--preserve-digests");
            }
        }
        cmd.args(self.skopeo_dest_args());
        cmd.arg(format!("oci:{}:{tag}", layout.dir.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.addr));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run skopeo ({e}): install the skopeo package"));
        assert!(
            out.status.success(),
            "skopeo copy to {}/{repository}:{tag} failed: {}\nregistry log:\n{}",
            self.addr,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `skopeo copy --all docker://… dir:…`: an independent client reads every manifest and
    /// blob of the image and checks their digests. Returns whether it succeeded, with stderr.
    pub fn skopeo_fetch_all(&self, reference: &str, into: &Path) -> (bool, String) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
        ]);
        cmd.args(self.skopeo_src_args());
        cmd.arg(format!("docker://{}/{reference}", self.addr))
            .arg(format!("oci:{}:x", into.display()));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run skopeo ({e}): install the skopeo package"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn skopeo_dest_args(&self) -> Vec<String> {
        // Without verification skopeo also falls back to plain HTTP.
        let mut args = vec!["--dest-tls-verify=false".to_string()];
        if let Some((user, password)) = &self.basic {
            args.push(format!("--dest-creds={user}:{password}"));
        }
        args
    }

    fn skopeo_src_args(&self) -> Vec<String> {
        let mut args = vec!["--src-tls-verify=false".to_string()];
        if let Some((user, password)) = &self.basic {
            args.push(format!("--src-creds={user}:{password}"));
        }
        args
    }
}

/// A gzip-compressed tar with one file of about `size` random bytes, and the digest of the
/// uncompressed tar (the layer's diff ID, which `docker load` and containerd check).
fn random_tar_gz(size: usize) -> (Vec<u8>, String) {
    let work = tempfile::tempdir().expect("temp dir");
    let mut random = vec![0u8; size];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .expect("read /dev/urandom");
    fs::write(work.path().join("data.bin"), &random).expect("write layer file");
    let out = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(work.path())
        .arg("data.bin")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed: {out:?}");
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&out.stdout).expect("gzip the layer");
    (gz.finish().expect("gzip the layer"), diff_id)
}
