//! K6: every server's certificates (k3s keeps them in `<data-dir>/server/tls/`, kubeadm in
//! `/etc/kubernetes/pki/` and its `etcd/`; see [`super::distro`]), read with openssl: the
//! first server's in the cluster script (reported for the cluster), the other servers' in
//! their own host script (reported for each of them: in an HA cluster each server has its
//! own serving and client certificates, and each expires on its own). An expired API server
//! certificate stops every kubectl and every kubelet at once, usually a year after install,
//! on a Sunday; k3s renews its certificates at start when fewer than 90 days remain, so a
//! server that has not been restarted for a year is the usual cause, and a restart the
//! usual fix; kubeadm renews them only during `kubeadm upgrade`, so a cluster never
//! upgraded meets it a year after init. A certificate not yet valid by the server's own
//! clock means that clock was set back (or the certificates came from a machine whose clock
//! ran ahead): TLS then fails the same way.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::distro::Distro;
use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, HostInput, Severity};
use crate::inventory::Role;
use crate::transport::shell::quote;

/// Fewer days left than this is a warning.
const WARN_DAYS: i64 = 30;

/// The shell command that prints, per certificate of `dirs`,
/// `FILE|notBefore=...|notAfter=...`, then the server's clock as `now EPOCH`.
fn body(dirs: &[String]) -> String {
    let globs: Vec<String> = dirs.iter().map(|d| format!("{}/*.crt", quote(d))).collect();
    format!(
        "command -v openssl >/dev/null 2>&1 || {{ echo no-openssl; exit 0; }}; \
         for f in {}; do [ -f \"$f\" ] || continue; \
         printf '%s|%s\\n' \"$f\" \"$(openssl x509 -noout -startdate -enddate -in \"$f\" 2>&1 | tr '\\n' '|')\"; \
         done; echo \"now $(date +%s)\"",
        globs.join(" ")
    )
}

/// The cluster script's line (it runs as root).
pub fn script_line(dirs: &[String]) -> String {
    format!("c certs sh -c {}\n", quote(&body(dirs)))
}

/// The host script's lines: only where the first directory exists (a server with the
/// cluster installed), read as the login user when it may, else through `sudo -n` (k3s
/// keeps it root's); without either, `certs_unreadable`. sudo is asked whether the
/// directory exists only where a directory on its way hides it (`hid`) and sudo needs no
/// password (`$S`): not on every worker.
pub fn host_script_lines(dirs: &[String]) -> String {
    let Some(first) = dirs.first() else {
        return String::new();
    };
    let tls = quote(first);
    let body = quote(&body(dirs));
    format!(
        "if [ -d {tls} ] || {{ [ \"$S\" = sudo-ok ] && hid {tls} && sudo -n test -d {tls} 2>/dev/null; }}; then\n  \
         if [ -r {tls} ] && [ -x {tls} ]; then c certs sh -c {body}; \
         elif [ \"$S\" = sudo-ok ]; then c certs sudo -n sh -c {body}; \
         else kv certs_unreadable 1; fi\nfi\n"
    )
}

/// K6 on a server other than the first, from its own script.
pub fn host_check(input: &HostInput, out: &mut Findings) {
    let Some(dir) = input.plan.server_certs.first() else {
        return;
    };
    if !input.host.roles.contains(&Role::Server)
        || input.plan.first_server.as_deref() == Some(input.host.name.as_str())
    {
        return;
    }
    let name = &input.host.name;
    let distro = Distro::of(input.cluster);
    if input.ev.cmd("certs").is_none() {
        if input.ev.get("certs_unreadable").is_some() {
            out.add(
                "K6",
                Severity::Skip,
                format!("{dir} on {name} is root's, and sudo asks for a password"),
            )
            .fix("give the login passwordless sudo, or log in as root, for doctor to read it");
        } else {
            out.add(
                "K6",
                Severity::Skip,
                format!(
                    "no {} certificates on {name} yet (not installed there)",
                    distro.name()
                ),
            );
        }
        return;
    }
    judge(input.ev, name, &distro, out);
}

/// One certificate's dates.
#[derive(Debug, PartialEq)]
struct Cert {
    file: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

/// openssl's dates: `Dec  3 22:00:00 2027 GMT`.
fn openssl_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim().strip_suffix(" GMT")?;
    let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&squeezed, "%b %d %H:%M:%S %Y")
        .ok()
        .map(|t| t.and_utc())
}

/// The certificates, the server's clock, and the lines that could not be read.
fn parse(lines: &[String]) -> (Vec<Cert>, Option<DateTime<Utc>>, Vec<String>) {
    let (mut certs, mut now, mut bad) = (Vec::new(), None, Vec::new());
    for line in lines {
        if let Some(epoch) = line.strip_prefix("now ") {
            now = epoch
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0));
            continue;
        }
        let mut parts = line.split('|');
        let file = parts.next().unwrap_or_default().to_string();
        let (mut before, mut after) = (None, None);
        for p in parts {
            if let Some(d) = p.strip_prefix("notBefore=") {
                before = openssl_date(d);
            } else if let Some(d) = p.strip_prefix("notAfter=") {
                after = openssl_date(d);
            }
        }
        match (before, after) {
            (Some(not_before), Some(not_after)) => certs.push(Cert {
                file,
                not_before,
                not_after,
            }),
            _ => bad.push(line.clone()),
        }
    }
    (certs, now, bad)
}

/// K6 from the cluster script's `certs` answer (the first server's certificates).
pub fn check(ev: &Evidence, first: &str, distro: &Distro) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    if ev.cmd("certs").is_none() {
        f.add("K6", Severity::Skip, "the certificates were not read");
        return f.list;
    }
    judge(ev, first, distro, &mut f);
    f.list
}

/// K6 from a `certs` answer read on server `first`, added to `f`.
fn judge(ev: &Evidence, first: &str, distro: &Distro, f: &mut Findings) {
    let Some(out) = ev.cmd("certs") else {
        return;
    };
    if out.lines.iter().any(|l| l == "no-openssl") {
        f.add(
            "K6",
            Severity::Skip,
            format!("openssl is not installed on {first}, which reads the certificates' dates"),
        )
        .fix(format!("apt-get install openssl on {first}"));
        return;
    }
    let (certs, now, bad) = parse(&out.lines);
    let now = now.unwrap_or_else(Utc::now);
    if certs.is_empty() {
        f.add(
            "K6",
            Severity::Skip,
            format!(
                "no certificates in {} on {first}",
                distro.cert_dirs().join(", ")
            ),
        )
        .evidence(bad);
        return;
    }
    let name = |c: &Cert| c.file.rsplit('/').next().unwrap_or(&c.file).to_string();
    let day = |d: DateTime<Utc>| d.format("%Y-%m-%d %H:%M UTC").to_string();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for c in &certs {
        if c.not_after <= now {
            errors.push(format!("{} expired on {}", name(c), day(c.not_after)));
        } else if c.not_before > now {
            errors.push(format!(
                "{} is valid only from {}, after {first}'s clock ({})",
                name(c),
                day(c.not_before),
                day(now)
            ));
        } else if c.not_after - now < TimeDelta::days(WARN_DAYS) {
            warnings.push(format!(
                "{} expires on {} ({} days left)",
                name(c),
                day(c.not_after),
                (c.not_after - now).num_days()
            ));
        }
    }
    let evidence: Vec<String> = certs
        .iter()
        .map(|c| format!("{}: {} → {}", c.file, day(c.not_before), day(c.not_after)))
        .chain(bad)
        .collect();
    let renew = distro.renew_fix(first);
    if !errors.is_empty() {
        f.add("K6", Severity::Error, errors.join("; "))
            .evidence(evidence)
            .fix(renew);
    } else if !warnings.is_empty() {
        f.add("K6", Severity::Warn, warnings.join("; "))
            .evidence(evidence)
            .fix(renew);
    } else {
        let soonest = certs.iter().map(|c| c.not_after).min().unwrap_or(now);
        f.add(
            "K6",
            Severity::Ok,
            format!(
                "{} certificates valid; the first ends {}",
                certs.len(),
                day(soonest)
            ),
        )
        .evidence(evidence);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    fn k3s() -> Distro {
        Distro::of(&crate::stages::sample::inventory().cluster)
    }

    #[test]
    fn kubeadm_reads_pki_and_says_how_kubeadm_renews() {
        let mut inv = crate::stages::sample::inventory();
        inv.cluster.distribution = crate::inventory::Distribution::Kubeadm;
        let kubeadm = Distro::of(&inv.cluster);
        let line = script_line(&kubeadm.cert_dirs());
        assert!(line.contains("/etc/kubernetes/pki/*.crt"), "{line}");
        assert!(line.contains("/etc/kubernetes/pki/etcd/*.crt"), "{line}");
        let text = "/etc/kubernetes/pki/apiserver.crt|notBefore=Dec  1 00:00:00 2025 GMT|notAfter=Dec  1 00:00:00 2026 GMT|\n\
                    now 1796256000\n";
        let f = check(&Evidence::for_test(&[("certs", 0, text)]), "cp1", &kubeadm);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].title.contains("apiserver.crt expired"), "{f:?}");
        assert!(
            f[0].fix
                .as_deref()
                .unwrap()
                .contains("kubeadm certs renew all"),
            "{f:?}"
        );
    }

    #[test]
    fn openssl_dates_with_padded_days_are_read() {
        assert_eq!(
            openssl_date("Dec  3 22:00:00 2027 GMT")
                .unwrap()
                .to_rfc3339(),
            "2027-12-03T22:00:00+00:00"
        );
        assert_eq!(
            openssl_date("Jan 15 01:02:03 2030 GMT")
                .unwrap()
                .to_rfc3339(),
            "2030-01-15T01:02:03+00:00"
        );
        assert!(openssl_date("garbage").is_none());
    }

    #[test]
    fn the_server_clock_judges_expired_soon_and_not_yet_valid() {
        // now = 2026-12-03 00:00:00 UTC
        let text = "/d/server/tls/server-ca.crt|notBefore=Dec  1 00:00:00 2026 GMT|notAfter=Nov 28 00:00:00 2036 GMT|\n\
                    /d/server/tls/serving-kube-apiserver.crt|notBefore=Dec  1 00:00:00 2025 GMT|notAfter=Dec 20 00:00:00 2026 GMT|\n\
                    /d/server/tls/client-admin.crt|notBefore=Dec  1 00:00:00 2025 GMT|notAfter=Dec  1 00:00:00 2026 GMT|\n\
                    /d/server/tls/future.crt|notBefore=Jan  1 00:00:00 2027 GMT|notAfter=Jan  1 00:00:00 2028 GMT|\n\
                    /d/server/tls/broken.crt|unable to load certificate|\n\
                    now 1796256000\n";
        let (certs, now, bad) = parse(&lines(text));
        assert_eq!(certs.len(), 4);
        assert_eq!(now.unwrap().to_rfc3339(), "2026-12-03T00:00:00+00:00");
        assert_eq!(bad.len(), 1);

        let ev = Evidence::for_test(&[("certs", 0, text)]);
        let f = check(&ev, "cp1", &k3s());
        let [k6] = &f[..] else { panic!("{f:?}") };
        assert_eq!(k6.severity, Severity::Error);
        assert!(
            k6.title.contains("client-admin.crt expired on 2026-12-01"),
            "{}",
            k6.title
        );
        assert!(
            k6.title
                .contains("future.crt is valid only from 2027-01-01"),
            "{}",
            k6.title
        );
        assert!(!k6.title.contains("serving-kube-apiserver"), "{}", k6.title);
        assert!(k6.fix.as_deref().unwrap().contains("systemctl restart k3s"));

        // Only the one within 30 days: a warning naming it.
        let soon: String = text
            .lines()
            .filter(|l| !l.contains("client-admin") && !l.contains("future"))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = check(&Evidence::for_test(&[("certs", 0, &soon)]), "cp1", &k3s());
        assert_eq!(f[0].severity, Severity::Warn);
        assert!(
            f[0].title.contains(
                "serving-kube-apiserver.crt expires on 2026-12-20 00:00 UTC (17 days left)"
            ),
            "{}",
            f[0].title
        );
    }

    #[test]
    fn no_certificates_or_no_openssl_is_a_skip_that_says_why() {
        let f = check(
            &Evidence::for_test(&[("certs", 0, "now 1796256000\n")]),
            "cp1",
            &k3s(),
        );
        assert_eq!(f[0].severity, Severity::Skip);
        let f = check(
            &Evidence::for_test(&[("certs", 0, "no-openssl\n")]),
            "cp1",
            &k3s(),
        );
        assert_eq!(f[0].severity, Severity::Skip);
        assert!(f[0].title.contains("openssl is not installed on cp1"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod host_tests {
    use super::*;
    use crate::doctor::reads::ScriptPlan;
    use crate::doctor::testing::{Case, one};

    /// `name`, a server (Case::healthy without GPUs is one), in a cluster whose first
    /// server is cp1.
    fn server(name: &str) -> Case {
        let mut c = Case::healthy(name, false);
        c.plan = ScriptPlan {
            first_server: Some("cp1".into()),
            server_certs: vec!["/var/lib/rancher/k3s/server/tls".into()],
            ..ScriptPlan::default()
        };
        c
    }

    fn certs(case: Case, lines: &str) -> Case {
        let mut c = case.with("@@t cmd certs");
        for l in lines.lines() {
            c = c.with(l);
        }
        c.with("@@t status certs 0")
    }

    #[test]
    fn every_other_server_judges_its_own_certificates() {
        // now = 2026-12-03 00:00:00 UTC
        let expired = certs(
            server("cp2"),
            "/var/lib/rancher/k3s/server/tls/client-admin.crt|notBefore=Dec  1 00:00:00 2025 GMT|notAfter=Dec  1 00:00:00 2026 GMT|\nnow 1796256000",
        );
        let findings = expired.findings();
        let f = one(&findings, "K6", Severity::Error);
        assert_eq!(f.host, "cp2");
        assert!(
            f.title.contains("client-admin.crt expired on 2026-12-01"),
            "{f:?}"
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap_or("")
                .starts_with("on cp2: sudo systemctl restart k3s"),
            "{f:?}"
        );

        // The first server's are the cluster's K6; a worker has none.
        let first = certs(server("cp1"), "now 1796256000");
        assert!(first.findings().iter().all(|f| f.id != "K6"));
        let mut worker = certs(server("w1"), "now 1796256000");
        worker.host.roles = std::collections::BTreeSet::from([crate::inventory::Role::Worker]);
        assert!(worker.findings().iter().all(|f| f.id != "K6"));

        // Before k3s, or when only root may read them: said, not failed.
        let findings = server("cp3").findings();
        assert!(
            one(&findings, "K6", Severity::Skip)
                .title
                .contains("no k3s certificates on cp3 yet")
        );
        let findings = server("cp3").with("@@t kv certs_unreadable=1").findings();
        assert!(
            one(&findings, "K6", Severity::Skip)
                .title
                .contains("sudo asks for a password")
        );
    }
}
