//! Per-run logs: `.gpuctl/<cluster>/runs/<timestamp>/<host>.log`.
//!
//! Every command a run sends to a host is written here with its output, so that a failure
//! on host 37 of 50 can be read afterwards without re-running anything. Everything passes
//! through [`crate::secret::redact`] line by line; standard input is never logged (it is
//! where secrets travel), only its size.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::secret::redact;
use crate::transport::Stream;

/// The directory of one run.
#[derive(Clone, Debug)]
pub struct RunLog {
    dir: PathBuf,
}

impl RunLog {
    /// Creates `<state_dir>/runs/<UTC timestamp>[-N]/`, unique even for runs started in the
    /// same second.
    pub fn create(state_dir: &Path) -> std::io::Result<RunLog> {
        let runs = state_dir.join("runs");
        fs::create_dir_all(&runs)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        for n in 1..1000 {
            let name = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = runs.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(RunLog { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "too many runs started at {stamp} in {}",
            runs.display()
        )))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creates) the log of one host.
    pub fn host(&self, host: &str) -> std::io::Result<HostLog> {
        let file = File::create(self.dir.join(format!("{host}.log")))?;
        Ok(HostLog {
            inner: Arc::new(Mutex::new(Inner {
                out: BufWriter::new(file),
                partial: [Vec::new(), Vec::new()],
            })),
        })
    }
}

/// The log of one host in one run. Cheap to clone; writes are serialised.
#[derive(Clone)]
pub struct HostLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    out: BufWriter<File>,
    /// Unfinished last line of stdout and stderr, kept until its newline arrives so that
    /// redaction sees whole lines.
    partial: [Vec<u8>; 2],
}

impl HostLog {
    /// A line of gpuctl's own narration (`# connected`, `# put /x (12 bytes)`).
    pub fn note(&self, text: &str) {
        self.with(|inner| {
            inner.flush_partials();
            let stamp = chrono::Utc::now().format("%H:%M:%S%.3f");
            let _ = writeln!(inner.out, "# {stamp} {}", redact(text));
        });
    }

    /// A command about to be sent.
    pub fn command(&self, script: &str, sudo: bool, stdin_len: Option<usize>) {
        self.with(|inner| {
            inner.flush_partials();
            let stamp = chrono::Utc::now().format("%H:%M:%S%.3f");
            let via = if sudo { " (as root)" } else { "" };
            let _ = writeln!(inner.out, "# {stamp} run{via}:");
            for line in redact(script).lines() {
                let _ = writeln!(inner.out, "$ {line}");
            }
            if let Some(n) = stdin_len {
                let _ = writeln!(inner.out, "# stdin: {n} bytes (not logged)");
            }
        });
    }

    /// Output as it arrives.
    pub fn output(&self, stream: Stream, bytes: &[u8]) {
        self.with(|inner| {
            let idx = stream_index(stream);
            inner.partial[idx].extend_from_slice(bytes);
            while let Some(pos) = inner.partial[idx].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = inner.partial[idx].drain(..=pos).collect();
                inner.write_line(stream, &line[..line.len() - 1]);
            }
        });
    }

    /// The end of a command.
    pub fn status(&self, status: Option<u32>) {
        self.with(|inner| {
            inner.flush_partials();
            let _ = match status {
                Some(code) => writeln!(inner.out, "# exit {code}"),
                None => writeln!(inner.out, "# no exit status (killed or connection lost)"),
            };
            let _ = inner.out.flush();
        });
    }

    pub fn flush(&self) {
        self.with(|inner| {
            inner.flush_partials();
            let _ = inner.out.flush();
        });
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A poisoned lock means another task panicked mid-write; the log is best effort
        // and must never turn into a second failure.
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }
}

impl Inner {
    fn write_line(&mut self, stream: Stream, line: &[u8]) {
        let prefix = match stream {
            Stream::Stdout => "| ",
            Stream::Stderr => "! ",
        };
        let text = redact(&String::from_utf8_lossy(line));
        let _ = writeln!(self.out, "{prefix}{text}");
    }

    fn flush_partials(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let idx = stream_index(stream);
            if !self.partial[idx].is_empty() {
                let line = std::mem::take(&mut self.partial[idx]);
                self.write_line(stream, &line);
            }
        }
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_partials();
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn logs_commands_and_output_with_secrets_redacted() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let _secret = Secret::new("s3cr3t-password-for-log-test");
        let run = RunLog::create(tmp.path())?;
        let second = RunLog::create(tmp.path())?;
        assert_ne!(
            run.dir(),
            second.dir(),
            "two runs in one second get two dirs"
        );
        let log = run.host("node1")?;
        log.command("echo hi", true, Some(31));
        log.output(Stream::Stdout, b"hel");
        log.output(Stream::Stdout, b"lo s3cr3t-pass");
        log.output(Stream::Stdout, b"word-for-log-test\nbye");
        log.output(Stream::Stderr, b"warn\n");
        log.status(Some(0));
        drop(log);
        let text = fs::read_to_string(run.dir().join("node1.log"))?;
        assert!(text.contains("$ echo hi"), "{text}");
        assert!(text.contains("# stdin: 31 bytes (not logged)"), "{text}");
        assert!(text.contains("| hello ***\n"), "{text}");
        assert!(text.contains("! warn\n"), "{text}");
        assert!(text.contains("| bye\n# exit 0"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        Ok(())
    }
}
