//! The pure half of converging a file: from its current content to the content it should
//! have (managed block, JSON merge, line edits), and the unified diff between the two.
//!
//! Kept free of I/O so every odd file an admin may have (no trailing newline, a block
//! with its END line deleted, JSON that is not an object) is a unit test.

use regex::Regex;
use serde_json::Value;

use super::step::Edit;
use crate::plan::LineState;

/// Why a file's new content cannot be worked out; the host's stage fails with it.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(
        "{path} has `{begin}` without a matching `{end}` line after it; \
         restore the END line (or delete the partial block) and run again"
    )]
    OpenBlock {
        path: String,
        begin: String,
        end: String,
    },
    #[error(
        "{path} is not valid JSON ({reason}); fix or move the file away, then run again \
         (gpuctl never overwrites a file it cannot read)"
    )]
    BadJson { path: String, reason: String },
    #[error("{path} holds JSON that is not an object; it must be `{{ ... }}` to merge keys into")]
    NotAnObject { path: String },
    #[error("the pattern /{pattern}/ is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// A `Require` Op's check failed on the host: the message says what is missing and
    /// how to get it.
    #[error("{message}")]
    Unmet { message: String },
    #[error("{path} cannot be uploaded: {why}; move it away and run again")]
    NotAFile { path: String, why: String },
}

/// The `# BEGIN gpuctl <marker>` / `# END gpuctl <marker>` lines.
pub fn markers(marker: &str) -> (String, String) {
    (
        format!("# BEGIN gpuctl {marker}"),
        format!("# END gpuctl {marker}"),
    )
}

/// The content `path` should have, given what it has now (`None`: it does not exist).
pub fn desired(path: &str, current: Option<&str>, edit: &Edit) -> Result<String, EditError> {
    match edit {
        Edit::Whole(content) | Edit::Secret(content) => Ok(content.clone()),
        Edit::Block { marker, content } => block(path, current.unwrap_or(""), marker, content),
        Edit::Json { merge, sets } => json(path, current, merge, sets),
        Edit::Lines { matching, state } => lines(current.unwrap_or(""), matching, *state),
        Edit::NoBlock { marker } => super::undo::without_block(path, current.unwrap_or(""), marker),
        Edit::Unmerge { merge, sets } => {
            super::undo::unmerge(path, current.unwrap_or(""), merge, sets)
        }
    }
}

fn block(path: &str, current: &str, marker: &str, content: &str) -> Result<String, EditError> {
    let (begin, end) = markers(marker);
    let mut body = content.to_string();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    let wanted = format!("{begin}\n{body}{end}\n");
    let lines: Vec<&str> = current.split_inclusive('\n').collect();
    let Some((start, stop)) = find_block(path, &lines, marker)? else {
        let mut out = current.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&wanted);
        return Ok(out);
    };
    let mut out: String = lines[..start].concat();
    out.push_str(&wanted);
    out.push_str(&lines[stop + 1..].concat());
    Ok(out)
}

/// The first and last line (the BEGIN and END markers) of the managed block of `marker`
/// in `lines`; `None` when there is none. A BEGIN without its END is an error: guessing
/// where the block ends could cut the admin's own lines.
pub fn find_block(
    path: &str,
    lines: &[&str],
    marker: &str,
) -> Result<Option<(usize, usize)>, EditError> {
    let (begin, end) = markers(marker);
    let Some(start) = lines.iter().position(|l| l.trim_end() == begin) else {
        return Ok(None);
    };
    let stop = lines[start..]
        .iter()
        .position(|l| l.trim_end() == end)
        .map(|i| start + i)
        .ok_or_else(|| EditError::OpenBlock {
            path: path.to_string(),
            begin: begin.clone(),
            end: end.clone(),
        })?;
    Ok(Some((start, stop)))
}

fn json(
    path: &str,
    current: Option<&str>,
    merge: &Value,
    sets: &[String],
) -> Result<String, EditError> {
    let mut value = match current.map(str::trim) {
        None | Some("") => Value::Object(serde_json::Map::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| EditError::BadJson {
            path: path.to_string(),
            reason: e.to_string(),
        })?,
    };
    if !value.is_object() {
        return Err(EditError::NotAnObject {
            path: path.to_string(),
        });
    }
    let before = value.clone();
    deep_merge(&mut value, merge, sets, "");
    // Unchanged JSON keeps the admin's formatting byte for byte.
    if value == before
        && let Some(text) = current
    {
        return Ok(text.to_string());
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// Objects merge key by key; arrays at the dotted paths in `sets` merge as sets (see
/// [`set_merge`]); any other value replaces what was there. `at` is the dotted path of
/// `into` (empty at the top).
pub fn deep_merge(into: &mut Value, from: &Value, sets: &[String], at: &str) {
    match (into, from) {
        (Value::Object(dst), Value::Object(src)) => {
            for (k, v) in src {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match dst.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v, sets, &path)
                    }
                    Some(Value::Array(existing)) if sets.contains(&path) && v.is_array() => {
                        set_merge(existing, v.as_array().map_or(&[][..], Vec::as_slice))
                    }
                    _ => {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// Merges `ours` into the admin's array `theirs` as a set: their entries stay in their
/// order; an entry of ours replaces their entry with the same identity in place, and the
/// rest of ours is appended. Identity: for a string `name=value` its `name`, otherwise
/// the whole value. So `native.cgroupdriver=systemd` replaces `native.cgroupdriver=cgroupfs`
/// while the admin's other `exec-opts` and `insecure-registries` stay.
pub fn set_merge(theirs: &mut Vec<Value>, ours: &[Value]) {
    fn identity(v: &Value) -> Value {
        match v.as_str().and_then(|s| s.split_once('=')) {
            Some((name, _)) => Value::String(format!("{name}=")),
            None => v.clone(),
        }
    }
    for item in ours {
        let id = identity(item);
        match theirs.iter().position(|t| identity(t) == id) {
            Some(i) => theirs[i] = item.clone(),
            None => theirs.push(item.clone()),
        }
    }
}

fn lines(current: &str, matching: &str, state: LineState) -> Result<String, EditError> {
    let re = Regex::new(matching).map_err(|e| EditError::BadPattern {
        pattern: matching.to_string(),
        reason: e.to_string(),
    })?;
    let mut out = String::with_capacity(current.len());
    for line in current.split_inclusive('\n') {
        let text = line.trim_end_matches('\n');
        let is_comment = text.trim_start().starts_with('#');
        if is_comment || !re.is_match(text) {
            out.push_str(line);
            continue;
        }
        match state {
            LineState::Commented => {
                out.push_str("# ");
                out.push_str(line);
            }
            LineState::Absent => {}
        }
    }
    Ok(out)
}

/// A unified diff from `old` to `new` labelled with `path`; empty when they are equal.
pub fn unified_diff(path: &str, old: Option<&str>, new: &str) -> String {
    let from = if old.is_some() {
        format!("{path} (now)")
    } else {
        "/dev/null".to_string()
    };
    similar::TextDiff::from_lines(old.unwrap_or(""), new)
        .unified_diff()
        .context_radius(2)
        .header(&from, &format!("{path} (wanted)"))
        .to_string()
}

/// The JSON keys whose values a merge changes, as dotted paths (`runtimes.nvidia.path`).
pub fn changed_keys(old: Option<&str>, new: &str) -> Vec<String> {
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
    let old = old.map_or(Value::Object(serde_json::Map::new()), parse);
    let new = parse(new);
    let mut out = Vec::new();
    walk_changes("", &old, &new, &mut out);
    out
}

fn walk_changes(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(prev) => walk_changes(&path, prev, v, out),
                    None => out.push(path),
                }
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blk(marker: &str, content: &str) -> Edit {
        Edit::Block {
            marker: marker.into(),
            content: content.into(),
        }
    }

    #[test]
    fn a_block_is_appended_then_replaced_in_place() {
        let hosts = "127.0.0.1 localhost\n::1 localhost";
        let once = desired("/etc/hosts", Some(hosts), &blk("hosts", "10.0.0.1 a\n")).unwrap();
        assert_eq!(
            once,
            "127.0.0.1 localhost\n::1 localhost\n# BEGIN gpuctl hosts\n10.0.0.1 a\n# END gpuctl hosts\n"
        );
        let admin_added = format!("{once}10.9.9.9 mine\n");
        let twice = desired(
            "/etc/hosts",
            Some(&admin_added),
            &blk("hosts", "10.0.0.2 b"),
        )
        .unwrap();
        assert_eq!(
            twice,
            "127.0.0.1 localhost\n::1 localhost\n# BEGIN gpuctl hosts\n10.0.0.2 b\n# END gpuctl hosts\n10.9.9.9 mine\n"
        );
        // Idempotent: the wanted content of the wanted content is itself.
        assert_eq!(
            desired("/etc/hosts", Some(&twice), &blk("hosts", "10.0.0.2 b")).unwrap(),
            twice
        );
        assert_eq!(
            desired("/x", None, &blk("m", "")).unwrap(),
            "# BEGIN gpuctl m\n# END gpuctl m\n"
        );
    }

    #[test]
    fn a_block_without_its_end_line_is_an_error_not_a_guess() {
        let err = desired(
            "/etc/hosts",
            Some("# BEGIN gpuctl hosts\n1.1.1.1 a\n"),
            &blk("hosts", "x"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("# END gpuctl hosts"), "{err}");
        assert!(err.contains("/etc/hosts"), "{err}");
    }

    #[test]
    fn json_merge_keeps_other_keys_and_formatting_when_unchanged() {
        let current = "{\"log-driver\": \"json-file\", \"runtimes\": {\"runc\": {}}}";
        let merge = json!({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "default-runtime": "nvidia"});
        let out = desired(
            "/etc/docker/daemon.json",
            Some(current),
            &Edit::Json {
                merge: merge.clone(),
                sets: vec![],
            },
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["log-driver"], "json-file");
        assert!(v["runtimes"]["runc"].is_object());
        assert_eq!(v["runtimes"]["nvidia"]["path"], "nvidia-container-runtime");
        assert_eq!(
            changed_keys(Some(current), &out),
            ["default-runtime", "runtimes.nvidia"]
        );
        // Merging again changes nothing, byte for byte.
        assert_eq!(
            desired(
                "/d",
                Some(&out),
                &Edit::Json {
                    merge: merge.clone(),
                    sets: vec![]
                }
            )
            .unwrap(),
            out
        );
        let odd = "{ \"default-runtime\":\"nvidia\",\"runtimes\":{\"nvidia\":{\"path\":\"nvidia-container-runtime\"}} }";
        let again = Edit::Json {
            merge,
            sets: vec![],
        };
        assert_eq!(desired("/d", Some(odd), &again).unwrap(), odd);
    }

    #[test]
    fn arrays_named_as_sets_keep_the_admins_entries() {
        let current = r#"{"exec-opts": ["native.cgroupdriver=cgroupfs", "foo=bar"],
            "insecure-registries": ["mine:5000"], "dns": ["1.1.1.1"]}"#;
        let edit = Edit::Json {
            merge: json!({
                "exec-opts": ["native.cgroupdriver=systemd"],
                "insecure-registries": ["registry.lab:5000"],
                "registry-mirrors": ["http://registry.lab:5000"],
                "dns": ["9.9.9.9"],
            }),
            sets: vec![
                "exec-opts".into(),
                "insecure-registries".into(),
                "registry-mirrors".into(),
            ],
        };
        let out = desired("/etc/docker/daemon.json", Some(current), &edit).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["exec-opts"],
            json!(["native.cgroupdriver=systemd", "foo=bar"])
        );
        assert_eq!(
            v["insecure-registries"],
            json!(["mine:5000", "registry.lab:5000"])
        );
        // A set key that was absent is simply ours; a key not named as a set is replaced.
        assert_eq!(v["registry-mirrors"], json!(["http://registry.lab:5000"]));
        assert_eq!(v["dns"], json!(["9.9.9.9"]));
        // Idempotent: merging again changes nothing, byte for byte.
        assert_eq!(desired("/d", Some(&out), &edit).unwrap(), out);
        // Nested paths are dotted.
        let mut nested = json!({"a": {"list": [1, 2]}});
        deep_merge(
            &mut nested,
            &json!({"a": {"list": [2, 3]}}),
            &["a.list".into()],
            "",
        );
        assert_eq!(nested, json!({"a": {"list": [1, 2, 3]}}));
    }

    #[test]
    fn corrupt_json_is_refused_with_the_file_named() {
        let err = desired(
            "/etc/docker/daemon.json",
            Some("{ \"a\": "),
            &Edit::Json {
                merge: json!({}),
                sets: vec![],
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/docker/daemon.json is not valid JSON"),
            "{err}"
        );
        let empty = Edit::Json {
            merge: json!({}),
            sets: vec![],
        };
        let err = desired("/d.json", Some("[1]"), &empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an object"), "{err}");
    }

    #[test]
    fn swap_lines_are_commented_once() {
        let fstab =
            "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n";
        let edit = Edit::Lines {
            matching: r"^\s*\S+\s+\S+\s+swap\s".into(),
            state: LineState::Commented,
        };
        let out = desired("/etc/fstab", Some(fstab), &edit).unwrap();
        assert_eq!(
            out,
            "UUID=1 / ext4 defaults 0 1\n# /swapfile none swap sw 0 0\n# /old none swap sw 0 0\n"
        );
        assert_eq!(desired("/etc/fstab", Some(&out), &edit).unwrap(), out);
        let gone = Edit::Lines {
            matching: "swap".into(),
            state: LineState::Absent,
        };
        assert_eq!(
            desired("/etc/fstab", Some(fstab), &gone).unwrap(),
            "UUID=1 / ext4 defaults 0 1\n# /old none swap sw 0 0\n"
        );
        assert_eq!(desired("/etc/fstab", None, &edit).unwrap(), "");
    }

    #[test]
    fn diffs_are_unified_and_labelled() {
        let d = unified_diff("/etc/hosts", Some("a\nb\n"), "a\nc\n");
        assert!(d.contains("--- /etc/hosts (now)"), "{d}");
        assert!(d.contains("+++ /etc/hosts (wanted)"), "{d}");
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
        assert!(unified_diff("/x", None, "new\n").contains("--- /dev/null"));
    }
}
