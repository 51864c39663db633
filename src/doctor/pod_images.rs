//! M4: every image the cluster runs comes through the mirror. Read from every pod's
//! containers and init containers, and from the local-path provisioner's helper pod
//! template (a ConfigMap: the helper pod is only created when a volume is, so a public
//! image there fails weeks after install). An image is covered when it names the mirror
//! itself, or a registry the node's runtime pulls through the mirror: with containerd
//! (k3s's `registries.yaml`) every registry the `kubernetes` stage mirrors, with docker
//! (`registry-mirrors`) Docker Hub only. Anything else is pulled from the internet, which an
//! air-gapped node cannot reach: it works while the image is cached, and breaks on the
//! node that lacks it.

use std::collections::BTreeMap;

use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::inventory::{ContainerRuntime, Inventory};
use crate::registry::Reference;
use crate::stages::kubernetes::k3s::MIRRORED;

/// The registries a node pulls through the mirror, the mirror included.
fn covered(inv: &Inventory, mirror: &str) -> Vec<String> {
    let mut regs = vec![mirror.to_string()];
    match inv.cluster.container_runtime {
        ContainerRuntime::Containerd => regs.extend(MIRRORED.iter().map(|r| r.to_string())),
        ContainerRuntime::Docker => regs.push("docker.io".into()),
    }
    regs
}

/// Images named by `image:` lines of the local-path helper pod template.
fn helper_images(ev: &Evidence) -> Vec<String> {
    let Some(c) = ev.cmd("local_path_config").filter(|c| c.ok()) else {
        return Vec::new();
    };
    #[derive(serde::Deserialize)]
    struct Cm {
        #[serde(default)]
        data: BTreeMap<String, String>,
    }
    let Ok(cm) = serde_json::from_str::<Cm>(&c.lines.join("\n")) else {
        return Vec::new();
    };
    cm.data
        .values()
        .flat_map(|text| text.lines())
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(|i| i.trim().trim_matches(['"', '\'']).to_string())
        .filter(|i| !i.is_empty())
        .collect()
}

/// M4 from the cluster script's `pods` and `local_path_config` answers.
pub fn check(inv: &Inventory, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let Some(r) = &inv.registry else {
        f.add("M4", Severity::Skip, "no registry.mirror in the inventory");
        return f.list;
    };
    let pods: crate::kube::List<crate::kube::Pod> = match ev.cmd("pods") {
        Some(c) if c.ok() => match crate::kube::list(&c.lines.join("\n"), "pod") {
            Ok(l) => l,
            Err(why) => {
                f.add("M4", Severity::Error, why);
                return f.list;
            }
        },
        _ => {
            f.add("M4", Severity::Skip, "the pods were not read");
            return f.list;
        }
    };
    // image → where it is used
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &pods.items {
        for c in p.spec.containers.iter().chain(&p.spec.init_containers) {
            users
                .entry(c.image.clone())
                .or_default()
                .push(format!("pod {}/{}", p.metadata.namespace, p.metadata.name));
        }
    }
    for image in helper_images(ev) {
        users
            .entry(image)
            .or_default()
            .push("kube-system/local-path-config (helper pod)".into());
    }
    users.remove("");
    let covered = covered(inv, &r.mirror);
    let mut public = Vec::new();
    for (image, at) in &users {
        let registry = Reference::parse(image).map_or_else(|_| String::new(), |r| r.registry);
        if !covered.contains(&registry) {
            let more = if at.len() > 3 {
                format!(" and {} more", at.len() - 3)
            } else {
                String::new()
            };
            public.push(format!(
                "{image} ({}{more})",
                at.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if public.is_empty() {
        f.add(
            "M4",
            Severity::Ok,
            format!(
                "all {} images of the cluster come through the mirror {}",
                users.len(),
                r.mirror
            ),
        );
        return f.list;
    }
    let how = match inv.cluster.container_runtime {
        ContainerRuntime::Containerd => format!(
            "the nodes pull {} through the mirror; name the image by one of them or by {} \
             (gpuctl mirror-images push keeps the upstream path under the mirror)",
            MIRRORED.join(", "),
            r.mirror
        ),
        ContainerRuntime::Docker => format!(
            "docker pulls only Docker Hub through the mirror; name the image by {} (e.g. {}/ghcr.io/org/app:tag is \
             {}/org/app:tag: the upstream path is kept)",
            r.mirror, r.mirror, r.mirror
        ),
    };
    f.add(
        "M4",
        Severity::Warn,
        format!(
            "{} image(s) pulled from outside the mirror, which air-gapped nodes cannot reach",
            public.len()
        ),
    )
    .evidence(public)
    .fix(format!(
        "{how}; push the image first (gpuctl mirror-images push), then patch the workload \
         or the ConfigMap"
    ));
    f.list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn with_mirror(runtime: &str) -> Inventory {
        let yaml = sample::YAML.replace(
            "cluster:\n  name: sample\n",
            &format!("registry:\n  mirror: registry.lab:5000\ncluster:\n  name: sample\n  container_runtime: {runtime}\n"),
        );
        sample::load(&yaml)
    }

    const PODS: &str = r#"{"items": [
        {"metadata": {"name": "coredns-1", "namespace": "kube-system"},
         "spec": {"containers": [{"image": "registry.lab:5000/rancher/mirrored-coredns-coredns:1.11"}]}},
        {"metadata": {"name": "app", "namespace": "alice"},
         "spec": {"initContainers": [{"image": "busybox:1.36"}],
                  "containers": [{"image": "ghcr.io/org/app:v1"}, {"image": "example.com/private/tool:2"}]}}
    ]}"#;
    const HELPER: &str = r#"{"data": {"helperPod.yaml": "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: helper-pod\n    image: \"docker.io/rancher/mirrored-library-busybox:1.36.1\"\n"}}"#;

    fn judge(inv: &Inventory) -> Finding {
        let ev = Evidence::for_test(&[("pods", 0, PODS), ("local_path_config", 0, HELPER)]);
        check(inv, &ev).remove(0)
    }

    #[test]
    fn containerd_pulls_the_mirrored_registries_through_the_mirror() {
        let f = judge(&with_mirror("containerd"));
        assert_eq!(f.severity, Severity::Warn, "{f:?}");
        assert_eq!(
            f.title,
            "1 image(s) pulled from outside the mirror, which air-gapped nodes cannot reach"
        );
        assert_eq!(f.evidence, ["example.com/private/tool:2 (pod alice/app)"]);
    }

    #[test]
    fn docker_pulls_only_docker_hub_through_the_mirror() {
        let f = judge(&with_mirror("docker"));
        assert_eq!(f.severity, Severity::Warn);
        assert_eq!(
            f.evidence,
            [
                "example.com/private/tool:2 (pod alice/app)",
                "ghcr.io/org/app:v1 (pod alice/app)"
            ]
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap()
                .contains("docker pulls only Docker Hub")
        );
    }

    #[test]
    fn everything_through_the_mirror_is_ok_and_no_mirror_is_a_skip() {
        let inv = with_mirror("containerd");
        let ev = Evidence::for_test(&[(
            "pods",
            0,
            r#"{"items": [{"metadata": {"name": "a", "namespace": "n"}, "spec": {"containers": [{"image": "registry.lab:5000/x/y:1"}]}}]}"#,
        )]);
        assert_eq!(check(&inv, &ev)[0].severity, Severity::Ok);
        let plain = sample::inventory();
        assert_eq!(check(&plain, &ev)[0].severity, Severity::Skip);
    }
}
