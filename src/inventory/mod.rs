//! Inventory: raw YAML → validated [`Inventory`] with defaults filled and references
//! resolved. Nothing contacts a host before this succeeds.
//!
//! Loading goes file → YAML tree with positions (`node`) → raw values (`raw`, via the
//! readers in `decode`) → resolved inventory (`resolve`, `hosts`, `endpoint`). Every step
//! records problems instead of stopping, so [`InventoryError`] lists all of them, each
//! with `file:line:col`. The schema is documented in `docs/inventory.md`.

pub mod ansible;
mod decode;
pub mod edit;
mod endpoint;
mod hosts;
pub mod model;
mod node;
pub mod problem;
mod raw;
mod raw_host;
mod resolve;
mod schema;
mod sshconfig;
pub mod syntax;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use model::*;
pub use problem::{InventoryError, Problem};
pub use resolve::{K3S_VERSION, KUBEADM_VERSION, default_tiers};

/// The commented starter inventory `gpuctl init` writes.
pub const STARTER: &str = include_str!("starter.yaml");

/// Knobs for loading, mostly so tests can point at fixture files and a fake home.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `~/.ssh/config` to honour; `None` means `<home>/.ssh/config`.
    pub ssh_config: Option<PathBuf>,
    /// Ignore the ssh config entirely (checks that must not depend on this machine).
    pub no_ssh_config: bool,
    /// The home directory for `~`, default keys and `~/.ssh/known_hosts`; `None` means
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// The login name when nothing else gives one; `None` means `$USER`, `$LOGNAME`, or
    /// the name of this process's uid.
    pub user: Option<String>,
}

/// Reads, validates and resolves an inventory file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let shown = path.display().to_string();
    let mut p = problem::Problems::new(&shown);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                Some("check the path, or run `gpuctl init` to write a starter inventory".into())
            } else {
                None
            };
            p.error_file(format!("cannot read the inventory: {e}"), hint);
            return Err(finish_err(p));
        }
    };
    // Relative paths in the file (keys, bundle, known_hosts) are relative to its directory.
    let base_dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    load_str(&text, path, &base_dir, opts, p)
}

/// Validates inventory text as if it were the file at `path` (for `init`'s self-check
/// and tests).
pub fn load_text(
    text: &str,
    path: &Path,
    base_dir: &Path,
    opts: &LoadOptions,
) -> Result<Inventory, InventoryError> {
    let p = problem::Problems::new(path.display().to_string());
    load_str(text, path, base_dir, opts, p)
}

fn load_str(
    text: &str,
    path: &Path,
    base_dir: &Path,
    opts: &LoadOptions,
    mut p: problem::Problems,
) -> Result<Inventory, InventoryError> {
    let Some(root) = node::parse(text, &mut p) else {
        return Err(finish_err(p));
    };
    let raw = raw::decode(&mut p, &root);
    let home = opts
        .home
        .clone()
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let ssh_config_path = opts
        .ssh_config
        .clone()
        .unwrap_or_else(|| home.join(".ssh").join("config"));
    let ssh_config = if opts.no_ssh_config {
        None
    } else {
        sshconfig::load(&ssh_config_path, &home, &mut p)
    };
    let user = opts.user.clone().or_else(login_name);
    let env = endpoint::SshEnv {
        home: &home,
        base_dir,
        default_user: user.as_deref(),
        config: ssh_config.as_ref(),
    };
    let inventory = resolve::resolve(&mut p, &raw, &env, path.to_path_buf());
    let warnings = p.finish()?;
    match inventory {
        Some(mut inv) => {
            inv.warnings = warnings.iter().map(ToString::to_string).collect();
            Ok(inv)
        }
        // Resolution only gives up after recording a problem; this is a safety net.
        None => Err(InventoryError {
            file: path.display().to_string(),
            problems: vec![Problem {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                path: String::new(),
                message: "the inventory could not be resolved".into(),
                hint: None,
            }],
        }),
    }
}

/// The local login name, as ssh finds it: `$USER`, `$LOGNAME`, else the passwd entry of
/// this process's uid (containers and cron often run without `$USER`).
fn login_name() -> Option<String> {
    let env = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty());
    if env.is_some() {
        return env;
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}

fn finish_err(p: problem::Problems) -> InventoryError {
    match p.finish() {
        Err(e) => e,
        Ok(_) => InventoryError {
            file: String::new(),
            problems: Vec::new(),
        },
    }
}
