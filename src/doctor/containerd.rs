//! Runtime checks from containerd's own configuration: the CRI plugin is not disabled
//! (R2: the `config.toml` Docker's packages ship disables it, and kubelet then cannot
//! talk to containerd), and the sandbox ("pause") image comes from the mirror (R7: every
//! pod needs it, and an air-gapped node cannot reach registry.k8s.io or docker.io).

use super::{Findings, HostInput, Severity};
use crate::inventory::{ContainerRuntime, Distribution};

const CONTAINERD: &str = "/etc/containerd/config.toml";
const K3S_CONTAINERD: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
const K3S_REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";

/// containerd's default sandbox image (1.7) and k3s's.
const DEFAULT_SANDBOX: &str = "registry.k8s.io/pause:3.8";
const K3S_DEFAULT_SANDBOX: &str = "rancher/mirrored-pause:3.6";

pub fn check(input: &HostInput, out: &mut Findings) {
    if input.cluster.container_runtime == ContainerRuntime::Docker {
        for id in ["R2", "R7"] {
            out.add(
                id,
                Severity::Skip,
                "the runtime is docker: containerd's CRI config does not apply",
            );
        }
        return;
    }
    cri(input, out);
    sandbox(input, out);
}

/// `["cri", ...]` of a `disabled_plugins = [...]` line.
pub fn disabled_plugins(lines: &[String]) -> Option<(usize, Vec<String>)> {
    lines.iter().enumerate().find_map(|(i, l)| {
        let l = l.trim();
        let rest = l.strip_prefix("disabled_plugins")?.trim_start();
        let list = rest.strip_prefix('=')?.trim();
        let items = list
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').trim_matches('\'').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Some((i + 1, items))
    })
}

/// R2: kubeadm's containerd has CRI; k3s embeds its own containerd with CRI built in.
fn cri(input: &HostInput, out: &mut Findings) {
    if input.cluster.distribution == Distribution::K3s {
        out.add(
            "R2",
            Severity::Ok,
            "k3s runs its own containerd with CRI built in",
        );
        return;
    }
    let Some(lines) = input.ev.lines(CONTAINERD) else {
        if input.ev.bin("containerd").is_some() {
            out.add(
                "R2",
                Severity::Ok,
                format!("no {CONTAINERD}: containerd's defaults enable CRI"),
            );
        } else {
            out.add("R2", Severity::Skip, "containerd is not installed yet");
        }
        return;
    };
    match disabled_plugins(lines) {
        Some((line, items))
            if items
                .iter()
                .any(|p| p == "cri" || p == "io.containerd.grpc.v1.cri") =>
        {
            out.add(
                "R2",
                Severity::Error,
                "containerd's CRI plugin is disabled: kubelet cannot run pods through it",
            )
            .evidence([format!("{CONTAINERD}:{line}: {}", lines[line - 1].trim())])
            .fix(format!(
                "sudo sed -i -E 's/^([[:space:]]*disabled_plugins[[:space:]]*=).*/\\1 []/' {CONTAINERD} && sudo systemctl restart containerd"
            ));
        }
        _ => live(input, out),
    }
}

/// R2's live half, once the config enables CRI: what the running containerd says of its
/// CRI plugin (`ctr plugins ls`: a plugin that failed to start, or a daemon that has not
/// read the config since CRI was enabled). Without that answer (no sudo, containerd
/// down: K2 says so), the config's word stands.
fn live(input: &HostInput, out: &mut Findings) {
    let enabled = format!("{CONTAINERD} leaves the CRI plugin enabled");
    let Some(c) = input.ev.cmd("ctr_plugins").filter(|c| c.ok()) else {
        out.add("R2", Severity::Ok, enabled);
        return;
    };
    let row = c.lines.iter().find(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("io.containerd.grpc.v1") && w.next() == Some("cri")
    });
    let restart = "sudo systemctl restart containerd && sudo journalctl -u containerd -b --no-pager | grep -i cri | tail -n 20";
    match row {
        Some(row) if row.split_whitespace().last() == Some("ok") => {
            out.add(
                "R2",
                Severity::Ok,
                format!("{enabled}, and the running containerd's CRI plugin is ok"),
            )
            .evidence([format!("ctr plugins ls: {}", row.trim())]);
        }
        Some(row) => {
            out.add(
                "R2",
                Severity::Error,
                format!(
                    "containerd's CRI plugin did not start ({}): kubelet cannot run pods through it",
                    row.split_whitespace().last().unwrap_or("?")
                ),
            )
            .evidence([format!("ctr plugins ls: {}", row.trim())])
            .fix(restart);
        }
        None => {
            out.add(
                "R2",
                Severity::Error,
                "the running containerd has no CRI plugin although its config enables it: it has not been restarted since",
            )
            .evidence(["ctr plugins ls: no io.containerd.grpc.v1 cri".to_string()])
            .fix(restart);
        }
    }
}

/// The `sandbox_image`/`sandbox` value of a containerd config.
fn sandbox_in(lines: &[String], path: &str) -> Option<(String, String)> {
    lines.iter().enumerate().find_map(|(i, l)| {
        let t = l.trim();
        let (k, v) = t.split_once('=')?;
        let k = k.trim();
        (k == "sandbox_image" || k == "sandbox").then(|| {
            (
                v.trim().trim_matches('"').to_string(),
                format!("{path}:{}: {t}", i + 1),
            )
        })
    })
}

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Whether the node's own mirror config sends pulls from `registry` to `mirror`: k3s
/// `registries.yaml` (`mirrors.REGISTRY.endpoint`), containerd `hosts.toml` under
/// `certs.d/REGISTRY/`, or a `registry.mirrors."REGISTRY"` table in the config.
pub fn rewritten(input: &HostInput, registry: &str, mirror: &str) -> Option<String> {
    let ev = input.ev;
    if let Some(lines) = ev.lines(K3S_REGISTRIES)
        && let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&lines.join("\n"))
        && let Some(eps) = v
            .get("mirrors")
            .and_then(|m| m.get(registry))
            .and_then(|r| r.get("endpoint"))
            .and_then(|e| e.as_sequence())
        && eps
            .iter()
            .filter_map(|e| e.as_str())
            .any(|e| e.contains(mirror))
    {
        return Some(format!("{K3S_REGISTRIES}: mirrors.{registry} → {mirror}"));
    }
    let hosts = format!("/etc/containerd/certs.d/{registry}/hosts.toml");
    if ev
        .lines(&hosts)
        .is_some_and(|l| l.iter().any(|l| l.contains(mirror)))
    {
        return Some(format!("{hosts} names {mirror}"));
    }
    let table = format!("registry.mirrors.\"{registry}\"]");
    for path in [CONTAINERD, K3S_CONTAINERD] {
        if let Some(lines) = ev.lines(path)
            && let Some(at) = lines.iter().position(|l| l.contains(&table))
            && lines
                .iter()
                .skip(at + 1)
                .take_while(|l| !l.trim_start().starts_with('['))
                .any(|l| l.contains(mirror))
        {
            return Some(format!("{path}: {table} endpoint {mirror}"));
        }
    }
    None
}

/// R7: the sandbox image comes from the mirror, directly or through a rewrite.
fn sandbox(input: &HostInput, out: &mut Findings) {
    let Some(mirror) = input.plan.mirror.as_ref().map(|m| m.mirror.clone()) else {
        out.add(
            "R7",
            Severity::Skip,
            "no registry.mirror in the inventory: where the sandbox image comes from is not judged",
        );
        return;
    };
    let ev = input.ev;
    let k3s = input.cluster.distribution == Distribution::K3s;
    let (config, installed) = if k3s {
        (K3S_CONTAINERD, ev.bin("k3s").is_some())
    } else {
        (CONTAINERD, ev.bin("containerd").is_some())
    };
    let from_k3s = ev.lines(K3S_CONFIG).and_then(|l| {
        l.iter().find_map(|l| {
            let v = l.trim().strip_prefix("pause-image:")?;
            Some((
                v.trim().trim_matches('"').to_string(),
                format!("{K3S_CONFIG}: {}", l.trim()),
            ))
        })
    });
    let found = from_k3s
        .filter(|_| k3s)
        .or_else(|| ev.lines(config).and_then(|l| sandbox_in(l, config)));
    let (image, evidence) = match found {
        Some(f) => f,
        None if !installed && ev.lines(config).is_none() => {
            out.add(
                "R7",
                Severity::Skip,
                "the container runtime is not installed yet",
            );
            return;
        }
        None => {
            let d = if k3s {
                K3S_DEFAULT_SANDBOX
            } else {
                DEFAULT_SANDBOX
            };
            (
                d.to_string(),
                format!("{config}: no sandbox_image (default {d})"),
            )
        }
    };
    let registry = registry_of(&image);
    if registry == mirror {
        out.add(
            "R7",
            Severity::Ok,
            format!("sandbox image {image} comes from the mirror"),
        )
        .evidence([evidence]);
        return;
    }
    if let Some(via) = rewritten(input, registry, &mirror) {
        out.add(
            "R7",
            Severity::Ok,
            format!("sandbox image {image} is pulled through the mirror"),
        )
        .evidence([evidence, via]);
        return;
    }
    let name = image
        .strip_prefix(&format!("{registry}/"))
        .unwrap_or(&image);
    let fix = if k3s {
        format!(
            "echo 'pause-image: {mirror}/{name}' | sudo tee -a {K3S_CONFIG} && sudo systemctl restart k3s   # k3s-agent on a worker; or map {registry} to the mirror in {K3S_REGISTRIES}"
        )
    } else if evidence.contains("no sandbox_image") {
        format!(
            "sudo sed -i -E '/^\\[plugins\\.\"io\\.containerd\\.grpc\\.v1\\.cri\"\\]/a\\  sandbox_image = \"{mirror}/{name}\"' {CONTAINERD} && sudo systemctl restart containerd"
        )
    } else {
        format!(
            "sudo sed -i -E 's#^([[:space:]]*sandbox_image[[:space:]]*=).*#\\1 \"{mirror}/{name}\"#' {CONTAINERD} && sudo systemctl restart containerd"
        )
    };
    out.add(
        "R7",
        Severity::Error,
        format!("sandbox image {image} comes from {registry}, which no mirror rewrite on this node covers: no pod can start without internet"),
    )
    .evidence([evidence])
    .fix(fix);
}

#[cfg(test)]
#[path = "containerd_tests.rs"]
mod tests;
