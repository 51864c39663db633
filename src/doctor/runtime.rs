//! Container runtime checks from the runtime's files (R4, R5, M2): the nvidia runtime
//! registered in the runtime the inventory chose — docker's `daemon.json` (where it must
//! also be the default, as k3s `--docker` has no RuntimeClass handler for it), or the
//! containerd config k3s generates — and k3s `registries.yaml` parsing.
//!
//! Before install there is nothing to check: a runtime that is not installed and has no
//! config yet is a skip with the reason, never an error.

use super::evidence::FileState;
use super::{Findings, HostInput, Severity};
use crate::inventory::{ContainerRuntime, Distribution};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
const K3S_REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
const K3S_CONTAINERD: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
const CONTAINERD: &str = "/etc/containerd/config.toml";

/// The exact command that registers nvidia as docker's default runtime.
const DOCKER_FIX: &str = "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && sudo systemctl restart docker";

pub fn check(input: &HostInput, out: &mut Findings) {
    let gpu = super::gpu::is_gpu_host(input);
    match input.cluster.container_runtime {
        ContainerRuntime::Docker => docker(input, out, gpu),
        ContainerRuntime::Containerd => containerd(input, out, gpu),
    }
    registries(input, out);
}

/// What daemon.json says, for R5 and the cross-host cgroup driver comparison (R3).
pub struct DaemonJson {
    pub runtimes: Vec<String>,
    pub default_runtime: Option<String>,
    pub nvidia_path: Option<String>,
    pub cgroup_driver: Option<String>,
}

/// Parses daemon.json; the error names line and column as serde_json reports them.
pub fn parse_daemon_json(lines: &[String]) -> Result<DaemonJson, String> {
    let text = lines.join("\n");
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let obj = value
        .as_object()
        .ok_or_else(|| "the top level is not a JSON object".to_string())?;
    let runtimes_obj = obj.get("runtimes").and_then(|r| r.as_object());
    let runtimes = runtimes_obj
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    let nvidia_path = runtimes_obj
        .and_then(|r| r.get("nvidia"))
        .and_then(|n| n.get("path"))
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let default_runtime = obj
        .get("default-runtime")
        .and_then(|d| d.as_str())
        .map(str::to_string);
    let cgroup_driver = obj
        .get("exec-opts")
        .and_then(|e| e.as_array())
        .and_then(|opts| {
            opts.iter()
                .filter_map(|o| o.as_str())
                .find_map(|o| o.strip_prefix("native.cgroupdriver=").map(str::to_string))
        });
    Ok(DaemonJson {
        runtimes,
        default_runtime,
        nvidia_path,
        cgroup_driver,
    })
}

fn docker(input: &HostInput, out: &mut Findings, gpu: bool) {
    let ev = input.ev;
    let installed = ev.bin("dockerd").is_some();
    let lines = match ev.file(DAEMON_JSON) {
        FileState::Content(lines) => lines.clone(),
        FileState::Unreadable => {
            out.add(
                "R5",
                Severity::Skip,
                format!("{DAEMON_JSON} exists but could not be read, even with sudo"),
            );
            return;
        }
        FileState::Missing if !installed => {
            out.add(
                "R5",
                Severity::Skip,
                "docker is not installed yet (no dockerd, no daemon.json)",
            );
            return;
        }
        FileState::Missing if gpu => {
            out.add(
                "R5",
                Severity::Error,
                format!(
                    "no {DAEMON_JSON}: the nvidia runtime is not registered, containers see no GPU"
                ),
            )
            .fix(DOCKER_FIX);
            return;
        }
        FileState::Missing => {
            out.add(
                "R5",
                Severity::Ok,
                format!("no {DAEMON_JSON}: docker runs with its defaults (not a GPU host)"),
            );
            return;
        }
    };
    let parsed = match parse_daemon_json(&lines) {
        Ok(p) => p,
        Err(e) => {
            out.add(
                "R5",
                Severity::Error,
                format!("{DAEMON_JSON} is not valid JSON: dockerd will not start ({e})"),
            )
            .evidence(super::head(&lines, 20))
            .fix(format!(
                "fix the syntax, then check it: sudo dockerd --validate --config-file {DAEMON_JSON}"
            ));
            return;
        }
    };
    let evidence = vec![
        format!(
            "runtimes: {}",
            if parsed.runtimes.is_empty() {
                "(none)".to_string()
            } else {
                parsed.runtimes.join(", ")
            }
        ),
        format!(
            "default-runtime: {}",
            parsed.default_runtime.as_deref().unwrap_or("(runc)")
        ),
    ];
    if gpu {
        let registered = parsed.runtimes.iter().any(|r| r == "nvidia");
        let default = parsed.default_runtime.as_deref() == Some("nvidia");
        if !registered {
            out.add(
                "R5",
                Severity::Error,
                format!("{DAEMON_JSON} has no nvidia runtime: containers see no GPU"),
            )
            .evidence(evidence)
            .fix(DOCKER_FIX);
        } else if !default {
            out.add(
                "R5",
                Severity::Error,
                format!(
                    "nvidia is registered but the default runtime is {}: the device plugin and pods see no GPU",
                    parsed.default_runtime.as_deref().unwrap_or("runc")
                ),
            )
            .evidence(evidence)
            .fix(DOCKER_FIX);
        } else {
            out.add("R5", Severity::Ok, "nvidia is docker's default runtime")
                .evidence(evidence);
        }
        // R4: the binary the runtime entry names, once docker would actually use it.
        if registered {
            let path = parsed
                .nvidia_path
                .clone()
                .unwrap_or_else(|| "nvidia-container-runtime".into());
            toolkit_binary(input, out, installed, &path);
        }
    } else {
        out.add(
            "R5",
            Severity::Ok,
            format!("{DAEMON_JSON} parses (not a GPU host: no nvidia runtime needed)"),
        )
        .evidence(evidence);
    }
}

/// R4: the runtime binary a config names exists. Only judged when the runtime itself is
/// installed: before that, the config may well be written ahead of the packages.
fn toolkit_binary(input: &HostInput, out: &mut Findings, runtime_installed: bool, path: &str) {
    if !runtime_installed {
        out.add(
            "R4",
            Severity::Skip,
            "the container runtime is not installed yet; its nvidia binary is checked once it is",
        );
        return;
    }
    let found = input.ev.bin("nvidia-container-runtime");
    let ok = match path.starts_with('/') {
        true => found == Some(path),
        false => found.is_some(),
    };
    if ok {
        out.add("R4", Severity::Ok, format!("{path} is installed"));
    } else {
        out.add(
            "R4",
            Severity::Error,
            format!("the nvidia runtime points at {path}, which is not installed: every container start fails"),
        )
        .evidence([format!("command -v nvidia-container-runtime: {}", found.unwrap_or("not found"))])
        .fix("sudo apt-get install -y nvidia-container-toolkit   # from the bundle's packages/ or your local mirror");
    }
}

fn containerd(input: &HostInput, out: &mut Findings, gpu: bool) {
    let ev = input.ev;
    let (config, installed, restart) = match input.cluster.distribution {
        Distribution::K3s => (
            K3S_CONTAINERD,
            ev.bin("k3s").is_some(),
            "sudo systemctl restart k3s-agent   # k3s on a server",
        ),
        Distribution::Kubeadm => (
            CONTAINERD,
            ev.bin("containerd").is_some(),
            "sudo systemctl restart containerd",
        ),
    };
    if !gpu {
        out.add(
            "R5",
            Severity::Skip,
            "not a GPU host: no nvidia runtime needed",
        );
        return;
    }
    let lines = match ev.file(config) {
        FileState::Content(lines) => lines.clone(),
        FileState::Unreadable => {
            out.add(
                "R5",
                Severity::Skip,
                format!("{config} could not be read, even with sudo"),
            );
            return;
        }
        FileState::Missing if !installed => {
            out.add(
                "R5",
                Severity::Skip,
                "the container runtime is not installed yet",
            );
            return;
        }
        FileState::Missing => {
            out.add(
                "R5",
                Severity::Error,
                format!("no {config}: the runtime has no nvidia handler"),
            )
            .fix(restart);
            return;
        }
    };
    let registered: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            l.starts_with('[')
                && (l.contains("runtimes.nvidia]") || l.contains("runtimes.\"nvidia\"]"))
        })
        .map(|(i, l)| format!("{config}:{}: {}", i + 1, l.trim()))
        .collect();
    if registered.is_empty() {
        out.add(
            "R5",
            Severity::Error,
            format!("{config} has no nvidia runtime: pods with runtimeClassName nvidia cannot start"),
        )
        .fix(format!(
            "sudo apt-get install -y nvidia-container-toolkit && {restart}   # k3s adds the nvidia runtime when it finds the toolkit at start"
        ));
        return;
    }
    let default_k3s = ev.lines(K3S_CONFIG).and_then(|l| {
        l.iter()
            .find(|l| l.trim_start().starts_with("default-runtime:"))
            .cloned()
    });
    let mut evidence = registered;
    evidence.extend(default_k3s);
    out.add(
        "R5",
        Severity::Ok,
        format!(
            "nvidia runtime registered in containerd (pods select it with RuntimeClass {})",
            "nvidia"
        ),
    )
    .evidence(evidence);
    toolkit_binary(input, out, installed, "nvidia-container-runtime");
}

/// M2 (the part files can tell): k3s `registries.yaml`, when present, parses.
fn registries(input: &HostInput, out: &mut Findings) {
    match input.ev.file(K3S_REGISTRIES) {
        FileState::Missing => {}
        FileState::Unreadable => {
            out.add(
                "M2",
                Severity::Skip,
                format!("{K3S_REGISTRIES} could not be read, even with sudo"),
            );
        }
        FileState::Content(lines) => {
            let text = lines.join("\n");
            match serde_yaml::from_str::<serde_yaml::Value>(&text) {
                Ok(value) => {
                    let mirrors: Vec<String> = value
                        .get("mirrors")
                        .and_then(|m| m.as_mapping())
                        .map(|m| {
                            m.keys()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.add(
                        "M2",
                        Severity::Ok,
                        format!(
                            "{K3S_REGISTRIES} parses; mirrors for: {}",
                            if mirrors.is_empty() {
                                "(none)".to_string()
                            } else {
                                mirrors.join(", ")
                            }
                        ),
                    );
                }
                Err(e) => {
                    out.add("M2", Severity::Error, format!("{K3S_REGISTRIES} is not valid YAML: k3s ignores it and pulls from public registries ({e})"))
                        .fix(format!("fix the YAML, then: sudo systemctl restart k3s   # or k3s-agent; check with: python3 -c 'import yaml,sys; yaml.safe_load(open(sys.argv[1]))' {K3S_REGISTRIES}"));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
