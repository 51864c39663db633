//! The install run: which stages ([`select`]), each host through them ([`host`]), and what
//! the admin reads at the end ([`report`]). `gpuctl install` and `gpuctl plan` are both
//! this run; `plan` is a dry run that probes every stage and writes nothing; `gpuctl
//! reset` is this run with the stages in reverse and each one undone (`reset.rs`).
//!
//! Hosts run independently (bounded by `--concurrency`): a failed host stops its own later
//! stages, the others carry on, and every failure is reported together.

mod ahead;
mod cluster;
pub(crate) mod gate;
pub mod host;
pub mod report;
mod reset;
pub mod select;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bundle::Bundle;
use crate::converge::Mode;
use crate::exit::BadInput;
use crate::fleet::Fleet;
use crate::inventory::Inventory;
use crate::state::{Journal, LocalLock, LockInfo};
pub use host::{HostFailed, HostOutcome, Status};
pub use select::Selection;

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub selection: Selection,
    pub mode: Mode,
    /// `--inventory <path>` as the admin wrote it, for the commands messages suggest.
    pub inventory_arg: String,
    /// The bundle, loaded and verified by [`load_bundle`].
    pub bundle: Option<Arc<Bundle>>,
    /// `gpuctl reset`: the checkpointed stages in reverse, each Op undone (see
    /// `converge::undo`), then gpuctl's own files on the host removed.
    pub reset: bool,
}

/// Loads the inventory's bundle and verifies the files the selected stages will send,
/// before anything contacts a host. `None` when no selected stage uses the bundle or the
/// inventory names none (those stages then say so). A bad bundle is bad input.
pub async fn load_bundle(
    inv: &Inventory,
    selection: &Selection,
) -> anyhow::Result<Option<Arc<Bundle>>> {
    let names = crate::stages::names();
    let selected = select::select(&names, selection)?;
    let prefixes: Vec<&str> = crate::stages::BUNDLE_USERS
        .iter()
        .filter(|(stage, _)| selected.iter().any(|s| s.name == *stage))
        .map(|(_, prefix)| *prefix)
        .collect();
    let required: Vec<_> = crate::stages::required_files(inv)
        .into_iter()
        .filter(|(stage, _, _)| selected.iter().any(|s| s.name == *stage))
        .collect();
    let Some(dir) = &inv.bundle else {
        if let Some((stage, _, what)) = required.first() {
            return Err(BadInput(format!(
                "the {stage} stage installs {what} from the bundle, and the inventory names \
                 none: add `bundle: ./bundle` (its format is in docs/offline-bundle.md), or leave the \
                 stage out with --skip {stage}"
            ))
            .into());
        }
        return Ok(None);
    };
    if prefixes.is_empty() {
        return Ok(None);
    }
    let bad = |e: crate::bundle::BundleError| BadInput(e.to_string());
    let bundle = Bundle::load(dir).map_err(bad)?;
    let lacking: Vec<String> = required
        .iter()
        .filter(|(_, prefix, _)| !bundle.files.iter().any(|f| f.path.starts_with(prefix)))
        .map(|(stage, prefix, what)| {
            format!(
                "the {stage} stage needs {what}, and {} lists no {prefix}: add the file and \
                 its entry (sha256, size), or leave the stage out with --skip {stage}",
                crate::bundle::MANIFEST
            )
        })
        .collect();
    if !lacking.is_empty() {
        return Err(bad(crate::bundle::BundleError {
            dir: dir.clone(),
            problems: lacking,
        })
        .into());
    }
    for prefix in prefixes {
        bundle.verify(prefix).await.map_err(bad)?;
    }
    Ok(Some(Arc::new(bundle)))
}

/// `registry.credentials.password`, loaded (from its env variable, or one prompt) when a
/// selected stage writes it: before any host is touched, once for every host.
fn registry_password(
    inv: &Inventory,
    selected: &[select::Selected],
) -> anyhow::Result<Option<crate::secret::Secret>> {
    let Some(source) = inv.registry.as_ref().and_then(|r| r.password.as_ref()) else {
        return Ok(None);
    };
    // k3s gets the login in registries.yaml (kubernetes), kubeadm's containerd in its
    // config.toml (runtime).
    let writers: &[&str] = match inv.cluster.distribution {
        crate::inventory::Distribution::K3s => &["kubernetes"],
        crate::inventory::Distribution::Kubeadm => &["runtime"],
    };
    if !selected.iter().any(|s| writers.contains(&s.name)) {
        return Ok(None);
    }
    crate::secret::Secret::load(source, "registry password (registry.credentials.password)")
        .map(Some)
        .map_err(|e| BadInput(e.to_string()).into())
}

/// The password, and for the registry gpuctl runs its certificate and login (made here on
/// first use), when a selected stage needs them: `registry` puts them on the registry host,
/// `runtime` installs the CA on every node, `kubernetes` writes the login.
#[allow(clippy::type_complexity)]
fn registry_inputs(
    inv: &Inventory,
    selected: &[select::Selected],
) -> anyhow::Result<(
    Option<Arc<crate::stages::registry::site::Materials>>,
    Option<crate::secret::Secret>,
)> {
    let needs = |names: &[&str]| selected.iter().any(|s| names.contains(&s.name));
    if needs(&["registry", "runtime", "kubernetes"])
        && let Some((site, password)) = crate::stages::registry::prepare(inv)
            .map_err(|e| BadInput(format!("the registry gpuctl runs: {e:#}")))?
    {
        return Ok((Some(site), Some(password)));
    }
    Ok((None, registry_password(inv, selected)?))
}

/// One host's row of the result.
#[derive(Debug)]
pub struct HostRow {
    pub host: String,
    pub outcome: HostOutcome,
    /// `(stage, message)` of the failure that stopped the host.
    pub failure: Option<(String, String)>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct RunResult {
    pub rows: Vec<HostRow>,
    pub interrupted: bool,
    pub log_dir: std::path::PathBuf,
    pub mode: Mode,
    /// Said once for the run (cluster stages that could not run, and why).
    pub notes: Vec<String>,
}

impl RunResult {
    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| r.failure.is_some()).count()
    }
}

/// Runs the selected stages on every host of `fleet`. A real run takes the local lock
/// first (refused while another install runs) and keeps the journal; a dry run reads the
/// journal only.
pub async fn run(
    inv: Arc<Inventory>,
    fleet: &Fleet,
    opts: RunOptions,
) -> anyhow::Result<RunResult> {
    let names = crate::stages::names();
    let selected = select::select(&names, &opts.selection)?;
    let (registry_site, registry_password) = registry_inputs(&inv, &selected)?;
    let all = crate::stages::all(&crate::stages::Inputs {
        bundle: opts.bundle.clone(),
        registry_password,
        registry_site,
    });
    let state_dir = inv.state_dir();
    let journal_path = state_dir.join("state.json");
    let journal = Journal::load(&journal_path, &inv.cluster.name)?;
    let (lock, journal_path) = if opts.mode.applies() {
        let lock = LocalLock::acquire(&state_dir.join("install.lock"), LockInfo::this_process())?;
        (Some(lock), Some(journal_path))
    } else {
        (None, None)
    };
    let hosts: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    let stage_names: Vec<&'static str> = selected.iter().map(|s| s.name).collect();
    let gates = gate::Gates::new(hosts, &stage_names);
    // The first server first: joining nodes wait for it, so it must never wait for a
    // connection slot they hold.
    let first: Vec<String> = inv.servers().take(1).map(|h| h.name.clone()).collect();
    let ctx = Arc::new(host::RunCtx {
        inv: Arc::clone(&inv),
        stages: all,
        selected,
        mode: opts.mode,
        journal: Mutex::new(journal),
        journal_path,
        lock: lock.as_ref().map(|l| l.info.clone()),
        inventory_arg: opts.inventory_arg.clone(),
        reset: opts.reset,
        gates,
    });
    let work_ctx = Arc::clone(&ctx);
    let end_ctx = Arc::clone(&ctx);
    let report = fleet
        .run_with(
            &first,
            move |host, error| {
                if let Some(e) = error {
                    let why = crate::secret::redact(&format!("{e:#}"));
                    end_ctx
                        .gates
                        .host_ended(host, why.lines().next().unwrap_or_default());
                }
            },
            move |hctx| host::run_host(Arc::clone(&work_ctx), hctx),
        )
        .await;
    let mut rows: Vec<HostRow> = report
        .results
        .into_iter()
        .map(|r| match r.outcome {
            Ok(outcome) => HostRow {
                host: r.host,
                outcome,
                failure: None,
                elapsed: r.elapsed,
            },
            Err(e) => match e.downcast::<HostFailed>() {
                Ok(failed) => HostRow {
                    host: r.host,
                    failure: Some((failed.stage.to_string(), failed.message)),
                    outcome: failed.outcome,
                    elapsed: r.elapsed,
                },
                Err(e) => HostRow {
                    host: r.host,
                    outcome: HostOutcome::default(),
                    failure: Some((
                        "connect".to_string(),
                        crate::secret::redact(&format!("{e:#}")),
                    )),
                    elapsed: r.elapsed,
                },
            },
        })
        .collect();
    let end = if report.interrupted {
        cluster::End::default()
    } else {
        cluster::run(&ctx, fleet, &mut rows).await
    };
    drop(lock);
    Ok(RunResult {
        rows,
        interrupted: report.interrupted || end.interrupted,
        log_dir: report.log_dir,
        mode: opts.mode,
        notes: end.notes,
    })
}
