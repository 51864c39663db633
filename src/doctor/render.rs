//! How findings are shown: a table grouped by host and layer (colour on a terminal, none
//! with `NO_COLOR` or when piped), a summary line, and the `--json` report whose schema is
//! `docs/doctor.schema.json` (version [`SCHEMA_VERSION`]).

use serde::{Deserialize, Serialize};

use super::{CLUSTER, Finding, Layer, Severity, Summary};

/// Bumped only when a field changes meaning or goes away; new optional fields keep it.
pub const SCHEMA_VERSION: u32 = 1;

/// The `--json` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub gpuctl_version: String,
    pub cluster: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub hosts: Vec<HostEntry>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// 0 when no finding is an error, 1 otherwise.
    pub exit_code: u8,
}

/// One checked host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub name: String,
    pub reachable: bool,
    /// `yes`, `no` or `auto`, as the inventory says.
    pub gpu: String,
    /// The worst severity among the host's findings.
    pub worst: Severity,
}

/// Whether to colour the table.
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stdout().is_terminal() && !no_color
}

fn paint(text: &str, severity: Severity, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match severity {
        Severity::Ok => "32",
        Severity::Skip => "2",
        Severity::Info => "36",
        Severity::Warn => "33",
        Severity::Error => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The table: per host (inventory order, then `cluster`), per layer; passing checks of a
/// layer folded onto one line, everything else with its evidence and fix.
pub fn table(report: &Report, colour: bool, verbose: bool) -> String {
    let mut out = String::new();
    let mut names: Vec<&str> = report.hosts.iter().map(|h| h.name.as_str()).collect();
    if report.findings.iter().any(|f| f.host == CLUSTER) {
        names.push(CLUSTER);
    }
    for name in names {
        let findings: Vec<&Finding> = report.findings.iter().filter(|f| f.host == name).collect();
        if findings.is_empty() {
            continue;
        }
        let worst = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok);
        out.push_str(&format!(
            "{} {}\n",
            paint(&format!("== {name}"), worst, colour),
            paint(&format!("[{}]", worst.as_str()), worst, colour)
        ));
        for layer in Layer::ALL {
            let in_layer: Vec<&&Finding> = findings.iter().filter(|f| f.layer == *layer).collect();
            if in_layer.is_empty() {
                continue;
            }
            let passed: Vec<&str> = in_layer
                .iter()
                .filter(|f| f.severity == Severity::Ok && !verbose)
                .map(|f| f.id.as_str())
                .collect();
            let mut passed_unique = passed.clone();
            passed_unique.dedup();
            if !passed_unique.is_empty() {
                out.push_str(&format!(
                    "  {:<8} {}  {}\n",
                    layer.as_str(),
                    paint(&format!("{:<5}", "ok"), Severity::Ok, colour),
                    passed_unique.join(" ")
                ));
            }
            for f in in_layer
                .iter()
                .filter(|f| verbose || f.severity != Severity::Ok)
            {
                out.push_str(&format!(
                    "  {:<8} {}  {:<4} {}\n",
                    layer.as_str(),
                    paint(&format!("{:<5}", f.severity.as_str()), f.severity, colour),
                    f.id,
                    f.title
                ));
                let show_evidence =
                    verbose || matches!(f.severity, Severity::Warn | Severity::Error);
                if show_evidence {
                    for line in f.evidence.iter().take(8) {
                        out.push_str(&format!("{:24}│ {line}\n", ""));
                    }
                    if f.evidence.len() > 8 {
                        out.push_str(&format!(
                            "{:24}│ … {} more (see --json)\n",
                            "",
                            f.evidence.len() - 8
                        ));
                    }
                }
                if let Some(fix) = &f.fix
                    && f.severity != Severity::Ok
                {
                    out.push_str(&format!("{:24}fix: {fix}\n", ""));
                }
            }
        }
    }
    out.push_str(&summary_line(report, colour));
    out
}

pub fn summary_line(report: &Report, colour: bool) -> String {
    let s = &report.summary;
    let hosts = report.hosts.len();
    let unreachable = report.hosts.iter().filter(|h| !h.reachable).count();
    let mut text = format!(
        "{hosts} host(s){}: {} ok, {} skip, {} info, {} warn, {} error",
        if unreachable > 0 {
            format!(" ({unreachable} unreachable)")
        } else {
            String::new()
        },
        s.ok,
        s.skip,
        s.info,
        s.warn,
        s.error
    );
    if s.ignored > 0 {
        text.push_str(&format!(" ({} ignored)", s.ignored));
    }
    let severity = if s.error > 0 {
        Severity::Error
    } else if s.warn > 0 {
        Severity::Warn
    } else {
        Severity::Ok
    };
    format!("{}\n", paint(&text, severity, colour))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Findings;

    fn report() -> Report {
        let mut f = Findings::new("node1");
        f.add("H1", Severity::Ok, "root");
        f.add(
            "H2",
            Severity::Error,
            "/etc/fstab turns swap on at the next boot",
        )
        .evidence(["/etc/fstab:3: /swapfile none swap sw 0 0"])
        .fix("sudo sed …");
        f.add("G5", Severity::Skip, "not a GPU host");
        let findings = f.list;
        Report {
            schema_version: SCHEMA_VERSION,
            gpuctl_version: "0.1.0".into(),
            cluster: "lab".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_ms: 5,
            hosts: vec![HostEntry {
                name: "node1".into(),
                reachable: true,
                gpu: "no".into(),
                worst: Severity::Error,
            }],
            summary: Summary::of(&findings, 1),
            findings,
            exit_code: 1,
        }
    }

    #[test]
    fn the_table_groups_by_host_and_layer_and_shows_fixes() {
        let text = table(&report(), false, false);
        assert_eq!(
            text,
            "== node1 [error]\n  host     ok     H1\n  host     error  H2   /etc/fstab turns swap on at the next boot\n\
             \x20                       │ /etc/fstab:3: /swapfile none swap sw 0 0\n\
             \x20                       fix: sudo sed …\n  gpu      skip   G5   not a GPU host\n\
             1 host(s): 1 ok, 1 skip, 0 info, 0 warn, 1 error (1 ignored)\n"
        );
        assert!(!text.contains('\x1b'));
        assert!(table(&report(), true, false).contains("\x1b[1;31m"));
    }
}
