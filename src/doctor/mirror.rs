//! Mirror checks from each node's point of view: the mirror answers `/v2/` from the node
//! with the node's own trust (M1: its CA bundle, or the CA file a runtime adds for the
//! mirror), and every image the bundle's lock names is in the mirror for the node's
//! architecture (M3, with `mirror-images check`'s code, run once from this machine).

use super::{Finding, Findings, HostInput, Severity};
use crate::mirror::ImageCheck;

/// curl exit codes that mean "the TLS certificate is not trusted".
const CURL_TLS: &[i32] = &[35, 51, 58, 60, 77, 83, 90, 91];

fn code(c: &super::evidence::CmdOut) -> Option<u16> {
    c.lines.last().and_then(|l| l.trim().parse().ok())
}

fn registry_answer(code: Option<u16>) -> bool {
    matches!(code, Some(200 | 401))
}

/// M1: the node reaches the mirror's `/v2/` and trusts its certificate.
pub fn check(input: &HostInput, out: &mut Findings) {
    let Some(m) = &input.plan.mirror else {
        out.add("M1", Severity::Skip, "no registry.mirror in the inventory");
        return;
    };
    let ev = input.ev;
    if ev.get("mirror_tool") == Some("none") {
        out.add(
            "M1",
            Severity::Skip,
            "curl is missing: the mirror is not probed from this node",
        )
        .fix("sudo apt-get install -y curl");
        return;
    }
    let Some(sys) = ev.cmd("mirror_v2") else {
        out.add("M1", Severity::Skip, "the mirror was not probed");
        return;
    };
    let scheme = if m.insecure { "http" } else { "https" };
    let url = format!("{scheme}://{}/v2/", m.mirror);
    let said = |c: &super::evidence::CmdOut| {
        format!(
            "curl {url}: exit {}, {}",
            c.status.map_or("?".into(), |s| s.to_string()),
            c.lines.join(" | ")
        )
    };
    if sys.ok() && registry_answer(code(sys)) {
        let how = if m.insecure {
            "over plain HTTP (registry.insecure)"
        } else {
            "trusted by the system CA bundle"
        };
        out.add(
            "M1",
            Severity::Ok,
            format!("the mirror {} answers /v2/, {how}", m.mirror),
        )
        .evidence([said(sys)]);
        return;
    }
    let tls = sys.status.is_some_and(|s| CURL_TLS.contains(&s));
    if tls {
        // A runtime's own CA file for the mirror makes pulls work even when the system
        // bundle does not trust it.
        for i in 0..2 {
            let Some(c) = ev.cmd(&format!("mirror_v2_ca{i}")) else {
                continue;
            };
            let ca = ev.get(&format!("mirror_ca{i}")).unwrap_or("?");
            if c.ok() && registry_answer(code(c)) {
                out.add(
                    "M1",
                    Severity::Ok,
                    format!("the mirror {} answers /v2/, trusted through {ca}", m.mirror),
                )
                .evidence([
                    said(sys),
                    format!("with --cacert {ca}: {}", c.lines.join(" | ")),
                ]);
                return;
            }
        }
        out.add(
            "M1",
            Severity::Error,
            format!("this node does not trust the mirror {}'s TLS certificate: every pull fails", m.mirror),
        )
        .evidence([said(sys)])
        .fix(format!(
            "sudo cp MIRROR-CA.crt /usr/local/share/ca-certificates/gpuctl-mirror.crt && sudo update-ca-certificates && sudo mkdir -p /etc/docker/certs.d/{0} && sudo cp MIRROR-CA.crt /etc/docker/certs.d/{0}/ca.crt   # the CA that signed the mirror's certificate (registry.ca_file)",
            m.mirror
        ));
        return;
    }
    let title = if sys.ok() {
        format!(
            "the mirror {} answers /v2/ with HTTP {}: not a registry, or a proxy in between",
            m.mirror,
            code(sys).map_or("?".into(), |c| c.to_string())
        )
    } else {
        format!("this node cannot reach the mirror {}", m.mirror)
    };
    let host = m
        .mirror
        .rsplit_once(':')
        .map_or(m.mirror.as_str(), |(h, _)| h);
    out.add("M1", Severity::Error, title)
        .evidence([said(sys)])
        .fix(format!(
            "getent hosts {host}; ip route get $(getent hosts {host} | cut -d' ' -f1); curl -v {url}   # on {}: the name, the route, a firewall or a proxy (H9) in the way",
            input.host.name
        ));
}

/// The OCI architecture of `uname -m`.
pub fn oci_arch(machine: &str) -> &str {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// What `mirror-images check` found, or why it could not run.
pub enum MirrorState {
    /// No registry or no bundle in the inventory: nothing to compare against.
    NotApplicable(String),
    Unchecked(String),
    Checked(Vec<ImageCheck>),
}

/// M3 for one host: the images missing for its architecture.
pub fn images(host: &str, machine: Option<&str>, state: &MirrorState) -> Finding {
    let mut out = Findings::new(host);
    match state {
        MirrorState::NotApplicable(why) => {
            out.add("M3", Severity::Skip, why.clone());
        }
        MirrorState::Unchecked(why) => {
            out.add(
                "M3",
                Severity::Warn,
                "the mirror's images could not be checked from this machine",
            )
            .evidence([why.clone()])
            .fix("gpuctl mirror-images check --bundle BUNDLE --to MIRROR   # shows what fails");
        }
        MirrorState::Checked(results) => {
            let arch = machine.map(oci_arch);
            let platform = arch.map(|a| format!("linux/{a}"));
            let missing: Vec<String> = results
                .iter()
                .flat_map(|r| {
                    r.missing
                        .iter()
                        .filter(|m| {
                            // A platform part counts only for this node's platform.
                            match (m.split_once(' '), &platform) {
                                (Some((p, _)), Some(want)) if p.starts_with("linux/") => p == want,
                                (Some((p, _)), None) if p.starts_with("linux/") => true,
                                _ => true,
                            }
                        })
                        .map(move |m| format!("{}: {m}", r.mirror))
                })
                .collect();
            let arch_text = arch.unwrap_or("?");
            if missing.is_empty() {
                out.add(
                    "M3",
                    Severity::Ok,
                    format!(
                        "the mirror has all {} locked images for {arch_text}",
                        results.len()
                    ),
                );
            } else {
                out.add(
                    "M3",
                    Severity::Error,
                    format!(
                        "{} image part(s) missing from the mirror for this node ({arch_text}): its pods cannot start",
                        missing.len()
                    ),
                )
                .evidence(super::head(&missing, 12))
                .fix("gpuctl mirror-images push --bundle BUNDLE --to MIRROR   # then: gpuctl mirror-images check");
            }
        }
    }
    out.list.remove(0)
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
