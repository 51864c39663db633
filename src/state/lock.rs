//! The local install lock: `.gpuctl/<cluster>/install.lock` beside the journal, created
//! with O_EXCL and holding who took it (user@host, pid, start time, run id). Removed when
//! the [`LocalLock`] is dropped.
//!
//! A lock whose owner is a process on this machine that no longer runs is *stale*: it is
//! reported with the exact command that removes it, never broken silently, because the
//! admin may know something we don't (a second checkout on a shared disk, say).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock; the content of every lock file, here and on the hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `user@host` of the workstation running the install.
    pub owner: String,
    pub pid: u32,
    pub started: String,
    /// This run's id (its start time and pid), to tell our lock from another run's.
    pub run: String,
}

impl LockInfo {
    /// The lock this process would take.
    pub fn this_process() -> LockInfo {
        let started = super::journal::now();
        let pid = std::process::id();
        LockInfo {
            owner: format!("{}@{}", user_name(), this_host()),
            pid,
            run: format!("{started}-{pid}"),
            started,
        }
    }

    /// The owner's host part.
    pub fn host(&self) -> &str {
        self.owner.rsplit_once('@').map_or("", |(_, h)| h)
    }

    /// Whether the owner is a process of this machine that has ended.
    pub fn liveness(&self) -> Liveness {
        if self.host() != this_host() {
            return Liveness::Elsewhere;
        }
        // A pid can be reused; only a gpuctl process with that pid counts as the owner.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        if comm.trim().starts_with("gpuctl") {
            Liveness::Running
        } else {
            Liveness::Dead
        }
    }

    /// `pid 123 (ops@ws1, started 2025-..)` for messages.
    pub fn describe(&self) -> String {
        format!(
            "pid {} ({}, started {})",
            self.pid, self.owner, self.started
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    Dead,
    /// Owned by another machine: we cannot tell.
    Elsewhere,
}

/// Another install holds the lock, or it could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `gpuctl install` is running for this cluster: {} holds {}; wait for it to \
         finish",
        .info.describe(), .path.display()
    )]
    Running { path: PathBuf, info: LockInfo },
    #[error(
        "a stale install lock is in the way: {} was taken by {}, which is no longer running. \
         If no install is running, remove it with: rm {}",
        .path.display(), .info.describe(), crate::transport::shell::quote(&.path.display().to_string())
    )]
    Stale { path: PathBuf, info: LockInfo },
    #[error(
        "the install lock {} is held by {} on another machine. If no install is running \
         there, remove it with: rm {}",
        .path.display(), .info.describe(), crate::transport::shell::quote(&.path.display().to_string())
    )]
    Elsewhere { path: PathBuf, info: LockInfo },
    #[error(
        "the install lock {} exists but cannot be read ({reason}); if no install is running, \
         remove it with: rm {}",
        .path.display(), crate::transport::shell::quote(&.path.display().to_string())
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot create the install lock {}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
}

impl LockError {
    /// The error for a lock `info` found at `path` (here or on a host).
    pub fn held(path: PathBuf, info: LockInfo) -> LockError {
        match info.liveness() {
            Liveness::Running => LockError::Running { path, info },
            Liveness::Dead => LockError::Stale { path, info },
            Liveness::Elsewhere => LockError::Elsewhere { path, info },
        }
    }
}

/// A held local lock; the file goes away with it.
#[derive(Debug)]
pub struct LocalLock {
    path: PathBuf,
    pub info: LockInfo,
}

impl LocalLock {
    /// Takes the lock at `path` for `info`, or says who holds it.
    pub fn acquire(path: &Path, info: LockInfo) -> Result<LocalLock, LockError> {
        let io = |e: std::io::Error| LockError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string(&info).map_err(|e| io(std::io::Error::other(e)))?;
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                Ok(LocalLock {
                    path: path.to_path_buf(),
                    info,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<LockInfo>(&t).map_err(|e| e.to_string()));
                Err(match held {
                    Ok(info) => LockError::held(path.to_path_buf(), info),
                    Err(reason) => LockError::Unreadable {
                        path: path.to_path_buf(),
                        reason,
                    },
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// This machine's host name.
pub fn this_host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn user_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_is_refused_while_the_first_is_held_and_works_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab/install.lock");
        let first = LocalLock::acquire(&path, LockInfo::this_process()).unwrap();
        let err = LocalLock::acquire(&path, LockInfo::this_process()).unwrap_err();
        // The test binary is not called gpuctl, so our own pid reads as "not the owner":
        // what matters here is that the lock is refused and the file named.
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        drop(first);
        assert!(!path.exists());
        LocalLock::acquire(&path, LockInfo::this_process()).unwrap();
    }

    #[test]
    fn a_lock_of_a_dead_process_here_is_stale_with_the_command_to_break_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install.lock");
        let mut info = LockInfo::this_process();
        // Pid 0 is never a user process.
        info.pid = 0;
        std::fs::write(&path, serde_json::to_string(&info).unwrap()).unwrap();
        let err = LocalLock::acquire(&path, LockInfo::this_process()).unwrap_err();
        assert!(matches!(err, LockError::Stale { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("rm {}", path.display())), "{text}");
        assert!(text.contains("pid 0"), "{text}");
        // Still there: reported, not broken.
        assert!(path.exists());
    }

    #[test]
    fn a_lock_from_another_machine_or_unreadable_is_reported_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install.lock");
        let mut info = LockInfo::this_process();
        info.owner = "ops@some-other-workstation".into();
        std::fs::write(&path, serde_json::to_string(&info).unwrap()).unwrap();
        let err = LocalLock::acquire(&path, LockInfo::this_process()).unwrap_err();
        assert!(matches!(err, LockError::Elsewhere { .. }), "{err:?}");
        assert!(err.to_string().contains("ops@some-other-workstation"));
        std::fs::write(&path, "garbage").unwrap();
        let err = LocalLock::acquire(&path, LockInfo::this_process()).unwrap_err();
        assert!(matches!(err, LockError::Unreadable { .. }), "{err:?}");
    }
}
