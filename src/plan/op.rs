//! The Ops: the few typed things a stage may ask of a host.
//!
//! Each Op says *what* should be true, never how to get there; the converge executor
//! knows how to probe and apply every one of them. Add an Op only when a stage cannot be
//! said with these.

use serde::{Deserialize, Serialize};

/// One piece of desired state on a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A whole file with exactly this content, mode and owner (written atomically).
    File {
        path: String,
        content: String,
        mode: u32,
        owner: String,
        /// The content holds a secret (a join token): the probe compares it by sha256
        /// only, so it never travels back from the host, and diffs never show it.
        #[serde(default, skip_serializing_if = "is_false")]
        secret: bool,
    },
    /// Keys deep-merged into a JSON object file: objects merge key by key, anything else
    /// (strings, numbers, arrays) is replaced. The admin's other keys stay. A missing file
    /// starts as `{}`.
    JsonMerge {
        path: String,
        merge: serde_json::Value,
        /// Dotted paths of arrays merged as sets instead of replaced: the file's entries
        /// stay, ours are added; a `name=value` entry of ours replaces the file's entry
        /// with the same `name=` (so `native.cgroupdriver=systemd` replaces
        /// `native.cgroupdriver=cgroupfs`). Entries are never removed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sets: Vec<String>,
    },
    /// A managed block between `# BEGIN gpuctl <marker>` and `# END gpuctl <marker>`
    /// lines; the rest of the file is the admin's and stays as it is. A file without the
    /// block gets it appended.
    Block {
        path: String,
        marker: String,
        content: String,
    },
    /// Lines matching a regular expression (and not already comments) are commented out
    /// or removed. A missing file is in sync: there is nothing to change.
    Line {
        path: String,
        matching: String,
        state: LineState,
    },
    /// A kernel parameter, persisted in `/etc/sysctl.d/90-gpuctl.conf` (the contract) and
    /// applied live with `sysctl -w` where the host allows it.
    Sysctl { key: String, value: String },
    /// A kernel module, persisted in `/etc/modules-load.d/gpuctl.conf` (the contract) and
    /// loaded with `modprobe` where the host allows it.
    Module { name: String },
    /// A service's state; restarted when a file it watches changed in the same stage.
    Service {
        name: String,
        enabled: bool,
        running: bool,
        restart_on: Vec<String>,
    },
    /// A shell command run as root, skipped when `guard` (a shell test) succeeds. The guard
    /// must succeed after the command ran, or the Op failed.
    Command {
        run: String,
        guard: String,
        /// How `gpuctl reset` takes it back; without it reset leaves the command's effect
        /// and says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Undo>,
        /// Files written by the same stage that make the command run again when they
        /// changed, even though its guard holds (`kubectl apply -f` of a manifest the stage
        /// just rewrote), as a service restarts on the files it watches.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rerun_on: Vec<String>,
    },
    /// A local file (an artifact of the bundle) put on the host at `dest`, by content:
    /// in sync when the host's file has this sha256 (and mode). Sent through the
    /// transport's resumable, verified put.
    Upload {
        src: String,
        dest: String,
        sha256: String,
        mode: u32,
    },
    /// Something the host must already have for the stage to make sense (a command an
    /// earlier stage installs). `check` is a shell test probed with the stage; when it
    /// fails, the stage fails with `message` before anything is written.
    Require { check: String, message: String },
}

/// The opposite of a [`Op::Command`]: `run` when `guard` (a shell test) fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub run: String,
    pub guard: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a [`Op::Line`] does to the lines it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineState {
    /// `# ` is put in front of the line, so the admin can still read what it was.
    Commented,
    /// The line is deleted.
    Absent,
}

impl Op {
    /// A short description for tables and logs: `file /etc/hosts`, `sysctl vm.x`.
    pub fn describe(&self) -> String {
        match self {
            Op::File { path, .. } => format!("file {path}"),
            Op::JsonMerge { path, .. } => format!("json {path}"),
            Op::Block { path, marker, .. } => format!("block {marker} in {path}"),
            Op::Line { path, matching, .. } => format!("lines /{matching}/ in {path}"),
            Op::Sysctl { key, value } => format!("sysctl {key}={value}"),
            Op::Module { name } => format!("module {name}"),
            Op::Service { name, .. } => format!("service {name}"),
            Op::Command { run, .. } => format!("command `{}`", first_line(run)),
            Op::Upload { dest, .. } => format!("upload {dest}"),
            Op::Require { check, .. } => format!("require `{}`", first_line(check)),
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
