//! SSH transport (russh): connecting through bastions with host keys checked at every
//! hop, and running commands on session channels.
//!
//! An [`SshSession`] is one authenticated connection shared by clones (an `Arc` inside);
//! every command opens its own channel, so several commands run at once on one session.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{Algorithm, PublicKey};
use russh::{ChannelMsg, ChannelWriteHalf, Preferred, cipher};

use super::exec::{self, Exec, Outcome, Stdin};
use super::known_hosts::{self, KnownHostsFile, Verdict};
use super::sudo::{ProbeAnswer, SudoCell, SudoProbe};
use super::{
    Command, ConnectOptions, HostKeyPolicy, Output, OutputSink, PutOptions, PutReport, SshTarget,
    Stream, SudoMode, TransportError, auth,
};

/// AES-GCM first: with AES-NI it is the cheapest cipher per byte, and bulk puts to many
/// hosts at once are CPU-bound on the admin's machine. The rest keep russh's order.
static CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Our receive window and packet size: large, so `get` and chatty output are not
/// throttled by round trips. (What we *send* is bounded by the server's window.)
const WINDOW: u32 = 16 << 20;
const MAX_PACKET: u32 = 65_000;

fn config(opts: &ConnectOptions, known: &[Algorithm]) -> Arc<client::Config> {
    let mut preferred = Preferred {
        cipher: Cow::Borrowed(CIPHERS),
        ..Preferred::default()
    };
    if !known.is_empty() {
        // Ask first for the key types known_hosts has for this host, as OpenSSH does, so a
        // host with several keys presents one we can check.
        let all = Preferred::DEFAULT.key.to_vec();
        let same_family = |a: &Algorithm, b: &Algorithm| match (a, b) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            _ => a == b,
        };
        let (mut first, rest): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|a| known.iter().any(|k| same_family(a, k)));
        first.extend(rest);
        preferred.key = Cow::Owned(first);
    }
    Arc::new(client::Config {
        preferred,
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Why a connection attempt ended: a refusal we decided on, or russh's own error.
#[derive(Debug)]
pub enum HandlerError {
    Russh(russh::Error),
    Refused(Box<TransportError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

/// The russh handler of one hop: checks the host key against known_hosts.
pub struct Client {
    host: String,
    addr: String,
    /// The name in known_hosts (`[host]:port` or `host`).
    name: String,
    policy: HostKeyPolicy,
    files: Vec<(PathBuf, KnownHostsFile)>,
}

/// The known_hosts files to use: the policy's, or `~/.ssh/known_hosts` when it names none.
fn known_hosts_files(policy: &HostKeyPolicy) -> Vec<PathBuf> {
    if !policy.known_hosts.is_empty() {
        return policy.known_hosts.clone();
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    vec![PathBuf::from(home).join(".ssh/known_hosts")]
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: PublicKey = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                PublicKey::new(c.public_key().clone(), "")
            }
        };
        let fingerprint = known_hosts::fingerprint(&key);
        let refuse = |e: TransportError| Err(HandlerError::Refused(Box::new(e)));
        let first_file = known_hosts_files(&self.policy)
            .into_iter()
            .next()
            .unwrap_or_default();
        match known_hosts::check(&self.files, &self.name, &key) {
            Verdict::Known => Ok(true),
            Verdict::Changed { file, line } => refuse(TransportError::HostKeyChanged {
                host: self.host.clone(),
                name: self.name.clone(),
                fingerprint,
                file,
                line,
            }),
            Verdict::Revoked { file, line } => refuse(TransportError::HostKeyRevoked {
                host: self.host.clone(),
                addr: self.addr.clone(),
                fingerprint,
                file,
                line,
            }),
            Verdict::Unknown if self.policy.accept_new => {
                known_hosts::record(&first_file, &self.name, &key)
                    .await
                    .map_err(|reason| {
                        HandlerError::Refused(Box::new(TransportError::KnownHostsWrite {
                            host: self.host.clone(),
                            addr: self.addr.clone(),
                            file: first_file.clone(),
                            reason,
                        }))
                    })?;
                Ok(true)
            }
            Verdict::Unknown => refuse(TransportError::HostKeyUnknown {
                host: self.host.clone(),
                addr: self.addr.clone(),
                fingerprint,
                known_hosts: first_file,
            }),
        }
    }
}

struct Inner {
    host: String,
    handle: Handle<Client>,
    /// Bastion connections, outermost first: the target's traffic runs through them.
    jumps: Vec<Handle<Client>>,
    sudo: SudoCell,
    /// sshd allows 10 channels per connection by default (MaxSessions); more concurrent
    /// commands wait here instead of failing.
    channels: tokio::sync::Semaphore,
}

/// Concurrent channels per session, below OpenSSH's default MaxSessions of 10.
const MAX_CHANNELS: usize = 8;

/// How long a refused channel is retried before giving up.
const CHANNEL_RETRY_FOR: Duration = Duration::from_secs(10);

/// An authenticated SSH connection to one host. Cheap to clone.
#[derive(Clone)]
pub struct SshSession {
    inner: Arc<Inner>,
}

/// Connects one hop: over TCP for the first, through `via` for the others.
async fn connect_hop(
    host: &str,
    hop: &SshTarget,
    addr: &str,
    via: Option<&Handle<Client>>,
    opts: &ConnectOptions,
) -> Result<Handle<Client>, TransportError> {
    let files: Vec<(PathBuf, KnownHostsFile)> = known_hosts_files(&opts.host_keys)
        .into_iter()
        .map(|p| {
            let f = known_hosts::load(&p);
            (p, f)
        })
        .collect();
    let name = known_hosts::host_name(&hop.host, hop.port);
    let config = config(opts, &known_hosts::known_algorithms(&files, &name));
    let handler = Client {
        host: host.to_string(),
        addr: addr.to_string(),
        name,
        policy: opts.host_keys.clone(),
        files,
    };
    let map_err = |e: HandlerError| match e {
        HandlerError::Refused(e) => *e,
        HandlerError::Russh(e) => TransportError::Connect {
            host: host.to_string(),
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    };
    let creds = auth::prepare(host, hop).await?;
    let attempt = async {
        let mut handle = match via {
            None => client::connect(config, (hop.host.as_str(), hop.port), handler)
                .await
                .map_err(map_err)?,
            Some(prev) => {
                let channel = prev
                    .channel_open_direct_tcpip(
                        hop.host.as_str(),
                        u32::from(hop.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| TransportError::Connect {
                        host: host.to_string(),
                        addr: addr.to_string(),
                        reason: format!("the bastion could not open a connection: {e}"),
                    })?;
                client::connect_stream(config, super::tunnel::Tunnel::new(channel), handler)
                    .await
                    .map_err(map_err)?
            }
        };
        auth::authenticate(&mut handle, host, addr, hop, &creds).await?;
        Ok(handle)
    };
    tokio::time::timeout(opts.connect_timeout, attempt)
        .await
        .map_err(|_| TransportError::ConnectTimeout {
            host: host.to_string(),
            addr: addr.to_string(),
            after: opts.connect_timeout,
        })?
}

impl SshSession {
    pub async fn connect(
        host: &str,
        target: &SshTarget,
        opts: &ConnectOptions,
    ) -> Result<Self, TransportError> {
        let mut handles: Vec<Handle<Client>> = Vec::new();
        let mut via = String::new();
        for hop in target.jumps.iter().chain(std::iter::once(target)) {
            let addr = if via.is_empty() {
                hop.display()
            } else {
                format!("{} via {via}", hop.display())
            };
            let handle = connect_hop(host, hop, &addr, handles.last(), opts).await?;
            handles.push(handle);
            via = addr;
        }
        let Some(handle) = handles.pop() else {
            return Err(TransportError::Other {
                host: host.to_string(),
                what: "connect".into(),
                reason: "internal error: no hop to connect to".into(),
            });
        };
        let session = SshSession {
            inner: Arc::new(Inner {
                host: host.to_string(),
                handle,
                jumps: handles,
                sudo: SudoCell::new(&target.user, opts.sudo_password.clone()),
                channels: tokio::sync::Semaphore::new(MAX_CHANNELS),
            }),
        };
        if opts.sudo_probe == SudoProbe::AtConnect {
            session.settle_sudo(None).await?;
        }
        Ok(session)
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub fn sudo_mode(&self) -> SudoMode {
        self.inner.sudo.get().mode
    }

    /// See [`super::Connection::settle_sudo`].
    pub async fn settle_sudo(
        &self,
        answer: Option<&ProbeAnswer>,
    ) -> Result<SudoMode, TransportError> {
        self.inner.sudo.settle(self, answer).await
    }

    pub async fn run(&self, cmd: &Command) -> Result<Output, TransportError> {
        exec::run_command(self, &self.inner.sudo, cmd).await
    }

    pub async fn put(
        &self,
        src: &Path,
        dest: &str,
        opts: &PutOptions,
    ) -> Result<PutReport, TransportError> {
        super::put::put(self, &self.inner.sudo, src, dest, opts).await
    }

    pub async fn get(&self, path: &str, sudo: bool) -> Result<Vec<u8>, TransportError> {
        super::put::get(self, &self.inner.sudo, path, sudo).await
    }

    pub async fn close(&self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        for jump in self.inner.jumps.iter().rev() {
            let _ = jump
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    /// Opens a session channel. sshd frees a finished session slightly after closing its
    /// channel, and some hosts set MaxSessions lower than our own limit, so a refusal is
    /// retried for a while before it becomes an error.
    async fn open_channel(&self, what: &str) -> Result<russh::Channel<Msg>, TransportError> {
        let mut delay = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            match self.inner.handle.channel_open_session().await {
                Ok(c) => return Ok(c),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    if waited >= CHANNEL_RETRY_FOR {
                        return Err(TransportError::Ssh {
                            host: self.inner.host.clone(),
                            what: format!("opening a channel for `{what}`"),
                            reason: format!(
                                "the host refused ({reason:?}) for {waited:?}; check MaxSessions in its sshd_config"
                            ),
                        });
                    }
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(_) => return Err(self.lost(what)),
            }
        }
    }

    fn lost(&self, what: &str) -> TransportError {
        TransportError::ConnectionLost {
            host: self.inner.host.clone(),
            command: what.to_string(),
        }
    }
}

/// Stops a command whose caller gave up (local deadline, or the future was dropped): sends
/// SIGTERM through the channel, then closes it. sshd delivers the signal as the login user,
/// so a command running through sudo is out of its reach; such commands are stopped by the
/// `timeout` wrapper their [`Command::timeout`] adds on the host. The signal is sent from a
/// tracked task (see [`super::stops`]) so that an interrupted run can wait for it.
///
/// The task keeps the connection (`Arc<Inner>`) and, after the signal, opens and closes one
/// more channel: sshd answers that only after reading everything sent before it, so when
/// the answer comes the signal has reached the host. Without that, a run that ends at once
/// (Ctrl-C) dropped the connection while the signal was still queued, and the command ran
/// on.
struct CloseOnDrop(Option<(Arc<ChannelWriteHalf<Msg>>, Arc<Inner>)>);

/// How long a stop waits for the host to confirm it read the signal.
const STOP_CONFIRM: Duration = Duration::from_secs(3);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some((w, inner)) = self.0.take() {
            super::stops::spawn(async move {
                let _ = w.signal(russh::Sig::TERM).await;
                let _ = w.close().await;
                if let Ok(Ok(probe)) =
                    tokio::time::timeout(STOP_CONFIRM, inner.handle.channel_open_session()).await
                {
                    let _ = probe.close().await;
                }
                drop(inner);
            });
        }
    }
}

impl Exec for SshSession {
    fn host(&self) -> &str {
        &self.inner.host
    }

    async fn exec(
        &self,
        line: &str,
        stdin: Stdin,
        sink: Option<&OutputSink>,
        deadline: Option<Duration>,
        what: &str,
    ) -> Result<Outcome, TransportError> {
        let _permit = self
            .inner
            .channels
            .acquire()
            .await
            .map_err(|_| self.lost(what))?;
        let channel = self.open_channel(what).await?;
        channel
            .exec(true, line.as_bytes())
            .await
            .map_err(|_| self.lost(what))?;
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        let mut guard = CloseOnDrop(Some((Arc::clone(&writer), Arc::clone(&self.inner))));
        let fed = AtomicU64::new(0);
        let host = self.inner.host.as_str();

        let write_all = async {
            let w = Arc::clone(&writer);
            exec::feed_stdin(host, what, stdin, &fed, |chunk| {
                let w = Arc::clone(&w);
                async move { w.data_bytes(chunk).await.map_err(|_| ()) }
            })
            .await?;
            let _ = writer.eof().await;
            Ok::<(), TransportError>(())
        };

        let read_all = async {
            let mut out = Output::default();
            let mut ended = false;
            let mut signalled = false;
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        if let Some(s) = sink {
                            s(Stream::Stdout, &data);
                        }
                        out.stdout.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        if let Some(s) = sink {
                            s(Stream::Stderr, &data);
                        }
                        out.stderr.extend_from_slice(&data);
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::ExitSignal { .. } => signalled = true,
                    ChannelMsg::Failure => {
                        return Err(TransportError::Ssh {
                            host: host.to_string(),
                            what: format!("running `{what}`"),
                            reason: "the server refused to start the command".into(),
                        });
                    }
                    // Output may still follow the exit status; only Close ends it.
                    ChannelMsg::Close => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !ended && out.status.is_none() && !signalled {
                return Err(self.lost(what));
            }
            Ok(out)
        };

        let both = async {
            tokio::pin!(write_all);
            tokio::pin!(read_all);
            let mut writing = true;
            loop {
                tokio::select! {
                    out = &mut read_all => return out,
                    w = &mut write_all, if writing => {
                        writing = false;
                        w?;
                    }
                }
            }
        };
        let output = match deadline {
            None => both.await?,
            Some(limit) => match tokio::time::timeout(limit, both).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(TransportError::Timeout {
                        host: host.to_string(),
                        command: what.to_string(),
                        after: limit,
                    });
                }
            },
        };
        // The command finished normally: nothing to clean up.
        guard.0 = None;
        Ok(Outcome {
            output,
            fed: fed.load(Ordering::Relaxed),
        })
    }
}
