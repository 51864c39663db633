//! Host facts gathered in one round trip: OS, kernel, arch, CPUs, memory, GPUs.
//!
//! One shell script prints `key=value` lines; [`Facts::parse`] reads them. Keeping the
//! parser pure means every odd answer a real host gives can be a unit test.

use serde::Serialize;

/// The script that prints the facts. Read-only, POSIX sh, no bashisms: hosts differ.
pub const SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-}"
echo "os_name=${PRETTY_NAME:-unknown}"
read -r kr 2>/dev/null </proc/sys/kernel/osrelease || kr=$(uname -r)
echo "kernel=$kr"
echo "arch=$(uname -m)"
read -r hn 2>/dev/null </proc/sys/kernel/hostname || hn=$(hostname 2>/dev/null || cat /etc/hostname)
echo "hostname=$hn"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
while read -r k v _; do if [ "$k" = MemTotal: ]; then echo "mem_kib=$v"; break; fi; done </proc/meminfo
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits 2>/dev/null \
    | sed 's/^/nvidia_gpu=/'
  echo "nvidia_smi_status=$?"
fi
if command -v lspci >/dev/null 2>&1; then
  n=0
  while IFS= read -r l; do
    case $l in *[Vv][Gg][Aa]*|*3[Dd]*|*[Dd][Ii][Ss][Pp][Ll][Aa][Yy]*) n=$((n+1));; esac
  done <<EOS
$(lspci -d 10de: 2>/dev/null)
EOS
  echo "pci_nvidia=$n"
fi
"#;

/// What a host told us about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub os_name: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// GPUs listed by `nvidia-smi` (empty when it is absent or failed).
    pub gpus: Vec<Gpu>,
    /// NVIDIA display/3D controllers on the PCI bus, when `lspci` exists.
    pub pci_gpus: Option<u32>,
    /// `nvidia-smi` exists on the host.
    pub nvidia_smi: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub name: String,
    pub memory_mib: u64,
    pub driver: String,
}

impl Facts {
    /// Parses the output of [`SCRIPT`]. Unknown keys are ignored (newer scripts, older
    /// parsers); malformed numbers become 0 rather than failing the host.
    pub fn parse(text: &str) -> Facts {
        let mut f = Facts::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key {
                "hostname" => f.hostname = value.to_string(),
                "os_id" => f.os_id = value.to_string(),
                "os_version" => f.os_version = value.to_string(),
                "os_name" => f.os_name = value.to_string(),
                "kernel" => f.kernel = value.to_string(),
                "arch" => f.arch = value.to_string(),
                "cpus" => f.cpus = value.parse().unwrap_or(0),
                "mem_kib" => f.memory_mib = value.parse::<u64>().unwrap_or(0) / 1024,
                "nvidia_smi_status" => f.nvidia_smi = true,
                "nvidia_gpu" => {
                    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
                    if let [name, mem, driver] = parts.as_slice() {
                        f.gpus.push(Gpu {
                            name: name.to_string(),
                            memory_mib: mem.parse().unwrap_or(0),
                            driver: driver.to_string(),
                        });
                    }
                }
                "pci_nvidia" => f.pci_gpus = value.parse().ok(),
                _ => {}
            }
        }
        f
    }

    /// `4× Tesla T4`, `2× A100, 1× T4`, `2 on PCI, no driver`, or `-`.
    pub fn gpu_summary(&self) -> String {
        if !self.gpus.is_empty() {
            let mut groups: Vec<(String, usize)> = Vec::new();
            for gpu in &self.gpus {
                match groups.iter_mut().find(|(n, _)| *n == gpu.name) {
                    Some((_, count)) => *count += 1,
                    None => groups.push((gpu.name.clone(), 1)),
                }
            }
            return groups
                .iter()
                .map(|(name, count)| format!("{count}× {name}"))
                .collect::<Vec<_>>()
                .join(", ");
        }
        match self.pci_gpus {
            Some(n) if n > 0 => format!("{n} on PCI, nvidia-smi sees none"),
            _ => "-".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_gpu_host() {
        let text = "os_id=ubuntu\nos_version=22.04\nos_name=Ubuntu 22.04.4 LTS\nkernel=5.15.0-105-generic\n\
                    arch=x86_64\nhostname=gnova\ncpus=64\nmem_kib=263842412\n\
                    nvidia_gpu=Tesla T4, 15360, 535.183.01\nnvidia_gpu=Tesla T4, 15360, 535.183.01\n\
                    nvidia_smi_status=0\npci_nvidia=2\nfuture_key=1\n";
        let f = Facts::parse(text);
        assert_eq!(f.os_id, "ubuntu");
        assert_eq!(f.cpus, 64);
        assert_eq!(f.memory_mib, 257658);
        assert_eq!(f.gpus.len(), 2);
        assert_eq!(f.gpus[0].driver, "535.183.01");
        assert!(f.nvidia_smi);
        assert_eq!(f.pci_gpus, Some(2));
        assert_eq!(f.gpu_summary(), "2× Tesla T4");
    }

    #[test]
    fn a_bare_host_has_no_gpus_and_odd_values_do_not_fail() {
        let f = Facts::parse("cpus=lots\nmem_kib=\nkernel=6.1.0\npci_nvidia=0\n");
        assert_eq!(f.cpus, 0);
        assert_eq!(f.memory_mib, 0);
        assert_eq!(f.gpu_summary(), "-");
        assert!(!f.nvidia_smi);
        let f = Facts::parse("pci_nvidia=4\n");
        assert_eq!(f.gpu_summary(), "4 on PCI, nvidia-smi sees none");
    }
}
