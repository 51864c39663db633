//! One host's part of `gpuctl reset`: the checkpointed stages in reverse order, each
//! planned exactly as install plans it and then undone step by step
//! (`converge::undo`), then gpuctl's own files on the host — the uploaded packages, the
//! host journal — removed, and the host forgotten in the local journal.
//!
//! Stages that only read (facts, preflight) have nothing to undo. Nothing is checkpointed:
//! running reset again probes everything and finds it in sync.

use std::time::Instant;

use super::host::{HostOutcome, RunCtx, StageOutcome, Status};
use crate::converge::step::Step;
use crate::converge::{self, undo};
use crate::fleet::HostCtx;
use crate::plan::HostFacts;
use crate::state::remote;
use crate::transport::shell::quote;

/// What gpuctl keeps on a host besides what the stages write.
const OWN_FILES: [&str; 2] = ["/var/cache/gpuctl", remote::JOURNAL];

pub async fn stages(
    run: &RunCtx,
    ctx: &HostCtx,
    hf: &HostFacts,
    outcome: &mut HostOutcome,
) -> Result<(), (&'static str, String)> {
    let mut first_failure = None;
    for sel in run.selected.iter().rev().filter(|s| s.name != "facts") {
        let Some(stage) = run.stages.get(sel.index).filter(|s| s.checkpointed()) else {
            continue;
        };
        ctx.progress.step(sel.name);
        let started = Instant::now();
        let result = match stage.plan(&run.inv, hf) {
            Ok(ops) => {
                let (steps, notes) = undo::lower(sel.name, &ops);
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
    let steps: Vec<Step> = OWN_FILES
        .iter()
        .map(|p| Step::Command {
            run: format!("rm -rf {}", quote(p)),
            guard: format!("test ! -e {}", quote(p)),
        })
        .collect();
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
    if let Some(f) = failed {
        return Err(f);
    }
    if let (Some(path), Ok(mut j)) = (&run.journal_path, run.journal.lock()) {
        j.forget(&ctx.host.name);
        if let Err(e) = j.save(path) {
            ctx.log
                .note(&format!("cannot save the journal {}: {e}", path.display()));
        }
    }
    Ok(())
}
