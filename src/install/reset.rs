//! One host's part of `gpuctl reset`: first the host's checkpoints are dropped (here and
//! on the host), then the checkpointed stages run in reverse order, each planned exactly
//! as install plans it and then undone step by step (`converge::undo`), then gpuctl's own
//! files on the host — the uploaded packages, the host journal — are removed.
//!
//! Stages that only read (facts, preflight) have nothing to undo. Nothing is checkpointed:
//! running reset again probes everything and finds it in sync.

use std::time::Instant;

use anyhow::Context as _;

use super::host::{HostOutcome, RunCtx, StageOutcome, Status};
use crate::converge::step::Step;
use crate::converge::{self, undo};
use crate::fleet::HostCtx;
use crate::plan::{HostFacts, Scope};
use crate::state::remote;
use crate::transport::Command;
use crate::transport::shell::quote;

/// What gpuctl keeps on a host besides what host stages write: the package cache, the
/// host journal, and the manifests cluster stages applied from the first server (the
/// objects go with the cluster, which the `kubernetes` stage's undo removes).
const OWN_FILES: [&str; 3] = [
    "/var/cache/gpuctl",
    crate::stages::manifests::DIR,
    remote::JOURNAL,
];

pub async fn stages(
    run: &RunCtx,
    ctx: &HostCtx,
    hf: &HostFacts,
    outcome: &mut HostOutcome,
) -> Result<(), (&'static str, String)> {
    if run.mode.applies() {
        forget(run, ctx)
            .await
            .map_err(|e| ("reset", format!("{e:#}")))?;
    }
    let mut first_failure = None;
    for sel in run.selected.iter().rev().filter(|s| s.name != "facts") {
        // Cluster stages write nothing on hosts (the kubeconfig is local, the checkpoints
        // go with the first server's).
        let Some(stage) = run
            .stages
            .get(sel.index)
            .filter(|s| s.checkpointed() && s.scope() == Scope::Host)
        else {
            continue;
        };
        ctx.progress.step(sel.name);
        let started = Instant::now();
        let planned = super::gate::without_waiting(run, stage.as_ref(), hf);
        let result = match stage.plan(&run.inv, &planned) {
            Ok(ops) => {
                let (mut steps, notes) = undo::lower(sel.name, &ops);
                // Then what the stage's software made by itself (k3s's data).
                steps.extend(
                    stage
                        .leaves(&run.inv, &hf.host)
                        .iter()
                        .map(|p| remove_tree(p)),
                );
                converge::converge_steps(ctx, sel.name, steps, hf.container, run.mode)
                    .await
                    .map(|r| (r, notes))
            }
            Err(e) => Err(e),
        };
        let (status, notes) = match result {
            Ok((report, notes)) => (Status::Ran(report), notes),
            Err(e) => {
                let msg = crate::secret::redact(&format!("{e:#}"));
                first_failure.get_or_insert((sel.name, msg.clone()));
                (Status::Failed(msg), Vec::new())
            }
        };
        let failed = matches!(status, Status::Failed(_));
        outcome.stages.push(StageOutcome {
            name: sel.name,
            status,
            notes,
            elapsed: started.elapsed(),
        });
        if failed && run.mode.applies() {
            break;
        }
    }
    if first_failure.is_some() {
        return first_failure.map_or(Ok(()), Err);
    }

    ctx.progress.step("cleanup");
    let started = Instant::now();
    let steps: Vec<Step> = OWN_FILES.iter().map(|p| remove_tree(p)).collect();
    let status = match converge::converge_steps(ctx, "cleanup", steps, hf.container, run.mode).await
    {
        Ok(report) => Status::Ran(report),
        Err(e) => Status::Failed(crate::secret::redact(&format!("{e:#}"))),
    };
    let failed = match &status {
        Status::Failed(msg) => Some(("cleanup", msg.clone())),
        _ => None,
    };
    outcome.stages.push(StageOutcome {
        name: "cleanup",
        status,
        notes: Vec::new(),
        elapsed: started.elapsed(),
    });
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn remove_tree(path: &str) -> Step {
    Step::Command {
        run: format!("rm -rf {}", quote(path)),
        guard: format!("test ! -e {} && test ! -L {}", quote(path), quote(path)),
        undo: None,
        rerun_on: Vec::new(),
    }
}

/// Drops the host's checkpoints, here and on the host, before anything is undone: a reset
/// that stops half way must not leave checkpoints that make the next install skip a stage
/// it already took back.
async fn forget(run: &RunCtx, ctx: &HostCtx) -> anyhow::Result<()> {
    let out = ctx
        .run(Command::new(format!("rm -f {}", quote(remote::JOURNAL))).sudo(true))
        .await?;
    if !out.success() {
        anyhow::bail!(
            "cannot remove the host journal {}: {}",
            remote::JOURNAL,
            out.stderr_str().trim()
        );
    }
    if let (Some(path), Ok(mut j)) = (&run.journal_path, run.journal.lock()) {
        j.forget(&ctx.host.name);
        j.save(path)
            .with_context(|| format!("saving the journal {}", path.display()))?;
    }
    Ok(())
}
