//! A fluent builder that runs the real `gpuctl` binary, in the style of just's test suite:
//! `Gpuctl::new().args(["ping"]).inventory(&lab.inventory).run().success()`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One invocation of the binary under test.
pub struct Gpuctl {
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    cwd: Option<PathBuf>,
}

/// What it did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Gpuctl {
    pub fn new() -> Self {
        Gpuctl {
            args: Vec::new(),
            env: Vec::new(),
            // The tests must not depend on the developer's own agent or config.
            env_remove: vec!["SSH_AUTH_SOCK".into(), "GPUCTL_INVENTORY".into()],
            cwd: None,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn inventory(self, path: &Path) -> Self {
        self.args(["--inventory".to_string(), path.display().to_string()])
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn run(self) -> Outcome {
        let args = self.args.clone();
        let out = self
            .command()
            .output()
            .unwrap_or_else(|e| panic!("cannot run gpuctl {args:?}: {e}"));
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts gpuctl without waiting for it (for tests that act while it runs).
    pub fn spawn(self) -> Running {
        let args = self.args.clone();
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start gpuctl {args:?}: {e}"));
        Running { child, args }
    }

    /// Starts gpuctl without waiting, output discarded: for tests that kill it.
    pub fn spawn_detached(self) -> std::process::Child {
        let args = self.args.clone();
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start gpuctl {args:?}: {e}"))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpuctl"));
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .env("NO_COLOR", "1");
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// A gpuctl started with [`Gpuctl::spawn`].
pub struct Running {
    child: std::process::Child,
    args: Vec<String>,
}

impl Running {
    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    /// Waits at most `deadline` for it to exit; past that it is killed and the test fails.
    pub fn wait(mut self, deadline: std::time::Duration) -> Outcome {
        let start = std::time::Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output();
                    panic!(
                        "gpuctl {:?} did not finish within {deadline:?}: {out:?}",
                        self.args
                    );
                }
                Err(e) => panic!("waiting for gpuctl {:?}: {e}", self.args),
            }
        }
        let out = self
            .child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("reading gpuctl {:?}: {e}", self.args));
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Outcome {
    /// Asserts exit code 0 and returns self for more checks.
    pub fn success(self) -> Self {
        self.code(0)
    }

    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code, expected,
            "gpuctl exited {} (expected {expected})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}
