//! `gpuctl init --from-ansible`: an Ansible inventory (INI or YAML, as kubespray, DeepOps
//! and kubeasz use) converted into a gpuctl inventory.
//!
//! Both forms are read into one [`Ansible`] model (`ini.rs`, `yaml.rs`); `emit.rs` maps
//! groups to roles and variables to keys and writes commented YAML. Whatever has no
//! gpuctl meaning is listed as `# not converted: ...` instead of dropped, and secret values
//! (become and SSH passwords) are never copied: the output names environment variables.

pub(crate) mod emit;
mod ini;
mod yaml;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use emit::Converted;

/// Why an Ansible inventory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct AnsibleError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// A variable's value; lists and mappings are kept only as a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Complex,
}

pub type Vars = Vec<(String, Value)>;

#[derive(Clone, Debug, Default)]
pub struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
}

/// An Ansible inventory: hosts in the order they first appear, groups, variables.
#[derive(Clone, Debug, Default)]
pub struct Ansible {
    pub hosts: Vec<String>,
    pub host_vars: HashMap<String, Vars>,
    pub groups: BTreeMap<String, Group>,
}

impl Ansible {
    fn add_host(&mut self, group: &str, host: &str, vars: Vars) {
        if !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_string());
        }
        self.host_vars
            .entry(host.to_string())
            .or_default()
            .extend(vars);
        let g = self.groups.entry(group.to_string()).or_default();
        if !g.hosts.iter().any(|h| h == host) {
            g.hosts.push(host.to_string());
        }
    }

    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    /// The groups `host` belongs to, directly or through `children`, parents first.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        for (name, g) in &self.groups {
            if g.hosts.iter().any(|h| h == host) {
                found.insert(name.clone());
            }
        }
        // Parents of a member group are groups of the host too.
        loop {
            let parents: Vec<String> = self
                .groups
                .iter()
                .filter(|(name, g)| {
                    !found.contains(*name) && g.children.iter().any(|c| found.contains(c))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if parents.is_empty() {
                break;
            }
            found.extend(parents);
        }
        found.remove("all");
        let mut groups: Vec<String> = found.into_iter().collect();
        groups.sort_by_key(|g| (self.depth(g, &mut Vec::new()), g.clone()));
        groups
    }

    /// How many parent levels are above a group (`all` is 0), so child group variables
    /// win over parent group variables, as in Ansible.
    fn depth(&self, group: &str, seen: &mut Vec<String>) -> usize {
        if seen.iter().any(|s| s == group) {
            return 0;
        }
        seen.push(group.to_string());
        let d = self
            .groups
            .iter()
            .filter(|(_, g)| g.children.iter().any(|c| c == group))
            .map(|(name, _)| self.depth(name, seen) + 1)
            .max()
            .unwrap_or(0);
        seen.pop();
        d
    }

    /// A host's variables after Ansible's precedence: `all`, then groups from parent to
    /// child, then the host's own.
    pub fn vars_of(&self, host: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut apply = |vars: &Vars| {
            for (k, v) in vars {
                out.insert(k.clone(), v.clone());
            }
        };
        if let Some(all) = self.groups.get("all") {
            apply(&all.vars);
        }
        for g in self.groups_of(host) {
            if let Some(group) = self.groups.get(&g) {
                apply(&group.vars);
            }
        }
        if let Some(own) = self.host_vars.get(host) {
            apply(own);
        }
        out
    }
}

/// Reads an Ansible inventory in either form: YAML when the text is a YAML mapping,
/// INI otherwise.
pub fn parse(text: &str, file: &str) -> Result<Ansible, AnsibleError> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(m)) => yaml::parse(&m, file),
        _ => ini::parse(text, file),
    }
}

/// Converts an Ansible inventory into gpuctl inventory text.
pub fn convert(text: &str, file: &str) -> Result<Converted, AnsibleError> {
    let inv = parse(text, file)?;
    Ok(emit::emit(&inv, file))
}

/// Expands Ansible host ranges: `gpu[01:50]`, `node[a:c]`, `n[0:10:2]`; several
/// ranges in one name multiply.
pub fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|c| c + open)
        .ok_or_else(|| format!("{pattern:?}: `[` without `]`"))?;
    let (prefix, spec, rest) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = spec.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [a, b] => (*a, *b, 1usize),
        [a, b, s] => (
            *a,
            *b,
            s.parse::<usize>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("{pattern:?}: bad step {s:?}"))?,
        ),
        _ => {
            return Err(format!(
                "{pattern:?}: a range is [start:end] or [start:end:step]"
            ));
        }
    };
    let items: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<usize>(), end.parse::<usize>())
    {
        if a > b {
            return Err(format!("{pattern:?}: range start is after its end"));
        }
        // A leading zero in the start fixes the width, as Ansible does.
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        (a..=b)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let (sc, ec): (Vec<char>, Vec<char>) = (start.chars().collect(), end.chars().collect());
        let (a, b) = match (sc.as_slice(), ec.as_slice()) {
            (&[a], &[b]) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() && a <= b => (a, b),
            _ => {
                return Err(format!(
                    "{pattern:?}: range ends must be numbers or single letters"
                ));
            }
        };
        (a..=b).step_by(step).map(String::from).collect()
    };
    let tails = expand_range(rest)?;
    let mut out = Vec::new();
    for item in items {
        for tail in &tails {
            out.push(format!("{prefix}{item}{tail}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_with_width_step_and_letters() {
        assert_eq!(
            expand_range("gpu[01:03]").ok(),
            Some(vec!["gpu01".into(), "gpu02".into(), "gpu03".into()])
        );
        assert_eq!(
            expand_range("n[0:4:2].lab").ok(),
            Some(vec!["n0.lab".into(), "n2.lab".into(), "n4.lab".into()])
        );
        assert_eq!(
            expand_range("r[a:b][1:2]").ok(),
            Some(vec!["ra1".into(), "ra2".into(), "rb1".into(), "rb2".into()])
        );
        assert_eq!(expand_range("gpu[01:50]").map(|v| v.len()).ok(), Some(50));
        assert!(expand_range("gpu[5:1]").is_err());
        assert!(expand_range("gpu[01:").is_err());
    }
}
