//! `docs/inventory.md` must match the code: every key of every mapping has a row (and no
//! row names a key the code does not know), and the defaults and conversion tables agree.

use std::collections::BTreeSet;
use std::path::Path;

use crate::inventory::ansible::emit;
use crate::inventory::schema::SECTIONS;
use crate::inventory::{K3S_VERSION, KUBEADM_VERSION, default_tiers};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines under `### heading`, up to the next heading.
fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    let want = format!("### {heading}");
    let mut lines = doc.lines().skip_while(|l| *l != want);
    assert!(
        lines.next().is_some(),
        "docs/inventory.md has no heading {want:?}"
    );
    lines.take_while(|l| !l.starts_with('#')).collect()
}

/// The first cell of each row of the section's first table (the key table), when it is
/// a `key`.
fn row_keys(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn every_key_has_exactly_one_documented_row() {
    let doc = doc();
    let mut failures = Vec::new();
    for (heading, keys) in SECTIONS {
        let documented = row_keys(&section(&doc, heading));
        let known: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
        if documented != known {
            failures.push(format!(
                "{heading}: undocumented {:?}, documented but unknown {:?}",
                known.difference(&documented).collect::<Vec<_>>(),
                documented.difference(&known).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn documented_defaults_match_the_code() {
    let doc = doc();
    let cluster = section(&doc, "`cluster`").join("\n");
    for v in [K3S_VERSION, KUBEADM_VERSION] {
        assert!(
            cluster.contains(&format!("`{v}`")),
            "version {v} not documented"
        );
    }
    let users = section(&doc, "`users`").join("\n");
    for (name, t) in default_tiers() {
        let row = format!(
            "| `{name}` | `{}` | `{}` | {} | `{}` | {} |",
            t.cpu, t.memory, t.gpu, t.storage, t.pvcs
        );
        assert!(users.contains(&row), "tier row missing: {row}");
    }
}

#[test]
fn the_ansible_table_names_every_group_and_variable_converted() {
    let doc = doc();
    let table: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("## Converting an Ansible inventory"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names: Vec<&str> = Vec::new();
    for list in [
        emit::SERVER_GROUPS,
        emit::WORKER_GROUPS,
        emit::NFS_GROUPS,
        emit::REGISTRY_GROUPS,
        emit::GPU_GROUPS,
        emit::PARENT_GROUPS,
        emit::SUDO_VARS,
        emit::SSH_PASSWORD_VARS,
    ] {
        names.extend(list.iter().copied());
    }
    for (vars, _) in emit::CLUSTER_VARS {
        names.extend(vars.iter().copied());
    }
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|n| !table.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the conversion table: {missing:?}"
    );
}
