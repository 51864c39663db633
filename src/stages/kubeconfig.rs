//! Stage `kubeconfig` (cluster, the last one) and `gpuctl kubeconfig`: the admin
//! kubeconfig of the first server (`/etc/rancher/k3s/k3s.yaml`, kubeadm's
//! `/etc/kubernetes/admin.conf`) fetched, its server rewritten (k3s's
//! `https://127.0.0.1:6443`) to `https://<api_endpoint, else the first
//! server's address>:6443`, its cluster, context and user named after the cluster, and
//! written here with mode 0600 (default `.gpuctl/<cluster>/kubeconfig`), atomically.
//! `--merge` puts it into an existing kubeconfig, keeping the other contexts.
//!
//! The client key (or token) in it is a credential: every such value is registered for
//! redaction as soon as it is read, and nothing here prints the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_yaml::{Mapping, Value};

use super::kubernetes::k3s;
use crate::inventory::{Distribution, Inventory};
use crate::plan::{Fetch, Finish, HostFacts, Op, Scope, Stage};

pub struct Kubeconfig;

impl Stage for Kubeconfig {
    fn name(&self) -> &'static str {
        "kubeconfig"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn plan(&self, _inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        Ok(Vec::new())
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn finish(&self, inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        let dest = default_path(inv);
        let name = inv.cluster.name.clone();
        let server = server_url(inv);
        let out = dest.clone();
        Some(Finish::Fetch(Fetch {
            what: format!("the admin kubeconfig, as {}", dest.display()),
            path: admin_kubeconfig(inv).into(),
            dest,
            write: Arc::new(move |bytes, apply| {
                let ours = rewrite(&String::from_utf8_lossy(bytes), &name, &server)?;
                save(&out, &ours, false, apply)
            }),
        }))
    }
}

/// Where the first server keeps the admin kubeconfig.
pub fn admin_kubeconfig(inv: &Inventory) -> &'static str {
    match inv.cluster.distribution {
        Distribution::K3s => k3s::ADMIN_KUBECONFIG,
        Distribution::Kubeadm => super::kubernetes::kubeadm::ADMIN_KUBECONFIG,
    }
}

/// `.gpuctl/<cluster>/kubeconfig` beside the inventory.
pub fn default_path(inv: &Inventory) -> PathBuf {
    inv.state_dir().join("kubeconfig")
}

/// `https://<api_endpoint, else the first server's address>:6443`.
pub fn server_url(inv: &Inventory) -> String {
    format!(
        "https://{}",
        super::kubernetes::kubeadm::control_plane_endpoint(inv)
    )
}

/// The admin kubeconfig as k3s wrote it, made this cluster's: one cluster, user and
/// context, all named `name`, the cluster's server set to `server`, everything else of
/// them (CA data, client certificate and key) kept. Credentials are registered for
/// redaction.
pub fn rewrite(text: &str, name: &str, server: &str) -> anyhow::Result<Value> {
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|_| anyhow::anyhow!("the admin kubeconfig of the first server is not YAML"))?;
    let first = |key: &str, inner: &str| -> anyhow::Result<Mapping> {
        doc.get(key)
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(|e| e.get(inner))
            .and_then(Value::as_mapping)
            .cloned()
            .with_context(|| {
                format!("the admin kubeconfig of the first server has no {key}[0].{inner}")
            })
    };
    let mut cluster = first("clusters", "cluster")?;
    let user = first("users", "user")?;
    for key in ["client-key-data", "token", "password"] {
        if let Some(Value::String(v)) = user.get(key) {
            crate::secret::Secret::new(v.clone());
        }
    }
    cluster.insert("server".into(), server.into());
    let entry = |inner: &str, value: Value| {
        let mut m = Mapping::new();
        m.insert("name".into(), name.into());
        m.insert(inner.into(), value);
        Value::Sequence(vec![Value::Mapping(m)])
    };
    let mut context = Mapping::new();
    context.insert("cluster".into(), name.into());
    context.insert("user".into(), name.into());
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert("clusters".into(), entry("cluster", Value::Mapping(cluster)));
    out.insert("contexts".into(), entry("context", Value::Mapping(context)));
    out.insert("current-context".into(), name.into());
    out.insert("preferences".into(), Value::Mapping(Mapping::new()));
    out.insert("users".into(), entry("user", Value::Mapping(user)));
    Ok(Value::Mapping(out))
}

/// `ours` merged into the kubeconfig `existing`: its cluster, context and user replace the
/// entries of the same name or are added; every other entry stays. The current context
/// becomes ours only when there was none.
pub fn merge(existing: &str, ours: &Value) -> anyhow::Result<Value> {
    let mut doc: Value = if existing.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(existing).map_err(|e| {
            anyhow::anyhow!("the kubeconfig to merge into is not YAML ({e}); it was left alone")
        })?
    };
    let Value::Mapping(map) = &mut doc else {
        bail!("the kubeconfig to merge into is not a mapping; it was left alone");
    };
    for (key, value) in [("apiVersion", "v1"), ("kind", "Config")] {
        map.entry(key.into()).or_insert_with(|| value.into());
    }
    for key in ["clusters", "contexts", "users"] {
        let theirs = map
            .entry(key.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if theirs.is_null() {
            *theirs = Value::Sequence(Vec::new());
        }
        let Value::Sequence(list) = theirs else {
            bail!("`{key}` in the kubeconfig to merge into is not a list; it was left alone");
        };
        for entry in ours
            .get(key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = entry.get("name");
            match list.iter_mut().find(|e| e.get("name") == name) {
                Some(slot) => *slot = entry.clone(),
                None => list.push(entry.clone()),
            }
        }
    }
    let current = map
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or("");
    if current.is_empty()
        && let Some(c) = ours.get("current-context")
    {
        map.insert("current-context".into(), c.clone());
    }
    Ok(doc)
}

/// Writes `ours` to `path` (merged into what is there with `merge`), mode 0600,
/// atomically. `Ok(None)` when the file already says exactly that; nothing is written
/// unless `apply`.
pub fn save(
    path: &Path,
    ours: &Value,
    merge_into: bool,
    apply: bool,
) -> anyhow::Result<Option<String>> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let doc = match (&current, merge_into) {
        (Some(text), true) => merge(text, ours)?,
        _ => ours.clone(),
    };
    let text = serde_yaml::to_string(&doc)?;
    let mode_ok = std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt as _;
        m.permissions().mode() & 0o777 == 0o600
    });
    if current.as_deref() == Some(text.as_str()) && mode_ok {
        return Ok(None);
    }
    let change = match current {
        None => format!("write {} (mode 0600)", path.display()),
        Some(_) if merge_into => format!("merge into {} (mode 0600)", path.display()),
        Some(_) => format!(
            "replace {} (mode 0600; credentials not shown)",
            path.display()
        ),
    };
    if apply {
        crate::state::atomic::write_mode(path, text.as_bytes(), Some(0o600))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Some(change))
}

#[cfg(test)]
#[path = "kubeconfig_tests.rs"]
mod tests;
