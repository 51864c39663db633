//! `--hosts PATTERN`: which inventory hosts a command works on.
//!
//! A pattern is a comma-separated list of terms; a host is selected when any term matches.
//! A term is a glob on the host name (`gpu*`, `node[12]`) or `role:NAME`. A term that
//! matches no host is an error rather than silently selecting less than the admin meant.

use globset::Glob;

use crate::exit::BadInput;
use crate::inventory::Host;

/// The hosts matching `pattern` (all hosts when `None`), in inventory order.
pub fn select<'a>(hosts: &'a [Host], pattern: Option<&str>) -> Result<Vec<&'a Host>, BadInput> {
    let Some(pattern) = pattern else {
        return Ok(hosts.iter().collect());
    };
    let mut selected = vec![false; hosts.len()];
    let mut unmatched = Vec::new();
    for term in pattern.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let matches = term_matcher(term)?;
        let mut any = false;
        for (i, host) in hosts.iter().enumerate() {
            if matches(host) {
                selected[i] = true;
                any = true;
            }
        }
        if !any {
            unmatched.push(term.to_string());
        }
    }
    if !unmatched.is_empty() {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(BadInput(format!(
            "--hosts: {} matched no host; the inventory has: {}",
            unmatched
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            names.join(", ")
        )));
    }
    Ok(hosts
        .iter()
        .zip(selected)
        .filter_map(|(h, s)| s.then_some(h))
        .collect())
}

/// Whether one term of a pattern matches a host.
type Matcher = Box<dyn Fn(&Host) -> bool>;

fn term_matcher(term: &str) -> Result<Matcher, BadInput> {
    if let Some(role) = term.strip_prefix("role:") {
        let role = role.to_string();
        return Ok(Box::new(move |h: &Host| {
            h.roles.iter().any(|r| r.as_str() == role)
        }));
    }
    let glob = Glob::new(term)
        .map_err(|e| BadInput(format!("--hosts: `{term}` is not a valid pattern: {e}")))?
        .compile_matcher();
    Ok(Box::new(move |h: &Host| glob.is_match(&h.name)))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::inventory::{GpuPresence, Role};
    use crate::transport::Endpoint;

    fn host(name: &str, role: Role) -> Host {
        Host {
            name: name.into(),
            endpoint: Endpoint::Local,
            internal_address: None,
            roles: BTreeSet::from([role]),
            gpu: GpuPresence::Auto,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    fn names(hosts: &[&Host]) -> Vec<String> {
        hosts.iter().map(|h| h.name.clone()).collect()
    }

    #[test]
    fn globs_roles_and_lists() {
        let hosts = vec![
            host("cp1", Role::Server),
            host("gpu01", Role::Worker),
            host("gpu02", Role::Worker),
            host("nas", Role::Nfs),
        ];
        assert_eq!(names(&select(&hosts, None).unwrap_or_default()).len(), 4);
        assert_eq!(
            names(&select(&hosts, Some("gpu*")).unwrap_or_default()),
            ["gpu01", "gpu02"]
        );
        assert_eq!(
            names(&select(&hosts, Some("role:server, nas")).unwrap_or_default()),
            ["cp1", "nas"]
        );
    }

    #[test]
    fn a_term_matching_nothing_is_an_error_naming_it() {
        let hosts = vec![host("cp1", Role::Server)];
        let err = select(&hosts, Some("cp1,gpu*")).err().map(|e| e.0);
        assert_eq!(
            err.as_deref(),
            Some("--hosts: `gpu*` matched no host; the inventory has: cp1")
        );
    }
}
