//! How each host is reached: the inventory's `ssh:` settings, `~/.ssh/config` and the
//! defaults, merged into one [`SshTarget`] per host, with bastion chains flattened.
//!
//! Precedence for an inventory host, first found wins: the host's own `ssh:` block, the
//! top-level `ssh:` block, `~/.ssh/config` for the host's `address`, the defaults (port 22,
//! `$USER`, `~/.ssh/id_ed25519`/`id_ecdsa`/`id_rsa` that exist). A bastion is not an
//! inventory host, so for it `~/.ssh/config` comes before the top-level block, whose user
//! and keys are only fallbacks there.
//!
//! A bastion list is the path, outermost first. When its first hop is an inventory host,
//! the chain that reaches that host comes first; later hops are reached through the ones
//! before them. A host never jumps through itself, so a top-level chain may name the
//! bastion host while that host is reached through the hops before its own name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ssh2_config::SshConfig;

use super::decode::S;
use super::problem::{At, Problems, did_you_mean};
use super::raw::{ConnectionKind, RawHop, RawHost, RawSsh};
use super::sshconfig::{Lookup, lookup, parse_jump};
use crate::transport::{Endpoint, SshTarget};

/// What endpoint resolution needs from the machine gpuctl runs on.
pub struct SshEnv<'a> {
    pub home: &'a Path,
    pub base_dir: &'a Path,
    /// `$USER`, the last resort for the login name.
    pub default_user: Option<&'a str>,
    pub config: Option<&'a SshConfig>,
}

/// `~` and `~/x` against the home directory; relative paths against the inventory's
/// directory, so an inventory and its keys can travel together.
pub fn expand(env: &SshEnv<'_>, path: &str) -> PathBuf {
    if path == "~" {
        return env.home.to_path_buf();
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return env.home.join(rest);
    }
    // components() drops the `.` in `./keys/lab`, so messages show a clean path.
    env.base_dir.join(path).components().collect()
}

/// Whether a host is this machine rather than an SSH target.
pub fn is_local(h: &RawHost) -> bool {
    match &h.connection {
        Some(c) => c.v == ConnectionKind::Local,
        None => h.address.as_ref().is_some_and(|a| a.v == "localhost"),
    }
}

/// Resolves every host's endpoint; `None` for hosts with problems (already recorded).
pub fn endpoints(
    p: &mut Problems,
    top: &RawSsh,
    hosts: &[RawHost],
    env: &SshEnv<'_>,
) -> Vec<Option<Endpoint>> {
    let mut r = Resolver {
        env,
        top,
        hosts,
        names: HashMap::new(),
        defaults: ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|f| env.home.join(".ssh").join(f))
            .filter(|f| f.is_file())
            .collect(),
        top_ids: None,
        bases: Vec::new(),
        chains: HashMap::new(),
    };
    for (i, h) in hosts.iter().enumerate() {
        if let Some(n) = &h.name {
            r.names.entry(n.v.clone()).or_insert(i);
        }
    }
    r.top_ids = top
        .identity_files
        .as_ref()
        .map(|files| r.explicit_ids(p, files, "every host without its own identity_file"));
    r.bases = (0..hosts.len()).map(|i| r.base(p, i)).collect();
    (0..hosts.len())
        .map(|i| {
            if is_local(&hosts[i]) {
                return Some(Endpoint::Local);
            }
            let base = r.bases.get(i).cloned().flatten()?;
            let jumps = r.chain(p, i, &mut Vec::new())?;
            Some(Endpoint::Ssh(SshTarget { jumps, ..base }))
        })
        .collect()
}

struct Resolver<'a> {
    env: &'a SshEnv<'a>,
    top: &'a RawSsh,
    hosts: &'a [RawHost],
    names: HashMap<String, usize>,
    /// The default keys that exist.
    defaults: Vec<PathBuf>,
    top_ids: Option<Vec<PathBuf>>,
    /// Each host's target without jumps.
    bases: Vec<Option<SshTarget>>,
    chains: HashMap<usize, Option<Vec<SshTarget>>>,
}

impl Resolver<'_> {
    /// Expands configured identity files and checks each can be read, so a typo is
    /// found now and not as "authentication failed" on 50 hosts.
    fn explicit_ids(&self, p: &mut Problems, files: &[S<String>], whom: &str) -> Vec<PathBuf> {
        files
            .iter()
            .map(|f| {
                let path = expand(self.env, &f.v);
                let problem = match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => Some("it is a directory".to_string()),
                    Ok(_) => std::fs::File::open(&path).err().map(|e| e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = problem {
                    p.error_hint(
                        &f.at,
                        format!("cannot read identity file {} (used by {whom}): {why}", path.display()),
                        "fix the path (relative paths start at the inventory's directory), or remove identity_file to use ssh-agent and ~/.ssh/id_*",
                    );
                }
                path
            })
            .collect()
    }

    fn user(
        &self,
        p: &mut Problems,
        at: &At,
        whom: &str,
        choices: [Option<&str>; 3],
    ) -> Option<String> {
        let found = choices
            .into_iter()
            .flatten()
            .next()
            .or(self.env.default_user)
            .map(str::to_string);
        if found.is_none() {
            p.error_hint(
                at,
                format!("cannot tell which user to log in to {whom} as: no ssh.user, no User in the ssh config and no $USER"),
                "add `user: NAME` to the ssh block",
            );
        }
        found
    }

    fn base(&self, p: &mut Problems, i: usize) -> Option<SshTarget> {
        let h = &self.hosts[i];
        if is_local(h) {
            return None;
        }
        let addr = h.address.as_ref()?;
        let name = h.name.as_ref().map_or(addr.v.as_str(), |n| n.v.as_str());
        let look = lookup(self.env.config, &addr.v);
        let own_ids = h
            .ssh
            .identity_files
            .as_ref()
            .map(|files| self.explicit_ids(p, files, &format!("host {name}")));
        let user = self.user(
            p,
            &h.at,
            &format!("host {name}"),
            [
                h.ssh.user.as_ref().map(|u| u.v.as_str()),
                self.top.user.as_ref().map(|u| u.v.as_str()),
                look.user.as_deref(),
            ],
        )?;
        let identity_files = own_ids
            .or_else(|| self.top_ids.clone())
            .or_else(|| non_empty(look.identity_files.clone()))
            .unwrap_or_else(|| self.defaults.clone());
        Some(SshTarget {
            host: look.host_name.clone().unwrap_or_else(|| addr.v.clone()),
            port: h
                .ssh
                .port
                .as_ref()
                .or(self.top.port.as_ref())
                .map(|p| p.v)
                .or(look.port)
                .unwrap_or(22),
            user,
            identity_files,
            identity_passphrase: h
                .ssh
                .identity_passphrase
                .as_ref()
                .or(self.top.identity_passphrase.as_ref())
                .map(|s| s.v.clone()),
            password: h
                .ssh
                .password
                .as_ref()
                .or(self.top.password.as_ref())
                .map(|s| s.v.clone()),
            use_agent: h
                .ssh
                .agent
                .as_ref()
                .or(self.top.agent.as_ref())
                .is_none_or(|a| a.v),
            jumps: Vec::new(),
        })
    }

    /// A bastion outside the inventory, written as a mapping.
    fn outside(&self, p: &mut Problems, host: &S<String>, ssh: &RawSsh) -> Option<SshTarget> {
        let look = lookup(self.env.config, &host.v);
        let whom = format!("bastion {}", host.v);
        let own_ids = ssh
            .identity_files
            .as_ref()
            .map(|files| self.explicit_ids(p, files, &whom));
        let user = self.user(
            p,
            &host.at,
            &whom,
            [
                ssh.user.as_ref().map(|u| u.v.as_str()),
                look.user.as_deref(),
                self.top.user.as_ref().map(|u| u.v.as_str()),
            ],
        )?;
        Some(SshTarget {
            host: look.host_name.clone().unwrap_or_else(|| host.v.clone()),
            port: ssh.port.as_ref().map(|p| p.v).or(look.port).unwrap_or(22),
            user,
            identity_files: own_ids.unwrap_or_else(|| self.fallback_ids(&look)),
            identity_passphrase: ssh
                .identity_passphrase
                .as_ref()
                .or(self.top.identity_passphrase.as_ref())
                .map(|s| s.v.clone()),
            password: ssh.password.as_ref().map(|s| s.v.clone()),
            use_agent: ssh
                .agent
                .as_ref()
                .or(self.top.agent.as_ref())
                .is_none_or(|a| a.v),
            jumps: Vec::new(),
        })
    }

    fn fallback_ids(&self, look: &Lookup) -> Vec<PathBuf> {
        non_empty(look.identity_files.clone())
            .or_else(|| self.top_ids.clone())
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// A hop from `ProxyJump` in the ssh config.
    fn config_jump(&self, p: &mut Problems, spec: &str, at: &At, alias: &str) -> Option<SshTarget> {
        let Some((user, host, port)) = parse_jump(spec) else {
            p.error_hint(
                at,
                format!(
                    "the ssh config's ProxyJump {spec:?} for {alias} is not [user@]host[:port]"
                ),
                "fix the ssh config, or set `bastion:` in the inventory",
            );
            return None;
        };
        let look = lookup(self.env.config, &host);
        let user = self.user(
            p,
            at,
            &format!("bastion {host}"),
            [
                user.as_deref(),
                look.user.as_deref(),
                self.top.user.as_ref().map(|u| u.v.as_str()),
            ],
        )?;
        Some(SshTarget {
            host: look.host_name.clone().unwrap_or_else(|| host.clone()),
            port: port.or(look.port).unwrap_or(22),
            user,
            identity_files: self.fallback_ids(&look),
            identity_passphrase: self.top.identity_passphrase.as_ref().map(|s| s.v.clone()),
            password: None,
            use_agent: self.top.agent.as_ref().is_none_or(|a| a.v),
            jumps: Vec::new(),
        })
    }

    /// The flattened bastion chain of host `i`, outermost first.
    fn chain(
        &mut self,
        p: &mut Problems,
        i: usize,
        visiting: &mut Vec<usize>,
    ) -> Option<Vec<SshTarget>> {
        if let Some(done) = self.chains.get(&i) {
            return done.clone();
        }
        let h = &self.hosts[i];
        let name = h.name.as_ref().map(|n| n.v.clone()).unwrap_or_default();
        visiting.push(i);
        let result = match h.ssh.bastion.as_ref().or(self.top.bastion.as_ref()) {
            Some(hops) => {
                // A host never jumps through itself: the bastion of the lab is often an
                // inventory host too, and the top-level chain names it.
                let end = hops
                    .iter()
                    .position(|hop| matches!(hop, RawHop::Host(n) if n.v == name))
                    .unwrap_or(hops.len());
                let mut out = Vec::new();
                let mut ok = true;
                for (k, hop) in hops[..end].iter().enumerate() {
                    match self.hop(p, hop, k == 0, visiting) {
                        Some(mut targets) => out.append(&mut targets),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            None => {
                let addr = h.address.as_ref().map(|a| a.v.clone()).unwrap_or_default();
                let specs = lookup(self.env.config, &addr).proxy_jump;
                let hops: Vec<Option<SshTarget>> = specs
                    .iter()
                    .map(|spec| self.config_jump(p, spec, &h.at, &addr))
                    .collect();
                hops.into_iter().collect()
            }
        };
        visiting.pop();
        self.chains.insert(i, result.clone());
        result
    }

    fn hop(
        &mut self,
        p: &mut Problems,
        hop: &RawHop,
        first: bool,
        visiting: &mut Vec<usize>,
    ) -> Option<Vec<SshTarget>> {
        match hop {
            RawHop::Outside { host, ssh } => self.outside(p, host, ssh).map(|t| vec![t]),
            RawHop::Host(n) => {
                let Some(&j) = self.names.get(&n.v) else {
                    let hint = match did_you_mean(&n.v, self.names.keys().map(String::as_str)) {
                        Some(close) => format!("did you mean {close:?}?"),
                        None => format!(
                            "name a host from `hosts:`, or write a machine outside the inventory as `{{ host: {}, user: ..., port: 22 }}`",
                            n.v
                        ),
                    };
                    p.error_hint(
                        &n.at,
                        format!("bastion {:?} is not a host in this inventory", n.v),
                        hint,
                    );
                    return None;
                };
                if is_local(&self.hosts[j]) {
                    p.error_hint(
                        &n.at,
                        format!("bastion {:?} is this machine (connection: local); it cannot be jumped through", n.v),
                        "remove it from the bastion list",
                    );
                    return None;
                }
                if visiting.contains(&j) {
                    let mut names: Vec<String> = visiting
                        .iter()
                        .map(|k| {
                            self.hosts[*k]
                                .name
                                .as_ref()
                                .map(|n| n.v.clone())
                                .unwrap_or_default()
                        })
                        .collect();
                    names.push(n.v.clone());
                    p.error_hint(
                        &n.at,
                        format!("the bastion chain loops: {}", names.join(" → ")),
                        format!(
                            "give {} a bastion that does not lead back, or `bastion: []`",
                            n.v
                        ),
                    );
                    return None;
                }
                let base = self.bases.get(j).cloned().flatten()?;
                // Later hops are reached through the hops before them; only the first
                // brings the chain that reaches it.
                if !first {
                    return Some(vec![base]);
                }
                let mut chain = self.chain(p, j, visiting)?;
                chain.push(base);
                Some(chain)
            }
        }
    }
}

fn non_empty(v: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
    (!v.is_empty()).then_some(v)
}
