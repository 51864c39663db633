//! Undo: the steps that take back what a stage's Ops did, for `gpuctl reset`.
//!
//! Reset plans exactly as install does — the same stages, the same Ops — and then turns
//! each step into its opposite, so what reset removes can never drift from what install
//! writes:
//!
//! | install step | undo |
//! |---|---|
//! | a whole file, an upload | the file removed |
//! | a managed block (hosts, sysctl.d, modules-load.d) | the block removed; a file left empty is removed |
//! | JSON keys merged | the keys whose value is still ours removed, our entries taken out of set arrays; a file left `{}` is removed |
//! | a service enabled and running | stopped and disabled |
//! | a command that names its undo (a symlink) | the undo command, unless its guard holds |
//!
//! What cannot be taken back safely is left and named in a note: lines commented out (the
//! admin's own commented lines look the same), live kernel settings (they go at the next
//! reboot), commands (directories may hold data; packages may be wanted by others).

use serde_json::Value;

use super::edit::EditError;
use super::step::{self, Edit, Step};
use crate::plan::Op;
use crate::transport::shell::quote;

/// The undo steps of a stage's `ops`, in reverse order, and notes on what stays.
pub fn lower(stage: &str, ops: &[Op]) -> (Vec<Step>, Vec<String>) {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let mut kernel = false;
    let remove = |path: &str| {
        let q = quote(path);
        Step::Command {
            run: format!("rm -f {q}"),
            guard: format!("test ! -e {q}"),
            undo: None,
            rerun_on: Vec::new(),
        }
    };
    for s in step::lower(stage, ops).into_iter().rev() {
        match s {
            Step::Content {
                path,
                edit: Edit::Whole(_) | Edit::Secret(_),
                ..
            }
            | Step::Upload { dest: path, .. } => steps.push(remove(&path)),
            Step::Content {
                path,
                edit: Edit::Block { marker, .. },
                ..
            } => steps.push(Step::Content {
                path,
                edit: Edit::NoBlock { marker },
                mode: None,
                owner: None,
            }),
            Step::Content {
                path,
                edit: Edit::Json { merge, sets },
                ..
            } => steps.push(Step::Content {
                path,
                edit: Edit::Unmerge { merge, sets },
                mode: None,
                owner: None,
            }),
            Step::Content {
                path,
                edit: Edit::Lines { matching, .. },
                ..
            } => notes.push(format!(
                "lines /{matching}/ in {path} stay as install left them; edit them back by hand"
            )),
            Step::Content { .. } => {}
            Step::LiveSysctl { .. } | Step::LiveModule { .. } => kernel = true,
            Step::Service { name, .. } => steps.push(Step::Service {
                name,
                enabled: false,
                running: false,
                restart_on: Vec::new(),
            }),
            Step::Command {
                undo: Some(undo), ..
            } => steps.push(Step::Command {
                run: undo.run,
                guard: undo.guard,
                undo: None,
                rerun_on: Vec::new(),
            }),
            Step::Command { run, .. } => notes.push(format!(
                "not undone: `{}`",
                run.lines().next().unwrap_or_default()
            )),
            Step::Require { .. } => {}
        }
    }
    notes.reverse();
    if kernel {
        notes.push("live kernel settings and loaded modules stay until the next reboot".into());
    }
    (steps, notes)
}

/// `current` without the block of `marker` (unchanged when it has none).
pub fn without_block(path: &str, current: &str, marker: &str) -> Result<String, EditError> {
    let lines: Vec<&str> = current.split_inclusive('\n').collect();
    let Some((start, stop)) = super::edit::find_block(path, &lines, marker)? else {
        return Ok(current.to_string());
    };
    let mut out: String = lines[..start].concat();
    out.push_str(&lines[stop + 1..].concat());
    Ok(out)
}

/// `current` JSON with our keys taken out: a key whose value is still what we merged is
/// removed (objects recursively, dropped when left empty), entries of ours are removed
/// from set arrays (dropped when left empty); a value the admin changed since stays.
/// Unchanged JSON keeps its text byte for byte.
pub fn unmerge(
    path: &str,
    current: &str,
    merge: &Value,
    sets: &[String],
) -> Result<String, EditError> {
    if current.trim().is_empty() {
        return Ok(current.to_string());
    }
    let mut value: Value = serde_json::from_str(current).map_err(|e| EditError::BadJson {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(EditError::NotAnObject {
            path: path.to_string(),
        });
    }
    let before = value.clone();
    take_out(&mut value, merge, sets, "");
    if value == before {
        return Ok(current.to_string());
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

fn take_out(file: &mut Value, ours: &Value, sets: &[String], at: &str) {
    let (Value::Object(dst), Value::Object(src)) = (file, ours) else {
        return;
    };
    for (k, v) in src {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        let drop = match dst.get_mut(k) {
            None => false,
            Some(existing) if existing.is_object() && v.is_object() => {
                take_out(existing, v, sets, &path);
                existing.as_object().is_some_and(|o| o.is_empty())
            }
            Some(Value::Array(items)) if sets.contains(&path) => {
                let mine = v.as_array().map_or(&[][..], Vec::as_slice);
                items.retain(|item| !mine.contains(item));
                items.is_empty()
            }
            Some(existing) => existing == v,
        };
        if drop {
            dst.remove(k);
        }
    }
}

/// Whether an undo edit left nothing worth keeping, so the file itself goes.
pub fn is_empty(edit: &Edit, content: &str) -> bool {
    match edit {
        Edit::NoBlock { .. } => content.trim().is_empty(),
        Edit::Unmerge { .. } => serde_json::from_str::<Value>(content)
            .ok()
            .and_then(|v| v.as_object().map(serde_json::Map::is_empty))
            .unwrap_or(false),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_go_and_a_file_left_empty_is_empty() {
        let hosts =
            "127.0.0.1 localhost\n# BEGIN gpuctl hosts\n10.0.0.1 a\n# END gpuctl hosts\nmine\n";
        assert_eq!(
            without_block("/etc/hosts", hosts, "hosts").unwrap(),
            "127.0.0.1 localhost\nmine\n"
        );
        assert_eq!(without_block("/x", "a\n", "hosts").unwrap(), "a\n");
        let only = "# BEGIN gpuctl os\noverlay\n# END gpuctl os\n";
        let out = without_block("/m", only, "os").unwrap();
        assert!(is_empty(
            &Edit::NoBlock {
                marker: "os".into()
            },
            &out
        ));
        let err = without_block("/m", "# BEGIN gpuctl os\nx\n", "os").unwrap_err();
        assert!(err.to_string().contains("# END gpuctl os"), "{err}");
    }

    #[test]
    fn unmerge_takes_out_only_what_is_still_ours() {
        let merge = json!({
            "exec-opts": ["native.cgroupdriver=systemd"],
            "log-driver": "json-file",
            "log-opts": {"max-size": "100m", "max-file": "3"},
            "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
            "default-runtime": "nvidia",
        });
        let sets = vec!["exec-opts".to_string()];
        let file = json!({
            "data-root": "/data/docker",
            "exec-opts": ["native.cgroupdriver=systemd", "foo=bar"],
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []},
                         "runc": {}},
            "default-runtime": "runc",
        });
        let out = unmerge("/d.json", &file.to_string(), &merge, &sets).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "data-root": "/data/docker",
                "exec-opts": ["foo=bar"],
                "log-opts": {"max-size": "10m"},
                "runtimes": {"runc": {}},
                "default-runtime": "runc",
            })
        );
        // All ours: nothing left, so the file goes.
        let ours = unmerge("/d.json", &merge.to_string(), &merge, &sets).unwrap();
        assert!(is_empty(
            &Edit::Unmerge {
                merge: merge.clone(),
                sets: sets.clone()
            },
            &ours
        ));
        // Nothing of ours: the text stays byte for byte.
        let admin = "{ \"debug\": true }";
        assert_eq!(unmerge("/d.json", admin, &merge, &sets).unwrap(), admin);
        assert!(unmerge("/d.json", "{ nope", &merge, &sets).is_err());
    }

    #[test]
    fn every_op_has_its_undo_or_a_note() {
        let ops = vec![
            Op::Line {
                path: "/etc/fstab".into(),
                matching: "swap".into(),
                state: crate::plan::LineState::Commented,
            },
            Op::Module {
                name: "overlay".into(),
            },
            Op::Block {
                path: "/etc/hosts".into(),
                marker: "hosts".into(),
                content: "x\n".into(),
            },
            Op::Command {
                run: "mkdir -p /data".into(),
                guard: "test -d /data".into(),
                undo: None,
                rerun_on: Vec::new(),
            },
            Op::Command {
                run: "ln -sfn k3s /usr/local/bin/kubectl".into(),
                guard: "test -L /usr/local/bin/kubectl".into(),
                undo: Some(crate::plan::Undo {
                    run: "rm -f /usr/local/bin/kubectl".into(),
                    guard: "test ! -L /usr/local/bin/kubectl".into(),
                }),
                rerun_on: Vec::new(),
            },
            Op::Upload {
                src: "/b/x.deb".into(),
                dest: "/var/cache/gpuctl/debs/x.deb".into(),
                sha256: "0".repeat(64),
                mode: 0o644,
            },
            Op::Require {
                check: "true".into(),
                message: "m".into(),
            },
            Op::Service {
                name: "docker".into(),
                enabled: true,
                running: true,
                restart_on: vec!["/etc/docker/daemon.json".into()],
            },
        ];
        let (steps, notes) = lower("os", &ops);
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        assert_eq!(
            described,
            [
                "service docker",
                "command `rm -f /var/cache/gpuctl/debs/x.deb`",
                "command `rm -f /usr/local/bin/kubectl`",
                "block hosts in /etc/hosts",
                "block os in /etc/modules-load.d/gpuctl.conf",
            ]
        );
        assert!(matches!(
            &steps[0],
            Step::Service {
                enabled: false,
                running: false,
                ..
            }
        ));
        assert_eq!(
            notes,
            [
                "lines /swap/ in /etc/fstab stay as install left them; edit them back by hand",
                "not undone: `mkdir -p /data`",
                "live kernel settings and loaded modules stay until the next reboot",
            ]
        );
    }
}
