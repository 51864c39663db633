//! Evidence: everything doctor reads on a host, gathered by one read-only shell script in
//! one round trip, and the parser that turns its output into [`Evidence`].
//!
//! The script prints delimited sections; the checks are pure functions of the parsed
//! result, so every odd answer a real host gives can be a unit test without a network.
//! Markers carry a per-run nonce (`@@<nonce> kind arg`), so no file content can be
//! mistaken for one.
//!
//! Secrets never leave the host: files that may hold credentials (k3s `config.yaml` and
//! `registries.yaml`, containerd's `config.toml`) pass through a `sed` on the host that
//! replaces the value of every `*password*`, `*token*`, `*auth*` and `*secret*` key.

use std::collections::BTreeMap;

/// Files the script reads whole. Paths that may be root-only are read again with sudo
/// when the unprivileged read was refused (see [`Evidence::unreadable`]).
pub const FILES: &[&str] = &[
    "/etc/os-release",
    "/proc/swaps",
    "/etc/fstab",
    "/etc/hostname",
    "/etc/sysctl.conf",
    "/etc/modules",
    "/proc/driver/nvidia/version",
    "/etc/docker/daemon.json",
    "/etc/environment",
    "/etc/ufw/ufw.conf",
];

/// Files that may hold credentials: read through the redacting filter.
pub const SECRET_FILES: &[&str] = &[
    "/etc/rancher/k3s/config.yaml",
    "/etc/rancher/k3s/registries.yaml",
    "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    "/etc/containerd/config.toml",
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service.env",
];

/// Directories whose `*.conf` files are read (sysctl and module persistence), in the
/// precedence order systemd uses: a file name in an earlier directory hides the same name
/// in a later one.
pub const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
pub const MODULES_DIRS: &[&str] = &[
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/local/lib/modules-load.d",
    "/usr/lib/modules-load.d",
    "/lib/modules-load.d",
];

/// Live kernel settings read from `/proc/sys` (dotted names).
pub const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "kernel.keys.root_maxkeys",
    "fs.inotify.max_user_instances",
    "fs.inotify.max_user_watches",
];

/// Kernel options Kubernetes, containerd and the CNIs need (checked in H3).
pub const KERNEL_OPTIONS: &[&str] = &[
    "NAMESPACES",
    "NET_NS",
    "PID_NS",
    "IPC_NS",
    "UTS_NS",
    "CGROUPS",
    "CGROUP_CPUACCT",
    "CGROUP_DEVICE",
    "CGROUP_FREEZER",
    "CGROUP_SCHED",
    "CGROUP_PIDS",
    "CPUSETS",
    "MEMCG",
    "KEYS",
    "VETH",
    "BRIDGE",
    "BRIDGE_NETFILTER",
    "NF_NAT",
    "IP_NF_NAT",
    "IP_NF_FILTER",
    "IP_NF_TARGET_MASQUERADE",
    "NETFILTER_XT_MATCH_ADDRTYPE",
    "NETFILTER_XT_MATCH_CONNTRACK",
    "POSIX_MQUEUE",
    "VXLAN",
    "OVERLAY_FS",
];

/// Commands whose presence H6 checks, and the runtime binaries R4/R5 look for.
pub const BINARIES: &[&str] = &[
    "ip",
    "iptables",
    "mount",
    "nsenter",
    "lspci",
    "nvidia-smi",
    "nvidia-modprobe",
    "dockerd",
    "containerd",
    "k3s",
    "kubeadm",
    "kubelet",
    "nvidia-container-runtime",
    "nvidia-ctk",
    "timedatectl",
    "chronyc",
    "mount.nfs",
    "exportfs",
];

/// Modules whose load state and persistence doctor reads.
pub const MODULES: &[&str] = &["br_netfilter", "overlay", "nouveau", "nvidia", "nvidia_uvm"];

/// The script for one host. `nonce` separates markers from content; `disk_paths` are the
/// directories H13 measures (each through its nearest existing parent).
///
/// Processes count when fifty hosts run this at once on small machines (and where each
/// one is a container, every `exec` is paid again by its filesystem): every file is read
/// by one `awk` for all of them, every `/proc` value by another, the sudo probe the
/// connection would otherwise make is answered here, units are asked in one `systemctl`
/// each for state and activity, and the shell's own builtins do the rest.
pub fn script(nonce: &str, plan: &super::reads::ScriptPlan) -> String {
    let disk_paths = &plan.disk_paths;
    let m = format!("@@{nonce}");
    let mut s = String::new();
    s.push_str(&format!(
        r#"PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
LC_ALL=C; export LC_ALL
M='{m}'
OIFS=$IFS
NL='
'
{PRELUDE}
T=""; command -v timeout >/dev/null 2>&1 && T="timeout 20"
kv time_start "$(date +%s%N)"
{probe}
kv uid "$U"; kv user "$N"; kv sudo "$S"
np=0
if [ -r /sys/devices/system/cpu/online ]; then
  read -r on < /sys/devices/system/cpu/online; IFS=,
  for r in $on; do case $r in *-*) np=$((np + ${{r#*-}} - ${{r%-*}} + 1));; ?*) np=$((np + 1));; esac; done; IFS=$OIFS
fi
[ "$np" -gt 0 ] || np=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
kv nproc "$np"
set -- $(uname -nrm)
kv uname_n "$1"; kv kernel "$2"; kv arch "$3"; H=$1; R=$2
"#,
        probe = crate::transport::SUDO_PROBE_VARS,
    ));
    // Every file in one `f` (and the credential-bearing ones in one `rf`); globs that
    // match nothing are dropped by `rd`.
    s.push('f');
    for p in FILES {
        s.push_str(&format!(" {p}"));
    }
    for dir in SYSCTL_DIRS.iter().chain(MODULES_DIRS) {
        s.push_str(&format!(" {dir}/*.conf"));
    }
    s.push_str(" /etc/containerd/certs.d/*/hosts.toml\nrf");
    for p in SECRET_FILES {
        s.push_str(&format!(" {p}"));
    }
    // H9: the units' proxy drop-ins (a proxy URL may carry a password).
    for unit in super::reads::PROXY_UNITS {
        s.push_str(&format!(" /etc/systemd/system/{unit}.service.d/*.conf"));
    }
    s.push('\n');
    s.push_str(
        "for u in /etc/systemd/system/swap.target.wants/*; do [ -e \"$u\" ] && kv swap_unit \"${u##*/}\"; done\n",
    );
    // One awk for MemTotal and every /proc/sys value: sysctl files answer a read at a
    // non-zero offset with end-of-file, so the shell's byte-by-byte `read` would see one
    // character. Only files that exist are passed: mawk stops at the first one it cannot
    // open.
    s.push_str("set --; for p in");
    for key in SYSCTLS {
        s.push_str(&format!(" /proc/sys/{}", key.replace('.', "/")));
    }
    s.push_str("; do [ -r \"$p\" ] && set -- \"$@\" \"$p\"; done\n");
    s.push_str("awk -v m=\"$M\" 'FILENAME == \"/proc/meminfo\" { if ($1 == \"MemTotal:\") print m \" kv meminfo_kib=\" $2; next } FNR == 1 { k = FILENAME; sub(\"^/proc/sys/\", \"\", k); gsub(\"/\", \".\", k); print m \" kv sysctl.\" k \"=\" $0 }' /proc/meminfo \"$@\"\n");
    let pattern = format!("^(# )?CONFIG_({}|MODULES)[= ]", KERNEL_OPTIONS.join("|"));
    let mods = MODULES.join("|");
    s.push_str(&format!(
        r#"if [ -r /proc/config.gz ] && command -v gzip >/dev/null 2>&1; then
  kv kconfig_source /proc/config.gz
  kc() {{ gzip -cd /proc/config.gz | grep -E '{pattern}'; }}
  c kconfig kc
elif [ -r "/boot/config-$R" ]; then
  kv kconfig_source "/boot/config-$R"
  c kconfig grep -E '{pattern}' "/boot/config-$R"
fi
if [ -r /sys/fs/cgroup/cgroup.controllers ]; then
  kv cgroup_fs cgroup2fs
  read -r cc < /sys/fs/cgroup/cgroup.controllers; kv cgroup_controllers "$cc"
else kv cgroup_fs "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"; fi
dirs=""; for d in /sys/fs/cgroup/*; do [ -d "$d" ] && dirs="$dirs ${{d##*/}}"; done; kv cgroup_dirs "$dirs"
if [ -r /proc/modules ]; then
  kv proc_modules yes
  while read -r name rest; do case "$name" in {mods}) kv module "$name";; esac; done < /proc/modules
else kv proc_modules no; fi
if [ -r "/lib/modules/$R/modules.builtin" ]; then
  kv builtin_list yes
  awk -v m="$M" '{{ n = $0; sub(".*/", "", n); sub("[.]ko.*", "", n); if (n ~ /^({mods})$/) print m " kv builtin=" n }}' "/lib/modules/$R/modules.builtin"
fi
for b in {bins}; do
  IFS=:; set -- $PATH; IFS=$OIFS
  for d; do if [ -f "$d/$b" ] && [ -x "$d/$b" ]; then kv "bin.$b" "$d/$b"; break; fi; done
done
c iptables_version iptables --version
c getent getent hosts "$H"
if command -v timedatectl >/dev/null 2>&1; then c ntp_sync $T timedatectl show -p NTPSynchronized --value; fi
if command -v chronyc >/dev/null 2>&1; then c chrony $T chronyc -n tracking; fi
c ip_route ip -o route show
c ip_link ip -o link show
"#,
        bins = BINARIES.join(" "),
    ));
    // Disk: each path through its nearest existing parent, so paths made at install time
    // are measured on the filesystem they will land on; one df for all of them, whose
    // lines follow the `disk` entries in order.
    s.push_str("set --\nfor p in");
    for p in disk_paths {
        s.push(' ');
        s.push_str(&crate::transport::shell::quote(p));
    }
    s.push_str(
        r#"; do q=$p; while [ ! -e "$q" ]; do q=${q%/*}; [ -n "$q" ] || q=/; done; kv disk "$p	$q"; set -- "$@" "$q"; done
c df df -P "$@"
c df_inodes df -Pi "$@"
if command -v lspci >/dev/null 2>&1; then c lspci lspci -nn -d 10de:; fi
if command -v exportfs >/dev/null 2>&1; then c exportfs exportfs -s; fi
if command -v nvidia-smi >/dev/null 2>&1; then
  c nvidia_smi_list $T nvidia-smi -L
  c nvidia_smi_health $T nvidia-smi --query-gpu=index,pci.bus_id,ecc.errors.uncorrected.volatile.total,mig.mode.current,driver_version --format=csv,noheader
fi
for d in /dev/nvidia*; do [ -c "$d" ] && kv dev "$d"; done
set --
for u in k3s k3s-agent kubelet containerd docker; do
  for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    if [ -e "$dir/$u.service" ]; then set -- "$@" "$u"; break; fi
  done
done
if [ $# -gt 0 ]; then
  en=$(systemctl is-enabled "$@" 2>/dev/null); ac=$(systemctl is-active "$@" 2>/dev/null)
  nlines "$en"; le=$L; nlines "$ac"
  for u; do
    # One line per unit from each, in order; when either says otherwise, unit by unit.
    if [ "$le" = $# ] && [ "$L" = $# ]; then
      e=${en%%"$NL"*}; en=${en#*"$NL"}; a=${ac%%"$NL"*}; ac=${ac#*"$NL"}
    else
      e=$(systemctl is-enabled "$u" 2>/dev/null); a=$(systemctl is-active "$u" 2>/dev/null)
      e=${e%%"$NL"*}; a=${a%%"$NL"*}
    fi
    kv "svc.$u" "$e $a"
  done
fi
lo=""; for p in /etc/kubernetes/manifests /etc/kubernetes/admin.conf /var/lib/etcd /var/lib/kubelet/config.yaml /var/lib/rancher/k3s; do [ -e "$p" ] && lo="$lo$p "; done
kv leftovers "$lo"
"#,
    );
    s.push_str(&super::reads::script(plan));
    s.push_str("kv time_end \"$(date +%s%N)\"\n");
    s
}

/// Shell functions both scripts use: `kv`, `f PATH...` (print files), `rf PATH...` (print
/// files through `red`, which replaces credential values), `c NAME CMD...` (a command's
/// output and status), `nlines TEXT` (its number of lines in `L`), `hid PATH` (true when
/// a directory on the way cannot be entered, so PATH may exist unseen).
///
/// `f` and `rf` read every file in one `awk` (processes are what a script on fifty hosts
/// at once pays for); a glob that matched nothing is dropped, and a file behind a
/// directory the login user cannot enter is "unreadable", not "missing", so the sudo
/// follow-up reads it. `red` matches keys containing `password`, `token`, `auth` or
/// `secret` (any case) followed by `:` or `=`, anywhere on a line (inline JSON objects
/// too), and replaces a quoted value or the rest of the line; nested mappings (`auths: {`,
/// `[...auth]`) keep their structure, their leaves are caught. Marker lines pass as they
/// are.
pub const PRELUDE: &str = r#"kv() { printf '%s kv %s=%s\n' "$M" "$1" "$2"; }
hid() { d=${1%/*}; while [ -n "$d" ] && [ ! -e "$d" ]; do d=${d%/*}; done; [ -n "$d" ] && [ ! -x "$d" ]; }
nf() { if hid "$1"; then echo "$M unreadable $1"; else echo "$M missing $1"; fi; }
FA='function upto(name,  p) { while (k < ARGC) { p = ARGV[k++]; if (o++) print ""; print m " file " p; if (p == name) return } }
BEGIN { k = 1 } FNR == 1 { upto(FILENAME) } { print } END { upto(""); if (o) print "" }'
rd() { r=$1; shift; n=$#
  while [ "$n" -gt 0 ]; do p=$1; shift; n=$((n - 1))
    case $p in *'*'*) [ -e "$p" ] || continue;; esac
    if [ ! -f "$p" ]; then nf "$p"; elif [ -r "$p" ]; then set -- "$@" "$p"; else echo "$M unreadable $p"; fi
  done
  [ $# -gt 0 ] || return 0
  if [ "$r" = r ]; then awk -v m="$M" "$FA" "$@" | red; else awk -v m="$M" "$FA" "$@"; fi; }
f() { rd f "$@"; }
rf() { rd r "$@"; }
red() { sed -E -e "/^$M /b" -e 's#(://)[^/@[:space:]"]+@#\1<redacted>@#g' -e 's/("?[A-Za-z0-9_.-]*([Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]|[Tt][Oo][Kk][Ee][Nn]|[Aa][Uu][Tt][Hh]|[Ss][Ee][Cc][Rr][Ee][Tt])[A-Za-z0-9_.-]*"?[[:space:]]*[:=][[:space:]]*)("[^"]*"|[^]{["[:space:]].*$)/\1"<redacted>"/g'; }
c() { n=$1; shift; echo "$M cmd $n"; "$@" 2>&1; echo "$M status $n $?"; }
nlines() { IFS='
'; set -f; set -- $1; set +f; IFS=$OIFS; L=$#; }"#;

/// The follow-up for files the login user could not read: the same markers, as root.
/// Only paths the first script named are ever passed here.
pub fn sudo_script(nonce: &str, paths: &[String]) -> String {
    let mut s = format!("M='@@{nonce}'\n{PRELUDE}\n");
    for p in paths {
        let reader = if SECRET_FILES.contains(&p.as_str()) {
            "rf"
        } else {
            "f"
        };
        s.push_str(&format!("{reader} {}\n", crate::transport::shell::quote(p)));
    }
    s
}

/// What the script said about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    Missing,
    Unreadable,
    Content(Vec<String>),
}

/// A command's output and exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmdOut {
    pub lines: Vec<String>,
    pub status: Option<i32>,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
}

/// Everything one host told doctor, parsed.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// `kv` lines; a key may repeat (`module=`, `dev=`), in order.
    pub kv: Vec<(String, String)>,
    pub files: BTreeMap<String, FileState>,
    pub cmds: BTreeMap<String, CmdOut>,
    /// This machine's clock (ns since the epoch) just before the script was sent and
    /// just after its answer came back; with the host's own start/end times they bound
    /// the host's clock offset.
    pub sent_ns: i128,
    pub received_ns: i128,
    /// The script's output as it came (for `--support-bundle`).
    pub raw: String,
}

impl Evidence {
    /// Parses the script's output. Lines before the first marker are ignored (a login
    /// banner or a profile that prints); unknown markers too.
    pub fn parse(nonce: &str, text: &str) -> Evidence {
        let marker = format!("@@{nonce} ");
        let mut ev = Evidence {
            raw: text.to_string(),
            ..Evidence::default()
        };
        enum Cur {
            None,
            File(String),
            Cmd(String),
        }
        let mut cur = Cur::None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&marker) {
                let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                cur = Cur::None;
                match kind {
                    "kv" => {
                        let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
                        ev.kv.push((k.to_string(), v.to_string()));
                    }
                    "file" => {
                        ev.files
                            .insert(arg.to_string(), FileState::Content(Vec::new()));
                        cur = Cur::File(arg.to_string());
                    }
                    "missing" => {
                        ev.files.insert(arg.to_string(), FileState::Missing);
                    }
                    "unreadable" => {
                        ev.files.insert(arg.to_string(), FileState::Unreadable);
                    }
                    "cmd" => {
                        ev.cmds.insert(arg.to_string(), CmdOut::default());
                        cur = Cur::Cmd(arg.to_string());
                    }
                    "status" => {
                        let (name, code) = arg.rsplit_once(' ').unwrap_or((arg, ""));
                        if let Some(c) = ev.cmds.get_mut(name) {
                            c.status = code.trim().parse().ok();
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match &cur {
                Cur::None => {}
                Cur::File(p) => {
                    if let Some(FileState::Content(lines)) = ev.files.get_mut(p) {
                        lines.push(line.to_string());
                    }
                }
                Cur::Cmd(n) => {
                    if let Some(c) = ev.cmds.get_mut(n) {
                        c.lines.push(line.to_string());
                    }
                }
            }
        }
        // `f` adds a newline after each file so a last line without one still ends; drop
        // that one blank line again.
        for state in ev.files.values_mut() {
            if let FileState::Content(lines) = state
                && lines.last().is_some_and(|l| l.is_empty())
            {
                lines.pop();
            }
        }
        ev
    }

    /// Merges the answer of the sudo follow-up: its files replace the unreadable ones.
    pub fn merge(&mut self, other: Evidence) {
        self.raw.push_str(&other.raw);
        for (path, state) in other.files {
            self.files.insert(path, state);
        }
    }

    /// What the script's run of the sudo probe ([`crate::transport::SUDO_PROBE_VARS`])
    /// found, as the connection takes it (not well formed when the lines are missing).
    pub fn sudo_answer(&self) -> crate::transport::ProbeAnswer {
        let get = |k: &str| self.get(k).unwrap_or_default().to_string();
        crate::transport::ProbeAnswer {
            uid: get("uid"),
            user: get("user"),
            sudo: get("sudo"),
        }
    }

    /// The first value of a `kv` key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.kv
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated `kv` key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.kv
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn file(&self, path: &str) -> &FileState {
        self.files.get(path).unwrap_or(&FileState::Missing)
    }

    /// The lines of a file that was read, `None` when missing or unreadable.
    pub fn lines(&self, path: &str) -> Option<&[String]> {
        match self.files.get(path) {
            Some(FileState::Content(lines)) => Some(lines),
            _ => None,
        }
    }

    /// The evidence of a cluster script that ran `cmds` as `(name, status, output)`, with
    /// the cluster present.
    #[cfg(test)]
    pub fn for_test(cmds: &[(&str, i32, &str)]) -> Evidence {
        let mut text = String::from("@@t kv cluster=present\n");
        for (name, status, out) in cmds {
            text.push_str(&format!(
                "@@t cmd {name}\n{out}\n@@t status {name} {status}\n"
            ));
        }
        text.push_str("@@t kv end=1\n");
        Evidence::parse("t", &text)
    }

    pub fn cmd(&self, name: &str) -> Option<&CmdOut> {
        self.cmds.get(name)
    }

    /// Where a binary is, when `command -v` found it.
    pub fn bin(&self, name: &str) -> Option<&str> {
        self.get(&format!("bin.{name}"))
    }

    /// Files that exist but the login user could not read: what the sudo follow-up reads.
    pub fn unreadable(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, s)| **s == FileState::Unreadable)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every file read under one of `dirs`, with its content.
    pub fn files_under<'a>(&'a self, dirs: &[&str]) -> Vec<(&'a str, &'a [String])> {
        self.files
            .iter()
            .filter(|(p, _)| {
                dirs.iter()
                    .any(|d| p.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
            })
            .filter_map(|(p, s)| match s {
                FileState::Content(l) => Some((p.as_str(), l.as_slice())),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` under this machine's `sh`.
    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap_or_else(|e| panic!("sh: {e}"))
    }

    #[test]
    fn parses_markers_files_commands_and_repeated_keys() {
        let text = "banner line\n@@n1 kv uid=1000\n@@n1 kv module=overlay\n@@n1 kv module=br_netfilter\n\
                    @@n1 file /etc/fstab\n# a comment\n/swapfile none swap sw 0 0\n\n\
                    @@n1 missing /etc/modules\n@@n1 unreadable /etc/rancher/k3s/registries.yaml\n\
                    @@n1 cmd lspci\n01:00.0 3D controller [0302]: NVIDIA\n@@n1 status lspci 0\n\
                    @@n2 kv not=mine\n";
        let ev = Evidence::parse("n1", text);
        assert_eq!(ev.get("uid"), Some("1000"));
        assert_eq!(ev.all("module"), ["overlay", "br_netfilter"]);
        assert_eq!(
            ev.lines("/etc/fstab").map(<[String]>::len),
            Some(2),
            "{:?}",
            ev.files
        );
        assert_eq!(*ev.file("/etc/modules"), FileState::Missing);
        assert_eq!(ev.unreadable(), ["/etc/rancher/k3s/registries.yaml"]);
        let lspci = ev.cmd("lspci").cloned().unwrap_or_default();
        assert!(lspci.ok());
        assert_eq!(lspci.lines.len(), 1);
        // A marker with another nonce is content, not a marker (here: outside any section).
        assert_eq!(ev.get("not"), None);
    }

    /// The script runs under this machine's `sh` (read-only) and every section parses.
    #[test]
    fn the_script_runs_under_sh_and_its_output_parses() {
        let paths = vec!["/".to_string(), "/var/lib/no/such/dir".to_string()];
        // A k3s data directory with one certificate, as a server other than the first has.
        fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
            r.unwrap_or_else(|e| panic!("{e}"))
        }
        let k3s = ok(tempfile::tempdir());
        ok(std::fs::create_dir_all(k3s.path().join("server/tls")));
        let cert = ok(rcgen::generate_simple_self_signed(vec!["k3s".into()]));
        ok(std::fs::write(
            k3s.path().join("server/tls/server-ca.crt"),
            cert.cert.pem(),
        ));
        let out = sh(&script(
            "n0nce",
            &super::super::reads::ScriptPlan {
                disk_paths: paths,
                local_path: None,
                nfs: None,
                probes: vec![super::super::reads::Probe {
                    host: "self".into(),
                    addr: "127.0.0.1".into(),
                    port: 1,
                }],
                mirror: Some(super::super::reads::MirrorProbe {
                    mirror: "127.0.0.1:1".into(),
                    insecure: true,
                }),
                first_server: Some("cp1".into()),
                server_certs: vec![k3s.path().join("server/tls").display().to_string()],
                live_cri: true,
            },
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        let ev = Evidence::parse("n0nce", &text);
        assert!(
            ev.get("time_end").is_some(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!ev.get("uname_n").unwrap_or("").is_empty());
        assert!(
            ev.sudo_answer().is_well_formed(),
            "the sudo probe's answer: {:?}",
            ev.sudo_answer()
        );
        assert!(
            ev.get("nproc")
                .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        );
        let certs = ev.cmd("certs").cloned().unwrap_or_default();
        assert!(
            certs
                .lines
                .iter()
                .any(|l| l.contains("server-ca.crt|notBefore="))
                && certs.lines.last().is_some_and(|l| l.starts_with("now ")),
            "{:?}",
            certs.lines
        );
        assert!(
            ev.get("kernel")
                .is_some_and(|k| k.chars().next().is_some_and(|c| c.is_ascii_digit()))
        );
        assert!(
            ev.get("meminfo_kib")
                .is_some_and(|m| m.parse::<u64>().is_ok())
        );
        assert!(
            ev.bin("sh").is_none(),
            "only the listed binaries are looked up"
        );
        assert!(
            ev.lines("/proc/swaps")
                .is_some_and(|l| l[0].starts_with("Filename"))
        );
        let disks = ev.all("disk");
        assert_eq!(disks.len(), 2);
        assert_eq!(
            disks[1], "/var/lib/no/such/dir\t/var/lib",
            "the nearest existing parent"
        );
        let df = ev.cmd("df").cloned().unwrap_or_default();
        assert_eq!(
            df.lines
                .iter()
                .filter(|l| !l.starts_with("Filesystem"))
                .count(),
            2,
            "{df:?}"
        );
    }

    /// `f` reads every file in one awk: empty files, a last line without a newline, a
    /// glob that matches nothing and a missing file come out as `cat` and a loop did.
    #[test]
    fn one_awk_reads_every_file_as_cat_did() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let d = dir.path().display().to_string();
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"))
        };
        write("a.conf", "one\ntwo\n");
        write("b.conf", "");
        write("c.conf", "no newline");
        write("d.conf", "\n\nblank lines\n\n");
        let script = format!(
            "M=@@t\nNL='\n'\n{PRELUDE}\nf {d}/a.conf {d}/b.conf {d}/missing {d}/none/*.conf {d}/c.conf {d}/d.conf\n\
             rf {d}/c.conf {d}/*.toml\n"
        );
        let out = sh(&script);
        let text = String::from_utf8_lossy(&out.stdout);
        let ev = Evidence::parse("t", &text);
        let lines = |name: &str| ev.lines(&format!("{d}/{name}")).map(<[String]>::to_vec);
        assert_eq!(
            lines("a.conf"),
            Some(vec!["one".into(), "two".into()]),
            "{text}"
        );
        assert_eq!(lines("b.conf"), Some(vec![]), "{text}");
        assert_eq!(lines("c.conf"), Some(vec!["no newline".into()]), "{text}");
        assert_eq!(
            lines("d.conf"),
            Some(vec!["".into(), "".into(), "blank lines".into(), "".into()]),
            "{text}"
        );
        assert_eq!(*ev.file(&format!("{d}/missing")), FileState::Missing);
        assert!(
            ev.files.keys().all(|k| !k.contains('*')),
            "a glob that matched nothing is not a file: {:?}",
            ev.files.keys()
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The redacting filter runs on this machine's `sh` and `sed`: what leaves a host.
    #[test]
    fn the_redacting_filter_hides_credentials_and_keeps_structure() {
        let input = r#"token: K10abc::server:secret
agent-token: "xyz"
configs:
  "registry.lab:5000":
    auth:
      username: admin
      password: hunter2,with,commas
    tls:
      ca_file: /etc/ssl/ca.pem
{"auths": {
  "x": {"auth": "c2VjcmV0", "identitytoken": "abc"},
  "registry-mirrors": ["https://m"]
}}
[plugins."io.containerd.grpc.v1.cri".registry.configs."m".auth]
  password = "p4ss"
"#;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("in.yaml");
        std::fs::write(&path, input).unwrap_or_else(|e| panic!("write: {e}"));
        let script = format!("M=@@t\n{PRELUDE}\nrf {}\n", path.display());
        let out = sh(&script);
        let text = String::from_utf8_lossy(&out.stdout);
        for secret in ["K10abc", "xyz", "hunter2", "c2VjcmV0", "p4ss", "\"abc\""] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        for kept in [
            "username: admin",
            "ca_file: /etc/ssl/ca.pem",
            "\"auths\": {",
            "registry-mirrors",
            "configs.\"m\".auth]",
            "password = \"<redacted>\"",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
    }
}
