//! Local transport: the machine gpuctl runs on, with the same API and semantics as SSH.
//!
//! Commands run as `sh -c LINE` (what sshd does with the login shell), so sudo wrapping,
//! timeouts and the put protocol are the very same code paths as over SSH.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

use super::exec::{self, Exec, Outcome, Stdin};
use super::sudo::{ProbeAnswer, SudoCell, SudoProbe};
use super::{
    Command, ConnectOptions, Output, OutputSink, PutOptions, PutReport, Stream, SudoMode,
    TransportError,
};

struct Inner {
    host: String,
    sudo: SudoCell,
}

#[derive(Clone)]
pub struct LocalSession {
    inner: Arc<Inner>,
}

impl LocalSession {
    pub async fn open(host: &str, opts: &ConnectOptions) -> Result<Self, TransportError> {
        let user = std::env::var("USER").unwrap_or_default();
        let session = LocalSession {
            inner: Arc::new(Inner {
                host: host.to_string(),
                sudo: SudoCell::new(&user, opts.sudo_password.clone()),
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

    fn error(&self, what: &str, e: std::io::Error) -> TransportError {
        TransportError::Other {
            host: self.inner.host.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        }
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    stream: Stream,
    sink: Option<&OutputSink>,
) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => {
                if let Some(s) = sink {
                    s(stream, &buf[..n]);
                }
                all.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Kills the whole process group of a command that ran out of time.
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Exec for LocalSession {
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
        use std::process::Stdio;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.error(&format!("starting `{what}`"), e))?;
        let pid = child.id();
        let (Some(child_in), Some(child_out), Some(child_err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.error(
                "starting a command",
                std::io::Error::other("no pipes to the child"),
            ));
        };
        let fed = AtomicU64::new(0);
        let host = self.inner.host.as_str();
        let input = Arc::new(Mutex::new(Some(child_in)));

        let write_all = async {
            let pipe = Arc::clone(&input);
            exec::feed_stdin(host, what, stdin, &fed, move |chunk| {
                let pipe = Arc::clone(&pipe);
                async move {
                    let mut guard = pipe.lock().await;
                    match guard.as_mut() {
                        Some(w) => w.write_all(&chunk).await.map_err(|_| ()),
                        None => Err(()),
                    }
                }
            })
            .await?;
            // EOF for the command.
            input.lock().await.take();
            Ok::<(), TransportError>(())
        };
        let read_all = async {
            let (stdout, stderr, status) = tokio::join!(
                pump(child_out, Stream::Stdout, sink),
                pump(child_err, Stream::Stderr, sink),
                child.wait()
            );
            let status = status.map_err(|e| self.error(&format!("waiting for `{what}`"), e))?;
            Ok::<Output, TransportError>(Output {
                status: status.code().and_then(|c| u32::try_from(c).ok()),
                stdout,
                stderr,
            })
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
                    kill_group(pid);
                    return Err(TransportError::Timeout {
                        host: host.to_string(),
                        command: what.to_string(),
                        after: limit,
                    });
                }
            },
        };
        Ok(Outcome {
            output,
            fed: fed.load(Ordering::Relaxed),
        })
    }
}
