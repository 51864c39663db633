//! Manifests on the cluster: the one mechanism every cluster stage that creates Kubernetes
//! objects uses (`gpu`, `dns`, `storage`, `stack`, `users`).
//!
//! A template (`gpu/device-plugin.yaml`) is rendered for the inventory, its images are
//! rewritten to the mirror, and the result is written on the first server under
//! [`DIR`] and applied from there with server-side apply. Keeping the applied file on the
//! host is what makes the rest simple and idempotent:
//! - the File op's probe tells whether the manifest changed since it was last applied, and
//!   the apply command runs again only then ([`Op::Command`]'s `rerun_on`), or when the
//!   cluster drifted from it: an object deleted or a field gpuctl set changed by hand (its
//!   guard, `kubectl diff --server-side`);
//! - objects that left a manifest, or a whole component the inventory turns off, are
//!   deleted by the list of what the last apply created (see [`ops`]);
//! - the admin can read on the server exactly what gpuctl applied.

use anyhow::Context as _;

use crate::inventory::Inventory;
use crate::mirror::lock::{LockFile, in_bundle};
use crate::mirror::rewrite::Rewrite;
use crate::plan::{Op, Undo};
use crate::render::{Templates, context};
use crate::transport::shell::quote;

/// Where applied manifests are kept on the first server, by template name.
pub const DIR: &str = "/var/lib/gpuctl/manifests";

/// The field manager of gpuctl's server-side applies: `kubectl get -o yaml
/// --show-managed-fields` names it as the owner of what it set.
pub const FIELD_MANAGER: &str = "gpuctl";

/// The annotation of objects gpuctl applies but never deletes: a user's data volume when the
/// user is removed, a ConfigMap the admin may share with gpuctl (`coredns-custom`).
pub const KEEP_ANNOTATION: &str = "gpuctl.io/keep-on-removal";

/// The Ops that make the cluster hold exactly what `templates` (names without `.hbs`)
/// render to for `inv`, applied with `kubectl` (a command line, e.g. `k3s kubectl`).
///
/// Beside each manifest `F` two lists of its objects are kept, one per line as `kubectl
/// delete` takes them (`[-n NS] kind.group/name`): `F.objects`, what the manifest holds
/// now (a File op), and `F.applied`, what it held at the last successful apply. Objects in
/// the second and not the first left the manifest (a user removed): they are deleted
/// before the apply. Objects with [`KEEP_ANNOTATION`] are in neither list.
pub fn ops(inv: &Inventory, templates: &[&str], kubectl: &str) -> anyhow::Result<Vec<Op>> {
    let set = Templates::load(None)?;
    let ctx = context(inv)?;
    let lock = lock(inv)?;
    let rewrite = inv.registry.as_ref().map(|r| Rewrite {
        mirror: &r.mirror,
        prefix: None,
        lock: lock.as_ref(),
    });
    let mut ops = Vec::new();
    for name in templates {
        let text = match set.render_one(name, &ctx)? {
            Some(rendered) => Some(match &rewrite {
                Some(rw) => {
                    rw.text(&format!("template {name}"), &rendered.text)
                        .map_err(anyhow::Error::msg)?
                        .0
                }
                None => rendered.text,
            }),
            None => None,
        };
        ops.extend(
            manifest(name, text, kubectl, None)
                .with_context(|| format!("template {name} does not render valid objects"))?,
        );
    }
    Ok(ops)
}

/// How many times an apply is tried when the API server answers that something it needs
/// is not ready yet (a webhook without endpoints, a CRD just created), and the step of
/// the backoff between tries, in seconds (5 s, 10 s, … : a webhook's pod usually starts
/// within a minute).
pub const APPLY_TRIES: u32 = 6;
pub const APPLY_BACKOFF_SECS: u32 = 5;

/// What the API server says while something an apply needs is still starting: worth a
/// retry, unlike every other error (a typo stays a typo).
pub const NOT_READY_YET: [&str; 5] = [
    "failed calling webhook",
    "no endpoints available for service",
    "ensure CRDs are installed first",
    "connection refused",
    "the server is currently unable to handle the request",
];

/// The Ops for one manifest at `DIR/name`: `Some(text)` makes the cluster hold exactly
/// its objects (see [`ops`]); `None` deletes what was applied from it before. `then`: a
/// command run after each successful apply, before it is recorded (e.g. waiting for
/// applied CRDs to be Established); its failure fails the apply.
pub fn manifest(
    name: &str,
    text: Option<String>,
    kubectl: &str,
    then: Option<&str>,
) -> anyhow::Result<Vec<Op>> {
    manifest_ops(name, text, kubectl, then, false)
}

/// [`manifest`] for a manifest that holds a secret (a TLS key): its File is compared by
/// sha256 and never read back or shown in a diff.
pub fn secret_manifest(name: &str, text: Option<String>, kubectl: &str) -> anyhow::Result<Vec<Op>> {
    manifest_ops(name, text, kubectl, None, true)
}

fn manifest_ops(
    name: &str,
    text: Option<String>,
    kubectl: &str,
    then: Option<&str>,
    secret: bool,
) -> anyhow::Result<Vec<Op>> {
    let path = format!("{DIR}/{name}");
    let list = format!("{path}.objects");
    let applied = format!("{path}.applied");
    let (q, ql, qa) = (quote(&path), quote(&list), quote(&applied));
    let delete = delete_object(kubectl);
    let delete_applied =
        format!("if [ -e {qa} ]; then while IFS= read -r o; do {delete}; done < {qa}; fi");
    let remove = format!("{delete_applied}; rm -f {q} {ql} {qa}");
    let removed = format!("test ! -e {q} && test ! -e {qa}");
    let Some(text) = text else {
        // Turned off: what was applied before goes, then the files.
        return Ok(vec![Op::Command {
            run: remove,
            guard: removed,
            undo: None,
            rerun_on: Vec::new(),
        }]);
    };
    let objects = objects(&text)?;
    let apply = apply_with_retries(
        &format!(
            "{kubectl} apply --server-side --force-conflicts --field-manager={FIELD_MANAGER} -f {q}"
        ),
        APPLY_BACKOFF_SECS,
    );
    let then = then.map(|t| format!("\n{t} || exit 1")).unwrap_or_default();
    Ok(vec![
        Op::File {
            path: path.clone(),
            content: text,
            mode: 0o600,
            owner: "root:root".into(),
            secret,
        },
        Op::File {
            path: list.clone(),
            content: objects,
            mode: 0o600,
            owner: "root:root".into(),
            secret: false,
        },
        Op::Command {
            run: format!(
                "if [ -e {qa} ]; then while IFS= read -r o; do grep -qxF -- \"$o\" {ql} || {{ {delete}; }}; done < {qa}; fi\n\
                 {apply}{then}\ncp {ql} {qa}"
            ),
            // In sync: applying would change nothing (every object there, with gpuctl's
            // fields as the file says) and nothing left the file since.
            guard: format!(
                "{kubectl} diff --server-side --force-conflicts \
                 --field-manager={FIELD_MANAGER} -f {q} >/dev/null 2>&1 && cmp -s {ql} {qa}"
            ),
            undo: Some(Undo {
                run: remove,
                guard: removed,
            }),
            rerun_on: vec![path, list],
        },
    ])
}

/// Shell that deletes the object `$o` (a line of an objects list) and fails on any error
/// but one: its kind no longer being served (its CRD went first, taking every object of
/// the kind with it), for which there is nothing left to delete.
pub fn delete_object(kubectl: &str) -> String {
    format!(
        "out=$({kubectl} delete --ignore-not-found $o 2>&1) || case \"$out\" in \
         *\"have a resource type\"*|*\"could not find the requested resource\"*) ;; \
         *) printf '%s\\n' \"$out\" >&2; exit 1 ;; esac"
    )
}

/// `apply` (a command line) in a POSIX shell loop that tries again, after `backoff`,
/// 2×`backoff`, … seconds, while the API server answers [`NOT_READY_YET`], at most
/// [`APPLY_TRIES`] times; any other failure ends it at once. Its output is printed once,
/// from the last try; the loop fails with it when no try succeeded.
pub fn apply_with_retries(apply: &str, backoff: u32) -> String {
    let patterns: Vec<String> = NOT_READY_YET.iter().map(|p| format!("*'{p}'*")).collect();
    format!(
        "n=0\n\
         until out=$({apply} 2>&1); do\n\
         n=$((n + 1))\n\
         case \"$out\" in {}) ;; *) printf '%s\\n' \"$out\" >&2; exit 1 ;; esac\n\
         if [ \"$n\" -ge {APPLY_TRIES} ]; then printf '%s\\n(not ready after {APPLY_TRIES} tries)\\n' \"$out\" >&2; exit 1; fi\n\
         echo \"not ready yet, trying again in $((n * {backoff}))s: $out\" >&2\n\
         sleep $((n * {backoff}))\n\
         done\n\
         printf '%s\\n' \"$out\"",
        patterns.join("|")
    )
}

/// The objects of a YAML stream as `kubectl delete` arguments, one per line, in order;
/// objects with [`KEEP_ANNOTATION`] `"true"` left out.
pub fn objects(yaml: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let docs =
        crate::mirror::discover::parse_yaml("the manifest", yaml).map_err(anyhow::Error::msg)?;
    for (i, doc) in docs.iter().enumerate() {
        let field = |path: &[&str]| -> Option<String> {
            let mut v = doc;
            for key in path {
                v = v.get(*key)?;
            }
            v.as_str().map(str::to_string)
        };
        let (Some(api), Some(kind), Some(name)) = (
            field(&["apiVersion"]),
            field(&["kind"]),
            field(&["metadata", "name"]),
        ) else {
            anyhow::bail!("document {} lacks apiVersion, kind or metadata.name", i + 1);
        };
        if field(&["metadata", "annotations", KEEP_ANNOTATION]).as_deref() == Some("true") {
            continue;
        }
        let kind = kind.to_lowercase();
        let resource = match api.split_once('/') {
            Some((group, _)) => format!("{kind}.{group}"),
            None => kind,
        };
        if let Some(ns) = field(&["metadata", "namespace"]) {
            out.push_str(&format!("-n {ns} "));
        }
        out.push_str(&format!("{resource}/{name}\n"));
    }
    Ok(out)
}

/// The image lock of the inventory's bundle, when it has one (see
/// [`crate::mirror::lock::in_bundle`]): images it pinned are applied by digest.
pub(crate) fn lock(inv: &Inventory) -> anyhow::Result<Option<LockFile>> {
    let Some(path) = inv.bundle.as_deref().and_then(in_bundle) else {
        return Ok(None);
    };
    LockFile::read(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn a_rendered_template_is_written_then_applied_again_only_when_it_changed() {
        let inv = sample::inventory();
        let ops = ops(&inv, &["gpu/runtimeclass.yaml"], "k3s kubectl").unwrap();
        let [
            Op::File { path, content, .. },
            Op::File {
                path: list,
                content: objects,
                ..
            },
            Op::Command {
                run,
                guard,
                rerun_on,
                undo,
            },
        ] = &ops[..]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(path, "/var/lib/gpuctl/manifests/gpu/runtimeclass.yaml");
        assert!(content.contains("kind: RuntimeClass"), "{content}");
        assert_eq!(objects, "runtimeclass.node.k8s.io/nvidia\n");
        assert!(
            run.contains(
                "until out=$(k3s kubectl apply --server-side --force-conflicts \
                 --field-manager=gpuctl -f /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml 2>&1)"
            ),
            "{run}"
        );
        assert!(
            run.ends_with(
                "\ncp /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml.objects \
                 /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml.applied"
            ),
            "{run}"
        );
        assert!(guard.contains("diff --server-side"), "{guard}");
        assert!(guard.contains("-f /var/lib/gpuctl/manifests/gpu/runtimeclass.yaml"));
        assert_eq!(rerun_on, &[path.clone(), list.clone()]);
        assert!(
            undo.as_ref()
                .unwrap()
                .run
                .contains("delete --ignore-not-found $o 2>&1)")
        );
    }

    /// The retry loop, run by a real shell against a stand-in `apply` that answers with
    /// each failure in turn: retried while not ready yet, stopped at once otherwise.
    #[test]
    fn applies_are_retried_while_the_server_is_not_ready_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let run = |answers: &[&str]| {
            let script = dir.path().join("apply");
            let count = dir.path().join("count");
            let _ = std::fs::remove_file(&count);
            let mut body = String::from(
                "#!/bin/sh\nn=$(cat \"$0.count\" 2>/dev/null || echo 0)\necho $((n + 1)) > \"$0.count\"\ncase $n in\n",
            );
            for (i, a) in answers.iter().enumerate() {
                body.push_str(&format!("{i}) echo '{a}'; exit 1 ;;\n"));
            }
            body.push_str("*) echo applied ;;\nesac\n");
            std::fs::write(&script, body).unwrap();
            let _ = std::fs::remove_file(dir.path().join("apply.count"));
            std::process::Command::new("sh")
                .arg("-c")
                .arg(apply_with_retries(&format!("sh {}", script.display()), 0))
                .output()
                .unwrap()
        };
        let out = run(&[
            "Internal error occurred: failed calling webhook \"x\": no endpoints available for service \"w\"",
            "error: resource mapping not found for name: \"p\": ensure CRDs are installed first",
        ]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "applied\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not ready yet"));

        let out = run(&["error: spec.replicas: Invalid value"]);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "error: spec.replicas: Invalid value\n"
        );

        let out = run(&["failed calling webhook"; APPLY_TRIES as usize]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not ready after 6 tries"),
            "{out:?}"
        );
    }

    #[test]
    fn a_component_turned_off_is_deleted_by_its_last_applied_list() {
        let mut inv = sample::inventory();
        inv.gpu.dcgm_exporter = false;
        let ops = ops(&inv, &["gpu/dcgm-exporter.yaml"], "kubectl").unwrap();
        let [Op::Command { run, guard, .. }] = &ops[..] else {
            panic!("{ops:?}")
        };
        let f = "/var/lib/gpuctl/manifests/gpu/dcgm-exporter.yaml";
        assert_eq!(
            run,
            &format!(
                "if [ -e {f}.applied ]; then while IFS= read -r o; do {}; done < {f}.applied; \
                 fi; rm -f {f} {f}.objects {f}.applied",
                delete_object("kubectl")
            )
        );
        assert_eq!(guard, &format!("test ! -e {f} && test ! -e {f}.applied"));
    }

    /// Run by a real shell: a kind no longer served is nothing left to delete; any other
    /// failure stops the loop with kubectl's message.
    #[test]
    fn deleting_an_object_whose_kind_is_gone_succeeds_other_errors_fail() {
        let run = |answer: &str, status: i32| {
            let kubectl = format!("f() {{ echo {}; return {status}; }}; f", quote(answer));
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "o=profile.kubeflow.org/alice; {}",
                    delete_object(&kubectl)
                ))
                .output()
                .unwrap()
        };
        assert!(
            run(
                "error: the server doesn't have a resource type \"profile\"",
                1
            )
            .status
            .success()
        );
        assert!(run("deleted", 0).status.success());
        let out = run("Error from server (Forbidden): nope", 1);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "Error from server (Forbidden): nope\n"
        );
    }

    #[test]
    fn object_lists_name_kind_group_and_namespace_and_leave_kept_objects_out() {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: u-alice}\n---\n\
            apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: u-alice}\n---\n\
            apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv, annotations: {gpuctl.io/keep-on-removal: \"true\"}}\n";
        assert_eq!(
            objects(yaml).unwrap(),
            "namespace/u-alice\n-n u-alice deployment.apps/d\n"
        );
        let err = objects("kind: X\n").unwrap_err().to_string();
        assert!(err.contains("document 1 lacks"), "{err}");
    }

    #[test]
    fn images_go_to_the_mirror_when_the_inventory_has_one() {
        let mut inv = sample::inventory();
        inv.registry = Some(crate::inventory::Registry {
            mirror: "registry.lab:5000".into(),
            insecure: true,
            ca_file: None,
            username: None,
            password: None,
            served_by: None,
        });
        let ops = ops(&inv, &["gpu/device-plugin.yaml"], "kubectl").unwrap();
        let Op::File { content, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert!(
            content.contains("image: registry.lab:5000/nvidia/k8s-device-plugin:v0.17.0"),
            "{content}"
        );
        assert!(!content.contains("nvcr.io"), "{content}");

        // With the bundle's lock (in bundle/images/), the image is pinned to its digest.
        let bundle = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bundle.path().join("images")).unwrap();
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        crate::mirror::lock::LockFile::new(
            Vec::new(),
            vec![crate::mirror::lock::LockedImage {
                source: "nvcr.io/nvidia/k8s-device-plugin:v0.17.0".into(),
                reference: "nvcr.io/nvidia/k8s-device-plugin:v0.17.0".into(),
                digest: digest.parse().unwrap(),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                platforms: Vec::new(),
                skipped: Vec::new(),
            }],
        )
        .write(&bundle.path().join("images/images.lock.yaml"))
        .unwrap();
        inv.bundle = Some(bundle.path().to_path_buf());
        let pinned = super::ops(&inv, &["gpu/device-plugin.yaml"], "kubectl").unwrap();
        let Op::File { content, .. } = &pinned[0] else {
            panic!("{pinned:?}")
        };
        assert!(
            content.contains(&format!(
                "image: registry.lab:5000/nvidia/k8s-device-plugin:v0.17.0@{digest}"
            )),
            "{content}"
        );
    }

    /// Air-gap closure: whatever an example inventory turns on, every image the cluster
    /// stages would apply points at the mirror (an inventory without one gets one here).
    #[test]
    fn every_image_of_every_example_inventory_points_at_the_mirror() {
        let templates = Templates::load(None).unwrap();
        let names: Vec<String> = templates
            .sources()
            .keys()
            .map(|n| n.trim_end_matches(".hbs").to_string())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut seen = 0;
        let mut wrong = Vec::new();
        for example in ["single-box", "lab-ha-bastion", "kubeadm-calico"] {
            let mut inv = sample::example(example);
            if inv.registry.is_none() {
                inv.registry = Some(crate::inventory::Registry {
                    mirror: "registry.lab.example:5000".into(),
                    insecure: false,
                    ca_file: None,
                    username: None,
                    password: None,
                    served_by: None,
                });
            }
            let mirror = inv.registry.as_ref().map(|r| r.mirror.clone()).unwrap();
            for op in ops(&inv, &names, "kubectl").unwrap() {
                let Op::File { path, content, .. } = op else {
                    continue;
                };
                if !path.ends_with(".yaml") {
                    continue;
                }
                for doc in crate::mirror::discover::parse_yaml(&path, &content).unwrap() {
                    for hit in crate::mirror::scan::scan(&doc) {
                        seen += 1;
                        if hit.reference.registry != mirror {
                            wrong
                                .push(format!("{example}: {path} {}: {}", hit.path, hit.reference));
                        }
                    }
                }
            }
        }
        assert!(
            seen > 10,
            "only {seen} images found: the scan looks at nothing"
        );
        assert!(
            wrong.is_empty(),
            "not from the mirror:\n{}",
            wrong.join("\n")
        );
    }
}
