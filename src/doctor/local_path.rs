//! S2: the local-path provisioner's `local-path-config` (`config.json`'s `nodePathMap`)
//! puts volumes under the inventory's `storage.local_path.path`. The `os` stage makes that
//! directory on every node, sized for data; a provisioner still on its default
//! (`/var/lib/rancher/k3s/storage`, or an edit by hand) fills the root disk instead, which
//! shows up as node DiskPressure and evicted pods long after the volumes were made.
//!
//! On each node (its own script), the same check's other half: once it is a node, the
//! directory exists (the provisioner's helper pod creates volumes inside it, and fails on
//! a node without it). Its space is H13's: the directory is one of the paths H13 measures.

use serde::Deserialize;

use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::inventory::Inventory;

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    node_path_map: Vec<NodePaths>,
}

#[derive(Deserialize)]
struct NodePaths {
    #[serde(default)]
    node: String,
    #[serde(default)]
    paths: Vec<String>,
}

/// S2 on one node: `storage.local_path.path` exists once the node's unit is installed. The
/// node script reports each measured path with its nearest existing parent (`disk`
/// entries): the directory exists when the two are the same.
pub fn host_check(input: &super::HostInput, out: &mut Findings) {
    let Some(path) = &input.plan.local_path else {
        return;
    };
    let Some(node) = super::distro::Distro::of(input.cluster).node_unit(input.host) else {
        return;
    };
    if input.ev.get(&format!("svc.{node}")).is_none() {
        out.add(
            "S2",
            Severity::Skip,
            format!("{node} is not installed here yet; the os stage makes {path}"),
        );
        return;
    }
    let entry = input
        .ev
        .all("disk")
        .into_iter()
        .find_map(|e| e.split_once('\t').filter(|(p, _)| p == path));
    match entry {
        Some((_, existing)) if existing == path => {
            out.add("S2", Severity::Ok, format!("{path} exists"));
        }
        Some((_, existing)) => {
            out.add(
                "S2",
                Severity::Error,
                format!(
                    "{path} (storage.local_path.path) is missing: local-path volumes for pods \
                     on this node cannot be made"
                ),
            )
            .evidence([format!("nearest existing parent: {existing}")])
            .fix(format!(
                "gpuctl install --inventory INVENTORY --only os --hosts {}",
                input.host.name
            ));
        }
        None => {
            out.add("S2", Severity::Skip, format!("{path} was not looked at"));
        }
    }
}

/// S2 from the cluster script's `local_path_config` answer.
pub fn check(inv: &Inventory, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let Some(lp) = &inv.storage.local_path else {
        f.add(
            "S2",
            Severity::Skip,
            "no storage.local_path in the inventory",
        );
        return f.list;
    };
    let want = lp.path.display().to_string();
    let fix = "gpuctl install --inventory INVENTORY --only storage";
    let Some(c) = ev.cmd("local_path_config") else {
        f.add("S2", Severity::Skip, "the local-path config was not read");
        return f.list;
    };
    if !c.ok() {
        f.add(
            "S2",
            Severity::Error,
            "no local-path-config ConfigMap: the local-path provisioner is not installed",
        )
        .evidence(c.lines.clone())
        .fix(fix);
        return f.list;
    }
    let config = serde_json::from_str::<ConfigMap>(&c.lines.join("\n"))
        .map_err(|e| e.to_string())
        .and_then(|cm| {
            let text = cm.data.get("config.json").ok_or("it has no config.json")?;
            serde_json::from_str::<Config>(text).map_err(|e| format!("config.json: {e}"))
        });
    let config = match config {
        Ok(c) => c,
        Err(why) => {
            f.add(
                "S2",
                Severity::Error,
                format!("local-path-config cannot be read: {why}"),
            )
            .fix(fix);
            return f.list;
        }
    };
    let evidence: Vec<String> = config
        .node_path_map
        .iter()
        .map(|m| format!("{}: {}", m.node, m.paths.join(", ")))
        .collect();
    let elsewhere: Vec<String> = config
        .node_path_map
        .iter()
        .filter(|m| m.paths.iter().any(|p| p.trim_end_matches('/') != want))
        .map(|m| format!("{} → {}", m.node, m.paths.join(", ")))
        .collect();
    if config.node_path_map.is_empty() || !elsewhere.is_empty() {
        f.add(
            "S2",
            Severity::Error,
            format!(
                "local-path volumes do not go to {want} (storage.local_path.path){}",
                if elsewhere.is_empty() {
                    ": nodePathMap is empty".to_string()
                } else {
                    format!(": {}", elsewhere.join("; "))
                }
            ),
        )
        .evidence(evidence)
        .fix(fix);
    } else {
        f.add(
            "S2",
            Severity::Ok,
            format!("local-path volumes go to {want}"),
        )
        .evidence(evidence);
    }
    f.list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn judge(config_json: &str) -> Finding {
        let cm = serde_json::json!({"data": {"config.json": config_json}}).to_string();
        let ev = Evidence::for_test(&[("local_path_config", 0, &cm)]);
        check(&sample::inventory(), &ev).remove(0)
    }

    #[test]
    fn volumes_must_go_to_the_inventorys_path() {
        let ok = judge(
            r#"{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/data/k8s/local-path"]}]}"#,
        );
        assert_eq!(ok.severity, Severity::Ok, "{ok:?}");
        let k3s = judge(
            r#"{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/var/lib/rancher/k3s/storage"]}]}"#,
        );
        assert_eq!(k3s.severity, Severity::Error);
        assert!(
            k3s.title.contains("/var/lib/rancher/k3s/storage"),
            "{}",
            k3s.title
        );
        assert!(k3s.fix.as_deref().unwrap().contains("--only storage"));
        assert_eq!(judge("not json").severity, Severity::Error);
        assert_eq!(judge(r#"{"nodePathMap": []}"#).severity, Severity::Error);
    }

    #[test]
    fn a_missing_config_map_is_an_error_and_no_local_path_a_skip() {
        let ev = Evidence::for_test(&[("local_path_config", 1, "Error from server (NotFound)")]);
        assert_eq!(
            check(&sample::inventory(), &ev)[0].severity,
            Severity::Error
        );
        let inv = sample::load(&sample::YAML.replace(
            "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n",
            "",
        ));
        assert_eq!(check(&inv, &ev)[0].severity, Severity::Skip);
    }

    fn node(disk: &str, k3s: bool) -> Vec<Finding> {
        use crate::doctor::testing::Case;
        let mut c = Case::healthy("n1", false).with(&format!("@@t kv disk={disk}"));
        if k3s {
            c = c.with("@@t kv svc.k3s=enabled active");
        }
        c.plan.local_path = Some("/data/k8s/lp".into());
        c.findings().into_iter().filter(|f| f.id == "S2").collect()
    }

    #[test]
    fn on_each_node_the_directory_exists_once_k3s_runs() {
        let ok = node("/data/k8s/lp\t/data/k8s/lp", true);
        assert_eq!(ok[0].severity, Severity::Ok, "{ok:?}");
        let missing = node("/data/k8s/lp\t/data", true);
        assert_eq!(missing[0].severity, Severity::Error);
        assert_eq!(missing[0].host, "n1");
        assert!(
            missing[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("--only os --hosts n1")
        );
        assert_eq!(
            node("/data/k8s/lp\t/data", false)[0].severity,
            Severity::Skip
        );
    }
}
