//! Edits of the inventory file that `gpuctl users add|remove` make: one line added to or
//! taken out of `users.list`, everything else (comments, order, spacing) left as the admin
//! wrote it.
//!
//! The inventory is the one source of truth for users (the `users` stage converges the
//! cluster to it), so a user added on the command line must land in the file, or the next
//! `install` would remove them again. A YAML library would rewrite the whole file and drop
//! its comments; instead the edit works on lines, at positions the node tree gives, and the
//! caller validates the result as a whole inventory before writing it.

use super::node::{self, Entry, Kind, Node};
use super::problem::Problems;

/// A user as `users add` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub tier: String,
    pub data_path: Option<String>,
}

/// Why the file could not be edited; the message says where and what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

/// The inventory text with `user` appended to `users.list` (creating `users:` and `list:`
/// when missing), and the 1-based line the user is on.
pub fn add_user(text: &str, file: &str, user: &NewUser) -> Result<(String, usize), EditError> {
    let root = parse(text, file)?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let entry = flow_entry(user);
    let Some(users) = top_entry(&root, "users") else {
        // No `users:` yet: a new section at the end of the file.
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            lines.push(String::new());
        }
        lines.push("users:".into());
        lines.push("  list:".into());
        lines.push(format!("    - {entry}"));
        let at = lines.len();
        return Ok((join(&lines), at));
    };
    let users_line = users.key_pos.line;
    let list = match &users.value.kind {
        Kind::Null => {
            let indent = indent_of(&lines, users_line) + 2;
            let at = users_line + 2;
            insert(
                &mut lines,
                users_line,
                &[
                    format!("{}list:", spaces(indent)),
                    format!("{}- {entry}", spaces(indent + 2)),
                ],
            );
            return Ok((join(&lines), at));
        }
        Kind::Map(entries) if is_block(&lines, &users.value) => {
            match entries.iter().find(|e| e.key == "list") {
                Some(list) => list,
                None => {
                    // `users:` without `list:`: a `list:` after the section's last line.
                    let indent = entries
                        .first()
                        .map_or(indent_of(&lines, users_line) + 2, |e| e.key_pos.col - 1);
                    let after = last_line(&users.value);
                    insert(
                        &mut lines,
                        after,
                        &[
                            format!("{}list:", spaces(indent)),
                            format!("{}- {entry}", spaces(indent + 2)),
                        ],
                    );
                    return Ok((join(&lines), after + 2));
                }
            }
        }
        _ => return Err(flow_error(file, users_line, "users")),
    };
    match &list.value.kind {
        Kind::Null => {
            let indent = indent_of(&lines, list.key_pos.line) + 2;
            insert(
                &mut lines,
                list.key_pos.line,
                &[format!("{}- {entry}", spaces(indent))],
            );
            Ok((join(&lines), list.key_pos.line + 1))
        }
        Kind::Seq(items) if is_block(&lines, &list.value) => {
            let Some(last) = items.last() else {
                return Err(flow_error(file, list.key_pos.line, "users.list"));
            };
            let dash = item_line(&lines, last)
                .ok_or_else(|| flow_error(file, list.key_pos.line, "users.list"))?;
            let after = last_line(last);
            insert(&mut lines, after, &[format!("{}- {entry}", spaces(dash))]);
            Ok((join(&lines), after + 1))
        }
        _ => Err(flow_error(file, list.key_pos.line, "users.list")),
    }
}

/// The inventory text without the user named `name` (the lines of that list item), and
/// the 1-based line it was on. Not finding the user is an error naming the users there are.
pub fn remove_user(text: &str, file: &str, name: &str) -> Result<(String, usize), EditError> {
    let root = parse(text, file)?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let list = top_entry(&root, "users").and_then(|u| match &u.value.kind {
        Kind::Map(entries) => entries.iter().find(|e| e.key == "list"),
        _ => None,
    });
    let items = match list.map(|l| &l.value.kind) {
        Some(Kind::Seq(items)) => items.as_slice(),
        _ => &[],
    };
    let names: Vec<String> = items.iter().filter_map(|i| scalar(i, "name")).collect();
    let Some(item) = items
        .iter()
        .find(|i| scalar(i, "name").as_deref() == Some(name))
    else {
        let there = if names.is_empty() {
            "it lists no users".to_string()
        } else {
            format!("it lists {}", names.join(", "))
        };
        return Err(EditError(format!(
            "{file}: no user {name} in users.list ({there}); `gpuctl users list` shows the \
             users the cluster has"
        )));
    };
    let list_line = list.map_or(0, |l| l.key_pos.line);
    if !list.is_some_and(|l| is_block(&lines, &l.value)) || item_line(&lines, item).is_none() {
        return Err(flow_error(file, list_line, "users.list"));
    }
    let (first, last) = (item.pos.line, last_line(item));
    let kept: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !(first..=last).contains(&(i + 1)))
        .map(|(_, l)| l.clone())
        .collect();
    Ok((join(&kept), first))
}

fn parse(text: &str, file: &str) -> Result<Node, EditError> {
    let mut p = Problems::new(file);
    node::parse(text, &mut p)
        .filter(|_| !p.has_errors())
        .ok_or_else(|| {
            EditError(format!(
                "{file} is not valid YAML; `gpuctl inventory check --inventory {file}` says \
                 where"
            ))
        })
}

fn top_entry<'a>(root: &'a Node, key: &str) -> Option<&'a Entry> {
    match &root.kind {
        Kind::Map(entries) => entries.iter().find(|e| e.key == key),
        _ => None,
    }
}

fn scalar(item: &Node, key: &str) -> Option<String> {
    let Kind::Map(entries) = &item.kind else {
        return None;
    };
    entries
        .iter()
        .find(|e| e.key == key)
        .and_then(|e| match &e.value.kind {
            Kind::Scalar { text, .. } => Some(text.clone()),
            _ => None,
        })
}

/// The last line a node's keys and values reach (values of one line each, as in an
/// inventory: no multi-line block scalars among a user's fields).
fn last_line(n: &Node) -> usize {
    let inner = match &n.kind {
        Kind::Seq(items) => items.iter().map(last_line).max(),
        Kind::Map(entries) => entries
            .iter()
            .map(|e| e.key_pos.line.max(last_line(&e.value)))
            .max(),
        _ => None,
    };
    inner.unwrap_or(0).max(n.pos.line)
}

/// A collection written in block style (one item or key per line), which lines can be added
/// to; a flow one (`[a, b]`, `{ a: 1 }`) starts with its bracket.
fn is_block(lines: &[String], n: &Node) -> bool {
    let Some(line) = n.pos.line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return false;
    };
    let rest: String = line.chars().skip(n.pos.col.saturating_sub(1)).collect();
    !(rest.starts_with('[') || rest.starts_with('{'))
}

/// For a block list item alone on its line(s): the column of its `-`.
fn item_line(lines: &[String], item: &Node) -> Option<usize> {
    let line = lines.get(item.pos.line.checked_sub(1)?)?;
    let indent = line.len() - line.trim_start().len();
    line.trim_start().starts_with('-').then_some(indent)
}

fn indent_of(lines: &[String], line: usize) -> usize {
    lines
        .get(line.saturating_sub(1))
        .map_or(0, |l| l.len() - l.trim_start().len())
}

fn spaces(n: usize) -> String {
    " ".repeat(n)
}

fn insert(lines: &mut Vec<String>, after: usize, new: &[String]) {
    let at = after.min(lines.len());
    for (i, l) in new.iter().enumerate() {
        lines.insert(at + i, l.clone());
    }
}

fn join(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn flow_error(file: &str, line: usize, what: &str) -> EditError {
    EditError(format!(
        "{file}:{line}: {what} is written in flow style ([...] or {{...}}), which gpuctl does \
         not rewrite: write it as a block, one `- {{ name: ..., email: ..., tier: ... }}` per \
         line, then run this again (or edit the user there by hand and run `gpuctl install \
         --only users`)"
    ))
}

/// `{ name: alice, email: alice@lab.example, tier: mid, data_path: /data/alice }`.
fn flow_entry(u: &NewUser) -> String {
    let mut fields = vec![
        format!("name: {}", plain_or_quoted(&u.name)),
        format!("email: {}", plain_or_quoted(&u.email)),
        format!("tier: {}", plain_or_quoted(&u.tier)),
    ];
    if let Some(d) = &u.data_path {
        fields.push(format!("data_path: {}", plain_or_quoted(d)));
    }
    format!("{{ {} }}", fields.join(", "))
}

/// A value as YAML reads it back unchanged: plain when it is safe in a flow mapping and
/// cannot be taken for a number, boolean or null; double-quoted (JSON rules) otherwise.
fn plain_or_quoted(v: &str) -> String {
    let safe = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/@+-".contains(c))
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && !matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if safe {
        v.to_string()
    } else {
        serde_json::Value::String(v.to_string()).to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alice() -> NewUser {
        NewUser {
            name: "alice".into(),
            email: "alice@lab.example".into(),
            tier: "mid".into(),
            data_path: Some("/data/share/alice".into()),
        }
    }

    const WITH_LIST: &str = "cluster: { name: lab }\n# the people\nusers:\n  tiers:\n    mid: { cpu: \"8\" }\n  list:\n    - { name: bob, email: bob@lab.example, tier: mid }   # bob\n    - name: carol\n      email: carol@lab.example\n      tier: mid\n\nhosts: []\n";

    #[test]
    fn a_user_goes_after_the_last_one_with_its_indentation_and_nothing_else_moves() {
        let (out, line) = add_user(WITH_LIST, "lab.yaml", &alice()).unwrap();
        assert_eq!(
            out,
            WITH_LIST.replace(
                "      tier: mid\n\n",
                "      tier: mid\n    - { name: alice, email: alice@lab.example, tier: mid, data_path: /data/share/alice }\n\n"
            )
        );
        assert_eq!(line, 11);
        assert_eq!(
            out.lines().nth(line - 1).unwrap().trim_start()[..9].to_string(),
            "- { name:"
        );
    }

    #[test]
    fn removing_takes_out_exactly_the_lines_of_that_user() {
        let (out, line) = remove_user(WITH_LIST, "lab.yaml", "carol").unwrap();
        assert_eq!(
            out,
            WITH_LIST.replace(
                "    - name: carol\n      email: carol@lab.example\n      tier: mid\n",
                ""
            )
        );
        assert_eq!(line, 8);
        let (out, _) = remove_user(&out, "lab.yaml", "bob").unwrap();
        assert!(out.contains("  list:\n\nhosts"), "{out}");
        // Adding to the now empty list works too, and round-trips.
        let (again, _) = add_user(&out, "lab.yaml", &alice()).unwrap();
        let (back, _) = remove_user(&again, "lab.yaml", "alice").unwrap();
        assert_eq!(back, out);
    }

    #[test]
    fn the_sections_that_are_missing_are_created() {
        let (out, _) = add_user("cluster: { name: lab }\nhosts: []\n", "f", &alice()).unwrap();
        assert!(out.ends_with("hosts: []\n\nusers:\n  list:\n    - { name: alice, email: alice@lab.example, tier: mid, data_path: /data/share/alice }\n"), "{out}");
        let (out, _) = add_user(
            "users:\n  tiers:\n    mid: { cpu: \"8\" }\nhosts: []\n",
            "f",
            &alice(),
        )
        .unwrap();
        assert!(
            out.starts_with(
                "users:\n  tiers:\n    mid: { cpu: \"8\" }\n  list:\n    - { name: alice"
            ),
            "{out}"
        );
        let (out, _) = add_user("users:\nhosts: []\n", "f", &alice()).unwrap();
        assert!(
            out.starts_with("users:\n  list:\n    - { name: alice"),
            "{out}"
        );
    }

    #[test]
    fn flow_lists_are_refused_with_where_and_what_to_write() {
        let err = add_user(
            "users:\n  list: [{ name: bob, email: b@x, tier: mid }]\n",
            "lab.yaml",
            &alice(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("lab.yaml:2: users.list is written in flow style"),
            "{err}"
        );
        let err = add_user("users: { list: [] }\n", "lab.yaml", &alice())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("lab.yaml:1: users is written in flow style"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_user_is_an_error_naming_those_there_are() {
        let err = remove_user(WITH_LIST, "lab.yaml", "dave")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no user dave in users.list (it lists bob, carol)"),
            "{err}"
        );
    }

    #[test]
    fn values_that_yaml_would_retype_are_quoted() {
        assert_eq!(plain_or_quoted("alice"), "alice");
        assert_eq!(plain_or_quoted("no"), "\"no\"");
        assert_eq!(plain_or_quoted("1234"), "\"1234\"");
        assert_eq!(plain_or_quoted("a b, c"), "\"a b, c\"");
        assert_eq!(plain_or_quoted("/data/x"), "/data/x");
    }
}
