//! From what the probe found to what must be done: for each step, in sync or not, the
//! diff or action that explains it, and the action itself. Pure, so every case is a unit
//! test; the executor (`mod.rs`) only carries the actions out.

use std::collections::BTreeSet;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::edit::{self, EditError};
use super::probe::{Now, normalise};
use super::step::{Edit, Step};
use crate::transport::shell::quote;

/// What one step found and did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub what: String,
    pub change: Change,
    /// Something the admin should know that did not fail the stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Change {
    InSync,
    /// Out of sync; the detail is a unified diff for files, the merged keys for JSON, or
    /// the action for the rest (`enable, start`).
    Changed(String),
    /// A live kernel setting differs on a container, which (almost always) refuses to
    /// change it: the machine underneath owns it. Tried in a real run unless the probe saw
    /// that it cannot be taken (a read-only `/proc/sys`, no modules for the kernel); a
    /// warning, not a change, unless the host accepts it.
    Refused(String),
}

/// The warning on a live kernel setting a container does not let us change.
pub const CONTAINER_KERNEL: &str = "the host is a container, whose kernel belongs to the \
    machine underneath: the persisted setting is written, the live one is up to that machine";

/// What the executor does for a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Write this content: inside the apply script when it fits, else through the
    /// transport's atomic, verified put.
    Put {
        path: String,
        content: Vec<u8>,
        mode: Option<u32>,
        owner: Option<String>,
        /// The content is a secret: it never travels inside a script, whose text is in
        /// the run log and, while it runs, in the host's process list; the put sends it on
        /// stdin.
        secret: bool,
    },
    /// Put the local file `src` at `dest` through the transport's resumable, verified put;
    /// the host must end up with `sha256`.
    Upload {
        src: String,
        dest: String,
        sha256: String,
        mode: u32,
    },
    /// Run this snippet in the stage's apply script. A failure of a `fatal` snippet fails
    /// the stage; otherwise it becomes a warning.
    Run {
        snippet: String,
        fatal: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub report: StepReport,
    pub action: Action,
}

/// Decides every step. `container`: the host is a container, where live kernel settings
/// belong to the machine underneath and failing to set them is only a warning.
pub fn decide(steps: &[Step], now: &[Now], container: bool) -> Result<Vec<Decision>, EditError> {
    // Requirements first: when one is not met, nothing of the stage is changed, and every
    // unmet one is told at once.
    let unmet: Vec<&str> = steps
        .iter()
        .zip(now)
        .filter_map(|(step, now)| match (step, now) {
            (Step::Require { message, .. }, Now::Command { done: false }) => Some(message.as_str()),
            _ => None,
        })
        .collect();
    if !unmet.is_empty() {
        return Err(EditError::Unmet {
            message: unmet.join("\n"),
        });
    }
    let mut out = Vec::with_capacity(steps.len());
    let mut changed_paths = BTreeSet::new();
    // Files first: services restart, and commands run again, when a file they watch
    // changed, wherever it stands.
    let mut decided: Vec<Option<Decision>> = vec![None; steps.len()];
    for (i, (step, now)) in steps.iter().zip(now).enumerate() {
        let d = match step {
            Step::Content { .. } => content(step, now)?,
            Step::Upload { .. } => upload(step, now)?,
            _ => continue,
        };
        match &d.action {
            Action::Put { path, .. } | Action::Upload { dest: path, .. } => {
                changed_paths.insert(path.clone());
            }
            _ => {}
        }
        decided[i] = Some(d);
    }
    for (i, (step, now)) in steps.iter().zip(now).enumerate() {
        let d = match decided[i].take() {
            Some(d) => d,
            None => live(step, now, container, &changed_paths),
        };
        out.push(d);
    }
    Ok(out)
}

fn in_sync(what: String) -> Decision {
    Decision {
        report: StepReport {
            what,
            change: Change::InSync,
            warning: None,
        },
        action: Action::Nothing,
    }
}

/// A whole file holding a secret: compared by sha256, and its diff never shows content.
fn secret_file(step: &Step, now: &Now) -> Option<Decision> {
    let Step::Content {
        path,
        edit: Edit::Secret(content),
        mode,
        owner,
    } = step
    else {
        return None;
    };
    let what = step.describe();
    let want = hex::encode(Sha256::digest(content.as_bytes()));
    let mut detail = match now {
        Now::Missing => "create it (it holds a secret: content not shown)\n".to_string(),
        Now::SecretFile { sha256, .. } if *sha256 != want => {
            "replace its content (it holds a secret: content not shown)\n".to_string()
        }
        Now::SecretFile { .. } => String::new(),
        // A directory or a huge file: left alone, as any whole file would be.
        _ => return None,
    };
    if let Now::SecretFile {
        mode: have_mode,
        owner: have_owner,
        ..
    } = now
    {
        if let Some(m) = mode
            && m != have_mode
        {
            detail.push_str(&format!("mode {have_mode:o} -> {m:o}\n"));
        }
        if let Some(o) = owner
            && o != have_owner
        {
            detail.push_str(&format!("owner {have_owner} -> {o}\n"));
        }
    }
    if detail.is_empty() {
        return Some(in_sync(what));
    }
    Some(Decision {
        report: StepReport {
            what,
            change: Change::Changed(detail),
            warning: None,
        },
        action: Action::Put {
            path: path.clone(),
            content: content.clone().into_bytes(),
            mode: *mode,
            owner: owner.clone(),
            secret: true,
        },
    })
}

fn content(step: &Step, now: &Now) -> Result<Decision, EditError> {
    if let Some(d) = secret_file(step, now) {
        return Ok(d);
    }
    let Step::Content {
        path,
        edit: how,
        mode,
        owner,
    } = step
    else {
        return Ok(in_sync(step.describe()));
    };
    let what = step.describe();
    let (current, cur_mode, cur_owner) = match now {
        Now::Missing => (None, None, None),
        Now::File {
            mode,
            owner,
            content,
        } => (
            Some(String::from_utf8_lossy(content).into_owned()),
            Some(*mode),
            Some(owner.clone()),
        ),
        Now::NotAFile(why) => {
            return Ok(Decision {
                report: StepReport {
                    what,
                    change: Change::InSync,
                    warning: Some(format!("{path} left alone: {why}")),
                },
                action: Action::Nothing,
            });
        }
        _ => return Ok(in_sync(what)),
    };
    // A missing file that line edits or undo edits would leave empty stays missing.
    if current.is_none()
        && matches!(
            how,
            Edit::Lines { .. } | Edit::NoBlock { .. } | Edit::Unmerge { .. }
        )
    {
        return Ok(in_sync(what));
    }
    let wanted = edit::desired(path, current.as_deref(), how)?;
    let content_ok = current.as_deref() == Some(wanted.as_str());
    // An undo that leaves nothing of the file removes it.
    if !content_ok && super::undo::is_empty(how, &wanted) {
        return Ok(Decision {
            report: StepReport {
                what,
                change: Change::Changed(format!(
                    "remove the file (nothing else in it)\n{}",
                    edit::unified_diff(path, current.as_deref(), "")
                )),
                warning: None,
            },
            action: Action::Run {
                snippet: format!("rm -f {}", quote(path)),
                fatal: true,
            },
        });
    }
    let mode_ok = mode.is_none() || cur_mode == *mode;
    let owner_ok = owner.is_none() || cur_owner == *owner;
    if content_ok && mode_ok && owner_ok {
        return Ok(in_sync(what));
    }
    let mut detail = match how {
        Edit::Json { .. } if !content_ok => format!(
            "keys merged: {}\n{}",
            edit::changed_keys(current.as_deref(), &wanted).join(", "),
            edit::unified_diff(path, current.as_deref(), &wanted)
        ),
        Edit::Unmerge { .. } if !content_ok => format!(
            "keys taken out: {}\n{}",
            edit::changed_keys(Some(&wanted), current.as_deref().unwrap_or("{}")).join(", "),
            edit::unified_diff(path, current.as_deref(), &wanted)
        ),
        _ if !content_ok => edit::unified_diff(path, current.as_deref(), &wanted),
        _ => String::new(),
    };
    if !mode_ok && let (Some(want), Some(have)) = (mode, cur_mode) {
        detail.push_str(&format!("mode {have:o} -> {want:o}\n"));
    }
    if !owner_ok && let (Some(want), Some(have)) = (owner, &cur_owner) {
        detail.push_str(&format!("owner {have} -> {want}\n"));
    }
    Ok(Decision {
        report: StepReport {
            what,
            change: Change::Changed(detail),
            warning: None,
        },
        action: Action::Put {
            path: path.clone(),
            content: wanted.into_bytes(),
            mode: *mode,
            owner: owner.clone(),
            secret: false,
        },
    })
}

fn upload(step: &Step, now: &Now) -> Result<Decision, EditError> {
    let Step::Upload {
        src,
        dest,
        sha256,
        mode,
    } = step
    else {
        return Ok(in_sync(step.describe()));
    };
    let what = step.describe();
    let short = sha256.get(..12).unwrap_or(sha256);
    let send = |detail: String| Decision {
        report: StepReport {
            what: what.clone(),
            change: Change::Changed(detail),
            warning: None,
        },
        action: Action::Upload {
            src: src.clone(),
            dest: dest.clone(),
            sha256: sha256.clone(),
            mode: *mode,
        },
    };
    match now {
        Now::Missing => Ok(send(format!("upload (sha256 {short}…)"))),
        Now::NotAFile(why) => Err(EditError::NotAFile {
            path: dest.clone(),
            why: why.clone(),
        }),
        Now::Hash {
            sha256: have,
            mode: have_mode,
        } => {
            if have != sha256 {
                let had = have.get(..12).unwrap_or(have);
                Ok(send(format!("replace (sha256 {had}… -> {short}…)")))
            } else if have_mode != mode {
                Ok(Decision {
                    report: StepReport {
                        what,
                        change: Change::Changed(format!("mode {have_mode:o} -> {mode:o}")),
                        warning: None,
                    },
                    action: Action::Run {
                        snippet: format!("chmod {mode:o} {}", quote(dest)),
                        fatal: true,
                    },
                })
            } else {
                Ok(in_sync(what))
            }
        }
        _ => Ok(in_sync(what)),
    }
}

fn live(step: &Step, now: &Now, container: bool, changed: &BTreeSet<String>) -> Decision {
    let what = step.describe();
    let changed_to = |detail: String, snippet: String, fatal: bool| Decision {
        report: StepReport {
            what: what.clone(),
            change: Change::Changed(detail),
            warning: None,
        },
        action: Action::Run { snippet, fatal },
    };
    // Live kernel settings of a container belong to the machine underneath: tried, and a
    // refusal is a warning; where the probe saw that the container cannot take them at all
    // (a read-only /proc/sys, no modules for its kernel), not even tried, so a re-run does
    // not pay for an attempt that cannot succeed.
    let kernel = |detail: String, snippet: String, settable: bool| {
        if container {
            Decision {
                report: StepReport {
                    what: what.clone(),
                    change: Change::Refused(detail),
                    warning: Some(CONTAINER_KERNEL.to_string()),
                },
                action: if settable {
                    Action::Run {
                        snippet,
                        fatal: false,
                    }
                } else {
                    Action::Nothing
                },
            }
        } else {
            changed_to(detail, snippet, true)
        }
    };
    match (step, now) {
        (
            Step::LiveSysctl { key, value },
            Now::Sysctl {
                value: current,
                writable,
            },
        ) => {
            let want = normalise(value);
            if current.as_deref() == Some(want.as_str()) {
                return in_sync(what);
            }
            let from = current.as_deref().unwrap_or("(no such key yet)");
            kernel(
                format!("live value {from} -> {want}"),
                format!("sysctl -w {}", quote(&format!("{key}={value}"))),
                *writable,
            )
        }
        (Step::LiveModule { name }, Now::Module { loaded, loadable }) => {
            if *loaded {
                return in_sync(what);
            }
            kernel(
                "load it".into(),
                format!("modprobe {}", quote(name)),
                *loadable,
            )
        }
        (
            Step::Command {
                run,
                guard,
                rerun_on,
                ..
            },
            Now::Command { done },
        ) => {
            let watched: Vec<&str> = rerun_on
                .iter()
                .filter(|p| changed.contains(*p))
                .map(String::as_str)
                .collect();
            if *done && watched.is_empty() {
                return in_sync(what);
            }
            let why = if *done {
                format!("run it again ({} changed)", watched.join(", "))
            } else {
                format!("run it (guard `{guard}` is false)")
            };
            changed_to(
                why,
                format!(
                    "sh -c {} </dev/null && {{ sh -c {} >/dev/null 2>&1 </dev/null || {{ echo 'the command ran but its guard is still false' >&2; false; }}; }}",
                    quote(run),
                    quote(guard)
                ),
                true,
            )
        }
        (
            Step::Service {
                name,
                enabled,
                running,
                restart_on,
            },
            Now::Service {
                enabled: is_enabled,
                active,
            },
        ) => {
            let q = quote(name);
            let mut words = Vec::new();
            let mut cmds = Vec::new();
            let on = matches!(
                is_enabled.as_str(),
                "enabled" | "enabled-runtime" | "static" | "alias"
            );
            if *enabled && !on {
                words.push("enable".to_string());
                cmds.push(format!("systemctl enable {q}"));
            } else if !*enabled && is_enabled == "enabled" {
                words.push("disable".to_string());
                cmds.push(format!("systemctl disable {q}"));
            }
            let is_active = active == "active";
            let watched: Vec<&String> =
                restart_on.iter().filter(|p| changed.contains(*p)).collect();
            if *running && !is_active {
                words.push("start".to_string());
                cmds.push(format!("systemctl start {q}"));
            } else if *running && !watched.is_empty() {
                let list: Vec<&str> = watched.iter().map(|s| s.as_str()).collect();
                words.push(format!("restart ({} changed)", list.join(", ")));
                cmds.push(format!("systemctl restart {q}"));
            } else if !*running && is_active {
                words.push("stop".to_string());
                cmds.push(format!("systemctl stop {q}"));
            }
            if cmds.is_empty() {
                return in_sync(what);
            }
            // A unit file gpuctl just wrote is read by systemd only after a reload.
            if watched.iter().any(|p| is_unit_file(p)) {
                words.insert(0, "daemon-reload".to_string());
                cmds.insert(0, "systemctl daemon-reload".to_string());
            }
            changed_to(words.join(", "), cmds.join(" && "), true)
        }
        _ => in_sync(what),
    }
}

/// A systemd unit file (or a drop-in of one) that `systemctl daemon-reload` must re-read.
fn is_unit_file(path: &str) -> bool {
    ["/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/"]
        .iter()
        .any(|dir| path.starts_with(dir))
        && [".service", ".socket", ".timer", ".conf"]
            .iter()
            .any(|ext| path.ends_with(ext))
}

/// The apply script: every snippet in order, each reporting `@<index> ok` or
/// `@<index> fail <base64 message>`; the first fatal failure stops the script.
pub fn apply_script(runs: &[(usize, &str, bool)]) -> String {
    let mut s = String::from("LC_ALL=C; export LC_ALL\nb64() { base64 | tr -d '\\n'; }\n");
    for (i, snippet, fatal) in runs {
        s.push_str(&format!(
            "if out=$( {{ {snippet}; }} 2>&1 ); then echo '@{i} ok'; else echo \"@{i} fail $(printf '%s' \"$out\" | tail -c 2000 | b64)\"; {stop}fi\n",
            stop = if *fatal { "echo @end; exit 1; " } else { "" }
        ));
    }
    s.push_str("echo @end\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "decide_tests.rs"]
mod tests;
