//! One host's part of a run: the first round trip (host lock, host journal, facts), then
//! each selected stage in order — plan, digest, skip or converge, checkpoint — until the
//! last stage or the first failure, then the host lock is released.
//!
//! Round trips on a host where everything is done: one for facts, one to release the
//! lock (which also carries the host's journal). Stages that have to be probed share one
//! more (see `ahead.rs`); a stage with changes costs one apply script, plus one per upload.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::select::Selected;
use crate::converge::step::Step;
use crate::converge::{self, Mode, StageReport};
use crate::fleet::HostCtx;
use crate::inventory::Inventory;
use crate::plan::{HostFacts, Scope, Stage, digest::digest};
use crate::state::remote::{self, LockAnswer};
use crate::state::{Checkpoint, Journal, LockInfo, StageResult, lock};
use crate::transport::{Command, SudoMode};

const FACTS_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run shares between its hosts.
pub struct RunCtx {
    pub inv: Arc<Inventory>,
    pub stages: Vec<Box<dyn Stage>>,
    pub selected: Vec<Selected>,
    pub mode: Mode,
    pub journal: Mutex<Journal>,
    /// Where the local journal is saved; `None`: nothing is written (dry runs, plan).
    pub journal_path: Option<std::path::PathBuf>,
    /// The lock taken on each host; `None` in read-only runs.
    pub lock: Option<LockInfo>,
    /// How to run gpuctl against this inventory, for fix commands in messages.
    pub inventory_arg: String,
    /// Undo instead of install (`gpuctl reset`).
    pub reset: bool,
    /// How stages of one host wait for stages of another (see `gate.rs`).
    pub gates: super::gate::Gates,
}

/// What happened to one stage on one host.
#[derive(Debug)]
pub struct StageOutcome {
    pub name: &'static str,
    pub status: Status,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub enum Status {
    /// Done with the same Ops before; not probed.
    Skipped {
        since: String,
    },
    Ran(StageReport),
    Failed(String),
}

/// Everything a host did; also carried by [`HostFailed`] when a stage failed.
#[derive(Debug, Default)]
pub struct HostOutcome {
    pub facts: Option<HostFacts>,
    pub stages: Vec<StageOutcome>,
    pub warnings: Vec<String>,
    /// The host's journal as the facts round trip read it.
    host_journal: Option<crate::state::HostJournal>,
}

/// A stage failed on this host; its later stages did not run.
#[derive(Debug, thiserror::Error)]
#[error("stage {stage}: {message}")]
pub struct HostFailed {
    pub stage: &'static str,
    pub message: String,
    pub outcome: HostOutcome,
}

/// Runs the selected stages on one host.
pub async fn run_host(run: Arc<RunCtx>, ctx: HostCtx) -> anyhow::Result<HostOutcome> {
    let mut outcome = HostOutcome::default();
    ctx.progress.step("facts");
    let started = Instant::now();
    let hf = match begin(&run, &ctx, &mut outcome).await {
        Ok(hf) => hf,
        Err(e) => {
            let message = crate::secret::redact(&format!("{e:#}"));
            run.gates.host_ended(
                &ctx.host.name,
                &format!("facts failed: {}", first_line(&message)),
            );
            return Err(HostFailed {
                stage: "facts",
                message,
                outcome,
            }
            .into());
        }
    };
    let facts_note = describe_facts(&hf);
    outcome.facts = Some(hf.clone());
    record(&run, &ctx, "facts", "", Ok(0), false).await;
    outcome.stages.push(StageOutcome {
        name: "facts",
        status: Status::Ran(StageReport::default()),
        notes: vec![facts_note],
        elapsed: started.elapsed(),
    });

    let result = if run.reset {
        super::reset::stages(&run, &ctx, &hf, &mut outcome).await
    } else {
        stages(&run, &ctx, &hf, &mut outcome).await
    };
    if let Some(l) = &run.lock {
        // Released even after a failure: the journal says where to resume, the lock
        // would only block that resume. The host's copy of the journal travels with it:
        // one round trip at the end instead of one per stage.
        let journal = journal_for_host(&run, &ctx.host.name, &outcome);
        let mut script = String::new();
        if journal.is_some() {
            script.push_str(&format!(
                "if ( {} ); then echo @journal-written; fi\n",
                remote::WRITE_JOURNAL
            ));
        }
        script.push_str(&remote::unlock_script(&l.run));
        script.push_str("echo @unlocked\n");
        let mut cmd = Command::new(script).sudo(true);
        if let Some(text) = journal.clone() {
            cmd = cmd.stdin(text.into_bytes());
        }
        let out = ctx.run(cmd).await;
        let said = out.as_ref().map(|o| o.stdout_str()).unwrap_or_default();
        if !said.lines().any(|l| l == "@unlocked") {
            outcome.warnings.push(format!(
                "could not release the host lock {}; the next install from this machine \
                 takes it over",
                remote::LOCK
            ));
        }
        if journal.is_some() && !said.lines().any(|l| l == "@journal-written") {
            ctx.log.note(&format!(
                "cannot write the host journal {}: {}",
                remote::JOURNAL,
                out.map_or_else(|e| e.to_string(), |o| o.stderr_str())
            ));
        }
    }
    // Whatever this host did not reach, hosts waiting for it must not wait for.
    let why = match &result {
        Ok(()) => "its run ended".to_string(),
        Err((stage, message)) => format!("{stage} failed: {}", first_line(message)),
    };
    run.gates.host_ended(&ctx.host.name, &why);
    match result {
        Ok(()) => Ok(outcome),
        Err((stage, message)) => Err(HostFailed {
            stage,
            message,
            outcome,
        }
        .into()),
    }
}

/// The first round trip: take the host lock, read the host's journal, gather facts.
async fn begin(
    run: &RunCtx,
    ctx: &HostCtx,
    outcome: &mut HostOutcome,
) -> anyhow::Result<HostFacts> {
    let sudo = ctx.conn.sudo_mode() != SudoMode::Unavailable;
    let mut script = String::new();
    if sudo {
        if let Some(l) = &run.lock {
            script.push_str(&remote::lock_script(l, None));
        }
        script.push_str(remote::READ_JOURNAL);
    }
    script.push_str(&crate::stages::facts::script(&run.inv));
    let out = ctx
        .run(Command::new(&script).sudo(sudo).timeout(FACTS_TIMEOUT))
        .await
        .context("gathering facts")?;
    if !out.success() {
        anyhow::bail!(
            "gathering facts failed (exit {:?}): {}",
            out.status,
            out.stderr_str().trim()
        );
    }
    let text = out.stdout_str();
    let (lock, journal) = remote::parse(&text);
    if let LockAnswer::Held(info) = lock {
        take_over(run, ctx, info, outcome).await?;
    }
    match journal {
        Some(Ok(theirs)) => {
            outcome.host_journal = Some(theirs.clone());
            if let Ok(mut j) = run.journal.lock() {
                j.merge_host(&ctx.host.name, theirs);
            }
        }
        Some(Err(e)) => outcome.warnings.push(format!(
            "the host's journal {} is unreadable ({e}); this run rewrites it",
            remote::JOURNAL
        )),
        None => {}
    }
    Ok(crate::stages::facts::parse(
        &ctx.host,
        ctx.conn.sudo_mode(),
        &text,
    ))
}

/// The host lock is held. A lock left by a gpuctl of this machine that no longer runs is
/// taken over (we hold the local lock, so no install from here is running); any other is
/// reported with the command that removes it.
async fn take_over(
    run: &RunCtx,
    ctx: &HostCtx,
    info: Option<LockInfo>,
    outcome: &mut HostOutcome,
) -> anyhow::Result<()> {
    let fix = format!(
        "if no install is running, remove it with: gpuctl exec {} --hosts {} --sudo -- rm -f {}",
        run.inventory_arg,
        ctx.host.name,
        remote::LOCK
    );
    let Some(info) = info else {
        anyhow::bail!(
            "the host lock {} exists but is unreadable; {fix}",
            remote::LOCK
        );
    };
    let Some(mine) = &run.lock else {
        return Ok(());
    };
    if info.liveness() != lock::Liveness::Dead {
        anyhow::bail!(
            "another install holds the host lock {}: {}; {fix}",
            remote::LOCK,
            info.describe()
        );
    }
    let out = ctx
        .run(Command::new(remote::lock_script(mine, Some(&info.run))).sudo(true))
        .await?;
    if remote::parse(&out.stdout_str()).0 != LockAnswer::Taken {
        anyhow::bail!(
            "the host lock {} changed hands while taking it over; {fix}",
            remote::LOCK
        );
    }
    outcome.warnings.push(format!(
        "took over the host lock left by {}, which is no longer running",
        info.describe()
    ));
    Ok(())
}

/// The host stages after facts. A real run stops at the first failure; a dry run goes on,
/// since nothing was changed and the later stages' probes still say something true.
/// Cluster stages are not run here but after every host (see `cluster.rs`).
async fn stages(
    run: &RunCtx,
    ctx: &HostCtx,
    hf: &HostFacts,
    outcome: &mut HostOutcome,
) -> Result<(), (&'static str, String)> {
    let mut first_failure = None;
    let mine: Vec<(&Selected, &dyn Stage)> = run
        .selected
        .iter()
        .filter(|s| s.name != "facts")
        .filter_map(|sel| Some((sel, run.stages.get(sel.index)?.as_ref())))
        .filter(|(_, stage)| stage.scope() == Scope::Host)
        .collect();
    let mut ahead = super::ahead::Lookahead::default();
    for (k, &(sel, stage)) in mine.iter().enumerate() {
        ctx.progress.step(sel.name);
        let started = Instant::now();
        let notes = stage.notes(&run.inv, hf);
        for n in &notes {
            ctx.log.note(&format!("{}: note: {n}", sel.name));
        }
        let later = mine.get(k + 1..).unwrap_or_default();
        let status = one_stage(run, ctx, sel, stage, hf, later, &mut ahead).await;
        let failed = match &status {
            Status::Failed(msg) => Some(msg.clone()),
            _ => None,
        };
        super::gate::after(run, ctx, stage, failed.as_deref().map_or(Ok(()), Err)).await;
        outcome.stages.push(StageOutcome {
            name: sel.name,
            status,
            notes,
            elapsed: started.elapsed(),
        });
        if let Some(msg) = failed {
            first_failure.get_or_insert((sel.name, msg));
            if run.mode.applies() {
                break;
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// One stage on this host: wait for what it waits for, plan, skip when done, or converge
/// (probing the later stages in the same round trips); then checkpoint.
async fn one_stage(
    run: &RunCtx,
    ctx: &HostCtx,
    sel: &Selected,
    stage: &dyn Stage,
    hf: &HostFacts,
    later: &[(&Selected, &dyn Stage)],
    ahead: &mut super::ahead::Lookahead,
) -> Status {
    let checkpointed = stage.checkpointed();
    let (ops, digest) = match super::gate::before(run, ctx, stage, hf).await {
        Ok(hf) => match stage.plan(&run.inv, &hf) {
            Ok(ops) => {
                let d = digest(&ops);
                (ops, d)
            }
            Err(e) => {
                let msg = crate::secret::redact(&format!("{e:#}"));
                record(run, ctx, sel.name, "", Err(msg.clone()), false).await;
                return Status::Failed(msg);
            }
        },
        Err(msg) => {
            let msg = crate::secret::redact(&msg);
            record(run, ctx, sel.name, "", Err(msg.clone()), false).await;
            return Status::Failed(msg);
        }
    };
    if let Some(since) = done_since(run, &ctx.host.name, sel, checkpointed, &digest) {
        ctx.log
            .note(&format!("{}: skipped, done since {since}", sel.name));
        return Status::Skipped { since };
    }
    let steps = converge::step::lower(sel.name, &ops);
    let known = ahead.take(sel.name, &digest);
    let later = super::ahead::plan_later(run, ctx, hf, later);
    let ahead_steps: Vec<Step> = later.iter().flat_map(|l| l.steps.iter().cloned()).collect();
    let undone = not_done_script(run, &ctx.host.name, sel.name, &digest, checkpointed);
    match converge::converge_ahead(
        ctx,
        sel.name,
        &steps,
        hf.container,
        run.mode,
        known,
        &ahead_steps,
        undone.as_deref(),
    )
    .await
    {
        Ok((report, learned)) => {
            ahead.learn(learned, &later);
            record(run, ctx, sel.name, &digest, Ok(report.changes()), false).await;
            Status::Ran(report)
        }
        Err(e) => {
            let msg = crate::secret::redact(&format!("{e:#}"));
            record(run, ctx, sel.name, &digest, Err(msg.clone()), false).await;
            Status::Failed(msg)
        }
    }
}

/// How big the host's journal may be to be marked as not done inside an apply script.
const NOT_DONE_MAX: usize = 16 * 1024;

/// A script that writes the host's journal with `stage` marked as not done, run before
/// the stage changes the host. The host's copy is otherwise written only at the end of
/// the run; without this, a run killed halfway would leave the host saying the stage is
/// done as it was before, and another workstation would skip it.
fn not_done_script(
    run: &RunCtx,
    host: &str,
    stage: &str,
    digest: &str,
    checkpointed: bool,
) -> Option<String> {
    if !checkpointed || run.lock.is_none() {
        return None;
    }
    run.journal_path.as_ref()?;
    let mut part = run.journal.lock().ok()?.host(host);
    part.stages.insert(
        stage.to_string(),
        Checkpoint {
            digest: digest.to_string(),
            result: StageResult::Failed,
            at: crate::state::journal::now(),
            changes: 0,
            error: Some("its run ended while it was changing the host".into()),
        },
    );
    // It travels inside the apply script, whose command line is capped: the other stages'
    // errors are left out when they make it long (the end of the run writes them), and
    // a journal still too long is not marked (the old window: the end of the run).
    let mut text = serde_json::to_string(&part).ok()?;
    if text.len() > NOT_DONE_MAX {
        for (name, cp) in part.stages.iter_mut() {
            if name != stage && cp.error.is_some() {
                cp.error = Some("(see the journal beside the inventory)".into());
            }
        }
        text = serde_json::to_string(&part).ok()?;
    }
    if text.len() > NOT_DONE_MAX {
        return None;
    }
    let opts = crate::transport::PutOptions {
        mode: Some(0o600),
        owner: Some("root:root".into()),
        ..Default::default()
    };
    Some(crate::transport::inline_script(
        remote::JOURNAL,
        text.as_bytes(),
        &opts,
    ))
}

/// The host's part of the journal, for the round trip that releases the host lock, when
/// it tells the host something new: a stage that checkpoints changed the host, failed, or
/// ended with another digest or result than the host's journal had. A `--verify` that
/// found everything in sync writes nothing.
fn journal_for_host(run: &RunCtx, host: &str, outcome: &HostOutcome) -> Option<String> {
    // Reset removes the host's journal with everything else gpuctl wrote.
    if run.reset {
        return None;
    }
    run.journal_path.as_ref()?;
    let part = run.journal.lock().ok()?.host(host);
    let checkpointed = |name: &str| {
        run.stages
            .iter()
            .any(|s| s.name() == name && s.checkpointed())
    };
    let had = |name: &str| {
        outcome
            .host_journal
            .as_ref()
            .and_then(|j| j.stages.get(name))
    };
    let news = outcome
        .stages
        .iter()
        .filter(|o| checkpointed(o.name))
        .any(|o| match &o.status {
            Status::Skipped { .. } => false,
            Status::Failed(_) => true,
            Status::Ran(report) => {
                report.applied
                    || match (had(o.name), part.stages.get(o.name)) {
                        (Some(old), Some(new)) => {
                            old.digest != new.digest || old.result != new.result
                        }
                        _ => true,
                    }
            }
        });
    if !news {
        return None;
    }
    serde_json::to_string_pretty(&part).ok()
}

/// When the stage is done on `host` with these Ops (and may be skipped): since when.
pub(super) fn done_since(
    run: &RunCtx,
    host: &str,
    sel: &Selected,
    checkpointed: bool,
    digest: &str,
) -> Option<String> {
    if !checkpointed || sel.ignore_checkpoint {
        return None;
    }
    let j = run.journal.lock().ok()?;
    if !j.is_done(host, sel.name, digest) {
        return None;
    }
    j.checkpoint(host, sel.name).map(|c| c.at.clone())
}

/// Writes a checkpoint to the local journal and the host's (real runs only). Journal
/// trouble is logged, not fatal: the changes themselves are made and will probe in sync.
pub(super) async fn record(
    run: &RunCtx,
    ctx: &HostCtx,
    stage: &str,
    digest: &str,
    result: Result<usize, String>,
    to_host: bool,
) {
    let Some(path) = &run.journal_path else {
        return;
    };
    let checkpoint = Checkpoint {
        digest: digest.to_string(),
        result: if result.is_ok() {
            StageResult::Success
        } else {
            StageResult::Failed
        },
        at: crate::state::journal::now(),
        changes: *result.as_ref().unwrap_or(&0),
        error: result.err(),
    };
    let host_part = match run.journal.lock() {
        Ok(mut j) => {
            j.record(&ctx.host.name, stage, checkpoint);
            if let Err(e) = j.save(path) {
                ctx.log
                    .note(&format!("cannot save the journal {}: {e}", path.display()));
            }
            j.host(&ctx.host.name)
        }
        Err(_) => return,
    };
    // Host stages' checkpoints reach the host with the round trip that releases its lock
    // (see `run_host`); cluster stages, run over a connection of their own, write now.
    if !to_host {
        return;
    }
    let text = serde_json::to_string_pretty(&host_part).unwrap_or_default();
    let out = ctx
        .run(
            Command::new(remote::WRITE_JOURNAL)
                .sudo(true)
                .stdin(text.into_bytes()),
        )
        .await;
    if !out.as_ref().is_ok_and(|o| o.success()) {
        ctx.log.note(&format!(
            "cannot write the host journal {}: {}",
            remote::JOURNAL,
            out.map_or_else(|e| e.to_string(), |o| o.stderr_str())
        ));
    }
}

/// `Debian GNU/Linux 12, 8 CPUs, 31.3 GiB, 4× Tesla T4, container`.
fn describe_facts(hf: &HostFacts) -> String {
    let f = &hf.facts;
    let mut parts = vec![
        f.os_name.clone(),
        format!("{} CPUs", f.cpus),
        format!("{:.1} GiB", f.memory_mib as f64 / 1024.0),
    ];
    let gpus = f.gpu_summary();
    if gpus != "-" {
        parts.push(gpus);
    }
    if hf.container {
        parts.push("container".into());
    }
    parts.join(", ")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
