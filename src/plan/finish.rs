//! What a cluster stage does on the cluster host after its Ops: wait for a condition (every
//! node Ready) or fetch a file and turn it into a local one (the admin kubeconfig).
//!
//! Both are data the engine carries out, so a cluster stage stays a pure function of the
//! inventory: the judge of a wait is a pure function of a command's output, and only the
//! writer of a fetch touches this machine (its own file, nothing on a host).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A wait's verdict on its command's output: `Err(what is missing)` until it holds.
pub type Judge = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// A fetch's writer: the fetched bytes and whether to apply → the change, if any.
pub type Writer = Arc<dyn Fn(&[u8], bool) -> anyhow::Result<Option<String>> + Send + Sync>;

/// The part of a cluster stage that is not an Op.
#[derive(Clone)]
pub enum Finish {
    Wait(Wait),
    Fetch(Fetch),
}

/// Run `command` (as root, on the cluster host) until `judge` accepts its output, at most
/// `timeout`. A dry run asks once and reports what it found.
#[derive(Clone)]
pub struct Wait {
    /// What is waited for, for output and the checkpoint digest: `every node Ready: a, b`.
    pub what: String,
    pub command: String,
    pub timeout: Duration,
    pub interval: Duration,
    /// `Ok` when the condition holds; `Err(what is missing)` otherwise.
    pub judge: Judge,
    /// A command for the cluster host that shows why, named in the failure.
    pub hint: String,
}

/// Read `path` from the cluster host (as root) and hand it to `write`.
#[derive(Clone)]
pub struct Fetch {
    pub what: String,
    pub path: String,
    /// The local file `write` produces; a checkpoint is trusted only while it exists.
    pub dest: PathBuf,
    /// Given the fetched bytes and whether to apply: `Ok(Some(change))` when `dest` was (or,
    /// in a dry run, would be) changed, `Ok(None)` when it is already right.
    pub write: Writer,
}

impl Finish {
    /// What goes into the stage's checkpoint digest besides its Ops.
    pub fn key(&self) -> String {
        match self {
            Finish::Wait(w) => format!("wait {} by `{}`", w.what, w.command),
            Finish::Fetch(f) => format!("fetch {} to {}", f.path, f.dest.display()),
        }
    }
}
