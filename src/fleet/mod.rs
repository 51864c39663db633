//! Fleet: run the same work on many hosts — bounded concurrency, one progress line per
//! host, a log file per host, and every host's failure reported together at the end.
//!
//! Work never touches a [`Connection`] directly: it gets a [`HostCtx`] whose `run`/`put`/
//! `get` write every command and its output to the host's run log, so what happened on
//! each host can always be read afterwards.

pub mod progress;
pub mod runlog;
pub mod select;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::inventory::Host;
use crate::transport::{
    Command, ConnectOptions, Connection, Output, PutOptions, PutReport, TransportError,
};
pub use progress::{HostProgress, Progress};
pub use runlog::{HostLog, RunLog};

/// How a fleet run behaves.
#[derive(Clone)]
pub struct FleetOptions {
    /// Hosts worked on at once.
    pub concurrency: usize,
    pub connect: ConnectOptions,
    pub progress: Progress,
}

/// A set of hosts and the run they belong to.
pub struct Fleet {
    hosts: Vec<Host>,
    opts: FleetOptions,
    runlog: RunLog,
}

/// What work on one host gets: the host, its connection, its log and its progress line.
#[derive(Clone)]
pub struct HostCtx {
    pub host: Host,
    pub conn: Connection,
    pub log: HostLog,
    pub progress: HostProgress,
}

impl HostCtx {
    /// Runs a command, logging it and its output as they happen.
    pub async fn run(&self, cmd: Command) -> Result<Output, TransportError> {
        self.log
            .command(&cmd.script, cmd.sudo, cmd.stdin.as_ref().map(Vec::len));
        let log = self.log.clone();
        let downstream = cmd.sink.clone();
        let cmd = cmd.sink(Arc::new(move |stream, bytes| {
            log.output(stream, bytes);
            if let Some(next) = &downstream {
                next(stream, bytes);
            }
        }));
        let result = self.conn.run(&cmd).await;
        match &result {
            Ok(out) => self.log.status(out.status),
            Err(e) => self.log.note(&format!("error: {e}")),
        }
        result
    }

    /// Puts a file, with a progress bar and a log line.
    pub async fn put(
        &self,
        src: &Path,
        dest: &str,
        opts: &PutOptions,
    ) -> Result<PutReport, TransportError> {
        let total = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
        self.log
            .note(&format!("put {} -> {dest} ({total} bytes)", src.display()));
        let mut opts = opts.clone();
        if opts.progress.is_none() {
            opts.progress = Some(self.progress.transfer(dest, total));
        }
        let result = self.conn.put(src, dest, &opts).await;
        match &result {
            Ok(r) => self.log.note(&format!(
                "put done: sha256 {}, {} bytes sent{}",
                r.sha256,
                r.bytes_sent,
                if r.unchanged { " (unchanged)" } else { "" }
            )),
            Err(e) => self.log.note(&format!("put failed: {e}")),
        }
        result
    }

    /// Reads a file from the host.
    pub async fn get(&self, path: &str, sudo: bool) -> Result<Vec<u8>, TransportError> {
        self.log.note(&format!("get {path}"));
        let result = self.conn.get(path, sudo).await;
        if let Err(e) = &result {
            self.log.note(&format!("get failed: {e}"));
        }
        result
    }
}

/// The error of work that Ctrl-C stopped before it finished.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted before it finished")
    }
}

impl std::error::Error for Interrupted {}

/// The result of one host.
pub struct HostResult<T> {
    pub host: String,
    pub outcome: Result<T, anyhow::Error>,
    pub elapsed: Duration,
}

/// The results of every host, in inventory order.
pub struct Report<T> {
    pub results: Vec<HostResult<T>>,
    /// Ctrl-C stopped the run; hosts that had not finished are failures saying so.
    pub interrupted: bool,
    pub log_dir: PathBuf,
}

impl<T> Report<T> {
    pub fn failed(&self) -> impl Iterator<Item = (&str, &anyhow::Error)> {
        self.results
            .iter()
            .filter_map(|r| r.outcome.as_ref().err().map(|e| (r.host.as_str(), e)))
    }

    pub fn failure_count(&self) -> usize {
        self.failed().count()
    }

    /// The failures, all of them, as one block of text (empty when none failed).
    pub fn failure_summary(&self) -> String {
        let failed: Vec<_> = self.failed().collect();
        if failed.is_empty() {
            return String::new();
        }
        let mut text = format!(
            "{} of {} hosts failed{}:\n",
            failed.len(),
            self.results.len(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        for (host, err) in failed {
            let msg = crate::secret::redact(&format!("{err:#}"));
            text.push_str(&format!("  {host}: {msg}\n"));
        }
        text.push_str(&format!("logs: {}\n", self.log_dir.display()));
        text
    }

    /// `Err(HostsFailed)` when any host failed, after printing the summary to stderr.
    pub fn check(&self) -> Result<(), crate::exit::HostsFailed> {
        let failed = self.failure_count();
        if failed == 0 {
            return Ok(());
        }
        eprint!("{}", self.failure_summary());
        Err(crate::exit::HostsFailed {
            failed,
            total: self.results.len(),
        })
    }
}

impl Fleet {
    /// A fleet over `hosts`, with its run log under `state_dir/runs/`.
    pub fn new(hosts: Vec<Host>, state_dir: &Path, opts: FleetOptions) -> anyhow::Result<Fleet> {
        let runlog = RunLog::create(state_dir)
            .with_context(|| format!("cannot create the run log under {}", state_dir.display()))?;
        Ok(Fleet {
            hosts,
            opts,
            runlog,
        })
    }

    /// The fleet with its connections finding their sudo mode `when` (doctor defers it to
    /// its own script, which answers the same questions).
    pub fn with_sudo_probe(mut self, when: crate::transport::SudoProbe) -> Fleet {
        self.opts.connect.sudo_probe = when;
        self
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn log_dir(&self) -> &Path {
        self.runlog.dir()
    }

    pub fn progress(&self) -> &Progress {
        &self.opts.progress
    }

    /// Connects to every host (at most `concurrency` at once) and runs `work` on each.
    /// A host that cannot be reached is a failure of that host, not of the run. Ctrl-C
    /// stops every host at once, and the report says which ones were cut short.
    pub async fn run<T, F, Fut>(&self, work: F) -> Report<T>
    where
        T: Send + 'static,
        F: Fn(HostCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        self.run_with(&[], |_, _| {}, work).await
    }

    /// [`Fleet::run`], with the hosts named in `first` started first (they get their
    /// connection slots before any other host: hosts that others wait for), and `on_end`
    /// called as each host finishes, with its error if it failed (also when it could not
    /// be reached and `work` never ran).
    pub async fn run_with<T, F, Fut, E>(&self, first: &[String], on_end: E, work: F) -> Report<T>
    where
        T: Send + 'static,
        F: Fn(HostCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
        E: Fn(&str, Option<&anyhow::Error>) + Send + Sync + 'static,
    {
        let work = Arc::new(work);
        let on_end = Arc::new(on_end);
        let permits = Arc::new(Semaphore::new(self.opts.concurrency.max(1)));
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        order.sort_by_key(|&i| !first.contains(&self.hosts[i].name));
        let mut tasks = JoinSet::new();
        for index in order {
            let host = self.hosts[index].clone();
            let work = Arc::clone(&work);
            let on_end = Arc::clone(&on_end);
            let permits = Arc::clone(&permits);
            // Taken here, in start order, while slots are free: the first hosts are sure
            // to get theirs whatever order the tasks happen to be polled in.
            let early = Arc::clone(&permits).try_acquire_owned().ok();
            let connect = self.opts.connect.clone();
            let progress = self.opts.progress.host(&host.name);
            let log = self.runlog.host(&host.name);
            tasks.spawn(async move {
                let started = Instant::now();
                let outcome = async {
                    let log =
                        log.with_context(|| format!("cannot create the log of {}", host.name))?;
                    let _permit = match early {
                        Some(p) => p,
                        None => permits.acquire_owned().await.context("fleet stopped")?,
                    };
                    connect_and_work(&host, &connect, log, progress.clone(), |ctx| work(ctx)).await
                }
                .await;
                on_end(&host.name, outcome.as_ref().err());
                finish_line(&progress, &outcome, started);
                (
                    index,
                    HostResult {
                        host: host.name.clone(),
                        outcome,
                        elapsed: started.elapsed(),
                    },
                )
            });
        }

        let mut slots: Vec<Option<HostResult<T>>> = self.hosts.iter().map(|_| None).collect();
        let mut interrupted = false;
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok((index, result))) => slots[index] = Some(result),
                    // A panicking task is a bug, but it must not take the other hosts'
                    // results with it; its slot is filled below.
                    Some(Err(_)) => {}
                    None => break,
                },
                _ = tokio::signal::ctrl_c(), if !interrupted => {
                    interrupted = true;
                    self.opts.progress.println("interrupted: stopping every host");
                    tasks.abort_all();
                }
            }
        }
        if interrupted {
            // Every aborted task is dropped by now; what it ran on its host is stopped by
            // signals still on their way.
            crate::transport::stops::settle(crate::transport::stops::SETTLE_LIMIT).await;
        }
        let results = slots
            .into_iter()
            .zip(&self.hosts)
            .map(|(slot, host)| {
                slot.unwrap_or_else(|| HostResult {
                    host: host.name.clone(),
                    outcome: Err(if interrupted {
                        anyhow::Error::new(Interrupted)
                    } else {
                        anyhow::anyhow!(
                            "the task for this host stopped unexpectedly (a bug: please report it)"
                        )
                    }),
                    elapsed: Duration::ZERO,
                })
            })
            .collect();
        Report {
            results,
            interrupted,
            log_dir: self.runlog.dir().to_path_buf(),
        }
    }
}

impl Fleet {
    /// Connects to `host` again, on its own, for work that belongs to the cluster rather
    /// than the host (cluster stages): its log is `<label>.log` of this run and its
    /// progress line is `label`. Ctrl-C stops the work; its error is then [`Interrupted`].
    pub async fn run_on<T, F, Fut>(&self, host: &Host, label: &str, work: F) -> HostResult<T>
    where
        F: FnOnce(HostCtx) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let started = Instant::now();
        let progress = self.opts.progress.host(label);
        let outcome = match self.runlog.host(label) {
            Ok(log) => {
                let work = connect_and_work(host, &self.opts.connect, log, progress.clone(), work);
                tokio::select! {
                    outcome = work => outcome,
                    _ = tokio::signal::ctrl_c() => {
                        self.opts.progress.println("interrupted: stopping the cluster stages");
                        crate::transport::stops::settle(crate::transport::stops::SETTLE_LIMIT)
                            .await;
                        Err(anyhow::Error::new(Interrupted))
                    }
                }
            }
            Err(e) => Err(anyhow::anyhow!("cannot create the log {label}.log: {e}")),
        };
        finish_line(&progress, &outcome, started);
        HostResult {
            host: host.name.clone(),
            outcome,
            elapsed: started.elapsed(),
        }
    }
}

async fn connect_and_work<T, F, Fut>(
    host: &Host,
    connect: &ConnectOptions,
    log: HostLog,
    progress: HostProgress,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(HostCtx) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    progress.step("connecting");
    log.note(&format!("connecting to {}", describe(host)));
    let conn = Connection::connect(&host.name, &host.endpoint, connect)
        .await
        .inspect_err(|e| log.note(&format!("connect failed: {e}")))?;
    match connect.sudo_probe {
        crate::transport::SudoProbe::AtConnect => {
            log.note(&format!("connected (sudo: {:?})", conn.sudo_mode()));
        }
        crate::transport::SudoProbe::Deferred => log.note("connected (sudo: found later)"),
    }
    let ctx = HostCtx {
        host: host.clone(),
        conn: conn.clone(),
        log: log.clone(),
        progress,
    };
    let result = work(ctx).await;
    conn.close().await;
    log.flush();
    result
}

fn finish_line<T>(progress: &HostProgress, outcome: &anyhow::Result<T>, started: Instant) {
    let took = format!("({:.1}s)", started.elapsed().as_secs_f64());
    match outcome {
        Ok(_) => progress.finish(true, &took),
        Err(e) => progress.finish(
            false,
            &format!(
                "{took} {}",
                first_line(&crate::secret::redact(&format!("{e:#}")))
            ),
        ),
    }
}

/// `user@host:port via bastion` or `local`, for logs and tables.
pub fn describe(host: &Host) -> String {
    match &host.endpoint {
        crate::transport::Endpoint::Local => "local".to_string(),
        crate::transport::Endpoint::Ssh(t) => {
            let mut s = t.display();
            for jump in &t.jumps {
                s.push_str(&format!(" via {}", jump.display()));
            }
            s
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}
