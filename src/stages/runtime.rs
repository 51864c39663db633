//! Stage `runtime`: the container runtime's configuration.
//!
//! **docker** (`cluster.container_runtime: docker`, k3s driving docker through
//! cri-dockerd): keys merged into `/etc/docker/daemon.json`, the admin's other keys kept —
//! - `exec-opts: [native.cgroupdriver=systemd]`: kubelet and docker must agree on the
//!   cgroup driver, and systemd is the one kubelet defaults to;
//! - `log-driver: json-file` with `log-opts.max-size`/`max-file`: `kubectl logs` reads
//!   json-file logs, and unbounded logs fill `/var/lib/docker`;
//! - on GPU hosts `default-runtime: nvidia` and `runtimes.nvidia`, so every container
//!   (the device plugin's included) sees the GPUs;
//! - with `registry.mirror`: `registry-mirrors` (`https://MIRROR`, `http://` when
//!   `registry.insecure`) and, when insecure, `insecure-registries`.
//!
//! `exec-opts`, `insecure-registries` and `registry-mirrors` are merged as sets: the
//! admin's own entries stay (an `exec-opts` entry with the same `name=` is replaced).
//! Then `docker` is enabled and running, restarted only when daemon.json changed.
//!
//! **containerd** with k3s (the default: k3s's embedded containerd): nothing is written.
//! k3s finds `nvidia-container-runtime` on `PATH` when it starts and adds the `nvidia`
//! runtime to the containerd config it generates itself; the `gpu` stage's RuntimeClass
//! selects it. So on GPU hosts this stage only requires that `nvidia-container-runtime` is
//! there. With kubeadm, containerd is the system's, and this stage writes its whole
//! configuration (see [`containerd`]).
//!
//! **The mirror's CA** (`registry.ca_file`, a TLS mirror): copied to
//! `/etc/docker/certs.d/<mirror>/ca.crt` for docker, which reads that directory at every
//! pull (no restart), or to `/etc/containerd/certs.d/<mirror>/ca.crt` for k3s's containerd,
//! whose `registries.yaml` (the `kubernetes` stage) names it. Those are also the places
//! `doctor` looks for it.
//!
//! Requirements are `Require` Ops, checked on the host when the stage runs (after the
//! `packages` stage may have installed them); an unmet one fails the stage before it
//! writes anything.

pub mod containerd;

use serde_json::{Value, json};

use crate::inventory::{ContainerRuntime, Distribution, GpuPresence, Inventory};
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::secret::Secret;

#[derive(Default)]
pub struct Runtime {
    /// `registry.credentials.password`, loaded before any host is touched, for kubeadm's
    /// containerd (k3s's gets it through the `kubernetes` stage's registries.yaml).
    pub registry_password: Option<Secret>,
}

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The arrays of daemon.json merged as sets rather than replaced.
pub const SET_KEYS: [&str; 3] = ["exec-opts", "insecure-registries", "registry-mirrors"];

const NVIDIA_MISSING: &str = "nvidia-container-runtime is not installed on this GPU host: \
    put the nvidia-container-toolkit packages (nvidia-container-toolkit, \
    nvidia-container-toolkit-base, libnvidia-container-tools, libnvidia-container1) for this \
    OS in the bundle's packages/<os-id>-<version>/ and run the packages stage, or install \
    them yourself; or set `gpu: false` for this host";

const DOCKER_MISSING: &str = "docker is not installed (no dockerd on PATH) but \
    `cluster.container_runtime` is docker: put docker's packages (docker.io or docker-ce, \
    containerd, runc) for this OS in the bundle's packages/<os-id>-<version>/ and run the \
    packages stage, or install docker yourself";

impl Stage for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let gpu = has_gpus(hf);
        let mut ops = Vec::new();
        if inv.cluster.container_runtime == ContainerRuntime::Docker {
            ops.push(require(
                "command -v dockerd >/dev/null 2>&1",
                DOCKER_MISSING,
            ));
        }
        let kubeadm_containerd = inv.cluster.distribution == Distribution::Kubeadm
            && inv.cluster.container_runtime == ContainerRuntime::Containerd;
        if kubeadm_containerd {
            ops.push(require(
                "command -v containerd >/dev/null 2>&1",
                containerd::MISSING,
            ));
        }
        if gpu {
            ops.push(require(
                "command -v nvidia-container-runtime >/dev/null 2>&1",
                NVIDIA_MISSING,
            ));
        }
        if let (Some(path), Some(r)) = (mirror_ca_path(inv), &inv.registry)
            && let Some(ca_file) = &r.ca_file
        {
            ops.push(Op::File {
                path,
                content: read_ca(ca_file)?,
                mode: 0o644,
                owner: "root:root".into(),
                secret: false,
            });
        }
        if kubeadm_containerd {
            let wants_password = super::registry_login(inv, self.registry_password.as_ref())?;
            ops.push(Op::File {
                path: containerd::CONFIG.into(),
                content: containerd::config_toml(inv, gpu, self.registry_password.as_ref()),
                // With the login in it: 0600, compared by sha256, never shown in a diff.
                mode: if wants_password { 0o600 } else { 0o644 },
                owner: "root:root".into(),
                secret: wants_password,
            });
            for (path, content) in containerd::hosts_files(inv) {
                ops.push(Op::File {
                    path,
                    content,
                    mode: 0o644,
                    owner: "root:root".into(),
                    secret: false,
                });
            }
            ops.push(Op::Service {
                name: "containerd".into(),
                enabled: true,
                running: true,
                restart_on: vec![containerd::CONFIG.into()],
            });
        }
        if inv.cluster.container_runtime == ContainerRuntime::Docker {
            ops.push(Op::JsonMerge {
                path: DAEMON_JSON.into(),
                merge: daemon_json(inv, gpu),
                sets: SET_KEYS.iter().map(|k| (*k).to_string()).collect(),
            });
            ops.push(Op::Service {
                name: "docker".into(),
                enabled: true,
                running: true,
                restart_on: vec![DAEMON_JSON.into()],
            });
        }
        Ok(ops)
    }
    fn notes(&self, inv: &Inventory, hf: &HostFacts) -> Vec<String> {
        let mut notes = Vec::new();
        let f = &hf.facts;
        if hf.host.gpu == GpuPresence::Auto && f.gpus.is_empty() && f.pci_gpus.unwrap_or(0) > 0 {
            notes.push(format!(
                "{} NVIDIA GPU(s) on the PCI bus but nvidia-smi lists none (is the driver \
                 installed?): configured as a host without GPUs",
                f.pci_gpus.unwrap_or(0)
            ));
        }
        if inv
            .registry
            .as_ref()
            .is_some_and(|r| r.insecure && r.ca_file.is_some())
        {
            notes.push(
                "registry.ca_file is not installed: registry.insecure says the mirror speaks \
                 plain HTTP"
                    .into(),
            );
        }
        notes
    }
}

/// Whether the host gets the GPU configuration: `gpu: true`, or `auto` and nvidia-smi
/// listed GPUs (GPUs without a working driver cannot be used by containers anyway).
pub fn has_gpus(hf: &HostFacts) -> bool {
    gpu_node(&hf.host, Some(hf.facts.gpus.len())).unwrap_or(false)
}

/// [`has_gpus`] for any node, given how many GPUs nvidia-smi listed on it (`None`: not
/// known in this run): `None` only for a `gpu: auto` host whose count is unknown.
pub fn gpu_node(host: &crate::inventory::Host, listed: Option<usize>) -> Option<bool> {
    match host.gpu {
        GpuPresence::Yes => Some(true),
        GpuPresence::No => Some(false),
        GpuPresence::Auto => listed.map(|n| n > 0),
    }
}

/// Where the mirror's CA goes on every host, for the runtime that pulls; `None` without a
/// `registry.ca_file` or with a plain-HTTP mirror.
pub fn mirror_ca_path(inv: &Inventory) -> Option<String> {
    let r = inv.registry.as_ref().filter(|r| !r.insecure)?;
    r.ca_file.as_ref()?;
    let dir = match inv.cluster.container_runtime {
        ContainerRuntime::Docker => "/etc/docker/certs.d",
        ContainerRuntime::Containerd => "/etc/containerd/certs.d",
    };
    Some(format!("{dir}/{}/ca.crt", r.mirror))
}

/// The CA file named by the inventory, checked to hold PEM certificates: a wrong file
/// would otherwise surface as an x509 error on every pull.
fn read_ca(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "registry.ca_file {}: cannot read it ({e}): fix the path in the inventory \
             (relative paths are relative to the inventory's directory)",
            path.display()
        )
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!(
            "registry.ca_file {}: no PEM certificate in it (no `-----BEGIN CERTIFICATE-----` \
             line): name the mirror's CA certificate in PEM form",
            path.display()
        );
    }
    Ok(text)
}

fn require(check: &str, message: &str) -> Op {
    Op::Require {
        check: check.into(),
        message: message.into(),
    }
}

/// The keys gpuctl merges into daemon.json.
pub fn daemon_json(inv: &Inventory, gpu: bool) -> Value {
    let mut merge = json!({
        "exec-opts": ["native.cgroupdriver=systemd"],
        "log-driver": "json-file",
        "log-opts": { "max-size": "100m", "max-file": "3" },
    });
    if gpu {
        merge["default-runtime"] = json!("nvidia");
        merge["runtimes"] = json!({
            "nvidia": { "path": "nvidia-container-runtime", "runtimeArgs": [] }
        });
    }
    if let Some(r) = &inv.registry {
        let scheme = if r.insecure { "http" } else { "https" };
        merge["registry-mirrors"] = json!([format!("{scheme}://{}", r.mirror)]);
        if r.insecure {
            merge["insecure-registries"] = json!([r.mirror]);
        }
    }
    merge
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inventory::Registry;
    use crate::plan::digest::digest;
    use crate::stages::sample;

    fn docker_inventory() -> Inventory {
        let mut inv = sample::inventory();
        inv.cluster.container_runtime = ContainerRuntime::Docker;
        inv.registry = Some(Registry {
            mirror: "registry.lab:5000".into(),
            insecure: true,
            ca_file: None,
            username: None,
            password: None,
            served_by: None,
        });
        inv
    }

    #[test]
    fn docker_on_a_gpu_host() {
        let inv = docker_inventory();
        let ops = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "gpu1"))
            .unwrap();
        insta::assert_yaml_snapshot!(ops);
    }

    #[test]
    fn kubeadm_containerd_on_a_gpu_host_with_the_mirror() {
        let mut inv = docker_inventory();
        inv.cluster.container_runtime = ContainerRuntime::Containerd;
        inv.cluster.distribution = Distribution::Kubeadm;
        let ops = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "gpu1"))
            .unwrap();
        let Op::File { content, .. } = &ops[2] else {
            panic!("{ops:?}")
        };
        assert!(content.contains("SystemdCgroup = true"), "{content}");
        assert!(
            content.contains("sandbox_image = \"registry.lab:5000/pause:3.9\""),
            "{content}"
        );
        assert!(content.contains("runtimes.nvidia.options]"), "{content}");
        insta::assert_yaml_snapshot!(ops);
        // A plain host: no nvidia runtime, and no requirement of it.
        let plain = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("nvidia"), "{text}");
        assert!(text.contains("command -v containerd"), "{text}");
    }

    #[test]
    fn kubeadm_containerd_gets_the_mirror_login_in_a_secret_config() {
        let mut inv = docker_inventory();
        inv.cluster.container_runtime = ContainerRuntime::Containerd;
        inv.cluster.distribution = Distribution::Kubeadm;
        if let Some(r) = inv.registry.as_mut() {
            r.username = Some("puller".into());
            r.password = Some(crate::secret::SecretSource::Env {
                env: "GPUCTL_TEST_PW".into(),
            });
        }
        let hf = sample::facts(&inv, "cp1");
        let err = Runtime::default().plan(&inv, &hf).unwrap_err().to_string();
        assert!(err.contains("was not loaded"), "{err}");
        let stage = Runtime {
            registry_password: Some(Secret::new("pa\"ss\\word")),
        };
        let ops = stage.plan(&inv, &hf).unwrap();
        let Some(Op::File {
            content,
            secret,
            mode,
            ..
        }) = ops
            .iter()
            .find(|op| matches!(op, Op::File { path, .. } if path == containerd::CONFIG))
        else {
            panic!("{ops:?}")
        };
        assert!(*secret);
        assert_eq!(*mode, 0o600);
        assert!(
            content.contains(
                "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"registry.lab:5000\".auth]\n  username = \"puller\"\n  password = \"pa\\\"ss\\\\word\"\n"
            ),
            "{content}"
        );
    }

    #[test]
    fn docker_on_a_plain_host_with_a_tls_mirror() {
        let mut inv = docker_inventory();
        if let Some(r) = inv.registry.as_mut() {
            r.insecure = false;
        }
        let ops = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap();
        insta::assert_yaml_snapshot!(ops);
        let Op::JsonMerge { merge, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert!(merge.get("default-runtime").is_none());
        assert!(merge.get("insecure-registries").is_none());
        assert_eq!(
            merge["registry-mirrors"],
            json!(["https://registry.lab:5000"])
        );
    }

    #[test]
    fn containerd_only_requires_the_nvidia_runtime_on_gpu_hosts() {
        let inv = sample::inventory();
        assert_eq!(inv.cluster.container_runtime, ContainerRuntime::Containerd);
        let plain = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap();
        assert!(plain.is_empty(), "{plain:?}");
        let gpu = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "gpu1"))
            .unwrap();
        assert!(
            matches!(gpu.as_slice(), [Op::Require { check, message }]
                if check.contains("nvidia-container-runtime") && message.contains("packages stage")),
            "{gpu:?}"
        );
    }

    #[test]
    fn auto_gpu_hosts_follow_what_nvidia_smi_lists() {
        let inv = docker_inventory();
        let mut hf = sample::facts(&inv, "far");
        hf.host.gpu = GpuPresence::Auto;
        assert!(!has_gpus(&hf));
        hf.facts.pci_gpus = Some(2);
        let notes = Runtime::default().notes(&inv, &hf);
        assert!(notes[0].contains("nvidia-smi lists none"), "{notes:?}");
        let without = digest(&Runtime::default().plan(&inv, &hf).unwrap());
        hf.facts = crate::facts::Facts::parse("nvidia_gpu=Tesla T4, 15360, 535.183.01\n");
        assert!(has_gpus(&hf));
        assert_ne!(
            without,
            digest(&Runtime::default().plan(&inv, &hf).unwrap())
        );
        assert!(Runtime::default().notes(&inv, &hf).is_empty());
    }

    #[test]
    fn the_mirror_ca_goes_where_the_pulling_runtime_reads_it_and_must_be_pem() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut inv = docker_inventory();
        if let Some(r) = inv.registry.as_mut() {
            r.insecure = false;
            r.ca_file = Some(ca.clone());
        }
        let ops = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap();
        assert!(
            ops.iter().any(|op| matches!(op, Op::File { path, content, mode: 0o644, .. }
                if path == "/etc/docker/certs.d/registry.lab:5000/ca.crt" && content.contains("MIIB"))),
            "{ops:?}"
        );
        inv.cluster.container_runtime = ContainerRuntime::Containerd;
        assert_eq!(
            mirror_ca_path(&inv).as_deref(),
            Some("/etc/containerd/certs.d/registry.lab:5000/ca.crt")
        );
        let ops = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap();
        assert!(
            matches!(ops.as_slice(), [Op::File { path, .. }] if path.starts_with("/etc/containerd/certs.d/")),
            "{ops:?}"
        );

        std::fs::write(&ca, "not a certificate").unwrap();
        let err = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_file(&ca).unwrap();
        let err = Runtime::default()
            .plan(&inv, &sample::facts(&inv, "cp1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read it") && err.contains("ca.pem"),
            "{err}"
        );

        // A plain-HTTP mirror has no use for a CA: nothing written, and the admin is told.
        if let Some(r) = inv.registry.as_mut() {
            r.insecure = true;
        }
        assert!(
            Runtime::default()
                .plan(&inv, &sample::facts(&inv, "cp1"))
                .unwrap()
                .is_empty()
        );
        let notes = Runtime::default().notes(&inv, &sample::facts(&inv, "cp1"));
        assert!(notes.iter().any(|n| n.contains("plain HTTP")), "{notes:?}");
    }
}
