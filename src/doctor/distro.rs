//! What doctor reads differently on k3s and on kubeadm, in one place: where the admin
//! kubectl and a server's certificates are, which unit runs a node, how CoreDNS is given
//! `dns.hosts`, and the commands a fix names. The checks ask here instead of branching on
//! the distribution themselves, so a third distribution is one more arm in this file.

use crate::inventory::{Cluster, Distribution, Host, Role};
use crate::stages::kubernetes::{k3s, kubeadm};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distro {
    pub kind: Distribution,
    /// k3s's data directory (`cluster.data_dir`); unused on kubeadm.
    data_dir: String,
}

impl Distro {
    pub fn of(cluster: &Cluster) -> Distro {
        Distro {
            kind: cluster.distribution,
            data_dir: k3s::cluster_data_dir(cluster),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Distribution::K3s => "k3s",
            Distribution::Kubeadm => "kubeadm",
        }
    }

    /// kubectl with the admin kubeconfig, as the install stages call it on the first
    /// server (root's: both admin kubeconfigs are 0600).
    pub fn kubectl(&self) -> &'static str {
        crate::stages::ready::kubectl_for(self.kind)
    }

    /// A shell condition, true on the first server once the cluster is installed there.
    pub fn installed_test(&self) -> String {
        match self.kind {
            Distribution::K3s => "[ -x /usr/local/bin/k3s ]".into(),
            Distribution::Kubeadm => format!(
                "[ -x {}/kubectl ] && [ -f {} ]",
                kubeadm::BIN_DIR,
                kubeadm::ADMIN_KUBECONFIG
            ),
        }
    }

    /// The unit that makes `host` a node: k3s's server or agent, or the kubelet
    /// (kubeadm's control plane runs as its static pods); none for a host that is no node.
    pub fn node_unit(&self, host: &Host) -> Option<&'static str> {
        let roles = &host.roles;
        let server = roles.contains(&Role::Server);
        if !server && !roles.contains(&Role::Worker) {
            return None;
        }
        Some(match (self.kind, server) {
            (Distribution::K3s, true) => "k3s",
            (Distribution::K3s, false) => "k3s-agent",
            (Distribution::Kubeadm, _) => "kubelet",
        })
    }

    /// The directories of a server's certificates: k3s's `server/tls/`, or kubeadm's
    /// `pki/` with its etcd certificates.
    pub fn cert_dirs(&self) -> Vec<String> {
        match self.kind {
            Distribution::K3s => vec![format!("{}/server/tls", self.data_dir)],
            Distribution::Kubeadm => {
                vec![
                    "/etc/kubernetes/pki".into(),
                    "/etc/kubernetes/pki/etcd".into(),
                ]
            }
        }
    }

    /// How to renew `host`'s certificates, and what to do about a CA or a clock.
    pub fn renew_fix(&self, host: &str) -> String {
        let clock = "a clock that is behind: fix the time (chrony/systemd-timesyncd) before \
                     anything else";
        match self.kind {
            Distribution::K3s => format!(
                "on {host}: sudo systemctl restart k3s (k3s renews certificates within 90 days \
                 of their end when it starts); a CA (*-ca.crt) needs `k3s certificate \
                 rotate-ca`; {clock}"
            ),
            Distribution::Kubeadm => format!(
                "on {host}: sudo kubeadm certs renew all, then restart the control plane's \
                 static pods (move /etc/kubernetes/manifests/*.yaml out for 20 s and back; \
                 kubeadm renews by itself only during `kubeadm upgrade`); a CA (ca.crt) needs \
                 kubeadm's manual CA rotation; {clock}"
            ),
        }
    }

    /// What to look at when the API server on `host` does not answer.
    pub fn api_fix(&self, host: &str) -> String {
        let look = match self.kind {
            Distribution::K3s => "systemctl status k3s".to_string(),
            Distribution::Kubeadm => {
                "sh -c 'systemctl status kubelet; ls /etc/kubernetes/manifests'".to_string()
            }
        };
        format!(
            "gpuctl exec --inventory INVENTORY --hosts {host} --sudo -- {look}; then gpuctl \
             install --inventory INVENTORY --only kubernetes --hosts {host}"
        )
    }

    /// What to look at on a node that is not Ready.
    pub fn node_fix(&self, host: &str) -> String {
        let units = match self.kind {
            Distribution::K3s => "k3s k3s-agent",
            Distribution::Kubeadm => "kubelet containerd",
        };
        format!(
            "gpuctl exec --inventory INVENTORY --hosts {host} --sudo -- systemctl status {units}"
        )
    }

    /// Where the bundle keeps the binaries that decide the kubelets' version.
    pub fn version_source(&self) -> &'static str {
        match self.kind {
            Distribution::K3s => "one k3s version in the bundle (bin/k3s)",
            Distribution::Kubeadm => {
                "one Kubernetes version in the bundle (bin/kubeadm, bin/kubelet, bin/kubectl)"
            }
        }
    }

    /// Where `dns.hosts` lives in CoreDNS's configuration, for messages.
    pub fn dns_home(&self) -> &'static str {
        match self.kind {
            Distribution::K3s => "coredns-custom",
            Distribution::Kubeadm => "the Corefile's gpuctl block",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn each_distribution_names_its_own_files_units_and_fixes() {
        let mut inv = sample::inventory();
        let k3s = Distro::of(&inv.cluster);
        assert_eq!(k3s.cert_dirs(), ["/home/data/k3s/var/server/tls"]);
        let with = |role: Role| {
            let mut h = inv.hosts[0].clone();
            h.roles = [role].into();
            h
        };
        assert_eq!(k3s.node_unit(&with(Role::Worker)), Some("k3s-agent"));
        assert!(k3s.renew_fix("cp1").contains("systemctl restart k3s"));
        inv.cluster.distribution = Distribution::Kubeadm;
        let kubeadm = Distro::of(&inv.cluster);
        assert_eq!(kubeadm.kubectl(), kubeadm::KUBECTL);
        assert_eq!(kubeadm.node_unit(&with(Role::Server)), Some("kubelet"));
        assert_eq!(kubeadm.node_unit(&with(Role::Registry)), None);
        assert!(kubeadm.cert_dirs()[0].ends_with("/pki"));
        assert!(kubeadm.renew_fix("cp1").contains("kubeadm certs renew all"));
        assert!(
            kubeadm
                .installed_test()
                .contains("/etc/kubernetes/admin.conf")
        );
    }
}
