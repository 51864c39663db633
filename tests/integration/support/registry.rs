//! A real Distribution registry (`docker-registry serve`, the CNCF distribution registry) on
//! 127.0.0.1, with a temporary storage directory; plain HTTP, optionally behind htpasswd
//! Basic auth. Killed when dropped.
//!
//! Images are put into it with `skopeo copy` from a tiny OCI layout written here (a config,
//! one layer of random bytes, a manifest), so the tests need no network beyond loopback.
//! A missing `docker-registry`, `htpasswd` or `skopeo` is a failure that says what to install.

// A failed setup step in a test should stop it with the step named, which is what expect does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const REGISTRY_BIN: &str = "docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry. `addr` is `127.0.0.1:<port>`, usable as a reference's registry.
pub struct TestRegistry {
    pub addr: String,
    /// `(user, password)` when the registry demands Basic auth.
    pub basic: Option<(String, String)>,
    /// The CA that signed the registry's certificate, when it serves HTTPS.
    pub ca_file: Option<PathBuf>,
    child: Child,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// An open registry: anyone may pull and push.
    pub fn plain() -> TestRegistry {
        Self::start(None, false)
    }

    /// An open registry on HTTPS, with a certificate for 127.0.0.1 from a fresh test CA
    /// (`ca_file`) that no system trusts.
    pub fn tls() -> TestRegistry {
        Self::start(None, true)
    }

    /// A registry that accepts only `user`/`password` (htpasswd, bcrypt).
    pub fn basic_auth(user: &str, password: &str) -> TestRegistry {
        Self::start(Some((user, password)), false)
    }

    fn start(basic: Option<(&str, &str)>, tls: bool) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("gpuctl-registry-")
            .tempdir()
            .expect("create a temporary directory for the registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match basic {
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run htpasswd ({e}): install the apache2-utils package")
                    });
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let ca_file = tls.then(|| make_certificates(dir.path()));
        let tls_config = match tls {
            true => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.pem").display(),
                dir.path().join("server.key").display()
            ),
            false => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: test-only-secret\n{tls_config}{auth}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = fs::File::create(dir.path().join("registry.log")).expect("create registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {REGISTRY_BIN} ({e}): install the docker-registry package \
                     (the CNCF distribution registry)"
                )
            });
        let mut registry = TestRegistry {
            addr,
            basic: basic.map(|(u, p)| (u.to_string(), p.to_string())),
            ca_file,
            child,
            dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the registry process") {
                panic!(
                    "{REGISTRY_BIN} exited ({status}) before answering on {}:\n{}",
                    self.addr,
                    self.log()
                );
            }
            if let Some(status) = http_status(&self.addr, "/v2/")
                // An HTTPS registry answers a plain request with 400.
                && (status == 200 || status == 401 || (status == 400 && self.ca_file.is_some()))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{REGISTRY_BIN} did not answer GET /v2/ on {} within {START_TIMEOUT:?}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The repositories the registry stores, read from its storage directory.
    pub fn stored_repositories(&self) -> Vec<String> {
        let root = self
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories");
        let mut found = Vec::new();
        fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.join("_layers").is_dir() {
                    let name = path.strip_prefix(base).unwrap().display().to_string();
                    found.push(name);
                } else if path.is_dir() && !entry.file_name().to_string_lossy().starts_with('_') {
                    walk(base, &path, found);
                }
            }
        }
        walk(&root, &root, &mut found);
        found.sort();
        found
    }

    /// How many blobs the registry stores (all repositories together).
    pub fn stored_blobs(&self) -> usize {
        let root = self
            .dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256");
        fs::read_dir(&root)
            .map(|prefixes| {
                prefixes
                    .flatten()
                    .filter_map(|p| fs::read_dir(p.path()).ok())
                    .map(|d| d.count())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes a fresh single-layer OCI image as `repository:tag` (random layer content, so
    /// every call gives a new digest).
    pub fn push_random_image(&self, repository: &str, tag: &str) {
        let layout = self.dir.path().join(format!("layout-{}", unique()));
        write_oci_layout(&layout, tag);
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        if let Some((user, password)) = &self.basic {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
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

    /// The manifest bytes as skopeo sees them (`skopeo inspect --raw`): an independent
    /// client to compare against.
    pub fn skopeo_raw_manifest(&self, repository: &str, reference: &str) -> Vec<u8> {
        let sep = if reference.contains(':') { '@' } else { ':' };
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some((user, password)) = &self.basic {
            cmd.arg(format!("--creds={user}:{password}"));
        }
        cmd.arg(format!(
            "docker://{}/{repository}{sep}{reference}",
            self.addr
        ));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run skopeo ({e}): install the skopeo package"));
        assert!(
            out.status.success(),
            "skopeo inspect --raw failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. The registry binds it right after; a collision
/// shows up as the registry exiting, with its log in the panic message.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port on 127.0.0.1")
}

/// The status code of a plain-HTTP GET, or `None` when nothing answers yet.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = sha256_hex(bytes);
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len())
}

/// A test CA and a server certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`;
/// returns the CA file.
fn make_certificates(dir: &Path) -> PathBuf {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install the openssl package"));
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut ca = vec![
        "req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
    ];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=gpuctl test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    let mut csr = vec!["req", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=127.0.0.1"]);
    openssl(&csr);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
    dir.join("ca.pem")
}

/// An OCI image layout with one image tagged `tag`.
fn write_oci_layout(layout: &Path, tag: &str) {
    fs::create_dir_all(layout.join("blobs/sha256")).expect("create layout");
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");

    let layer = tar_of_random_file(layout);
    let (layer_digest, layer_size) = write_blob(layout, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = write_blob(layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = write_blob(layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
    );
    fs::write(layout.join("index.json"), index).expect("write index.json");
}

/// An uncompressed tar holding one file of random bytes.
fn tar_of_random_file(layout: &Path) -> Vec<u8> {
    let work: PathBuf = layout.join("layer-src");
    fs::create_dir_all(&work).expect("create layer dir");
    let mut random = vec![0u8; 4096];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .expect("read /dev/urandom");
    fs::write(work.join("data.bin"), &random).expect("write layer file");
    let out = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&work)
        .arg("data.bin")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed: {out:?}");
    fs::remove_dir_all(&work).expect("remove layer dir");
    out.stdout
}
