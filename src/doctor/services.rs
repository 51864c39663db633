//! K2: the services a node needs run, and start at boot: `k3s` on servers, `k3s-agent` on
//! workers, `docker` with the docker runtime; with kubeadm the `kubelet` on every node and
//! the system's `containerd` (or `docker`) it runs pods through. Read per host
//! (`systemctl is-enabled` and `is-active`, only for units that exist), judged against what
//! the inventory makes the host. A unit that is running but not enabled works until the
//! next reboot, which is when nobody is watching.
//!
//! K4, before install: no files of an earlier Kubernetes on the node (a kubeadm cluster's
//! static pods and etcd, a half-removed k3s), which the new install would trip over.

use super::distro::Distro;
use super::{Findings, HostInput, Severity};
use crate::inventory::{ContainerRuntime, Distribution};

/// The services `input`'s host needs once the cluster is installed on it, the node's own
/// unit first.
fn wanted(input: &HostInput) -> Vec<&'static str> {
    let Some(node) = Distro::of(input.cluster).node_unit(input.host) else {
        return Vec::new();
    };
    let mut out = vec![node];
    match input.cluster.container_runtime {
        ContainerRuntime::Docker => out.push("docker"),
        // k3s embeds its own containerd; kubeadm's kubelet needs the system's.
        ContainerRuntime::Containerd if input.cluster.distribution == Distribution::Kubeadm => {
            out.push("containerd");
        }
        ContainerRuntime::Containerd => {}
    }
    out
}

pub fn check(input: &HostInput, out: &mut Findings) {
    let want = wanted(input);
    let Some(&node) = want.first() else {
        return;
    };
    leftovers(input, node, out);
    if input.ev.get(&format!("svc.{node}")).is_none() {
        out.add(
            "K2",
            Severity::Skip,
            format!("no {node} service yet (before install)"),
        );
        return;
    }
    let mut wrong = Vec::new();
    let mut evidence = Vec::new();
    for unit in &want {
        let state = input
            .ev
            .get(&format!("svc.{unit}"))
            .unwrap_or("missing missing");
        let (enabled, active) = state.split_once(' ').unwrap_or((state, ""));
        evidence.push(format!("{unit}: {enabled}, {active}"));
        let on_boot = matches!(enabled, "enabled" | "enabled-runtime" | "static" | "alias");
        match (on_boot, active == "active") {
            (true, true) => {}
            (false, true) => wrong.push(format!(
                "{unit} runs but does not start at boot ({enabled})"
            )),
            (_, false) => wrong.push(format!(
                "{unit} is {}",
                if active.is_empty() { "missing" } else { active }
            )),
        }
    }
    if wrong.is_empty() {
        out.add(
            "K2",
            Severity::Ok,
            format!("{} enabled and active", want.join(", ")),
        )
        .evidence(evidence);
        return;
    }
    let units = want.join(" ");
    out.add("K2", Severity::Error, wrong.join("; "))
        .evidence(evidence)
        .fix(format!(
            "sudo systemctl enable --now {units}; if it does not stay up: sudo journalctl -u {node} -n 50"
        ));
}

/// K4: before the cluster is installed here (no `node` unit yet), none of the files an
/// earlier Kubernetes leaves.
fn leftovers(input: &HostInput, node: &str, out: &mut Findings) {
    if input.ev.get(&format!("svc.{node}")).is_some() {
        out.add(
            "K4",
            Severity::Skip,
            format!("{node} is installed: leftovers of another install matter before it"),
        );
        return;
    }
    let Some(found) = input.ev.get("leftovers") else {
        out.add("K4", Severity::Skip, "not read on this host");
        return;
    };
    let found: Vec<&str> = found.split_whitespace().collect();
    if found.is_empty() {
        out.add(
            "K4",
            Severity::Ok,
            "no files of an earlier Kubernetes install",
        );
        return;
    }
    out.add(
        "K4",
        Severity::Warn,
        "files of an earlier Kubernetes install are here: the new one would trip over them",
    )
    .evidence(found.iter().map(|p| format!("{p} exists")))
    .fix(
        "a kubeadm cluster: sudo kubeadm reset -f && sudo rm -rf /etc/kubernetes /var/lib/etcd \
         /var/lib/kubelet; a k3s: sudo /usr/local/bin/k3s-uninstall.sh (or gpuctl reset when \
         gpuctl installed it)",
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::Case;
    use super::super::{Finding, Severity};

    fn k2(case: &Case) -> Vec<Finding> {
        case.findings()
            .into_iter()
            .filter(|f| f.id == "K2")
            .collect()
    }

    #[test]
    fn a_server_needs_k3s_enabled_and_active_once_installed() {
        let mut case = Case::healthy("cp1", false);
        let bare = k2(&case);
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].severity, Severity::Skip);
        case.lines.push("@@t kv svc.k3s=enabled active".into());
        case.lines.push("@@t kv svc.docker=enabled active".into());
        assert_eq!(k2(&case)[0].severity, Severity::Ok);
        case.lines.retain(|l| !l.contains("svc.k3s="));
        case.lines.push("@@t kv svc.k3s=disabled active".into());
        let f = k2(&case);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].title, "k3s runs but does not start at boot (disabled)");
        assert!(
            f[0].fix
                .as_deref()
                .unwrap_or_default()
                .contains("enable --now k3s docker")
        );
    }

    #[test]
    fn leftovers_of_an_earlier_install_are_told_before_install_only() {
        let k4 = |case: &Case| {
            case.findings()
                .into_iter()
                .find(|f| f.id == "K4")
                .unwrap_or_else(|| panic!("no K4"))
        };
        let mut case = Case::healthy("cp1", false);
        case.lines.push("@@t kv leftovers=".into());
        assert_eq!(k4(&case).severity, Severity::Ok);
        case.lines.retain(|l| !l.contains("leftovers="));
        case.lines
            .push("@@t kv leftovers=/etc/kubernetes/manifests /var/lib/etcd ".into());
        let f = k4(&case);
        assert_eq!(f.severity, Severity::Warn);
        assert_eq!(
            f.evidence,
            ["/etc/kubernetes/manifests exists", "/var/lib/etcd exists"]
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .contains("kubeadm reset")
        );
        case.lines.push("@@t kv svc.k3s=enabled active".into());
        assert_eq!(k4(&case).severity, Severity::Skip);
    }

    #[test]
    fn a_kubeadm_node_needs_the_kubelet_and_containerd() {
        let mut case = Case::healthy("gpu1", true);
        case.cluster.distribution = crate::inventory::Distribution::Kubeadm;
        case.cluster.container_runtime = crate::inventory::ContainerRuntime::Containerd;
        assert_eq!(
            k2(&case)[0].title,
            "no kubelet service yet (before install)"
        );
        case.lines.push("@@t kv svc.kubelet=enabled active".into());
        case.lines
            .push("@@t kv svc.containerd=disabled inactive".into());
        let f = k2(&case);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].title, "containerd is inactive");
        assert!(
            f[0].fix
                .as_deref()
                .unwrap_or_default()
                .contains("enable --now kubelet containerd")
        );
    }

    #[test]
    fn a_worker_needs_the_agent() {
        let mut case = Case::healthy("gpu1", true);
        case.lines
            .push("@@t kv svc.k3s-agent=enabled failed".into());
        case.lines.push("@@t kv svc.docker=enabled active".into());
        let f = k2(&case);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].title, "k3s-agent is failed");
    }
}
