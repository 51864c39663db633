//! The INI form of an Ansible inventory: `[group]` host lines with `key=value` variables,
//! `[group:vars]` and `[group:children]` sections; lines before any section are
//! ungrouped hosts.

use super::{Ansible, AnsibleError, Value, expand_range};

pub fn parse(text: &str, file: &str) -> Result<Ansible, AnsibleError> {
    let mut inv = Ansible::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    for (i, raw_line) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| AnsibleError {
            file: file.to_string(),
            line: line_no,
            message,
        };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .split_once(']')
                .map(|(h, _)| h.trim())
                .ok_or_else(|| err(format!("section header {line:?} has no `]`")))?;
            section = match header.split_once(':') {
                Some((g, "vars")) => Section::Vars(g.to_string()),
                Some((g, "children")) => Section::Children(g.to_string()),
                Some((_, other)) => {
                    return Err(err(format!(
                        "unknown section type `:{other}`; Ansible knows :vars and :children"
                    )));
                }
                None => Section::Hosts(header.to_string()),
            };
            let (Section::Hosts(g) | Section::Vars(g) | Section::Children(g)) = &section;
            inv.group(g);
            continue;
        }
        let words = split_words(line).map_err(err)?;
        match &section {
            Section::Hosts(group) => {
                let Some((pattern, vars)) = words.split_first() else {
                    continue;
                };
                let mut vars: Vec<(String, Value)> = vars
                    .iter()
                    .map(|w| key_value(w).map_err(err))
                    .collect::<Result<_, _>>()?;
                // `host:2222` is the port in INI inventories.
                let pattern = match pattern.rsplit_once(':') {
                    Some((h, port)) if port.parse::<u16>().is_ok() && !h.contains(':') => {
                        vars.insert(0, ("ansible_port".into(), Value::Text(port.into())));
                        h.to_string()
                    }
                    _ => pattern.clone(),
                };
                for host in expand_range(&pattern).map_err(err)? {
                    inv.add_host(group, &host, vars.clone());
                }
            }
            Section::Vars(group) => {
                // `key=value` or `key: value`, one per line; the value keeps its spaces.
                let (k, v) = line
                    .split_once('=')
                    .or_else(|| line.split_once(':'))
                    .ok_or_else(|| {
                        err(format!(
                            "expected key=value in [{group}:vars], found {line:?}"
                        ))
                    })?;
                let value = Value::Text(unquote(v.trim()));
                inv.group(group).vars.push((k.trim().to_string(), value));
            }
            Section::Children(group) => {
                let child = words.first().cloned().unwrap_or_default();
                inv.group(&child);
                let g = inv.group(group);
                if !g.children.contains(&child) {
                    g.children.push(child);
                }
            }
        }
    }
    Ok(inv)
}

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

fn key_value(word: &str) -> Result<(String, Value), String> {
    let (k, v) = word
        .split_once('=')
        .ok_or_else(|| format!("expected key=value after the host name, found {word:?}"))?;
    Ok((k.to_string(), Value::Text(unquote(v))))
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

/// Splits on whitespace outside quotes and drops a trailing ` # comment`.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '#') if cur.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in {line:?}"));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_vars_children_and_ranges() {
        let text = "\
[kube_control_plane]
mgmt01 ansible_host=10.0.0.1 # the first one

[kube_node]
gpu[01:03] ansible_user=ops
cpu1:2222 note=\"two words\"

[k8s_cluster:children]
kube_control_plane
kube_node

[k8s_cluster:vars]
ansible_become_pass=s3cret
";
        let inv = parse(text, "hosts.ini").unwrap_or_default();
        assert_eq!(inv.hosts, ["mgmt01", "gpu01", "gpu02", "gpu03", "cpu1"]);
        let v = inv.vars_of("cpu1");
        assert_eq!(v.get("ansible_port"), Some(&Value::Text("2222".into())));
        assert_eq!(v.get("note"), Some(&Value::Text("two words".into())));
        assert!(v.contains_key("ansible_become_pass"));
        assert_eq!(inv.groups_of("gpu02"), ["k8s_cluster", "kube_node"]);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = parse("[a]\nhost x\n", "h.ini").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("h.ini:2: expected key=value after the host name, found \"x\"")
        );
    }
}
