//! Stage `kubernetes`: k3s on every node, from the bundle, with the files gpuctl writes
//! itself (no install script):
//!
//! - `/usr/local/bin/k3s` uploaded from the bundle's `bin/k3s` (`bin/k3s-arm64` on arm64),
//!   sha256-verified, and the links `kubectl` and `crictl` to it beside it;
//! - the bundle's airgap image tarballs (`images/k3s-airgap-images-<arch>.tar*`) in
//!   `<data-dir>/agent/images/`, which k3s imports when it starts;
//! - `/etc/rancher/k3s/config.yaml` from the inventory and `/etc/rancher/k3s/registries.yaml`
//!   pointing every public registry at `registry.mirror` (see [`k3s`]);
//! - the unit `k3s.service` (servers) or `k3s-agent.service` (agents) and its env file, then
//!   the service enabled and running, restarted when any of those files changed.
//!
//! **Join order.** The first server (the first host with the `server` role) starts alone;
//! with more than one server it gets `cluster-init: true` (embedded etcd). Every other node
//! waits until the first server's `kubernetes` stage is over (their earlier stages go on
//! meanwhile), then gets the join token that server made (`<data-dir>/server/token`, read as
//! a [`Secret`](crate::secret::Secret)) in its env file. That file is a secret `File` Op: its
//! content is compared by sha256, never read back, never shown in a diff.
//!
//! With `cluster.distribution: kubeadm` the stage installs kubeadm, kubelet and kubectl
//! instead and runs `kubeadm init` or `kubeadm join`, with the same join order (see
//! [`kubeadm`]).
//!
//! Hosts with neither `server` nor `worker` (an NFS server, the registry) are not nodes:
//! nothing is written there.

pub mod k3s;
pub mod kubeadm;

use std::sync::Arc;

use anyhow::bail;

use crate::bundle::Bundle;
use crate::inventory::{ContainerRuntime, Distribution, Host, Inventory};
use crate::plan::{Await, Handed, HostFacts, Op, Scope, Stage, Undo};
use crate::secret::Secret;
use crate::transport::shell::quote;

pub struct Kubernetes {
    /// Loaded and verified before any host is touched.
    pub bundle: Option<Arc<Bundle>>,
    /// `registry.credentials.password`, loaded before any host is touched.
    pub registry_password: Option<Secret>,
}

/// The key under which the first server hands over its join token.
pub const TOKEN: &str = "k3s-token";
/// The key under which a kubeadm first server hands over its join material.
pub const JOIN: &str = "kubeadm-join";

pub const BIN: &str = "/usr/local/bin/k3s";
/// The links the k3s install script makes to the k3s binary.
pub const LINKS: [&str; 2] = ["kubectl", "crictl"];

impl Stage for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let Some(role) = k3s::NodeRole::of(inv, &hf.host) else {
            return Ok(Vec::new());
        };
        match inv.cluster.distribution {
            Distribution::K3s => self.k3s_ops(inv, hf, &role),
            Distribution::Kubeadm => self.kubeadm_ops(inv, hf, &role),
        }
    }
    fn notes(&self, inv: &Inventory, hf: &HostFacts) -> Vec<String> {
        let mut notes = Vec::new();
        if k3s::NodeRole::of(inv, &hf.host).is_none() {
            notes.push("neither server nor worker: not a Kubernetes node, nothing to do".into());
        }
        if let Some(r) = &inv.registry
            && r.username.is_some()
            && inv.cluster.container_runtime == ContainerRuntime::Docker
        {
            notes.push(
                "registry credentials reach k3s's containerd only; with the docker runtime, \
                 log docker in to the mirror yourself (`docker login`) or give pods an \
                 imagePullSecret"
                    .into(),
            );
        }
        notes
    }
    fn waits_for(&self, inv: &Inventory, host: &Host) -> Vec<Await> {
        match k3s::NodeRole::of(inv, host) {
            Some(k3s::NodeRole::Joiner { first, .. }) => vec![Await {
                host: first,
                stage: "kubernetes",
                why: "the first server, whose join token this node needs".into(),
            }],
            _ => Vec::new(),
        }
    }
    fn hands_over(&self, inv: &Inventory, host: &Host) -> Vec<(&'static str, String)> {
        match k3s::NodeRole::of(inv, host) {
            Some(k3s::NodeRole::FirstServer { .. }) => match inv.cluster.distribution {
                Distribution::K3s => {
                    vec![(TOKEN, format!("{}/server/token", k3s::data_dir(inv)))]
                }
                Distribution::Kubeadm => vec![(JOIN, kubeadm::JOIN_MATERIAL.to_string())],
            },
            _ => Vec::new(),
        }
    }
    fn leaves(&self, inv: &Inventory, host: &Host) -> Vec<String> {
        if k3s::NodeRole::of(inv, host).is_none() {
            return Vec::new();
        }
        if inv.cluster.distribution == Distribution::Kubeadm {
            // What kubeadm, the kubelet and the CNI make by themselves (`kubeadm reset`
            // leaves the CNI configuration and the directories), gpuctl's own files under
            // /etc/kubernetes with them.
            return [
                "/etc/kubernetes",
                "/var/lib/kubelet",
                "/var/lib/etcd",
                "/etc/cni/net.d",
                "/etc/systemd/system/kubelet.service.d",
            ]
            .map(String::from)
            .to_vec();
        }
        // What k3s makes by itself (k3s-uninstall.sh removes the same).
        let mut paths = vec![
            k3s::data_dir(inv),
            "/etc/rancher".to_string(),
            "/run/k3s".to_string(),
            "/run/flannel".to_string(),
            "/var/lib/kubelet".to_string(),
        ];
        paths.dedup();
        paths
    }
}

impl Kubernetes {
    fn k3s_ops(
        &self,
        inv: &Inventory,
        hf: &HostFacts,
        role: &k3s::NodeRole,
    ) -> anyhow::Result<Vec<Op>> {
        let mut ops = uploads(inv, self.bundle.as_deref(), &hf.facts.arch)?;
        for link in LINKS {
            ops.push(link_op(link));
        }
        let token = match role {
            k3s::NodeRole::FirstServer { .. } => None,
            _ => Some(join_token(inv, hf)?),
        };
        let unit = role.unit();
        let env_path = format!("/etc/systemd/system/{unit}.service.env");
        let mut watched = vec![BIN.to_string()];
        ops.push(Op::File {
            path: k3s::CONFIG.into(),
            content: k3s::config_yaml(inv, &hf.host, role),
            mode: 0o600,
            owner: "root:root".into(),
            secret: false,
        });
        watched.push(k3s::CONFIG.into());
        let wants_password = super::registry_login(inv, self.registry_password.as_ref())?;
        if let Some(registries) = k3s::registries_yaml(inv, self.registry_password.as_ref()) {
            ops.push(Op::File {
                path: k3s::REGISTRIES.into(),
                content: registries,
                mode: 0o600,
                owner: "root:root".into(),
                // Compared by sha256, never shown in a diff, when it holds the password.
                secret: wants_password,
            });
            watched.push(k3s::REGISTRIES.into());
        }
        let unit_path = format!("/etc/systemd/system/{unit}.service");
        ops.push(Op::File {
            path: unit_path.clone(),
            content: k3s::unit_file(role, &env_path),
            mode: 0o644,
            owner: "root:root".into(),
            secret: false,
        });
        watched.push(unit_path);
        ops.push(Op::File {
            path: env_path.clone(),
            content: k3s::env_file(role, token.as_deref()),
            mode: 0o600,
            owner: "root:root".into(),
            secret: token.is_some(),
        });
        watched.push(env_path);
        ops.push(Op::Service {
            name: unit.into(),
            enabled: true,
            running: true,
            restart_on: watched,
        });
        Ok(ops)
    }

    /// kubeadm: the binaries and the kubelet's unit, then `kubeadm init` on the first
    /// server (which leaves the join material) or `kubeadm join` elsewhere, then the
    /// kubelet enabled. See [`kubeadm`].
    fn kubeadm_ops(
        &self,
        inv: &Inventory,
        hf: &HostFacts,
        role: &k3s::NodeRole,
    ) -> anyhow::Result<Vec<Op>> {
        let mut ops = kubeadm_uploads(self.bundle.as_deref(), &hf.facts.arch)?;
        let mut watched = vec![format!("{}/kubelet", kubeadm::BIN_DIR)];
        for (path, content) in [
            (kubeadm::UNIT, kubeadm::unit_file()),
            (kubeadm::DROP_IN, kubeadm::drop_in()),
        ] {
            ops.push(Op::File {
                path: path.into(),
                content,
                mode: 0o644,
                owner: "root:root".into(),
                secret: false,
            });
            watched.push(path.into());
        }
        let (reset, unjoined) = kubeadm::reset_command();
        let undo = Some(Undo {
            run: reset,
            guard: unjoined,
        });
        // A unit file new since systemd last read them: kubeadm restarts the kubelet
        // before the Service Op below would reload them.
        let reload = "systemctl daemon-reload && ";
        match role {
            k3s::NodeRole::FirstServer { .. } => {
                // Probed with the stage, before anything is written.
                ops.insert(
                    0,
                    Op::Require {
                        check: "command -v openssl >/dev/null 2>&1".into(),
                        message: kubeadm::OPENSSL_MISSING.into(),
                    },
                );
                ops.push(Op::File {
                    path: kubeadm::INIT_CONFIG.into(),
                    content: kubeadm::init_config(inv, &hf.host),
                    mode: 0o600,
                    owner: "root:root".into(),
                    secret: false,
                });
                let (run, guard) = kubeadm::init_command();
                ops.push(Op::Command {
                    run: format!("{reload}{run}"),
                    guard,
                    undo,
                    rerun_on: Vec::new(),
                });
                let (run, guard) = kubeadm::material_command(inv);
                ops.push(Op::Command {
                    run,
                    guard,
                    undo: None,
                    rerun_on: Vec::new(),
                });
            }
            k3s::NodeRole::Joiner { .. } => {
                let material = join_material(inv, hf)?;
                ops.push(Op::File {
                    path: kubeadm::JOIN_CONFIG.into(),
                    content: kubeadm::join_config(inv, &hf.host, role, &material),
                    mode: 0o600,
                    owner: "root:root".into(),
                    secret: true,
                });
                let (run, guard) = kubeadm::join_command();
                ops.push(Op::Command {
                    run: format!("{reload}{run}"),
                    guard,
                    undo,
                    rerun_on: Vec::new(),
                });
            }
        }
        ops.push(Op::Service {
            name: "kubelet".into(),
            enabled: true,
            running: true,
            restart_on: watched,
        });
        Ok(ops)
    }
}

/// The k3s binary and the airgap images for a host of `uname -m` `arch`. Without a bundle
/// (only `reset` plans without one: install refuses to start without it, before any host
/// is touched) the binary's destination is all there is, and all reset needs.
fn uploads(inv: &Inventory, bundle: Option<&Bundle>, arch: &str) -> anyhow::Result<Vec<Op>> {
    let mut ops = vec![binary_upload(bundle, "k3s", arch, BIN)?];
    let Some(bundle) = bundle else {
        return Ok(ops);
    };
    let arch = crate::bundle::dpkg_arch(arch);
    let images = k3s::images_dir(inv);
    for f in bundle
        .files
        .iter()
        .filter(|f| k3s::is_airgap_image(&f.path, arch))
    {
        let name = f.path.rsplit('/').next().unwrap_or(&f.path);
        ops.push(Op::Upload {
            src: bundle.local_path(f).display().to_string(),
            dest: format!("{images}/{name}"),
            sha256: f.sha256.clone(),
            mode: 0o644,
        });
    }
    Ok(ops)
}

/// `ln -s k3s /usr/local/bin/<name>`, unless the admin has a real file there (kept, as
/// the k3s install script keeps it). Reset removes only gpuctl's link.
fn link_op(name: &str) -> Op {
    let path = quote(&format!("/usr/local/bin/{name}"));
    let ours = format!("test \"$(readlink {path} 2>/dev/null)\" = k3s");
    Op::Command {
        run: format!("ln -sfn k3s {path}"),
        guard: format!("{ours} || {{ test -e {path} && test ! -L {path}; }}"),
        undo: Some(Undo {
            run: format!("rm -f {path}"),
            guard: format!("! {ours}"),
        }),
        rerun_on: Vec::new(),
    }
}

/// The first server's join token, as the engine handed it over.
fn join_token(inv: &Inventory, hf: &HostFacts) -> anyhow::Result<String> {
    let first = inv.servers().next().map_or("?", |h| h.name.as_str());
    match hf.handed.get(TOKEN) {
        Some(Handed::Value(secret)) => Ok(secret.expose().to_string()),
        // A dry run before the first server exists: the file will hold its token.
        Some(Handed::Later) => Ok(format!("(the join token {first} makes)")),
        Some(Handed::Missing(why)) => bail!("{why}"),
        None => bail!(
            "the join token of {first} (the first server) is not known: its kubernetes \
             stage is not part of this run; run it together with this host"
        ),
    }
}

/// kubeadm, kubelet and kubectl for a host of `uname -m` `arch`, from the bundle's `bin/`.
fn kubeadm_uploads(bundle: Option<&Bundle>, arch: &str) -> anyhow::Result<Vec<Op>> {
    kubeadm::BINARIES
        .iter()
        .map(|name| binary_upload(bundle, name, arch, &format!("{}/{name}", kubeadm::BIN_DIR)))
        .collect()
}

/// The bundle path of binary `name` for a dpkg architecture, as the releases name them:
/// `bin/<name>` for amd64, `bin/<name>-<arch>` otherwise.
pub fn bundle_binary(name: &str, arch: &str) -> String {
    match arch {
        "amd64" => format!("bin/{name}"),
        other => format!("bin/{name}-{other}"),
    }
}

/// Binary `name` for a host of `uname -m` `arch`, from the bundle to `dest`, mode 0755.
/// Without a bundle (only `reset` plans without one: install refuses to start without it,
/// before any host is touched) the destination is all there is, and all reset needs.
fn binary_upload(
    bundle: Option<&Bundle>,
    name: &str,
    arch: &str,
    dest: &str,
) -> anyhow::Result<Op> {
    let Some(bundle) = bundle else {
        return Ok(Op::Upload {
            src: String::new(),
            dest: dest.into(),
            sha256: String::new(),
            mode: 0o755,
        });
    };
    let arch = crate::bundle::dpkg_arch(arch);
    let path = bundle_binary(name, arch);
    let Some(file) = bundle.files.iter().find(|f| f.path == path) else {
        bail!(
            "the bundle {} has no {path}, the {name} binary for this {arch} host; add it (and \
             its sha256 and size to bundle.yaml)",
            bundle.dir.display()
        );
    };
    Ok(Op::Upload {
        src: bundle.local_path(file).display().to_string(),
        dest: dest.into(),
        sha256: file.sha256.clone(),
        mode: 0o755,
    })
}

/// The first server's join material, as the engine handed it over; in a dry run before
/// the first server exists, placeholders that say so.
fn join_material(inv: &Inventory, hf: &HostFacts) -> anyhow::Result<kubeadm::JoinMaterial> {
    let first = inv.servers().next().map_or("?", |h| h.name.as_str());
    match hf.handed.get(JOIN) {
        Some(Handed::Value(secret)) => kubeadm::JoinMaterial::parse(secret.expose()),
        Some(Handed::Later) => {
            let later = |what: &str| format!("(the {what} {first} makes)");
            Ok(kubeadm::JoinMaterial {
                token: later("join token"),
                hash: later("CA pin"),
                key: later("certificate key"),
            })
        }
        Some(Handed::Missing(why)) => bail!("{why}"),
        None => bail!(
            "the join material of {first} (the first server) is not known: its kubernetes \
             stage is not part of this run; run it together with this host"
        ),
    }
}

#[cfg(test)]
#[path = "kubernetes/tests.rs"]
mod tests;
