//! The test lab from Rust: throwaway Debian nodes with a real sshd, brought up by
//! `tests/lab/lab` (see docs/lab.md) and removed when the [`Lab`] is dropped.
//!
//! The lab is a prerequisite, not an optional extra: when it cannot start, [`Lab::up`]
//! panics with the failing command, its stderr and what to do, so the test fails loudly
//! instead of skipping.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;

/// The lab script, found from the crate root so tests work from any working directory.
const LAB_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/lab");

/// What to bring up: `LabSpec::new(3).gpu(1).hidden(&["node3"]).sudo_password(&["node2"])`.
#[derive(Clone, Debug)]
pub struct LabSpec {
    nodes: usize,
    gpu: usize,
    hidden: Vec<String>,
    sudo_password_nodes: Vec<String>,
}

impl LabSpec {
    /// `nodes` nodes named node1..nodeN, all published on 127.0.0.1, password-less sudo.
    pub fn new(nodes: usize) -> Self {
        LabSpec {
            nodes,
            gpu: 0,
            hidden: Vec::new(),
            sudo_password_nodes: Vec::new(),
        }
    }

    /// The last `k` nodes get the `nvidia-smi` fixture (4 × Tesla T4).
    pub fn gpu(mut self, k: usize) -> Self {
        self.gpu = k;
        self
    }

    /// Nodes reachable only from other nodes (through a bastion), not from this machine.
    pub fn hidden(mut self, nodes: &[&str]) -> Self {
        self.hidden = nodes.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Nodes where `sudo` asks for ops's password.
    pub fn sudo_password(mut self, nodes: &[&str]) -> Self {
        self.sudo_password_nodes = nodes.iter().map(|n| n.to_string()).collect();
        self
    }
}

/// One node as `lab.json` describes it.
#[derive(Clone, Debug, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub container: String,
    /// The sshd port on 127.0.0.1; `None` for hidden nodes.
    pub port: Option<u16>,
    /// The node's address on the lab network (what other nodes and bastion hops use).
    pub ip: String,
    pub gpu: bool,
    pub hidden: bool,
    pub sudo_password: bool,
}

#[derive(Deserialize)]
struct LabRecord {
    id: String,
    network: String,
    nodes: Vec<LabNode>,
}

/// A running lab. Dropping it removes the containers, the network and the lab directory.
pub struct Lab {
    dir: tempfile::TempDir,
    pub id: String,
    pub network: String,
    /// `inventory.yaml` in gpuctl's schema, naming every node.
    pub inventory: PathBuf,
    /// Each node's ed25519 host key, for `[127.0.0.1]:PORT` and its lab IP.
    pub known_hosts: PathBuf,
    /// The private key ops logs in with.
    pub key: PathBuf,
    /// For OpenSSH's client: `ssh -F <ssh_config> node1`.
    pub ssh_config: PathBuf,
    pub nodes: Vec<LabNode>,
}

impl Lab {
    /// Brings up a lab as `spec` says and waits until every node accepts SSH.
    pub fn up(spec: &LabSpec) -> Lab {
        ensure_image();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab");
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create the lab directory {}: {e}", root.display()));
        let dir = tempfile::Builder::new()
            .prefix("lab-")
            .tempdir_in(&root)
            .unwrap_or_else(|e| panic!("cannot create a lab directory in {}: {e}", root.display()));
        let mut cmd = lab_command("up");
        cmd.arg("--out")
            .arg(dir.path())
            .arg("--nodes")
            .arg(spec.nodes.to_string())
            .arg("--gpu")
            .arg(spec.gpu.to_string())
            .arg("--owner-pid")
            .arg(std::process::id().to_string());
        if !spec.hidden.is_empty() {
            cmd.arg("--hidden").arg(spec.hidden.join(","));
        }
        if !spec.sudo_password_nodes.is_empty() {
            cmd.arg("--sudo-password-nodes")
                .arg(spec.sudo_password_nodes.join(","));
        }
        run_checked(
            &mut cmd,
            "is dockerd running (`docker info`)? Try the same command by hand to see every step",
        );
        let record_path = dir.path().join("lab.json");
        let text = std::fs::read_to_string(&record_path).unwrap_or_else(|e| {
            panic!(
                "lab up succeeded but {} is unreadable: {e}",
                record_path.display()
            )
        });
        let record: LabRecord = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{} is not what tests/lab/lab writes: {e}",
                record_path.display()
            )
        });
        let path = dir.path().to_path_buf();
        Lab {
            id: record.id,
            network: record.network,
            inventory: path.join("inventory.yaml"),
            known_hosts: path.join("known_hosts"),
            key: path.join("id_ed25519"),
            ssh_config: path.join("ssh_config"),
            nodes: record.nodes,
            dir,
        }
    }

    /// The lab directory (inventory, keys, `nodes/<node>/data` bind-mounted at `/data`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A node by name; panics naming the nodes there are.
    pub fn node(&self, name: &str) -> &LabNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                panic!("the lab has no node {name:?}; it has {names:?}")
            })
    }

    /// The host directory bind-mounted at `/data` in `node`.
    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.node(node);
        self.dir().join("nodes").join(node).join("data")
    }

    /// ops's password when some node's sudo asks for it.
    pub fn sudo_password(&self) -> Option<String> {
        if self.nodes.iter().any(|n| n.sudo_password) {
            Some(self.login_password())
        } else {
            None
        }
    }

    /// ops's login password, the same on every node (sshd accepts password logins too).
    pub fn login_password(&self) -> String {
        let path = self.dir().join("sudo_password");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the lab password {}: {e}", path.display()));
        text.trim_end().to_string()
    }

    /// `docker kill`: the node dies at once, as on a power cut.
    pub fn kill(&self, node: &str) {
        self.fault("kill", node);
    }

    /// Starts a killed node again and waits for its sshd (same port, same host keys).
    pub fn start(&self, node: &str) {
        self.fault("start", node);
    }

    /// Freezes every process of the node: connections stay open but nothing answers.
    pub fn freeze(&self, node: &str) {
        self.fault("freeze", node);
    }

    /// Lets a frozen node go on where it stopped.
    pub fn thaw(&self, node: &str) {
        self.fault("thaw", node);
    }

    /// Disconnects the node from every network: its port on 127.0.0.1 is closed and other
    /// nodes cannot reach it.
    pub fn cut(&self, node: &str) {
        self.fault("cut", node);
    }

    /// Reconnects a cut node with its old IP and port, and waits for its sshd.
    pub fn uncut(&self, node: &str) {
        self.fault("uncut", node);
    }

    /// Gives the node new host keys (known_hosts is left alone, so clients see a change).
    pub fn rekey(&self, node: &str) {
        self.fault("rekey", node);
    }

    /// Runs `sh -c cmd` as root in the node (docker exec, not SSH) and returns stdout;
    /// panics with stdout and stderr when it fails.
    pub fn exec(&self, node: &str, cmd: &str) -> String {
        let out = self.exec_output(node, cmd);
        if !out.status.success() {
            panic!(
                "`{cmd}` failed on {node} ({}):\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies the fixture `tests/lab/fixtures/<fixture>` to `dest` on `node` (mode 755).
    /// Fixtures stand in for what cannot run in a node (see each one's header). The file
    /// travels on stdin, so its size is not bounded by the command line's.
    pub fn install_fixture(&self, node: &str, fixture: &str, dest: &str) {
        self.node(node);
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/lab/fixtures")
            .join(fixture);
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("cannot read the fixture {}: {e}", path.display()));
        let mut c = lab_command("exec");
        c.arg("--out")
            .arg(self.dir())
            .arg(node)
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod 755 "$1""#)
            .arg("install-fixture")
            .arg(dest)
            .stdin(file);
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {LAB_SCRIPT}: {e}"));
        assert!(
            out.status.success(),
            "installing the fixture {fixture} as {dest} on {node} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Like [`Lab::exec`], for commands expected to fail.
    pub fn exec_output(&self, node: &str, cmd: &str) -> Output {
        self.node(node);
        let mut c = lab_command("exec");
        c.arg("--out")
            .arg(self.dir())
            .arg(node)
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null());
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {LAB_SCRIPT}: {e}"))
    }

    /// OpenSSH's `ssh` logged in as ops on `node` with the lab key and strict host key
    /// checking (hidden nodes through the first published node); add the remote command.
    pub fn ssh(&self, node: &str) -> Command {
        self.node(node);
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(&self.ssh_config)
            .arg(node)
            .stdin(Stdio::null());
        c
    }

    fn fault(&self, what: &str, node: &str) {
        self.node(node);
        let mut cmd = lab_command(what);
        cmd.arg("--out").arg(self.dir()).arg(node);
        run_checked(
            &mut cmd,
            "run the same command by hand to see what the node says",
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never panic here: a test that is already failing would abort instead of reporting.
        let mut cmd = lab_command("down");
        cmd.arg("--out").arg(self.dir());
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: `{}` failed ({}): {}\nremove leftovers with: {LAB_SCRIPT} down --all",
                describe(&cmd),
                out.status,
                tail(&out.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run {LAB_SCRIPT} down: {e}"),
        }
    }
}

/// Builds the node image once per process before any lab starts, so parallel tests don't
/// all report the same build; the script's file lock covers other processes.
fn ensure_image() {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let result = IMAGE.get_or_init(|| {
        let mut cmd = lab_command("image");
        match cmd.output() {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
            Ok(out) => Err(format!(
                "`{}` failed ({}):\n{}\nThe node image is built with mmdebstrap and docker; \
                 is dockerd running (`docker info`) and mmdebstrap installed? Run \
                 `{LAB_SCRIPT} image` by hand to retry and see the build log.",
                describe(&cmd),
                out.status,
                tail(&out.stderr)
            )),
            Err(e) => Err(format!("cannot run {LAB_SCRIPT}: {e} (is bash installed?)")),
        }
    });
    if let Err(message) = result {
        panic!("the test lab is a prerequisite and cannot start: {message}");
    }
}

fn lab_command(subcommand: &str) -> Command {
    let mut cmd = Command::new(LAB_SCRIPT);
    cmd.arg(subcommand);
    cmd
}

fn run_checked(cmd: &mut Command, hint: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {LAB_SCRIPT}: {e} (is bash installed?)"));
    if !out.status.success() {
        panic!(
            "the test lab is a prerequisite and `{}` failed ({}):\n{}\n{hint}",
            describe(cmd),
            out.status,
            tail(&out.stderr)
        );
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a command's stderr, enough to see why it failed.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
