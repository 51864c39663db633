//! The kustomize overlay of a stack component, for admins who apply with their own tools
//! (GitOps): `gpuctl render` writes, per component, the bundle's upstream files under
//! `upstream/` and a `kustomization.yaml` that makes `kubectl kustomize` produce what the
//! `stack` stage applies —
//!
//! - `labels`: the component label on every object;
//! - `images`: every image in a container field, by the name upstream wrote, to its place
//!   in the mirror, pinned by digest when the lock has it;
//! - `patches`: every other place an image is named (ConfigMap contents, env values,
//!   arguments, custom resources), which kustomize's image transformer never looks at,
//!   as a JSON 6902 `replace` of that value with the value the stage applies.
//!
//! An image name written with two different tags cannot be one `images` entry (kustomize
//! maps names, not references): its container fields become patches too.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::workloads::COMPONENT_LABEL;
use crate::mirror::rewrite::Rewrite;

/// One file of the overlay, relative to the component's directory.
pub struct File {
    pub path: String,
    pub text: String,
}

/// The overlay of component `name` from its files as the bundle has them (`(path relative
/// to the component directory, text)`, in apply order).
pub fn overlay(
    name: &str,
    files: &[(String, String)],
    rewrite: Option<&Rewrite<'_>>,
) -> Result<Vec<File>, String> {
    let mut out = Vec::new();
    let mut resources = Vec::new();
    // name as upstream wrote it → (new name, tag or digest) per reference seen.
    let mut images: BTreeMap<String, BTreeMap<String, Target>> = BTreeMap::new();
    let mut changes: Vec<Change> = Vec::new();
    for (rel, text) in files {
        let path = format!("upstream/{rel}");
        resources.push(path.clone());
        out.push(File {
            path,
            text: text.clone(),
        });
        let Some(rw) = rewrite else { continue };
        for doc in crate::mirror::discover::parse_yaml(rel, text)? {
            let mut new = doc.clone();
            rw.document(&mut new);
            let mut paths = Vec::new();
            differences(&doc, &new, &mut Vec::new(), &mut paths);
            for (pointer, old, value) in paths {
                if is_container_image(&pointer) {
                    let (from_name, _) = split_reference(&old);
                    let (to_name, pin) = split_reference(&value);
                    images.entry(from_name.to_string()).or_default().insert(
                        old.clone(),
                        Target {
                            name: to_name.to_string(),
                            pin,
                        },
                    );
                }
                changes.push(Change {
                    target: target_of(&doc),
                    pointer,
                    old,
                    value,
                });
            }
        }
    }
    // Names mapped to one target become `images` entries; the others stay patches.
    let mut entries = Vec::new();
    let mut by_images = std::collections::BTreeSet::new();
    for (from, targets) in &images {
        let distinct: std::collections::BTreeSet<(&String, &Pin)> =
            targets.values().map(|t| (&t.name, &t.pin)).collect();
        if distinct.len() != 1 {
            continue;
        }
        let Some(t) = targets.values().next() else {
            continue;
        };
        let mut entry = serde_yaml::Mapping::new();
        entry.insert("name".into(), from.as_str().into());
        entry.insert("newName".into(), t.name.as_str().into());
        match &t.pin {
            Pin::Digest(d) => entry.insert("digest".into(), d.as_str().into()),
            Pin::Tag(tag) => entry.insert("newTag".into(), tag.as_str().into()),
            Pin::None => None,
        };
        entries.push(Value::Mapping(entry));
        by_images.extend(targets.keys().cloned());
    }
    let mut patches: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for c in changes {
        if is_container_image(&c.pointer) && by_images.contains(&c.old) {
            continue;
        }
        let key = serde_yaml::to_string(&c.target).unwrap_or_default();
        let mut op = serde_yaml::Mapping::new();
        op.insert("op".into(), "replace".into());
        op.insert("path".into(), c.pointer.into());
        op.insert("value".into(), c.value.into());
        patches
            .entry(key)
            .or_insert_with(|| (c.target.clone(), Vec::new()))
            .1
            .push(Value::Mapping(op));
    }
    let mut k = serde_yaml::Mapping::new();
    k.insert(
        "apiVersion".into(),
        "kustomize.config.k8s.io/v1beta1".into(),
    );
    k.insert("kind".into(), "Kustomization".into());
    k.insert(
        "resources".into(),
        Value::Sequence(resources.into_iter().map(Value::from).collect()),
    );
    let mut pairs = serde_yaml::Mapping::new();
    pairs.insert(COMPONENT_LABEL.into(), name.into());
    let mut labels = serde_yaml::Mapping::new();
    labels.insert("pairs".into(), Value::Mapping(pairs));
    k.insert(
        "labels".into(),
        Value::Sequence(vec![Value::Mapping(labels)]),
    );
    if !entries.is_empty() {
        k.insert("images".into(), Value::Sequence(entries));
    }
    if !patches.is_empty() {
        let list = patches
            .into_values()
            .map(|(target, ops)| {
                let mut p = serde_yaml::Mapping::new();
                p.insert("target".into(), target);
                p.insert(
                    "patch".into(),
                    serde_yaml::to_string(&Value::Sequence(ops))
                        .unwrap_or_default()
                        .into(),
                );
                Value::Mapping(p)
            })
            .collect();
        k.insert("patches".into(), Value::Sequence(list));
    }
    let body = serde_yaml::to_string(&Value::Mapping(k)).map_err(|e| e.to_string())?;
    out.push(File {
        path: "kustomization.yaml".into(),
        text: format!(
            "# Written by gpuctl render: component {name} as the stack stage applies it \
             (images to the mirror).\n{body}"
        ),
    });
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pin {
    Digest(String),
    Tag(String),
    None,
}

struct Target {
    name: String,
    pin: Pin,
}

struct Change {
    target: Value,
    pointer: String,
    old: String,
    value: String,
}

/// `name[:tag][@digest]` → (name, what pins it); a digest wins over a tag, as for
/// kustomize's `digest:`.
fn split_reference(reference: &str) -> (&str, Pin) {
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    let pin = match (digest, tag) {
        (Some(d), _) => Pin::Digest(d.to_string()),
        (None, Some(t)) => Pin::Tag(t.to_string()),
        (None, None) => Pin::None,
    };
    (name, pin)
}

/// Whether kustomize's image transformer rewrites the value at `pointer`: the `image` of
/// an entry of a `containers` or `initContainers` list, wherever that list is.
fn is_container_image(pointer: &str) -> bool {
    let parts: Vec<&str> = pointer.split('/').collect();
    matches!(
        parts.as_slice(),
        [.., list, index, "image"]
            if (*list == "containers" || *list == "initContainers")
                && index.parse::<usize>().is_ok()
    )
}

/// The patch target of an object: its group, version, kind, name and namespace.
fn target_of(doc: &Value) -> Value {
    let field = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let api = field(doc.get("apiVersion"));
    let (group, version) = api.split_once('/').unwrap_or(("", api.as_str()));
    let mut t = serde_yaml::Mapping::new();
    if !group.is_empty() {
        t.insert("group".into(), group.into());
    }
    t.insert("version".into(), version.into());
    t.insert("kind".into(), field(doc.get("kind")).into());
    let meta = doc.get("metadata");
    t.insert(
        "name".into(),
        field(meta.and_then(|m| m.get("name"))).into(),
    );
    let ns = field(meta.and_then(|m| m.get("namespace")));
    if !ns.is_empty() {
        t.insert("namespace".into(), ns.into());
    }
    Value::Mapping(t)
}

/// Every string of `old` that differs in `new` (same shape), as (JSON pointer, old, new).
fn differences(
    old: &Value,
    new: &Value,
    at: &mut Vec<String>,
    out: &mut Vec<(String, String, String)>,
) {
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in a {
                if let (Some(key), Some(w)) = (k.as_str(), b.get(k)) {
                    at.push(key.replace('~', "~0").replace('/', "~1"));
                    differences(v, w, at, out);
                    at.pop();
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                at.push(i.to_string());
                differences(v, w, at, out);
                at.pop();
            }
        }
        (Value::String(a), Value::String(b)) if a != b => {
            out.push((format!("/{}", at.join("/")), a.clone(), b.clone()));
        }
        (Value::Tagged(a), Value::Tagged(b)) => differences(&a.value, &b.value, at, out),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_pin_with_ports_kept() {
        assert_eq!(
            split_reference("registry.lab:5000/a/b:v1@sha256:ab"),
            ("registry.lab:5000/a/b", Pin::Digest("sha256:ab".into()))
        );
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox", Pin::Tag("1.36".into()))
        );
        assert_eq!(
            split_reference("registry.lab:5000/x"),
            ("registry.lab:5000/x", Pin::None)
        );
        assert!(is_container_image(
            "/spec/template/spec/initContainers/0/image"
        ));
        assert!(!is_container_image("/spec/workerTemplate/baseImage"));
        assert!(!is_container_image("/data/images.json"));
    }
}
