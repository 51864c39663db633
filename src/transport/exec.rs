//! Running one command line on a host, shared by the SSH and local transports.
//!
//! A transport only knows how to start a command line, feed its stdin and collect its
//! output ([`Exec`]). Everything above that — sudo wrapping, the password line, remote
//! timeouts, redaction — is written once here in [`run_command`], so the local and SSH
//! transports cannot drift apart.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::shell::{self, Elevation, KILL_GRACE};
use super::sudo::SudoCell;
use super::{Command, Output, OutputSink, ProgressFn, Stream, TransportError};
use crate::secret;

/// What goes to a command's standard input after the optional password line.
pub enum Feed {
    Empty,
    Bytes(Bytes),
    /// A local file from `offset` to its end, read in large chunks off the async runtime.
    File {
        path: PathBuf,
        offset: u64,
        /// Called with `offset + bytes sent so far` after each chunk.
        progress: Option<ProgressFn>,
        /// The longest the host may take to accept one chunk (see [`super::STALL_TIMEOUT`]).
        stall: Duration,
    },
}

/// Standard input for one command: the sudo password line (if sudo needs it), then the feed.
pub struct Stdin {
    pub password_line: Option<Zeroizing<Vec<u8>>>,
    pub feed: Feed,
}

impl Stdin {
    pub fn empty() -> Stdin {
        Stdin {
            password_line: None,
            feed: Feed::Empty,
        }
    }
}

/// What a command left, plus how many feed bytes were handed to it (put uses that to
/// report what it really sent).
pub struct Outcome {
    pub output: Output,
    pub fed: u64,
}

/// A transport that can run one command line (`$SHELL -c LINE` on the host).
pub trait Exec {
    fn host(&self) -> &str;

    /// Runs `line`, writing `stdin` and then EOF, streaming output to `sink`. After
    /// `deadline` the command is stopped and a [`TransportError::Timeout`] names `what`.
    async fn exec(
        &self,
        line: &str,
        stdin: Stdin,
        sink: Option<&OutputSink>,
        deadline: Option<Duration>,
        what: &str,
    ) -> Result<Outcome, TransportError>;
}

/// Reads big enough to keep per-chunk overhead (channel messages, syscalls) negligible,
/// small enough that eight transfers at once stay well under 64 MiB of memory: each
/// holds at most `CHUNK * (READ_AHEAD + 1)` bytes of the file.
const CHUNK: usize = 256 << 10;
const READ_AHEAD: usize = 2;

/// Reads `path` from `offset` on a blocking thread; chunks arrive through the channel,
/// which holds a couple of them so disk and network overlap.
pub fn read_file_chunks(
    path: PathBuf,
    offset: u64,
) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        loop {
            let mut buf = BytesMut::zeroed(CHUNK);
            let mut filled = 0;
            // Fill the whole chunk: short reads would make many small channel messages.
            while filled < CHUNK {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // the command ended; nobody wants the rest
            }
        }
    });
    rx
}

/// Writes `stdin` through `write`, counting fed bytes in `fed`. Shared by both transports
/// so the password-first ordering and progress reporting are identical.
pub async fn feed_stdin<W, F>(
    host: &str,
    what: &str,
    stdin: Stdin,
    fed: &AtomicU64,
    mut write: W,
) -> Result<(), TransportError>
where
    W: FnMut(Bytes) -> F,
    F: Future<Output = Result<(), ()>>,
{
    if let Some(line) = stdin.password_line
        && write(Bytes::copy_from_slice(&line)).await.is_err()
    {
        return Ok(());
    }
    match stdin.feed {
        Feed::Empty => {}
        Feed::Bytes(b) => {
            let n = b.len() as u64;
            if write(b).await.is_ok() {
                fed.fetch_add(n, Ordering::Relaxed);
            }
        }
        Feed::File {
            path,
            offset,
            progress,
            stall,
        } => {
            let mut chunks = read_file_chunks(path.clone(), offset);
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk.map_err(|e| TransportError::LocalFile {
                    host: host.to_string(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let n = chunk.len() as u64;
                // Without a limit here a host that stops reading (a wedged disk, a
                // connection that is half dead but still answers keepalives) would hang
                // the transfer forever: commands that feed a file have no overall deadline,
                // because a big file on a slow link legitimately takes hours.
                match tokio::time::timeout(stall, write(chunk)).await {
                    Ok(Ok(())) => {}
                    // The command stopped reading (it failed or the connection dropped);
                    // its exit status tells the caller why.
                    Ok(Err(())) => return Ok(()),
                    Err(_) => {
                        return Err(TransportError::Stalled {
                            host: host.to_string(),
                            command: what.to_string(),
                            after: stall,
                        });
                    }
                }
                let done = fed.fetch_add(n, Ordering::Relaxed) + n;
                if let Some(p) = &progress {
                    p(offset + done);
                }
            }
        }
    }
    Ok(())
}

/// Runs a [`Command`] on `host` with the sudo wrapping of its connection.
pub async fn run_command<E: Exec>(
    host: &E,
    sudo: &SudoCell,
    cmd: &Command,
) -> Result<Output, TransportError> {
    let stdin = Feed::Bytes(Bytes::from(cmd.stdin.clone().unwrap_or_default()));
    run_script(
        host,
        sudo,
        &cmd.script,
        cmd.sudo,
        stdin,
        cmd.timeout,
        cmd.sink.as_ref(),
        None,
    )
    .await
    .map(|o| o.output)
}

/// [`run_command`] with any feed on stdin (put streams a file through it).
#[allow(clippy::too_many_arguments)]
pub async fn run_script<E: Exec>(
    host: &E,
    sudo: &SudoCell,
    script: &str,
    as_root: bool,
    feed: Feed,
    timeout: Option<Duration>,
    sink: Option<&OutputSink>,
    label: Option<&str>,
) -> Result<Outcome, TransportError> {
    // A connection that deferred its sudo probe finds its mode before the first command
    // that needs root.
    let elevation = if as_root {
        sudo.settle(host, None).await?;
        sudo.get().elevation(host.host())?
    } else {
        Elevation::None
    };
    let line = shell::command_line(script, elevation, timeout);
    let password_line = match elevation {
        Elevation::Password => Some(sudo.get().password_line(host.host())?),
        _ => None,
    };
    // Belt and braces: sudo never echoes the password, but if anything on the host does,
    // it must not reach the caller's live output either.
    let redacting: Option<OutputSink> = match (elevation, sink) {
        (Elevation::Password, Some(inner)) => {
            let inner = Arc::clone(inner);
            Some(Arc::new(
                move |stream: Stream, bytes: &[u8]| match std::str::from_utf8(bytes) {
                    Ok(text) => inner(stream, secret::redact(text).as_bytes()),
                    Err(_) => inner(stream, bytes),
                },
            ))
        }
        _ => None,
    };
    let sink = redacting.as_ref().or(sink);
    // What errors call the command: the caller's label, or the script's first line.
    let what = label.map_or_else(|| shell::first_line(script), str::to_string);
    // The remote `timeout` stops the command first; this local deadline only catches a
    // host that stopped answering altogether.
    let deadline = timeout.map(|t| t + KILL_GRACE + Duration::from_secs(3));
    let started = Instant::now();
    let stdin = Stdin {
        password_line,
        feed,
    };
    let mut outcome = host.exec(&line, stdin, sink, deadline, &what).await?;
    if let Some(t) = timeout
        && matches!(outcome.output.status, Some(124) | Some(137))
        && started.elapsed() >= t
    {
        return Err(TransportError::Timeout {
            host: host.host().to_string(),
            command: what,
            after: t,
        });
    }
    if elevation == Elevation::Password {
        let out = &mut outcome.output;
        out.stdout = redact_bytes(&out.stdout);
        out.stderr = redact_bytes(&out.stderr);
        if out.status == Some(1) && sudo_rejected(&out.stderr) {
            return Err(TransportError::SudoPasswordRejected {
                host: host.host().to_string(),
                user: sudo.get().user.clone(),
            });
        }
    }
    Ok(outcome)
}

/// sudo's own words for a wrong password (with `LC_ALL=C` or an English locale).
pub fn sudo_rejected(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    text.contains("incorrect password attempt")
        || text.contains("Sorry, try again")
        || text.contains("no password was provided")
}

fn redact_bytes(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) => secret::redact(text).into_bytes(),
        Err(_) => bytes.to_vec(),
    }
}
