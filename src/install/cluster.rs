//! Cluster stages: run once per run, over the first server's connection, after every host
//! finished its host stages (so a cluster stage never holds a connection slot while hosts
//! it needs wait for one).
//!
//! Each selected cluster stage in order: the host stages it [needs](Stage::needs) must have
//! succeeded (or been skipped as done) on every host of the run, else it fails at once
//! naming the hosts; it plans on the first server's facts; it is skipped when its checkpoint
//! (kept under the first server's name) matches and, for a fetch, the local file is there.
//! Only when something is left to do is the first server connected again: its Ops are
//! converged like a host stage's, then its [`Finish`] is carried out (wait for a condition,
//! fetch a file). Outcomes join the first server's row of the report.

use std::time::{Duration, Instant};

use super::HostRow;
use super::host::{RunCtx, StageOutcome, Status, done_since, record};
use super::select::Selected;
use crate::converge::{self, Change, StageReport, StepReport};
use crate::fleet::{Fleet, HostCtx, Interrupted};
use crate::plan::digest::digest_with;
use crate::plan::{Fetch, Finish, HostFacts, Op, Scope, Stage, Wait};
use crate::transport::Command;

struct Todo<'a> {
    sel: &'a Selected,
    stage: &'a dyn Stage,
    ops: Vec<Op>,
    finish: Option<Finish>,
    digest: String,
}

/// How the cluster stages ended, beyond what they added to the first server's row.
#[derive(Default)]
pub struct End {
    /// For the admin: why the cluster stages did not run.
    pub notes: Vec<String>,
    /// Ctrl-C stopped them.
    pub interrupted: bool,
}

/// Runs the selected cluster stages.
pub async fn run(run: &RunCtx, fleet: &Fleet, rows: &mut [HostRow]) -> End {
    let selected: Vec<(&Selected, &dyn Stage)> = run
        .selected
        .iter()
        .filter_map(|sel| Some((sel, run.stages.get(sel.index)?.as_ref())))
        .filter(|(_, stage)| stage.scope() == Scope::Cluster)
        .collect();
    let names: Vec<&str> = selected.iter().map(|(s, _)| s.name).collect();
    if selected.is_empty() || run.reset {
        return End::default();
    }
    let Some(first) = run.inv.servers().next().cloned() else {
        return End::default();
    };
    let Some(at) = rows.iter().position(|r| r.host == first.name) else {
        return End {
            notes: vec![format!(
                "cluster stages ({}) not run: they run on {}, the first server, which is not \
                 part of this run",
                names.join(", "),
                first.name
            )],
            interrupted: false,
        };
    };
    if rows[at].failure.is_some() {
        return End::default();
    }
    let Some(mut hf) = rows[at].outcome.facts.clone() else {
        return End::default();
    };
    hf.nodes = rows
        .iter()
        .filter_map(|r| Some((r.host.clone(), r.outcome.facts.as_ref()?.facts.clone())))
        .collect();

    let mut outcomes = Vec::new();
    let mut failure = None;
    let mut interrupted = false;
    let mut todo = Vec::new();
    let mut left_out: Vec<(&str, Vec<&str>)> = Vec::new();
    for (sel, stage) in selected {
        let started = Instant::now();
        let absent = never_done(run, stage, &first.name);
        if !absent.is_empty() {
            left_out.push((sel.name, absent));
            continue;
        }
        let result = unmet(run, stage, rows).and_then(|()| {
            stage
                .plan(&run.inv, &hf)
                .map_err(|e| crate::secret::redact(&format!("{e:#}")))
        });
        let ops = match result {
            Ok(ops) => ops,
            Err(msg) => {
                outcomes.push(outcome(sel, Status::Failed(msg.clone()), started));
                failure = Some((sel.name, msg));
                if run.mode.applies() {
                    break;
                }
                continue;
            }
        };
        let finish = stage.finish(&run.inv, &hf);
        let digest = digest_with(&ops, &finish.as_ref().map(Finish::key).unwrap_or_default());
        let present = match &finish {
            Some(Finish::Fetch(f)) => f.dest.exists(),
            _ => true,
        };
        match done_since(run, &first.name, sel, stage.checkpointed(), &digest) {
            Some(since) if present => {
                outcomes.push(outcome(sel, Status::Skipped { since }, started));
            }
            _ => todo.push(Todo {
                sel,
                stage,
                ops,
                finish,
                digest,
            }),
        }
    }
    if !todo.is_empty() && failure.as_ref().is_none_or(|_| !run.mode.applies()) {
        let label = format!("cluster@{}", first.name);
        let first_todo = todo[0].sel.name;
        let result = fleet
            .run_on(&first, &label, |ctx| converge_all(run, ctx, &hf, todo))
            .await;
        match result.outcome {
            Ok((done, failed)) => {
                outcomes.extend(done);
                if failure.is_none() {
                    failure = failed;
                }
            }
            Err(e) if e.is::<Interrupted>() => {
                interrupted = true;
                failure.get_or_insert((first_todo, e.to_string()));
            }
            Err(e) => {
                let msg = crate::secret::redact(&format!("{e:#}"));
                failure.get_or_insert((first_todo, format!("connecting to {}: {msg}", first.name)));
            }
        }
    }
    let row = &mut rows[at];
    row.outcome.stages.extend(outcomes);
    if let Some((stage, msg)) = failure {
        row.failure = Some((stage.to_string(), msg));
    }
    let notes = left_out
        .into_iter()
        .map(|(name, absent)| {
            format!(
                "{name} not run: it needs {}, which this run leaves out and which has never \
                 completed on {}",
                absent.join(", "),
                first.name
            )
        })
        .collect();
    End { notes, interrupted }
}

/// The host stages `stage` needs that this run leaves out (`--skip`, `--only`) and that the
/// journal has never seen done on the first server: there is no cluster for it to work on
/// yet, so it is left out too (with a note) rather than failing against nothing.
fn never_done<'a>(run: &RunCtx, stage: &'a dyn Stage, first: &str) -> Vec<&'a str> {
    let Ok(journal) = run.journal.lock() else {
        return Vec::new();
    };
    stage
        .needs()
        .iter()
        .copied()
        .filter(|need| !run.selected.iter().any(|s| s.name == *need))
        .filter(|need| journal.checkpoint(first, need).is_none())
        .collect()
}

fn outcome(sel: &Selected, status: Status, started: Instant) -> StageOutcome {
    StageOutcome {
        name: sel.name,
        status,
        notes: Vec::new(),
        elapsed: started.elapsed(),
    }
}

/// Why `stage` cannot run yet: a host stage it needs is not done on every host of the run.
fn unmet(run: &RunCtx, stage: &dyn Stage, rows: &[HostRow]) -> Result<(), String> {
    let mut missing = Vec::new();
    for need in stage.needs() {
        if !run.selected.iter().any(|s| s.name == *need) {
            continue;
        }
        for row in rows {
            let done = row.outcome.stages.iter().find(|s| s.name == *need);
            match (done.map(|s| &s.status), &row.failure) {
                (Some(Status::Ran(_) | Status::Skipped { .. }), _) => {}
                (Some(Status::Failed(msg)), _) => {
                    missing.push(format!("{}: {need} failed: {}", row.host, first_line(msg)))
                }
                (None, Some((at, msg))) => missing.push(format!(
                    "{}: stopped at {at} before {need}: {}",
                    row.host,
                    first_line(msg)
                )),
                (None, None) => missing.push(format!("{}: {need} did not run", row.host)),
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "waits for every host's {} stage, not done on {} host(s):\n{}\nfix them and run \
         install again: hosts already done skip their stages",
        stage.needs().join(", "),
        missing.len(),
        missing.join("\n")
    ))
}

type Done = (Vec<StageOutcome>, Option<(&'static str, String)>);

/// Every stage left to do, in order, on the first server's new connection.
async fn converge_all(
    run: &RunCtx,
    ctx: HostCtx,
    hf: &HostFacts,
    todo: Vec<Todo<'_>>,
) -> anyhow::Result<Done> {
    let mut outcomes = Vec::new();
    for t in todo {
        ctx.progress.step(t.sel.name);
        let started = Instant::now();
        let result = one(run, &ctx, hf, &t).await;
        let checkpointed = t.stage.checkpointed();
        let status = match result {
            Ok(report) => {
                record(
                    run,
                    &ctx,
                    t.sel.name,
                    &t.digest,
                    Ok(report.changes()),
                    checkpointed,
                )
                .await;
                Status::Ran(report)
            }
            Err(msg) => {
                let msg = crate::secret::redact(&msg);
                record(
                    run,
                    &ctx,
                    t.sel.name,
                    &t.digest,
                    Err(msg.clone()),
                    checkpointed,
                )
                .await;
                outcomes.push(outcome(t.sel, Status::Failed(msg.clone()), started));
                if run.mode.applies() {
                    return Ok((outcomes, Some((t.sel.name, msg))));
                }
                continue;
            }
        };
        outcomes.push(outcome(t.sel, status, started));
    }
    Ok((outcomes, None))
}

async fn one(
    run: &RunCtx,
    ctx: &HostCtx,
    hf: &HostFacts,
    t: &Todo<'_>,
) -> Result<StageReport, String> {
    let mut report = converge::converge(ctx, t.sel.name, &t.ops, hf.container, run.mode)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let step = match &t.finish {
        None => return Ok(report),
        Some(Finish::Wait(w)) => wait(run, ctx, w).await?,
        Some(Finish::Fetch(f)) => fetch(run, ctx, f).await?,
    };
    report.round_trips += 1;
    report.steps.push(step);
    Ok(report)
}

/// Runs the wait's command until its judge is content, at most its timeout. A dry run
/// asks once: not there yet is a change to come, not a failure.
async fn wait(run: &RunCtx, ctx: &HostCtx, w: &Wait) -> Result<StepReport, String> {
    let started = Instant::now();
    loop {
        let answer = ctx
            .run(
                Command::new(&w.command)
                    .sudo(true)
                    .timeout(Duration::from_secs(30)),
            )
            .await;
        let verdict = match &answer {
            Ok(out) if out.success() => (w.judge)(&out.stdout_str()),
            Ok(out) => Err(format!(
                "`{}` failed: {}",
                w.command,
                first_line(out.stderr_str().trim())
            )),
            Err(e) => Err(format!("`{}`: {e}", w.command)),
        };
        let why = match verdict {
            Ok(()) => {
                return Ok(StepReport {
                    what: w.what.clone(),
                    change: Change::InSync,
                    warning: None,
                });
            }
            Err(why) => why,
        };
        if !run.mode.applies() {
            return Ok(StepReport {
                what: w.what.clone(),
                change: Change::Changed(format!("wait until then; now:\n{why}")),
                warning: None,
            });
        }
        if started.elapsed() >= w.timeout {
            return Err(format!(
                "not {} after {}s:\n{why}\nsee why with: gpuctl exec {} --hosts {} --sudo -- {}",
                w.what,
                w.timeout.as_secs(),
                run.inventory_arg,
                ctx.host.name,
                w.hint
            ));
        }
        tokio::time::sleep(w.interval).await;
    }
}

/// Reads the file (through `get`: its bytes never reach the run log) and hands it to the
/// writer.
async fn fetch(run: &RunCtx, ctx: &HostCtx, f: &Fetch) -> Result<StepReport, String> {
    let bytes = match ctx.get(&f.path, true).await {
        Ok(bytes) => bytes,
        // Before the first install there is nothing to fetch yet: a change to come.
        Err(e) if !run.mode.applies() => {
            return Ok(StepReport {
                what: f.what.clone(),
                change: Change::Changed(format!("fetch it once it exists (now: {e})")),
                warning: None,
            });
        }
        Err(e) => return Err(format!("reading {} on {}: {e}", f.path, ctx.host.name)),
    };
    let change = (f.write)(&bytes, run.mode.applies()).map_err(|e| format!("{e:#}"))?;
    Ok(StepReport {
        what: f.what.clone(),
        change: change.map_or(Change::InSync, Change::Changed),
        warning: None,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
