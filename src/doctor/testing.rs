//! Unit-test helpers: the evidence a healthy host gives, edited line by line into the
//! fault a test is about, and the findings doctor draws from it.

use std::collections::{BTreeMap, BTreeSet};

use super::compare::Facts;
use super::evidence::KERNEL_OPTIONS;
use super::reads::ScriptPlan;
use super::{Evidence, Finding, HostInput, Severity};
use crate::inventory::{Cluster, Cni, ContainerRuntime, Distribution, GpuPresence, Host, Role};
use crate::transport::{Endpoint, SudoMode};

/// One host's case: inventory intent plus the script's output (nonce `t`).
#[derive(Clone)]
pub struct Case {
    pub host: Host,
    pub cluster: Cluster,
    pub lines: Vec<String>,
    pub sudo: SudoMode,
    /// This machine's clock when the script was sent, ns (the host's is offset from it).
    pub sent_ns: i128,
    /// Peer probes and the mirror the script was given.
    pub plan: ScriptPlan,
}

pub fn cluster(runtime: ContainerRuntime) -> Cluster {
    Cluster {
        name: "lab".into(),
        distribution: Distribution::K3s,
        version: "v1.30.6+k3s1".into(),
        api_endpoint: None,
        pod_cidr: "10.42.0.0/16".parse().unwrap_or_else(|e| panic!("{e}")),
        service_cidr: "10.43.0.0/16".parse().unwrap_or_else(|e| panic!("{e}")),
        cni: Cni::Flannel,
        data_dir: None,
        container_runtime: runtime,
    }
}

const T0: i128 = 1_700_000_000_000_000_000;

impl Case {
    /// A healthy host: a server when `gpu` is false, a GPU worker with 4 T4s otherwise;
    /// docker is the runtime.
    pub fn healthy(name: &str, gpu: bool) -> Case {
        let mut l: Vec<String> = Vec::new();
        let mut kv = |k: &str, v: &str| l.push(format!("@@t kv {k}={v}"));
        kv("time_start", &(T0 + 1_000_000).to_string());
        kv("uid", "1000");
        kv("user", "ops");
        kv("nproc", "4");
        kv("kernel", "6.1.0-18-amd64");
        kv("uname_n", name);
        kv("meminfo_kib", "16384000");
        for key in ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"] {
            kv(&format!("sysctl.{key}"), "1");
        }
        kv("sysctl.kernel.keys.root_maxkeys", "1000000");
        kv("sysctl.fs.inotify.max_user_instances", "8192");
        kv("sysctl.fs.inotify.max_user_watches", "1048576");
        kv("kconfig_source", "/boot/config-6.1.0-18-amd64");
        kv("cgroup_fs", "cgroup2fs");
        kv(
            "cgroup_controllers",
            "cpuset cpu io memory hugetlb pids rdma misc",
        );
        kv("proc_modules", "yes");
        kv("module", "overlay");
        kv("module", "br_netfilter");
        for b in ["ip", "iptables", "mount", "nsenter", "lspci", "timedatectl"] {
            kv(&format!("bin.{b}"), &format!("/usr/bin/{b}"));
        }
        kv("disk", "/\t/");
        kv("disk", "/var/lib/docker\t/var/lib");
        let mut file = |path: &str, content: &[&str]| {
            l.push(format!("@@t file {path}"));
            l.extend(content.iter().map(|s| s.to_string()));
            l.push(String::new());
        };
        file("/etc/os-release", &["ID=debian", "VERSION_ID=\"12\""]);
        file(
            "/proc/swaps",
            &["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"],
        );
        file(
            "/etc/fstab",
            &["# /etc/fstab", "UUID=1234 / ext4 errors=remount-ro 0 1"],
        );
        file("/etc/hostname", &[name]);
        file(
            "/etc/modules",
            &["# /etc/modules: kernel modules to load at boot time."],
        );
        file(
            "/etc/sysctl.d/99-kubernetes.conf",
            &[
                "net.ipv4.ip_forward = 1",
                "net.bridge.bridge-nf-call-iptables = 1",
                "fs.inotify.max_user_instances = 8192",
                "fs.inotify.max_user_watches = 1048576",
            ],
        );
        file(
            "/usr/lib/sysctl.d/50-default.conf",
            &["net.ipv4.ping_group_range = 0 2147483647"],
        );
        file(
            "/etc/modules-load.d/kubernetes.conf",
            &["overlay", "br_netfilter"],
        );
        l.push("@@t missing /etc/sysctl.conf".into());
        l.push("@@t missing /proc/driver/nvidia/version".into());
        l.push("@@t missing /etc/docker/daemon.json".into());
        let mut cmd = |name: &str, lines: &[String], status: i32| {
            l.push(format!("@@t cmd {name}"));
            l.extend(lines.iter().cloned());
            l.push(format!("@@t status {name} {status}"));
        };
        let mut kconfig: Vec<String> = KERNEL_OPTIONS
            .iter()
            .map(|o| match *o {
                "BRIDGE_NETFILTER" | "OVERLAY_FS" | "VXLAN" => format!("CONFIG_{o}=m"),
                _ => format!("CONFIG_{o}=y"),
            })
            .collect();
        kconfig.push("CONFIG_MODULES=y".into());
        cmd("kconfig", &kconfig, 0);
        cmd(
            "iptables_version",
            &["iptables v1.8.9 (nf_tables)".into()],
            0,
        );
        cmd("getent", &[format!("10.0.0.1        {name}")], 0);
        cmd("ntp_sync", &["yes".into()], 0);
        cmd(
            "ip_route",
            &[
                "default via 10.0.0.254 dev eth0".into(),
                "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1".into(),
            ],
            0,
        );
        cmd(
            "ip_link",
            &[
                "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN".into(),
                "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP".into(),
            ],
            0,
        );
        let df_header =
            "Filesystem     1024-blocks     Used Available Capacity Mounted on".to_string();
        let root = "/dev/sda1 102400 40960 61440 40% /".to_string();
        cmd("df", &[df_header, root.clone(), root], 0);
        let inodes = "/dev/sda1 6553600 100000 6453600 2% /".to_string();
        cmd(
            "df_inodes",
            &[
                "Filesystem Inodes IUsed IFree IUse% Mounted on".into(),
                inodes.clone(),
                inodes,
            ],
            0,
        );
        let pci: Vec<String> = if gpu {
            (0..4)
                .map(|i| format!("{:02x}:00.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)", 0x17 + i))
                .collect()
        } else {
            Vec::new()
        };
        cmd("lspci", &pci, if gpu { 0 } else { 1 });
        let mut case = Case {
            host: Host {
                name: name.into(),
                endpoint: Endpoint::Local,
                internal_address: "10.0.0.1".parse().ok(),
                roles: BTreeSet::from([if gpu { Role::Worker } else { Role::Server }]),
                gpu: if gpu {
                    GpuPresence::Yes
                } else {
                    GpuPresence::No
                },
                labels: BTreeMap::new(),
                taints: Vec::new(),
            },
            cluster: cluster(ContainerRuntime::Docker),
            lines: l,
            sudo: SudoMode::NoPassword,
            sent_ns: T0,
            plan: ScriptPlan::default(),
        };
        if gpu {
            case = case.gpu_driver(4);
        }
        case.with(&format!("@@t kv time_end={}", T0 + 50_000_000))
    }

    /// What the driver, its device nodes and docker's nvidia runtime add on a GPU host.
    fn gpu_driver(self, n: u32) -> Case {
        let mut c = self
            .with("@@t kv bin.nvidia-smi=/usr/bin/nvidia-smi")
            .with("@@t kv bin.dockerd=/usr/bin/dockerd")
            .with("@@t kv bin.nvidia-container-runtime=/usr/bin/nvidia-container-runtime")
            .with("@@t cmd nvidia_smi_list");
        for i in 0..n {
            c = c.with(&format!(
                "GPU {i}: Tesla T4 (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)"
            ));
        }
        c = c
            .with("@@t status nvidia_smi_list 0")
            .with("@@t cmd nvidia_smi_health");
        for i in 0..n {
            c = c.with(&format!(
                "{i}, 00000000:{:02X}:00.0, 0, Disabled, 535.183.01",
                0x17 + i
            ));
        }
        c = c
            .with("@@t status nvidia_smi_health 0")
            .without("@@t missing /proc/driver/nvidia/version")
            .with("@@t file /proc/driver/nvidia/version")
            .with("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024")
            .with("GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)")
            .without("@@t missing /etc/docker/daemon.json")
            .with("@@t file /etc/docker/daemon.json")
            .with(r#"{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}"#);
        for d in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
            c = c.with(&format!("@@t kv dev={d}"));
        }
        for i in 0..n {
            c = c.with(&format!("@@t kv dev=/dev/nvidia{i}"));
        }
        c
    }

    /// Appends a line.
    pub fn with(mut self, line: &str) -> Case {
        self.lines.push(line.to_string());
        self
    }

    /// Removes every line starting with `prefix`.
    pub fn without(mut self, prefix: &str) -> Case {
        self.lines.retain(|l| !l.starts_with(prefix));
        self
    }

    /// Replaces every line equal to `from`.
    pub fn replace(mut self, from: &str, to: &str) -> Case {
        let mut hit = false;
        for l in &mut self.lines {
            if l == from {
                *l = to.to_string();
                hit = true;
            }
        }
        assert!(hit, "no line {from:?} to replace");
        self
    }

    pub fn evidence(&self) -> Evidence {
        let mut ev = Evidence::parse("t", &self.lines.join("\n"));
        ev.sent_ns = self.sent_ns;
        ev.received_ns = self.sent_ns + 100_000_000;
        ev
    }

    pub fn findings(&self) -> Vec<Finding> {
        let ev = self.evidence();
        super::check_host(&HostInput {
            host: &self.host,
            cluster: &self.cluster,
            ev: &ev,
            sudo: self.sudo,
            plan: &self.plan,
        })
    }

    pub fn facts(&self) -> Facts {
        let ev = self.evidence();
        Facts::of(&HostInput {
            host: &self.host,
            cluster: &self.cluster,
            ev: &ev,
            sudo: self.sudo,
            plan: &self.plan,
        })
    }
}

/// The one finding with `id` and `severity`; panics listing what there is.
pub fn one<'a>(findings: &'a [Finding], id: &str, severity: Severity) -> &'a Finding {
    let matching: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.id == id && f.severity == severity)
        .collect();
    match matching.as_slice() {
        [f] => f,
        _ => panic!(
            "expected one {id} {severity:?} finding, got {}:\n{findings:#?}",
            matching.len()
        ),
    }
}

/// A healthy host has nothing above ok/skip, and every id it reports is in the catalog.
pub fn assert_clean(findings: &[Finding]) {
    let bad: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity > Severity::Skip)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    for f in findings {
        assert!(
            super::catalog(&f.id).is_some(),
            "{} is not in the catalog",
            f.id
        );
    }
}
