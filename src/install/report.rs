//! What a run prints: per host, each stage with what it changed (or, in a dry run and in
//! `plan`, would change, with diffs), then one table row per host and, when something
//! failed, the exact command that resumes.
//!
//! All of it goes to standard output; progress and the failure summary go to standard
//! error, as for every command.

use std::fmt::Write as _;

use super::{HostRow, RunResult, Status};
use crate::converge::Change;
use crate::table::Table;

/// The per-host, per-stage account. `diffs`: print each change's diff under it.
pub fn stages(result: &RunResult, diffs: bool) -> String {
    let dry = !result.mode.applies();
    let mut out = String::new();
    for row in &result.rows {
        let facts = row
            .outcome
            .stages
            .iter()
            .find(|s| s.name == "facts")
            .and_then(|s| s.notes.first().cloned())
            .unwrap_or_else(|| "not reached".to_string());
        let _ = writeln!(out, "== {} ({facts})", row.host);
        for w in &row.outcome.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        for stage in row.outcome.stages.iter().filter(|s| s.name != "facts") {
            let summary = match &stage.status {
                Status::Skipped { since } => format!("skipped: done since {since}, Ops unchanged"),
                Status::Failed(msg) => format!("FAILED: {}", first_line(msg)),
                Status::Ran(r) if r.steps.is_empty() => "ok".to_string(),
                Status::Ran(r) => {
                    let changed = r.changes();
                    let in_sync = r.steps.len() - changed;
                    match (changed, dry) {
                        (0, _) => format!("in sync ({in_sync} checked)"),
                        (n, true) => format!("{n} to change, {in_sync} in sync"),
                        (n, false) => format!("{n} changed, {in_sync} in sync"),
                    }
                }
            };
            let _ = writeln!(out, "  {:<10} {summary}", stage.name);
            if let Status::Failed(msg) = &stage.status {
                for line in msg.lines().skip(1) {
                    let _ = writeln!(out, "  {:<10} {line}", "");
                }
            }
            if let Status::Ran(r) = &stage.status {
                for step in &r.steps {
                    if let Change::Changed(detail) = &step.change {
                        let _ = writeln!(out, "    ~ {}", step.what);
                        if diffs {
                            for line in detail.lines() {
                                let _ = writeln!(out, "        {line}");
                            }
                        } else if !detail.contains('\n') && !detail.is_empty() {
                            let _ = writeln!(out, "        {detail}");
                        }
                    }
                }
                for step in r.steps.iter() {
                    match (&step.change, &step.warning) {
                        (Change::Refused(detail), Some(w)) => {
                            let _ = writeln!(out, "    ! {}: {detail}; {w}", step.what);
                        }
                        (_, Some(w)) => {
                            let _ = writeln!(out, "    ! {}: {w}", step.what);
                        }
                        _ => {}
                    }
                }
            }
            for note in &stage.notes {
                let _ = writeln!(out, "    note: {note}");
            }
        }
        if let Some((stage, msg)) = &row.failure
            && !row.outcome.stages.iter().any(|s| s.name == stage)
        {
            let _ = writeln!(out, "  {stage:<10} FAILED: {}", first_line(msg));
        }
    }
    for note in &result.notes {
        let _ = writeln!(out, "note: {note}");
    }
    // Every line passes the redactor: a secret that reached a message on its way (a
    // token echoed by a failing command) is masked here too.
    crate::secret::redact(&out)
}

/// Changes made (or to make) on a host.
fn changes(row: &HostRow) -> usize {
    row.outcome
        .stages
        .iter()
        .map(|s| match &s.status {
            Status::Ran(r) => r.changes(),
            _ => 0,
        })
        .sum()
}

/// One row per host: the stage it reached, the result, changes and time.
pub fn table(result: &RunResult) -> String {
    let mut t = Table::new(["HOST", "REACHED", "RESULT", "CHANGES", "TIME"]);
    for row in &result.rows {
        let reached = row
            .failure
            .as_ref()
            .map(|(s, _)| s.clone())
            .or_else(|| row.outcome.stages.last().map(|s| s.name.to_string()))
            .unwrap_or_else(|| "-".into());
        let skipped = row
            .outcome
            .stages
            .iter()
            .filter(|s| matches!(s.status, Status::Skipped { .. }))
            .count();
        let result_word = match (&row.failure, skipped) {
            (Some(_), _) => "FAILED".to_string(),
            (None, 0) => "ok".to_string(),
            (None, n) => format!("ok ({n} skipped)"),
        };
        t.row([
            row.host.clone(),
            reached,
            result_word,
            changes(row).to_string(),
            format!("{:.1}s", row.elapsed.as_secs_f64()),
        ]);
    }
    t.render()
}

/// `3 hosts: 2 ok, 1 failed; 14 changes made`, and ` (interrupted)` after Ctrl-C.
pub fn total(result: &RunResult) -> String {
    let total: usize = result.rows.iter().map(changes).sum();
    let failed = result.failed();
    let verb = if result.mode.applies() {
        "made"
    } else {
        "to make"
    };
    format!(
        "{} host{}: {} ok, {failed} failed; {total} change{} {verb}{}",
        result.rows.len(),
        if result.rows.len() == 1 { "" } else { "s" },
        result.rows.len() - failed,
        if total == 1 { "" } else { "s" },
        if result.interrupted {
            " (interrupted)"
        } else {
            ""
        },
    )
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
