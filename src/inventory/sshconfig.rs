//! `~/.ssh/config`, read with the `ssh2-config` crate, so an inventory can name hosts by
//! the aliases the admin already uses with `ssh`.
//!
//! Only what gpuctl can act on is taken: `HostName`, `User`, `Port`, `IdentityFile` and
//! `ProxyJump`. As in OpenSSH, the first value found for a key wins, and `IdentityFile`
//! lines naming files that do not exist are skipped silently.

use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::problem::Problems;

/// What `~/.ssh/config` says about one name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// `ProxyJump` hops, outermost first; empty for none (or `ProxyJump none`).
    pub proxy_jump: Vec<String>,
}

/// Reads the ssh config. A missing file is no config; one that cannot be read or parsed
/// is a problem naming it.
pub fn load(path: &Path, home: &Path, p: &mut Problems) -> Option<SshConfig> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            p.error_file(
                format!("cannot read the ssh config {}: {e}", path.display()),
                Some("fix its permissions, or move it away to run without it".into()),
            );
            return None;
        }
    };
    let rules = ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    match SshConfig::default()
        .home_dir(home)
        .parse(&mut BufReader::new(file), rules)
    {
        Ok(cfg) => Some(cfg),
        Err(e) => {
            p.error_file(
                format!("cannot parse the ssh config {}: {e}", path.display()),
                Some("fix that file (check it with `ssh -G somehost`), or move it away to run without it".into()),
            );
            None
        }
    }
}

/// Looks up `alias` the way `ssh alias` would.
pub fn lookup(cfg: Option<&SshConfig>, alias: &str) -> Lookup {
    let Some(cfg) = cfg else {
        return Lookup::default();
    };
    let params = cfg.query(alias);
    let host_name = params
        .host_name
        .map(|h| h.replace("%h", alias).replace("%%", "%"));
    let proxy_jump = params
        .proxy_jump
        .unwrap_or_default()
        .into_iter()
        .flat_map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let proxy_jump = if proxy_jump.iter().any(|j| j.eq_ignore_ascii_case("none")) {
        Vec::new()
    } else {
        proxy_jump
    };
    Lookup {
        host_name,
        user: params.user,
        port: params.port,
        identity_files: params
            .identity_file
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.is_file())
            .collect(),
        proxy_jump,
    }
}

/// A `ProxyJump` hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
pub fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        (host.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((user, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs() {
        assert_eq!(
            parse_jump("jump@js.example.org:9022"),
            Some((Some("jump".into()), "js.example.org".into(), Some(9022)))
        );
        assert_eq!(parse_jump("js"), Some((None, "js".into(), None)));
        assert_eq!(
            parse_jump("ssh://u@[::1]:22"),
            Some((Some("u".into()), "::1".into(), Some(22)))
        );
        assert_eq!(parse_jump("h:port"), None);
    }
}
