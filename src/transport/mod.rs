//! Transport: run a command, put a file, get a file on one host — over SSH ([`ssh`]) or on
//! this machine ([`local`]).
//!
//! Everything above this layer (fleet, stages, doctor) talks to a [`Connection`] and never
//! to russh directly, so the same code drives a remote node and the admin's own machine.
//! A `Connection` is cheap to clone and safe to share between tasks.

mod auth;
pub mod error;
mod exec;
mod hash;
pub use hash::sha256_file;
pub mod known_hosts;
pub mod local;
mod put;
pub mod shell;
pub mod ssh;
pub mod stops;
mod sudo;
mod tunnel;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::TransportError;
pub use put::{SCRIPT_MAX, inline_script, temp_path};
pub use sudo::{PROBE_VARS as SUDO_PROBE_VARS, ProbeAnswer, SudoProbe};

use crate::secret::{Secret, SecretSource};

/// How to reach a host, fully resolved from the inventory (and `~/.ssh/config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The machine gpuctl runs on (`connection: local` or `address: localhost`).
    Local,
    /// A host reached over SSH, possibly through bastions.
    Ssh(SshTarget),
}

/// One SSH destination with everything needed to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The address to connect to (an IP or DNS name, after `HostName` from ssh config).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Identity files to try in order (already `~`-expanded and checked readable).
    pub identity_files: Vec<PathBuf>,
    /// Passphrase for encrypted identity files.
    pub identity_passphrase: Option<SecretSource>,
    /// Login password, tried after keys and the agent.
    pub password: Option<SecretSource>,
    /// Try the keys of a running ssh-agent (`SSH_AUTH_SOCK`).
    pub use_agent: bool,
    /// Bastions to go through, outermost first. Each hop's host key is checked too.
    pub jumps: Vec<SshTarget>,
}

impl SshTarget {
    /// `user@host:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Host key checking, shared by every connection of a run.
#[derive(Clone, Debug)]
pub struct HostKeyPolicy {
    /// known_hosts files consulted in order; new keys are recorded in the first one.
    pub known_hosts: Vec<PathBuf>,
    /// Trust on first use (`--accept-new-host-keys`). A *changed* key is refused regardless.
    pub accept_new: bool,
}

/// Options for opening a connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub host_keys: HostKeyPolicy,
    /// The sudo password shared by all hosts, when hosts need one.
    pub sudo_password: Option<Secret>,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    /// When the sudo mode is found: while connecting, or when the caller settles it.
    pub sudo_probe: SudoProbe,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            host_keys: HostKeyPolicy {
                known_hosts: Vec::new(),
                accept_new: false,
            },
            sudo_password: None,
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(15),
            sudo_probe: SudoProbe::AtConnect,
        }
    }
}

/// How this login gets root on the host, found once per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SudoMode {
    /// Logged in as root.
    Root,
    /// `sudo -n true` succeeded.
    NoPassword,
    /// sudo works with the password from the inventory.
    Password,
    /// No way to become root (commands with `sudo: true` fail with a clear error).
    Unavailable,
}

/// Which stream a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives output as it arrives (for live `[host] ...` lines and the run log).
pub type OutputSink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// A command to run on a host: a shell script given to `sh -c`.
#[derive(Clone)]
pub struct Command {
    pub script: String,
    /// Run as root (directly, or through sudo as found at connect time).
    pub sudo: bool,
    /// Bytes written to the command's standard input, then closed.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub sink: Option<OutputSink>,
}

impl Command {
    pub fn new(script: impl Into<String>) -> Self {
        Command {
            script: script.into(),
            sudo: false,
            stdin: None,
            timeout: None,
            sink: None,
        }
    }
    pub fn sudo(mut self, yes: bool) -> Self {
        self.sudo = yes;
        self
    }
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    pub fn sink(mut self, sink: OutputSink) -> Self {
        self.sink = Some(sink);
        self
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("script", &self.script)
            .field("sudo", &self.sudo)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a finished command left behind.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Exit status; `None` when the command was killed by a signal or the channel closed
    /// without one.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Progress of a transfer, called with bytes done so far (including resumed bytes).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Options for putting a file on a host.
#[derive(Clone, Default)]
pub struct PutOptions {
    /// File mode, e.g. `0o644`. `None`: a file that exists keeps its mode; a new file
    /// gets 0644.
    pub mode: Option<u32>,
    /// `user:group` to chown to (needs sudo unless it is the login user). `None`: a file
    /// that exists keeps its owner when writing as root; a new file belongs to the writer.
    pub owner: Option<String>,
    /// Write as root (destination not writable by the login user).
    pub sudo: bool,
    pub progress: Option<ProgressFn>,
    /// How long the host may take to accept the next chunk before the transfer is given
    /// up as stuck (`None`: [`STALL_TIMEOUT`]). A stuck transfer fails with
    /// [`TransportError::Stalled`]; running the put again resumes it.
    pub stall_timeout: Option<Duration>,
}

/// A transfer that moves no data for this long is stuck, not slow: even a busy disk or
/// a congested link accepts 256 KiB within two minutes.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a put did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutReport {
    pub bytes_total: u64,
    /// Bytes actually sent in this call (less than total after a resume, 0 when the file
    /// was already in place with the same sha256).
    pub bytes_sent: u64,
    pub sha256: String,
    /// The destination already had this exact content; nothing was written.
    pub unchanged: bool,
}

/// An open connection to one host.
#[derive(Clone)]
pub enum Connection {
    Local(local::LocalSession),
    Ssh(ssh::SshSession),
}

impl Connection {
    /// Opens a connection and finds how this login becomes root.
    pub async fn connect(
        host: &str,
        endpoint: &Endpoint,
        opts: &ConnectOptions,
    ) -> Result<Connection, TransportError> {
        match endpoint {
            Endpoint::Local => Ok(Connection::Local(
                local::LocalSession::open(host, opts).await?,
            )),
            Endpoint::Ssh(target) => Ok(Connection::Ssh(
                ssh::SshSession::connect(host, target, opts).await?,
            )),
        }
    }

    /// The inventory name of the host.
    pub fn host(&self) -> &str {
        match self {
            Connection::Local(s) => s.host(),
            Connection::Ssh(s) => s.host(),
        }
    }

    /// How this login gets root; [`SudoMode::Unavailable`] until a deferred probe is
    /// settled.
    pub fn sudo_mode(&self) -> SudoMode {
        match self {
            Connection::Local(s) => s.sudo_mode(),
            Connection::Ssh(s) => s.sudo_mode(),
        }
    }

    /// The sudo mode, found now if the connection deferred it ([`SudoProbe::Deferred`]):
    /// from `answer`, what a script that ran [`SUDO_PROBE_VARS`] printed, when it is well
    /// formed (no round trip, unless sudo wants the inventory's password), else by the
    /// probe. A command that needs sudo settles it first by itself.
    pub async fn settle_sudo(
        &self,
        answer: Option<&ProbeAnswer>,
    ) -> Result<SudoMode, TransportError> {
        match self {
            Connection::Local(s) => s.settle_sudo(answer).await,
            Connection::Ssh(s) => s.settle_sudo(answer).await,
        }
    }

    /// Runs a command; a non-zero exit is *not* an error here (see [`Output::success`]).
    pub async fn run(&self, cmd: &Command) -> Result<Output, TransportError> {
        match self {
            Connection::Local(s) => s.run(cmd).await,
            Connection::Ssh(s) => s.run(cmd).await,
        }
    }

    /// Puts a local file at `dest` atomically (temp file + rename), verifies its sha256 on
    /// the host, and resumes a partial temp file left by an earlier broken transfer.
    pub async fn put(
        &self,
        src: &Path,
        dest: &str,
        opts: &PutOptions,
    ) -> Result<PutReport, TransportError> {
        match self {
            Connection::Local(s) => s.put(src, dest, opts).await,
            Connection::Ssh(s) => s.put(src, dest, opts).await,
        }
    }

    /// Reads a whole file from the host.
    pub async fn get(&self, path: &str, sudo: bool) -> Result<Vec<u8>, TransportError> {
        match self {
            Connection::Local(s) => s.get(path, sudo).await,
            Connection::Ssh(s) => s.get(path, sudo).await,
        }
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        match self {
            Connection::Local(_) => {}
            Connection::Ssh(s) => s.close().await,
        }
    }
}
