//! containerd for kubeadm: the `runtime` stage writes the whole `/etc/containerd/config.toml`
//! (k3s embeds its own containerd and generates that file itself, so this is kubeadm's
//! only) and one `hosts.toml` per mirrored registry.
//!
//! - `SystemdCgroup = true`: the kubelet gpuctl configures uses the systemd cgroup driver,
//!   and the two must agree (a mismatch restarts pods at random under memory pressure);
//! - `sandbox_image`: the pause image kubeadm uses, from the mirror, or every pod's sandbox
//!   would be pulled from registry.k8s.io, which an air gap cannot reach;
//! - `config_path = "/etc/containerd/certs.d"`: where the `hosts.toml` files send each
//!   registry to the mirror (read at every pull, no restart);
//! - on GPU hosts an `nvidia` runtime running `nvidia-container-runtime`, which the `gpu`
//!   stage's RuntimeClass selects;
//! - with `registry.credentials`, the mirror's login under `registry.configs."MIRROR".auth`:
//!   the one registry setting containerd still reads from config.toml rather than
//!   hosts.toml (the file is then a secret, mode 0600).
//!
//! containerd is restarted only when config.toml changed.

use crate::inventory::Inventory;
use crate::secret::Secret;
use crate::stages::kubernetes::{k3s, kubeadm};

pub const CONFIG: &str = "/etc/containerd/config.toml";
pub const HOSTS_DIR: &str = "/etc/containerd/certs.d";
const NVIDIA_RUNTIME: &str = "/usr/bin/nvidia-container-runtime";

pub const MISSING: &str = "containerd is not installed (no containerd on PATH) but kubeadm \
    needs it: put containerd's packages (containerd, runc) for this OS in the bundle's \
    packages/<os-id>-<version>/ and run the packages stage, or install containerd yourself";

/// The whole config.toml (containerd 1.6 and 1.7, config version 2). `password`: the loaded
/// registry password, written with `registry.credentials.username` (without it, no login).
pub fn config_toml(inv: &Inventory, gpu: bool, password: Option<&Secret>) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let mut out = format!(
        "# Written by gpuctl for kubeadm from the inventory; changes here are overwritten.\n\
         version = 2\n\
         \n\
         [{cri}]\n\
         \x20 sandbox_image = \"{pause}\"\n\
         \n\
         [{cri}.registry]\n\
         \x20 config_path = \"{HOSTS_DIR}\"\n\
         \n\
         [{cri}.containerd]\n\
         \x20 default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n\
         \x20 runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{cri}.containerd.runtimes.runc.options]\n\
         \x20 SystemdCgroup = true\n",
        pause = kubeadm::pause_image(inv),
    );
    if let (Some(r), Some(password)) = (&inv.registry, password)
        && let Some(user) = &r.username
    {
        out.push_str(&format!(
            "\n[{cri}.registry.configs.\"{mirror}\".auth]\n\
             \x20 username = {user}\n\
             \x20 password = {password}\n",
            mirror = r.mirror,
            user = toml_string(user),
            password = toml_string(password.expose()),
        ));
    }
    if gpu {
        out.push_str(&format!(
            "\n[{cri}.containerd.runtimes.nvidia]\n\
             \x20 runtime_type = \"io.containerd.runc.v2\"\n\
             \n\
             [{cri}.containerd.runtimes.nvidia.options]\n\
             \x20 BinaryName = \"{NVIDIA_RUNTIME}\"\n\
             \x20 SystemdCgroup = true\n"
        ));
    }
    out
}

/// A TOML basic string: JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`) are TOML's too.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `(path, text)` of every `hosts.toml`: each public registry and the mirror itself sent to
/// the mirror; none without a mirror.
pub fn hosts_files(inv: &Inventory) -> Vec<(String, String)> {
    k3s::containerd_hosts(inv)
        .unwrap_or_default()
        .into_iter()
        .map(|(rel, text)| (format!("{HOSTS_DIR}/{rel}"), text))
        .collect()
}
