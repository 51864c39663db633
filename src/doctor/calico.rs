//! N1: calico's node agent ready on every node, from what the cluster script already read
//! (kube-system's DaemonSets and every pod).
//!
//! calico-node's readiness probe (`calico-node -felix-ready -bird-ready`) fails while Felix
//! has not programmed the node's routes and policies, and while one of BIRD's BGP sessions
//! is down: a ready calico-node on every node is the calico health the API can tell. The
//! BGP sessions themselves are shown only from inside the pod (`calicoctl node status`,
//! `birdcl`), which doctor does not enter; the fix says how to look.

use super::cluster::parse;
use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};
use crate::inventory::{Cni, Inventory};
use crate::kube::{DaemonSet, List, Pod};

/// The DaemonSet and pod label of calico's manifest (the `cni` stage installs it in
/// kube-system).
const DAEMONSET: &str = "calico-node";
const POD_LABEL: (&str, &str) = ("k8s-app", "calico-node");

pub fn check(inv: &Inventory, ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    if inv.cluster.cni != Cni::Calico {
        f.add(
            "N1",
            Severity::Skip,
            "cluster.cni is flannel: no calico to check",
        );
        return f.list;
    }
    let install = "gpuctl install --inventory INVENTORY --only cni";
    let sets = match parse::<List<DaemonSet>>(ev, "system_daemonsets") {
        Ok(s) => s,
        Err(why) => {
            f.add(
                "N1",
                Severity::Error,
                "cannot read kube-system's DaemonSets",
            )
            .evidence([why]);
            return f.list;
        }
    };
    let Some(ds) = sets.items.iter().find(|d| d.metadata.name == DAEMONSET) else {
        f.add(
            "N1",
            Severity::Error,
            format!("calico is not installed: no DaemonSet kube-system/{DAEMONSET}, so pods get no network"),
        )
        .fix(install);
        return f.list;
    };
    let (desired, ready) = (ds.status.desired_number_scheduled, ds.status.number_ready);
    let mut evidence = vec![format!(
        "daemonset kube-system/{DAEMONSET}: desiredNumberScheduled {desired}, numberReady {ready}"
    )];
    evidence.extend(unready_pods(ev));
    if desired == 0 {
        f.add(
            "N1",
            Severity::Error,
            format!("{DAEMONSET} is scheduled on no node"),
        )
        .evidence(evidence)
        .fix(format!("kubectl -n kube-system describe daemonset {DAEMONSET}   # its node selector and tolerations; then {install}"));
    } else if ready < desired {
        f.add(
            "N1",
            Severity::Error,
            format!("{DAEMONSET} is ready on {ready} of {desired} node(s): pods there have no working network"),
        )
        .evidence(evidence)
        .fix(format!(
            "kubectl -n kube-system describe pods -l {k}={v}; kubectl -n kube-system logs -l {k}={v} -c calico-node --tail=50   # BGP needs TCP 179 between the nodes (N4), and calico must pick the node's own address (N2)",
            k = POD_LABEL.0,
            v = POD_LABEL.1
        ));
    } else {
        f.add(
            "N1",
            Severity::Ok,
            format!("{DAEMONSET} ready on {ready} node(s) (its readiness covers Felix and the BGP sessions)"),
        )
        .evidence(evidence);
    }
    f.list
}

/// `node: pod not ready (Ready=False ...)` for each calico-node pod that is not ready, from
/// the pods the cluster script read (nothing when it could not read them).
fn unready_pods(ev: &Evidence) -> Vec<String> {
    let Ok(pods) = parse::<List<Pod>>(ev, "pods") else {
        return Vec::new();
    };
    pods.items
        .iter()
        .filter(|p| {
            p.metadata.namespace == "kube-system"
                && p.metadata.labels.get(POD_LABEL.0).map(String::as_str) == Some(POD_LABEL.1)
        })
        .filter_map(|p| {
            let ready = p.status.conditions.iter().find(|c| c.kind == "Ready");
            if ready.is_some_and(|c| c.status == "True") {
                return None;
            }
            let node = if p.spec.node_name.is_empty() {
                "(not scheduled)"
            } else {
                p.spec.node_name.as_str()
            };
            let why = ready.map_or_else(|| format!("phase {}", p.status.phase), |c| c.line());
            Some(format!("{node}: {} not ready ({why})", p.metadata.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::sample;

    fn calico() -> Inventory {
        sample::load(&sample::YAML.replace("  name: sample\n", "  name: sample\n  cni: calico\n"))
    }

    fn ds(desired: u32, ready: u32) -> String {
        format!(
            r#"{{"items": [{{"metadata": {{"name": "kube-proxy"}}}}, {{"metadata": {{"name": "calico-node"}}, "status": {{"desiredNumberScheduled": {desired}, "numberReady": {ready}}}}}]}}"#
        )
    }

    const PODS: &str = r#"{"items": [
      {"metadata": {"name": "calico-node-a", "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
       "spec": {"nodeName": "cp1"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
      {"metadata": {"name": "calico-node-b", "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
       "spec": {"nodeName": "gpu1"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [calico-node]"}]}},
      {"metadata": {"name": "web", "namespace": "default", "labels": {"k8s-app": "calico-node"}},
       "spec": {"nodeName": "gpu1"}, "status": {"phase": "Pending"}}
    ]}"#;

    fn one(findings: &[Finding]) -> &Finding {
        assert_eq!(findings.len(), 1, "{findings:?}");
        &findings[0]
    }

    #[test]
    fn ready_everywhere_is_ok() {
        let ev = Evidence::for_test(&[
            ("system_daemonsets", 0, &ds(3, 3)),
            ("pods", 0, r#"{"items": []}"#),
        ]);
        let f = check(&calico(), &ev);
        assert_eq!(one(&f).severity, Severity::Ok, "{f:?}");
        assert!(one(&f).title.contains("ready on 3 node(s)"));
    }

    #[test]
    fn an_unready_pod_is_an_error_naming_its_node() {
        let ev = Evidence::for_test(&[("system_daemonsets", 0, &ds(2, 1)), ("pods", 0, PODS)]);
        let f = check(&calico(), &ev);
        let n1 = one(&f);
        assert_eq!(n1.severity, Severity::Error);
        assert!(n1.title.contains("ready on 1 of 2 node(s)"), "{}", n1.title);
        assert!(
            n1.evidence
                .iter()
                .any(|l| l
                    .starts_with("gpu1: calico-node-b not ready (Ready=False (ContainersNotReady"))
                && !n1
                    .evidence
                    .iter()
                    .any(|l| l.contains("web") || l.starts_with("cp1")),
            "{:?}",
            n1.evidence
        );
        assert!(n1.fix.as_deref().is_some_and(|x| x.contains("TCP 179")));
    }

    #[test]
    fn missing_or_unscheduled_calico_is_an_error_with_the_cni_stage() {
        let none = Evidence::for_test(&[("system_daemonsets", 0, r#"{"items": []}"#)]);
        let f = check(&calico(), &none);
        assert_eq!(one(&f).severity, Severity::Error);
        assert!(one(&f).title.contains("calico is not installed"));
        assert!(
            one(&f)
                .fix
                .as_deref()
                .is_some_and(|x| x.contains("--only cni"))
        );

        let zero = Evidence::for_test(&[("system_daemonsets", 0, &ds(0, 0))]);
        assert!(
            one(&check(&calico(), &zero))
                .title
                .contains("scheduled on no node")
        );

        let refused =
            Evidence::for_test(&[("system_daemonsets", 1, "Error from server (Forbidden)")]);
        let f = check(&calico(), &refused);
        assert_eq!(one(&f).severity, Severity::Error);
        assert_eq!(one(&f).evidence, ["Error from server (Forbidden)"]);
    }

    #[test]
    fn flannel_is_skipped() {
        let f = check(&sample::inventory(), &Evidence::for_test(&[]));
        assert_eq!(one(&f).severity, Severity::Skip);
    }
}
