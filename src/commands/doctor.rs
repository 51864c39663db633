//! `gpuctl doctor`: gather evidence on every host (one read-only script each, all hosts
//! at once), judge it with the pure check families in `doctor/`, compare hosts, print a
//! table or JSON, and exit 1 when any finding is an error.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::DoctorArgs;
use crate::doctor::bundle;
use crate::doctor::compare::{self, Facts};
use crate::doctor::evidence::{self, Evidence};
use crate::doctor::mirror::MirrorState;
use crate::doctor::network::{self, PeerView};
use crate::doctor::render::{self, HostEntry, Report};
use crate::doctor::{self as dr, CHECKS, Finding, HostInput, Layer, Severity, Summary};
use crate::exit::{BadInput, ChecksFailed};
use crate::fleet::{HostCtx, Progress};
use crate::inventory::{GpuPresence, Inventory};
use crate::transport::{Command, SudoMode};

use super::connect::open_fleet;

/// Longest M3 may ask the mirror (this machine to the mirror, HEAD requests).
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a host may take to answer the script (a hung `nvidia-smi` is cut at 20 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let layers = parse_only(&args.only)?;
    let ignore = parse_ignore(&args.ignore)?;
    if let Some(dest) = &args.support_bundle {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(BadInput(format!(
                "--support-bundle: the directory {} does not exist; create it or name another file",
                dir.display()
            ))
            .into());
        }
    }
    let progress = if args.json {
        Progress::Quiet
    } else {
        Progress::detect()
    };
    let (inv, fleet) = open_fleet(&args.connect, progress)?;
    // The evidence script answers the sudo probe's questions: one exec per host, not two.
    let fleet = fleet.with_sudo_probe(crate::transport::SudoProbe::Deferred);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let started = Instant::now();
    let nonce = nonce();
    let plan = crate::doctor::reads::plan(&inv, disk_paths(&inv));
    let script = Arc::new(evidence::script(&nonce, &plan));
    let gathering = {
        let nonce = nonce.clone();
        fleet.run(move |ctx| gather(ctx, nonce.clone(), Arc::clone(&script)))
    };
    // M3 asks the mirror from this machine while the hosts answer.
    let want_mirror = layers.contains(&Layer::Mirror) && !ignore.iter().any(|i| i == "M3");
    let mirror = async {
        if want_mirror {
            mirror_images(&inv).await
        } else {
            MirrorState::NotApplicable("not asked for".into())
        }
    };
    let (report, mirror_state) = tokio::join!(gathering, mirror);

    let mut findings: Vec<Finding> = Vec::new();
    let mut facts = Vec::new();
    let mut views = Vec::new();
    let mut hosts = Vec::new();
    // What each host (and the cluster) said, or why nothing: the support bundle's files,
    // by directory.
    let mut raw: Vec<(String, Result<String, String>)> = Vec::new();
    for result in &report.results {
        let Some(host) = inv.hosts.iter().find(|h| h.name == result.host) else {
            continue;
        };
        let reachable = result.outcome.is_ok();
        match &result.outcome {
            Ok((ev, sudo)) => {
                let input = HostInput {
                    host,
                    cluster: &inv.cluster,
                    ev,
                    sudo: *sudo,
                    plan: &plan,
                };
                findings.extend(dr::check_host(&input));
                findings.push(dr::mirror::images(
                    &host.name,
                    ev.get("arch"),
                    &mirror_state,
                ));
                facts.push(Facts::of(&input));
                views.push(PeerView::of(&host.name, ev));
                raw.push((format!("hosts/{}", host.name), Ok(ev.raw.clone())));
            }
            Err(e) => {
                let text = crate::secret::redact(&format!("{e:#}"));
                findings.push(dr::unreachable(&host.name, &text));
                raw.push((format!("hosts/{}", host.name), Err(text)));
            }
        }
        hosts.push((host.name.clone(), reachable, host.gpu));
    }
    findings.extend(compare::check(&facts));
    findings.extend(network::check(&plan.probes, &views));
    // The cluster, once, through the first server, when a cluster layer is asked for.
    if layers.iter().any(|l| l.reads_cluster())
        && let Some(first) = inv.servers().next()
    {
        let label = format!("cluster@{}", first.name);
        let nonce = nonce.clone();
        let distro = dr::distro::Distro::of(&inv.cluster);
        let result = fleet
            .run_on(first, &label, |ctx| gather_cluster(ctx, nonce, distro))
            .await;
        let ev = result
            .outcome
            .map_err(|e| crate::secret::redact(&format!("{e:#}")));
        findings.extend(dr::cluster::check(&dr::cluster::ClusterInput {
            inv: &inv,
            first: &first.name,
            ev: ev.as_ref().map_err(Clone::clone),
            facts: &facts,
        }));
        let api_up = ev.as_ref().is_ok_and(|e| {
            e.get("cluster") == Some("present")
                && e.cmd("readyz")
                    .is_some_and(|c| c.ok() && c.lines.iter().any(|l| l.trim() == "ok"))
        });
        raw.push(("cluster".to_string(), ev.map(|e| e.raw)));
        let asked = args
            .smoke
            .then(|| std::time::Duration::from_secs(args.smoke_timeout.max(1)));
        findings.extend(smoke(&inv, first, &fleet, &facts, asked, api_up).await);
    }
    let order: Vec<String> = hosts.iter().map(|(name, _, _)| name.clone()).collect();
    dr::sort(&mut findings, &order);

    let before = findings.len();
    findings.retain(|f| !ignore.contains(&f.id));
    let ignored = before - findings.len();
    findings.retain(|f| f.id == "H0" || layers.contains(&f.layer));

    let summary = Summary::of(&findings, ignored);
    let exit_code = u8::from(summary.error > 0);
    let hosts = hosts
        .into_iter()
        .map(|(name, reachable, gpu)| HostEntry {
            worst: findings
                .iter()
                .filter(|f| f.host == name)
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::Ok),
            name,
            reachable,
            gpu: match gpu {
                GpuPresence::Yes => "yes",
                GpuPresence::No => "no",
                GpuPresence::Auto => "auto",
            }
            .to_string(),
        })
        .collect();
    let out = Report {
        schema_version: render::SCHEMA_VERSION,
        gpuctl_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster: inv.cluster.name.clone(),
        started_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        hosts,
        findings,
        summary,
        exit_code,
    };
    let json = serde_json::to_string_pretty(&out)?;
    if args.json {
        println!("{json}");
    } else {
        print!(
            "{}",
            render::table(&out, render::use_colour(), args.verbose)
        );
        eprintln!("logs: {}", report.log_dir.display());
    }
    if let Some(dest) = &args.support_bundle {
        write_bundle(dest, &out, &json, raw)?;
        eprintln!("support bundle: {}", dest.display());
    }
    if out.summary.error > 0 {
        let hosts_with_errors = out
            .hosts
            .iter()
            .filter(|h| h.worst == Severity::Error)
            .count()
            + usize::from(
                out.findings
                    .iter()
                    .any(|f| f.host == dr::CLUSTER && f.severity == Severity::Error),
            );
        return Err(ChecksFailed {
            errors: out.summary.error,
            hosts: hosts_with_errors,
        }
        .into());
    }
    Ok(())
}

/// `--support-bundle`: the report twice (JSON, and a table listing every check) and what
/// each host said, or why it said nothing.
fn write_bundle(
    dest: &std::path::Path,
    out: &Report,
    json: &str,
    raw: Vec<(String, Result<String, String>)>,
) -> anyhow::Result<()> {
    let readme = format!(
        "gpuctl {} doctor support bundle, cluster {}, started {}.\n\
         report.json               the --json report (schema: docs/doctor.schema.json)\n\
         report.txt                the same as a table, every check listed\n\
         hosts/HOST/evidence.txt   what the read-only script printed on the host\n\
         hosts/HOST/error.txt      why the host could not be read\n\
         cluster/evidence.txt      what kubectl on the first server answered (cluster checks)\n\
         cluster/error.txt         why the cluster could not be read\n\
         Values of password, token, auth and secret keys are redacted.\n",
        out.gpuctl_version, out.cluster, out.started_at
    );
    let mut entries = vec![
        bundle::Entry {
            path: "README.txt".into(),
            text: readme,
        },
        bundle::Entry {
            path: "report.json".into(),
            text: format!("{json}\n"),
        },
        bundle::Entry {
            path: "report.txt".into(),
            text: render::table(out, false, true),
        },
    ];
    for (dir, said) in raw {
        entries.push(match said {
            Ok(text) => bundle::Entry {
                path: format!("{dir}/evidence.txt"),
                text,
            },
            Err(text) => bundle::Entry {
                path: format!("{dir}/error.txt"),
                text: format!("{text}\n"),
            },
        });
    }
    bundle::write(dest, &entries)
}

/// One host: the script, then (only when some file was root-only) one sudo read of
/// exactly those files.
async fn gather(
    ctx: HostCtx,
    nonce: String,
    script: Arc<String>,
) -> anyhow::Result<(Evidence, SudoMode)> {
    ctx.progress.step("reading");
    let sent = now_ns();
    let out = ctx
        .run(Command::new(script.as_str()).timeout(SCRIPT_TIMEOUT))
        .await?;
    let received = now_ns();
    let mut ev = Evidence::parse(&nonce, &out.stdout_str());
    if ev.get("time_end").is_none() {
        anyhow::bail!(
            "the doctor script did not finish (exit {:?}): {}",
            out.status,
            out.stderr_str().trim()
        );
    }
    ev.sent_ns = sent;
    ev.received_ns = received;
    let sudo = ctx.conn.settle_sudo(Some(&ev.sudo_answer())).await?;
    let unreadable = ev.unreadable();
    if !unreadable.is_empty() && sudo != SudoMode::Unavailable {
        ctx.progress.step("reading root-only files");
        let out = ctx
            .run(
                Command::new(evidence::sudo_script(&nonce, &unreadable))
                    .sudo(true)
                    .timeout(SCRIPT_TIMEOUT),
            )
            .await?;
        ev.merge(Evidence::parse(&nonce, &out.stdout_str()));
    }
    Ok((ev, sudo))
}

/// The cluster script on the first server, as root (the admin kubeconfig is 0600).
async fn gather_cluster(
    ctx: HostCtx,
    nonce: String,
    distro: dr::distro::Distro,
) -> anyhow::Result<Evidence> {
    if ctx.conn.settle_sudo(None).await? == SudoMode::Unavailable {
        anyhow::bail!(
            "reading the cluster needs root on {} (the admin kubeconfig is root's): give the \
             login sudo",
            ctx.host.name
        );
    }
    ctx.progress.step("reading the cluster");
    let out = ctx
        .run(
            Command::new(dr::cluster::script(&nonce, &distro))
                .sudo(true)
                .timeout(SCRIPT_TIMEOUT),
        )
        .await?;
    let ev = Evidence::parse(&nonce, &out.stdout_str());
    if ev.get("end").is_none() {
        anyhow::bail!(
            "the cluster script did not finish (exit {:?}): {}",
            out.status,
            out.stderr_str().trim()
        );
    }
    Ok(ev)
}

/// M3's view of the mirror: `mirror-images check` of the bundle's lock against the
/// inventory's mirror, with the inventory's registry settings.
async fn mirror_images(inv: &Inventory) -> MirrorState {
    let Some(registry) = &inv.registry else {
        return MirrorState::NotApplicable("no registry.mirror in the inventory".into());
    };
    let Some(bundle) = &inv.bundle else {
        return MirrorState::NotApplicable(
            "no bundle in the inventory: no lock file names the required images".into(),
        );
    };
    let lock_path = crate::mirror::lock::in_bundle(bundle);
    let Some(lock_path) = lock_path else {
        return MirrorState::NotApplicable(format!(
            "no {} in {} or its images/: no image list to check",
            crate::mirror::lock::LOCK_FILE,
            bundle.display()
        ));
    };
    let lock = match crate::mirror::LockFile::read(&lock_path) {
        Ok(l) => l,
        Err(e) => return MirrorState::Unchecked(e),
    };
    let credentials = match (&registry.username, &registry.password) {
        (Some(username), Some(source)) => {
            match crate::secret::Secret::load(source, "the registry password") {
                Ok(password) => Some(crate::registry::Credentials {
                    username: username.clone(),
                    password,
                }),
                Err(e) => return MirrorState::Unchecked(e.to_string()),
            }
        }
        _ => None,
    };
    let options = crate::mirror::CheckOptions {
        lock,
        only: Vec::new(),
        registry: registry.mirror.clone(),
        prefix: None,
        client: crate::registry::ClientOptions {
            insecure: registry.insecure,
            ca_file: registry.ca_file.clone(),
            credentials,
            ..crate::registry::ClientOptions::default()
        },
        concurrency: 8,
        // Read while the hosts are still being asked: their architectures are not known yet.
        platforms: Vec::new(),
    };
    match tokio::time::timeout(MIRROR_TIMEOUT, crate::mirror::check(options)).await {
        Ok(Ok(results)) => MirrorState::Checked(results),
        Ok(Err(e)) => MirrorState::Unchecked(crate::secret::redact(&format!("{e:#}"))),
        Err(_) => MirrorState::Unchecked("the mirror did not answer in time".into()),
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// A marker no file on a host will contain by accident.
fn nonce() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(now_ns() as u128);
    format!("{:016x}", h.finish())
}

/// The directories H13 measures: where images, containers and data will live.
fn disk_paths(inv: &Inventory) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/kubelet",
        "/var/lib/rancher",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(d) = &inv.cluster.data_dir {
        paths.push(d.display().to_string());
    }
    if let Some(lp) = &inv.storage.local_path {
        paths.push(lp.path.display().to_string());
    }
    paths.dedup();
    paths
}

/// `--only`: layers with checks; the cluster layers name what they wait for.
fn parse_only(only: &[String]) -> Result<Vec<Layer>, BadInput> {
    if only.is_empty() {
        return Ok(Layer::ALL.to_vec());
    }
    let names = Layer::ALL
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut layers = Vec::new();
    for word in only.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        match Layer::parse(word) {
            Some(l) => layers.push(l),
            None => {
                return Err(BadInput(format!(
                    "--only: `{word}` is not a layer; layers: {names}"
                )));
            }
        }
    }
    Ok(layers)
}

/// `--ignore`: check ids, validated so a typo does not silently ignore nothing.
fn parse_ignore(ignore: &[String]) -> Result<Vec<String>, BadInput> {
    let mut ids = Vec::new();
    for word in ignore.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        let id = word.to_ascii_uppercase();
        if dr::catalog(&id).is_none() {
            let known: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
            return Err(BadInput(format!(
                "--ignore: `{word}` is not a check id; ids: {}",
                known.join(", ")
            )));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// R8: with `--smoke` and a cluster that answers, a pod per GPU node (see
/// `doctor::smoke`); otherwise one finding saying why it did not run.
async fn smoke(
    inv: &Inventory,
    first: &crate::inventory::Host,
    fleet: &crate::fleet::Fleet,
    facts: &[Facts],
    asked: Option<std::time::Duration>,
    api_up: bool,
) -> Vec<dr::Finding> {
    let mut skip = dr::Findings::new(dr::CLUSTER);
    let gpu_nodes: Vec<String> = inv
        .nodes()
        .filter(|h| facts.iter().any(|x| x.host == h.name && x.gpu_host))
        .map(|h| h.name.clone())
        .collect();
    let names = dr::smoke::dns_names(inv);
    let not_run = match (asked, api_up) {
        (None, _) => Some("writes to the cluster: opt in with --smoke"),
        (Some(_), false) => Some("needs an installed cluster that answers (K5)"),
        (Some(_), true) => None,
    };
    let (Some(timeout), None) = (asked, not_run) else {
        for id in ["R8", "N6"] {
            skip.add(id, dr::Severity::Skip, not_run.unwrap_or_default());
        }
        return skip.list;
    };
    if gpu_nodes.is_empty() {
        skip.add(
            "R8",
            dr::Severity::Skip,
            "no GPU node among the hosts doctor reached",
        );
    }
    if names.is_empty() {
        skip.add(
            "N6",
            dr::Severity::Skip,
            "no dns.hosts in the inventory to look up",
        );
    }
    if gpu_nodes.is_empty() && names.is_empty() {
        return skip.list;
    }
    let manifest = dr::smoke::manifest(inv, &gpu_nodes);
    let pods = gpu_nodes.len() + usize::from(!names.is_empty());
    let label = format!("smoke@{}", first.name);
    let kubectl = crate::stages::ready::kubectl(inv);
    let result = fleet
        .run_on(first, &label, |ctx| async move {
            ctx.progress.step("running the smoke pods");
            dr::smoke::run(&ctx, kubectl, manifest, pods, timeout).await
        })
        .await;
    let listed = result
        .outcome
        .map_err(|e| crate::secret::redact(&format!("{e:#}")));
    let mut out = skip.list;
    if !gpu_nodes.is_empty() {
        out.extend(dr::smoke::judge(
            &gpu_nodes,
            listed.as_deref().map_err(Clone::clone),
            &dr::smoke::image(inv),
        ));
    }
    if !names.is_empty() {
        out.extend(dr::smoke::judge_dns(
            &names,
            listed.as_deref().map_err(Clone::clone),
            &dr::smoke::mirrored(inv, dr::smoke::DNS_IMAGE),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_and_ignore_are_validated() {
        assert_eq!(parse_only(&[]).ok(), Some(Layer::ALL.to_vec()));
        assert_eq!(
            parse_only(&["gpu".into(), "host".into()]).ok(),
            Some(vec![Layer::Gpu, Layer::Host])
        );
        assert_eq!(
            parse_only(&["kubernetes".into()]).ok(),
            Some(vec![Layer::Kubernetes])
        );
        let e = parse_only(&["gpus".into()]).err().map(|e| e.0);
        assert!(e.is_some_and(|e| e.contains("`gpus` is not a layer")));
        assert_eq!(
            parse_ignore(&["h11".into(), "G5".into()]).ok(),
            Some(vec!["H11".to_string(), "G5".to_string()])
        );
        let e = parse_ignore(&["H99".into()]).err().map(|e| e.0);
        assert!(e.is_some_and(|e| e.contains("`H99` is not a check id")));
    }
}
