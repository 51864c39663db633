//! Lowering: a stage's Ops become [`Step`]s, the units the executor probes and applies.
//!
//! Most Ops are one step each. `Sysctl` and `Module` are two things at once — a line in a
//! persisted file (the contract: it is what the host has after a reboot) and a live kernel
//! setting — so the Sysctls of a stage become one managed block in
//! `/etc/sysctl.d/90-gpuctl.conf` plus one live step per key, and Modules likewise in
//! `/etc/modules-load.d/gpuctl.conf`. The block's marker is the stage's name, so two
//! stages never fight over the same lines.

use crate::plan::{LineState, Op, Undo};

pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-gpuctl.conf";
pub const MODULES_FILE: &str = "/etc/modules-load.d/gpuctl.conf";

/// One probe-and-apply unit.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A file whose content gpuctl manages in whole or in part.
    Content {
        path: String,
        edit: Edit,
        /// For whole files: the mode and owner to enforce.
        mode: Option<u32>,
        owner: Option<String>,
    },
    LiveSysctl {
        key: String,
        value: String,
    },
    LiveModule {
        name: String,
    },
    Service {
        name: String,
        enabled: bool,
        running: bool,
        restart_on: Vec<String>,
    },
    Command {
        run: String,
        guard: String,
        /// How reset takes it back (see `Op::Command`).
        undo: Option<Undo>,
        /// Files of the stage whose change makes it run again (see `Op::Command`).
        rerun_on: Vec<String>,
    },
    /// A local file put on the host by content (sha256).
    Upload {
        src: String,
        dest: String,
        sha256: String,
        mode: u32,
    },
    /// A shell test that must hold, or the stage fails with `message` before any change.
    Require {
        check: String,
        message: String,
    },
}

/// How a file's new content follows from its current one.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    Whole(String),
    /// A whole file holding a secret: probed by sha256, never read back or diffed.
    Secret(String),
    Block {
        marker: String,
        content: String,
    },
    Json {
        merge: serde_json::Value,
        /// Dotted paths of arrays merged as sets (see `Op::JsonMerge`).
        sets: Vec<String>,
    },
    Lines {
        matching: String,
        state: LineState,
    },
    /// The block of `marker` removed (reset).
    NoBlock {
        marker: String,
    },
    /// Merged JSON keys taken out again (reset; see `undo::unmerge`).
    Unmerge {
        merge: serde_json::Value,
        sets: Vec<String>,
    },
}

impl Step {
    /// How the step is named in reports.
    pub fn describe(&self) -> String {
        match self {
            Step::Content { path, edit, .. } => match edit {
                Edit::Whole(_) | Edit::Secret(_) => format!("file {path}"),
                Edit::Block { marker, .. } => format!("block {marker} in {path}"),
                Edit::Json { .. } => format!("json {path}"),
                Edit::Lines { matching, .. } => format!("lines /{matching}/ in {path}"),
                Edit::NoBlock { marker } => format!("block {marker} in {path}"),
                Edit::Unmerge { .. } => format!("json {path}"),
            },
            Step::LiveSysctl { key, value } => format!("sysctl {key}={value} (live)"),
            Step::LiveModule { name } => format!("module {name} (loaded)"),
            Step::Service { name, .. } => format!("service {name}"),
            Step::Command { run, .. } => {
                format!("command `{}`", run.lines().next().unwrap_or_default())
            }
            Step::Upload { dest, .. } => format!("upload {dest}"),
            Step::Require { check, .. } => {
                format!("require `{}`", check.lines().next().unwrap_or_default())
            }
        }
    }
}

/// The steps for `ops` of the stage `stage`, in the order the Ops were given (the
/// persisted sysctl and module blocks stand where the first Sysctl/Module was).
pub fn lower(stage: &str, ops: &[Op]) -> Vec<Step> {
    let sysctl_lines: String = ops
        .iter()
        .filter_map(|op| match op {
            Op::Sysctl { key, value } => Some(format!("{key} = {value}\n")),
            _ => None,
        })
        .collect();
    let module_lines: String = ops
        .iter()
        .filter_map(|op| match op {
            Op::Module { name } => Some(format!("{name}\n")),
            _ => None,
        })
        .collect();
    let block = |path: &str, content: &str| Step::Content {
        path: path.to_string(),
        edit: Edit::Block {
            marker: stage.to_string(),
            content: content.to_string(),
        },
        mode: None,
        owner: None,
    };
    let mut steps = Vec::new();
    let (mut sysctl_done, mut modules_done) = (false, false);
    for op in ops {
        match op {
            Op::File {
                path,
                content,
                mode,
                owner,
                secret,
            } => steps.push(Step::Content {
                path: path.clone(),
                edit: if *secret {
                    Edit::Secret(content.clone())
                } else {
                    Edit::Whole(content.clone())
                },
                mode: Some(*mode),
                owner: Some(owner.clone()),
            }),
            Op::JsonMerge { path, merge, sets } => steps.push(Step::Content {
                path: path.clone(),
                edit: Edit::Json {
                    merge: merge.clone(),
                    sets: sets.clone(),
                },
                mode: None,
                owner: None,
            }),
            Op::Block {
                path,
                marker,
                content,
            } => steps.push(Step::Content {
                path: path.clone(),
                edit: Edit::Block {
                    marker: marker.clone(),
                    content: content.clone(),
                },
                mode: None,
                owner: None,
            }),
            Op::Line {
                path,
                matching,
                state,
            } => steps.push(Step::Content {
                path: path.clone(),
                edit: Edit::Lines {
                    matching: matching.clone(),
                    state: *state,
                },
                mode: None,
                owner: None,
            }),
            Op::Sysctl { key, value } => {
                if !sysctl_done {
                    steps.push(block(SYSCTL_FILE, &sysctl_lines));
                    sysctl_done = true;
                }
                steps.push(Step::LiveSysctl {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
            Op::Module { name } => {
                if !modules_done {
                    steps.push(block(MODULES_FILE, &module_lines));
                    modules_done = true;
                }
                steps.push(Step::LiveModule { name: name.clone() });
            }
            Op::Service {
                name,
                enabled,
                running,
                restart_on,
            } => steps.push(Step::Service {
                name: name.clone(),
                enabled: *enabled,
                running: *running,
                restart_on: restart_on.clone(),
            }),
            Op::Command {
                run,
                guard,
                undo,
                rerun_on,
            } => steps.push(Step::Command {
                run: run.clone(),
                guard: guard.clone(),
                undo: undo.clone(),
                rerun_on: rerun_on.clone(),
            }),
            Op::Upload {
                src,
                dest,
                sha256,
                mode,
            } => steps.push(Step::Upload {
                src: src.clone(),
                dest: dest.clone(),
                sha256: sha256.clone(),
                mode: *mode,
            }),
            Op::Require { check, message } => steps.push(Step::Require {
                check: check.clone(),
                message: message.clone(),
            }),
        }
    }
    steps
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_and_modules_share_one_block_per_stage() {
        let ops = vec![
            Op::Module {
                name: "overlay".into(),
            },
            Op::Sysctl {
                key: "a.b".into(),
                value: "1".into(),
            },
            Op::Module {
                name: "br_netfilter".into(),
            },
            Op::Sysctl {
                key: "c.d".into(),
                value: "2".into(),
            },
        ];
        let steps = lower("os", &ops);
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        assert_eq!(
            described,
            [
                "block os in /etc/modules-load.d/gpuctl.conf",
                "module overlay (loaded)",
                "block os in /etc/sysctl.d/90-gpuctl.conf",
                "sysctl a.b=1 (live)",
                "module br_netfilter (loaded)",
                "sysctl c.d=2 (live)",
            ]
        );
        assert_eq!(
            steps[2],
            Step::Content {
                path: SYSCTL_FILE.into(),
                edit: Edit::Block {
                    marker: "os".into(),
                    content: "a.b = 1\nc.d = 2\n".into()
                },
                mode: None,
                owner: None
            }
        );
    }
}
