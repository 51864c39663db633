//! The YAML form of an Ansible inventory: groups (usually under `all`) with `hosts`
//! (a mapping of host name → variables), `vars` and `children` (a mapping of groups).

use serde_yaml::{Mapping, Value as Y};

use super::{Ansible, AnsibleError, Value, Vars, expand_range};

pub fn parse(top: &Mapping, file: &str) -> Result<Ansible, AnsibleError> {
    let mut inv = Ansible::default();
    for (name, body) in top {
        let name = text(name);
        group(&mut inv, &name, body, file)?;
    }
    Ok(inv)
}

fn err(file: &str, message: String) -> AnsibleError {
    AnsibleError {
        file: file.to_string(),
        line: 0,
        message,
    }
}

fn text(v: &Y) -> String {
    match v {
        Y::String(s) => s.clone(),
        Y::Number(n) => n.to_string(),
        Y::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn vars(v: &Y) -> Vars {
    match v {
        Y::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Y::Mapping(_) | Y::Sequence(_) | Y::Tagged(_) => Value::Complex,
                    Y::Null => Value::Text(String::new()),
                    other => Value::Text(text(other)),
                };
                (text(k), value)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn group(inv: &mut Ansible, name: &str, body: &Y, file: &str) -> Result<(), AnsibleError> {
    inv.group(name);
    let m = match body {
        Y::Mapping(m) => m,
        Y::Null => return Ok(()),
        _ => {
            return Err(err(
                file,
                format!("group {name:?} should be a mapping with hosts, vars or children"),
            ));
        }
    };
    for (key, value) in m {
        match text(key).as_str() {
            "hosts" => {
                if let Y::Mapping(hosts) = value {
                    for (h, hv) in hosts {
                        let pattern = text(h);
                        let expanded = expand_range(&pattern)
                            .map_err(|e| err(file, format!("group {name}: {e}")))?;
                        for host in expanded {
                            inv.add_host(name, &host, vars(hv));
                        }
                    }
                }
            }
            "vars" => {
                let v = vars(value);
                inv.group(name).vars.extend(v);
            }
            "children" => {
                if let Y::Mapping(children) = value {
                    for (child, child_body) in children {
                        let child = text(child);
                        {
                            let g = inv.group(name);
                            if !g.children.contains(&child) {
                                g.children.push(child.clone());
                            }
                        }
                        group(inv, &child, child_body, file)?;
                    }
                }
            }
            other => {
                return Err(err(
                    file,
                    format!(
                        "group {name:?} has key {other:?}; Ansible groups hold hosts, vars and children"
                    ),
                ));
            }
        }
    }
    Ok(())
}
