//! The second half of the evidence script: what the network, proxy, NVIDIA module and
//! health, mirror and server certificate checks read (H8, H9, G3, G4, G8, G9, N4, M1, K6). Part of the same
//! single script per host (see [`super::evidence`]), so adding them costs no round trip.
//!
//! Two parts depend on the inventory and are the same for every host: the peer ports to
//! probe ([`Probe`]) and the mirror to ask for `/v2/` ([`MirrorProbe`]).

use crate::inventory::{Inventory, Role};
use crate::transport::shell::quote;

/// Where kubeadm's containerd listens (R2 asks it for its plugins).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// Seconds a peer port probe may take before it counts as filtered. A refused or open
/// port answers at once, so only a dropped one waits this long.
pub const PROBE_TIMEOUT_S: u32 = 2;

/// One TCP port on one inventory host, probed from every host (N4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub host: String,
    /// The address other nodes use for it.
    pub addr: String,
    pub port: u16,
}

impl Probe {
    /// `addr:port`, as the script prints it back.
    pub fn key(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }
}

/// The mirror as the inventory names it (M1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorProbe {
    /// `host[:port]`.
    pub mirror: String,
    pub insecure: bool,
}

/// What the script needs from the inventory.
#[derive(Clone, Debug, Default)]
pub struct ScriptPlan {
    pub disk_paths: Vec<String>,
    /// `storage.local_path.path`, one of `disk_paths` (S2 reads whether it exists).
    pub local_path: Option<String>,
    /// `storage.nfs`: the export and the hosts that serve it (S3).
    pub nfs: Option<NfsPlan>,
    pub probes: Vec<Probe>,
    pub mirror: Option<MirrorProbe>,
    /// The first server (its certificates are read by the cluster script).
    pub first_server: Option<String>,
    /// The directories of a server's certificates, which the other servers read (K6).
    pub server_certs: Vec<String>,
    /// Ask the running containerd for its plugins (R2's live half): kubeadm with
    /// containerd, where the CRI plugin is what the kubelet talks to.
    pub live_cri: bool,
}

/// The address other nodes reach a host at (see [`crate::inventory::Host::node_address`]).
pub fn node_addr(host: &crate::inventory::Host) -> Option<String> {
    host.node_address()
}

/// Whether `host` is the inventory's NFS server.
pub fn is_nfs_host(inv: &Inventory, host: &crate::inventory::Host) -> bool {
    inv.is_nfs_server(host)
}

/// The ports N4 probes: 6443 on servers, 10250 (kubelet) on every host, 2049 on the
/// NFS server; every inventory host, so a `--hosts` subset still probes the servers.
pub fn probes(inv: &Inventory) -> Vec<Probe> {
    let mut out = Vec::new();
    for h in &inv.hosts {
        let Some(addr) = node_addr(h) else { continue };
        let mut ports = Vec::new();
        if h.roles.contains(&Role::Server) {
            ports.push(6443);
        }
        ports.push(10250);
        if is_nfs_host(inv, h) {
            ports.push(2049);
        }
        for port in ports {
            out.push(Probe {
                host: h.name.clone(),
                addr: addr.clone(),
                port,
            });
        }
    }
    out
}

#[derive(Clone, Debug, Default)]
pub struct NfsPlan {
    pub export: String,
    /// The inventory hosts that are the NFS server (none when it is outside).
    pub servers: Vec<String>,
}

pub fn plan(inv: &Inventory, disk_paths: Vec<String>) -> ScriptPlan {
    ScriptPlan {
        disk_paths,
        local_path: inv
            .storage
            .local_path
            .as_ref()
            .map(|l| l.path.display().to_string()),
        nfs: inv.storage.nfs.as_ref().map(|n| NfsPlan {
            export: n.export.display().to_string(),
            servers: inv
                .hosts
                .iter()
                .filter(|h| is_nfs_host(inv, h))
                .map(|h| h.name.clone())
                .collect(),
        }),
        probes: probes(inv),
        mirror: inv.registry.as_ref().map(|r| MirrorProbe {
            mirror: r.mirror.clone(),
            insecure: r.insecure,
        }),
        first_server: inv.servers().next().map(|h| h.name.clone()),
        server_certs: super::distro::Distro::of(&inv.cluster).cert_dirs(),
        live_cri: inv.cluster.distribution == crate::inventory::Distribution::Kubeadm
            && inv.cluster.container_runtime == crate::inventory::ContainerRuntime::Containerd,
    }
}

/// Systemd units whose proxy environment matters (H9), with their drop-in directories.
pub const PROXY_UNITS: &[&str] = &["docker", "containerd", "k3s", "k3s-agent", "kubelet"];

/// Where each unit's CA may be for the mirror, besides the system bundle (M1).
pub fn mirror_ca_files(mirror: &str) -> [String; 2] {
    [
        format!("/etc/docker/certs.d/{mirror}/ca.crt"),
        format!("/etc/containerd/certs.d/{mirror}/ca.crt"),
    ]
}

/// Kernel log lines G4 and G9 judge; everything else stays on the host.
const KERNEL_LOG_PATTERN: &str =
    "NVRM|Xid|Key was rejected|module verification failed|Lockdown|nvidia";

/// The script's second half. Runs after the first half's `lspci`/`nvidia-smi`, with its
/// functions (`kv`, `f`, `rf`, `c`, `hid`) and `$M`, `$T`, `$NL` and `$S` (the sudo
/// probe's answer) defined.
pub fn script(plan: &ScriptPlan) -> String {
    let mut s = String::new();
    // H8, N4: what listens here (every host's list decides whether peers can be probed
    // meaningfully); firewalls that may drop what the probes test.
    s.push_str(
        r#"if command -v ss >/dev/null 2>&1; then c listen ss -Hltnu; fi
if command -v firewall-cmd >/dev/null 2>&1; then c firewalld systemctl is-active firewalld; fi
"#,
    );
    // H9: the session's proxy variables (the units' drop-ins are read with the other
    // files), through the redacting filter: a proxy URL may carry a password.
    s.push_str(
        r#"echo "$M cmd proxy_env"; px=""
for v in http_proxy https_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY; do
  eval "x=\${$v-}"; [ -n "$x" ] && px="$px$v=$x$NL"
done
[ -n "$px" ] && printf '%s' "$px" | red; echo "$M status proxy_env 0"
"#,
    );
    // G3: the module for the running kernel as modprobe would find it; DKMS's view.
    s.push_str(
        r#"if command -v modinfo >/dev/null 2>&1; then c modinfo_nvidia modinfo -F vermagic nvidia; fi
GPU=""; command -v nvidia-smi >/dev/null 2>&1 && GPU=1; [ -d /sys/module/nvidia ] && GPU=1
if [ -z "$GPU" ]; then for v in /sys/bus/pci/devices/*/vendor; do
  [ -r "$v" ] && read -r x < "$v" && [ "$x" = 0x10de ] && GPU=1 && break
done; fi
if [ -n "$GPU" ]; then
  if command -v dkms >/dev/null 2>&1; then c dkms dkms status; fi
  if command -v mokutil >/dev/null 2>&1; then c sb_state mokutil --sb-state; fi
  for v in /sys/firmware/efi/efivars/SecureBoot-*; do [ -r "$v" ] && kv sb_efivar "$(od -An -tu1 "$v")"; done
"#,
    );
    // G4, G9: the kernel log, filtered on the host; `sudo -n` where dmesg is restricted
    // to root and sudo needs no password (read-only either way).
    s.push_str(&format!(
        r#"  if kl=$(dmesg 2>&1); then ks=0; elif [ "$S" = sudo-ok ] && kl=$(sudo -n dmesg 2>&1); then ks=0; else ks=1; fi
  echo "$M cmd kernel_log"
  if [ $ks = 0 ]; then printf '%s\n' "$kl" | grep -E '{KERNEL_LOG_PATTERN}' | tail -n 200; else printf '%s\n' "$kl" | tail -n 2; fi
  echo "$M status kernel_log $ks"
  set -- /dev/nvidia*; [ -e "$1" ] && c dev_nums stat -c '%n %t %T %F' "$@"
  if [ -d /dev/char ]; then kv dev_char_dir yes; c dev_char find /dev/char -lname '*nvidia*' -printf '%f %l\n'; fi
fi
"#
    ));
    // N4: every peer port at once from one bash, each connect in its own subshell, all
    // cut after the timeout; refused ports answer at once. The killer's own `sleep` is
    // stopped and reaped with it, so nothing of doctor's outlives the script (not even a
    // zombie for the host's init to collect).
    if !plan.probes.is_empty() {
        s.push_str(&format!(
            r#"if command -v bash >/dev/null 2>&1; then bash -c '
M=$1; shift; i=0
for t; do ( exec 3<>"/dev/tcp/${{t%:*}}/${{t##*:}}" ) >/dev/null 2>&1 & p[i]=$!; i=$((i+1)); done
( trap "kill \$z; wait \$z; exit" TERM; sleep {PROBE_TIMEOUT_S} & z=$!; wait $z; kill "${{p[@]}}" ) >/dev/null 2>&1 & w=$!
i=0; for t; do wait "${{p[i]}}"; s=$?; i=$((i+1))
  case $s in 0) r=open;; 1) r=closed;; *) r=timeout;; esac; echo "$M kv probe=$t $r"; done
kill $w 2>/dev/null; wait $w; exit 0' probe "$M""#
        ));
        for p in &plan.probes {
            s.push(' ');
            s.push_str(&quote(&p.key()));
        }
        s.push_str("; else kv probe_tool none; fi\n");
    }
    // M1: the mirror's /v2/ with this node's trust: the system bundle, then each CA file
    // a runtime would add for it.
    if let Some(m) = &plan.mirror {
        let scheme = if m.insecure { "http" } else { "https" };
        let url = quote(&format!("{scheme}://{}/v2/", m.mirror));
        s.push_str(&format!(
            "if command -v curl >/dev/null 2>&1; then\n  c mirror_v2 curl -sS -o /dev/null -w '%{{http_code}}\\n' --connect-timeout 3 --max-time 5 {url}\n"
        ));
        if !m.insecure {
            for (i, ca) in mirror_ca_files(&m.mirror).iter().enumerate() {
                let q = quote(ca);
                s.push_str(&format!(
                    "  if [ -r {q} ]; then kv mirror_ca{i} {q}; c mirror_v2_ca{i} curl -sS -o /dev/null -w '%{{http_code}}\\n' --connect-timeout 3 --max-time 5 --cacert {q} {url}; fi\n"
                ));
            }
        }
        s.push_str("else kv mirror_tool none; fi\n");
    }
    // R2: the running containerd's plugins; its socket is root's.
    if plan.live_cri {
        s.push_str(&format!(
            r#"if [ -S {CONTAINERD_SOCKET} ] && command -v ctr >/dev/null 2>&1; then
  if [ -w {CONTAINERD_SOCKET} ]; then c ctr_plugins $T ctr plugins ls
  elif [ "$S" = sudo-ok ]; then c ctr_plugins $T sudo -n ctr plugins ls; fi
fi
"#
        ));
    }
    // K6: a server's own certificates (other hosts have none).
    s.push_str(&super::certificates::host_script_lines(&plan.server_certs));
    s
}
