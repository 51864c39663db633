//! Stage `stack` (cluster): the components of `stack.components`, from the bundle's
//! `manifests/<component>/` (rendered YAML: upstream kustomize trees and charts are
//! rendered on the connected side, so the air-gapped side needs neither), applied in the
//! inventory's order through [`super::manifests`]:
//!
//! 1. every object gets the label `gpuctl.io/component: <name>` (what the waits, `doctor`
//!    and an admin select it by) and every image is rewritten to the mirror, pinned by the
//!    bundle's lock, wherever it is written (ConfigMap contents and custom resources too);
//! 2. the CustomResourceDefinitions first, as their own manifest, and the apply returns
//!    only once they are Established: custom resources of the same component applied
//!    before would be refused;
//! 3. then everything else, Namespaces first, applied with retries while a webhook or an
//!    API the component just registered is not answering yet;
//! 4. the stage ends when every Deployment, StatefulSet and DaemonSet of the components is
//!    ready, or fails after `stack.timeout` naming each one that is not, with its last
//!    condition.
//!
//! A component taken out of the inventory is deleted (what was applied for it, by its
//! lists), its resources before its CRDs. Which parts go first inside a component, and what
//! in the inventory a component must not collide with, is in [`components`]; the kustomize
//! overlay `gpuctl render` writes for GitOps is in [`overlay`].

pub mod components;
pub mod overlay;
pub mod unrewritable;
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_yaml::Value;

use super::manifests::{self, DIR};
use super::ready::kubectl;
use crate::bundle::Bundle;
use crate::inventory::Inventory;
use crate::mirror::rewrite::Rewrite;
use crate::plan::{Finish, HostFacts, Op, Scope, Stage, Undo, Wait};
use crate::transport::shell::quote;
use workloads::COMPONENT_LABEL;

pub struct StackStage {
    /// Loaded and verified (its `manifests/` files) before any host is touched.
    pub bundle: Option<Arc<Bundle>>,
}

/// Where components live in a bundle, one directory each.
pub const MANIFESTS: &str = crate::bundle::MANIFESTS_DIR;

/// The manifest of the ingress gateway's TLS secret (`stack.tls`).
const TLS_MANIFEST: &str = "stack/tls.yaml";

/// How long the apply of a component's CRDs waits for them to be Established.
const CRD_TIMEOUT_SECS: u64 = 120;

impl Stage for StackStage {
    fn name(&self) -> &'static str {
        "stack"
    }
    fn scope(&self) -> Scope {
        Scope::Cluster
    }
    fn needs(&self) -> &'static [&'static str] {
        &["kubernetes"]
    }
    fn plan(&self, inv: &Inventory, _hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let kubectl = kubectl(inv);
        let mut ops = vec![prune(&inv.stack.components, kubectl)];
        let tls = inv.stack.tls.as_ref().map(tls_secret).transpose()?;
        if inv.stack.components.is_empty() {
            ops.extend(manifests::secret_manifest(TLS_MANIFEST, tls, kubectl)?);
            return Ok(ops);
        }
        let Some(bundle) = self.bundle.as_deref() else {
            bail!(
                "stack.components needs the bundle's {MANIFESTS}/<component>/ files, and no \
                 bundle is loaded: add `bundle:` to the inventory"
            );
        };
        let lock = manifests::lock(inv)?;
        let rewrite = inv.registry.as_ref().map(|r| Rewrite {
            mirror: &r.mirror,
            prefix: None,
            lock: lock.as_ref(),
        });
        for name in &inv.stack.components {
            if let Some(why) = components::known(name).and_then(|c| (c.conflict)(inv)) {
                bail!("stack component {name}: {why}");
            }
            ops.extend(component_ops(
                inv,
                bundle,
                rewrite.as_ref(),
                ("stack", name),
                kubectl,
            )?);
        }
        // After the components: the gateway's namespace comes with them.
        ops.extend(manifests::secret_manifest(TLS_MANIFEST, tls, kubectl)?);
        Ok(ops)
    }
    fn notes(&self, inv: &Inventory, _hf: &HostFacts) -> Vec<String> {
        unrewritable::note(inv, self.bundle.as_deref())
            .into_iter()
            .collect()
    }
    fn finish(&self, inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        if inv.stack.components.is_empty() {
            return None;
        }
        Some(workloads_wait(
            kubectl(inv),
            COMPONENT_LABEL,
            format!(
                "every workload of {} ready",
                inv.stack.components.join(", ")
            ),
            inv.stack.timeout,
        ))
    }
}

/// The Ops that apply one component's manifests from the bundle, kept on the first server
/// under `DIR/<group>/<name>/` (`group`: the stage, `stack` or `cni`): every document
/// labelled and rewritten ([`prepare`]), the CRDs first, waited for until Established,
/// then the rest.
pub fn component_ops(
    inv: &Inventory,
    bundle: &Bundle,
    rewrite: Option<&Rewrite<'_>>,
    (group, name): (&str, &str),
    kubectl: &str,
) -> anyhow::Result<Vec<Op>> {
    let files = documents(bundle, name)?;
    let mut docs: Vec<Value> = files.into_iter().flat_map(|(_, docs)| docs).collect();
    prepare(inv, name, &mut docs, rewrite);
    let (crds, rest) = split(docs);
    let wait_crds = format!(
        "{kubectl} wait --for=condition=Established customresourcedefinition \
         -l {COMPONENT_LABEL}={name} --timeout={CRD_TIMEOUT_SECS}s"
    );
    let mut ops = manifests::manifest(
        &format!("{group}/{name}/crds.yaml"),
        to_yaml(&crds)?,
        kubectl,
        Some(&wait_crds),
    )
    .with_context(|| format!("{group} component {name}: its CRDs"))?;
    ops.extend(
        manifests::manifest(
            &format!("{group}/{name}/resources.yaml"),
            to_yaml(&rest)?,
            kubectl,
            None,
        )
        .with_context(|| format!("{group} component {name}"))?,
    );
    Ok(ops)
}

/// Waits until every Deployment, StatefulSet and DaemonSet matching the label `selector`
/// is ready (judged by [`workloads::judge`], which names each one that is not).
pub fn workloads_wait(kubectl: &str, selector: &str, what: String, timeout: Duration) -> Finish {
    let get = |kind: &str| {
        format!("{kubectl} get {kind} --all-namespaces -l {selector} -o json --request-timeout=10s")
    };
    Finish::Wait(Wait {
        what,
        command: format!(
            "{} && {} && {}",
            get("deployments"),
            get("statefulsets"),
            get("daemonsets")
        ),
        timeout,
        interval: Duration::from_secs(5),
        judge: Arc::new(workloads::judge),
        hint: format!(
            "{kubectl} get deployments,statefulsets,daemonsets,pods --all-namespaces -l \
             {selector} -o wide"
        ),
    })
}

/// The `kubernetes.io/tls` Secret of `stack.tls`, from its local PEM files (checked to be
/// a certificate and a private key: a swapped or wrong file would otherwise surface as a
/// gateway that fails every handshake).
fn tls_secret(tls: &crate::inventory::StackTls) -> anyhow::Result<String> {
    let read = |path: &std::path::Path, what: &str, marker: &str| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("stack.tls.{what} {}: cannot read it ({e})", path.display())
        })?;
        if !text.contains(marker) {
            bail!(
                "stack.tls.{what} {}: no `{marker}` line: name the PEM {} file",
                path.display(),
                if what == "cert" {
                    "certificate"
                } else {
                    "private key"
                }
            );
        }
        Ok(text)
    };
    let cert = read(&tls.cert, "cert", "-----BEGIN CERTIFICATE-----")?;
    let key = read(&tls.key, "key", "PRIVATE KEY-----")?;
    // Registered for redaction: the key must never reach a log, even base64-encoded.
    let key_b64 = crate::secret::Secret::new(data_encoding::BASE64.encode(key.as_bytes()));
    let _key = crate::secret::Secret::new(key);
    Ok(format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n  name: {}\n  \
         namespace: {}\n  labels:\n    app.kubernetes.io/managed-by: gpuctl\ndata:\n  \
         tls.crt: {}\n  tls.key: {}\n",
        tls.name,
        tls.namespace,
        data_encoding::BASE64.encode(cert.as_bytes()),
        key_b64.expose()
    ))
}

/// The documents of component `name`: every `.yaml`/`.yml` file the bundle lists under
/// `manifests/<name>/`, in part order (see [`components::order`]), each with its path
/// relative to the component's directory.
pub fn documents(bundle: &Bundle, name: &str) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let prefix = format!("{MANIFESTS}/{name}/");
    let mut files: Vec<(String, std::path::PathBuf)> = bundle
        .files
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
        .filter(|f| f.path.ends_with(".yaml") || f.path.ends_with(".yml"))
        .map(|f| (f.path[prefix.len()..].to_string(), bundle.local_path(f)))
        .collect();
    if files.is_empty() {
        bail!(
            "stack component {name}: the bundle lists no {prefix}*.yaml: put the component's \
             rendered manifests there (`kubectl kustomize DIR > {prefix}all.yaml` on a \
             connected machine) and list them in bundle.yaml (see docs/stack.md)"
        );
    }
    files.sort_by_key(|(rel, _)| components::order(name, rel));
    files
        .into_iter()
        .map(|(rel, path)| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let shown = format!("{prefix}{rel}");
            let docs =
                crate::mirror::discover::parse_yaml(&shown, &text).map_err(anyhow::Error::msg)?;
            Ok((rel, docs))
        })
        .collect()
}

/// The YAML files of component `name` as they are in the bundle directory `dir` (listed
/// in `bundle.yaml` or not: for review, as `gpuctl render` writes them), in part order,
/// as (path relative to the component's directory, text). Hidden entries are skipped.
pub fn files_on_disk(dir: &std::path::Path, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let root = dir.join(MANIFESTS).join(name);
    if !root.is_dir() {
        bail!(
            "stack component {name}: {} does not exist: put the component's rendered \
             manifests there (see docs/stack.md)",
            root.display()
        );
    }
    let mut files = Vec::new();
    let mut dirs = vec![(root.clone(), String::new())];
    while let Some((path, rel)) = dirs.pop() {
        for e in std::fs::read_dir(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .flatten()
        {
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let child = if rel.is_empty() {
                file_name.clone()
            } else {
                format!("{rel}/{file_name}")
            };
            if e.path().is_dir() {
                dirs.push((e.path(), child));
            } else if file_name.ends_with(".yaml") || file_name.ends_with(".yml") {
                let text = std::fs::read_to_string(e.path())
                    .with_context(|| format!("cannot read {}", e.path().display()))?;
                files.push((child, text));
            }
        }
    }
    files.sort_by_key(|(rel, _)| components::order(name, rel));
    Ok(files)
}

/// Labels every object with its component and rewrites its images to the mirror; for
/// calico, its IP pool follows `cluster.pod_cidr`.
pub fn prepare(inv: &Inventory, name: &str, docs: &mut [Value], rewrite: Option<&Rewrite<'_>>) {
    for doc in docs.iter_mut() {
        set_label(doc, COMPONENT_LABEL, name);
        if let Some(rw) = rewrite {
            rw.document(doc);
        }
        if name == "calico" {
            set_env(
                doc,
                "CALICO_IPV4POOL_CIDR",
                &inv.cluster.pod_cidr.to_string(),
            );
        }
    }
}

fn set_label(doc: &mut Value, key: &str, value: &str) {
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_mapping_mut) else {
        return;
    };
    let labels = meta
        .entry(Value::from("labels"))
        .or_insert_with(|| Value::Mapping(Default::default()));
    if !labels.is_mapping() {
        *labels = Value::Mapping(Default::default());
    }
    if let Some(map) = labels.as_mapping_mut() {
        map.insert(Value::from(key), Value::from(value));
    }
}

/// Sets the value of env variable `name` in every container of a workload that has it.
fn set_env(doc: &mut Value, name: &str, value: &str) {
    let Some(containers) = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_sequence_mut)
    else {
        return;
    };
    for c in containers {
        let Some(env) = c.get_mut("env").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for e in env {
            if e.get("name").and_then(Value::as_str) == Some(name)
                && let Some(m) = e.as_mapping_mut()
            {
                m.insert(Value::from("value"), Value::from(value));
            }
        }
    }
}

/// CRDs, and everything else with Namespaces first (objects in a namespace are refused
/// before it exists).
fn split(docs: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    let kind = |d: &Value| {
        d.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (crds, rest): (Vec<Value>, Vec<Value>) = docs
        .into_iter()
        .filter(|d| !d.is_null())
        .partition(|d| kind(d) == "CustomResourceDefinition");
    let (mut namespaces, others): (Vec<Value>, Vec<Value>) =
        rest.into_iter().partition(|d| kind(d) == "Namespace");
    namespaces.extend(others);
    (crds, namespaces)
}

/// The documents as one multi-document YAML text; `None` when there are none.
fn to_yaml(docs: &[Value]) -> anyhow::Result<Option<String>> {
    if docs.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(Some(out))
}

/// Deletes the components on the server that `keep` no longer names: what was applied for
/// each (resources, then CRDs, by their `.applied` lists), then its directory. Undone
/// (by `reset`) it deletes every component.
fn prune(keep: &[String], kubectl: &str) -> Op {
    let dir = format!("{DIR}/stack");
    let kept = format!(" {} ", keep.join(" "));
    let delete = |skip: &str| {
        format!(
            "for d in {q}/*/; do [ -d \"$d\" ] || continue; c=$(basename \"$d\"); \
             case {kept} in *\" $c \"*) continue ;; esac; \
             for f in resources.yaml crds.yaml; do if [ -e \"$d$f.applied\" ]; then \
             while IFS= read -r o; do {delete}; \
             done < \"$d$f.applied\"; fi; done; rm -rf \"$d\"; done",
            delete = manifests::delete_object(kubectl),
            q = quote(&dir),
            kept = quote(skip),
        )
    };
    let none_left = |skip: &str| {
        format!(
            "for d in {q}/*/; do [ -d \"$d\" ] || continue; \
             case {kept} in *\" $(basename \"$d\") \"*) ;; *) exit 1 ;; esac; done; true",
            q = quote(&dir),
            kept = quote(skip),
        )
    };
    Op::Command {
        run: delete(&kept),
        guard: none_left(&kept),
        undo: Some(Undo {
            run: delete(" "),
            guard: none_left(" "),
        }),
        rerun_on: Vec::new(),
    }
}

#[cfg(test)]
#[path = "stack/tests.rs"]
mod tests;
