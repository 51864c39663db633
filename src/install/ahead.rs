//! Probing ahead: a host's later stages are probed in the same round trip as the current
//! one (and again at the end of an apply script that changed the host), so a run over hosts
//! that are in sync costs one probe round trip per host, not one per stage.
//!
//! Answers hold only while nothing changes the host: any apply makes them stale unless it
//! probed again itself. A later stage is probed ahead only when it plans on the same facts:
//! the first stage that waits for another host (what it is handed changes its plan) ends the
//! look ahead, and its answers are matched to its Ops by digest when its turn comes.

use std::collections::HashMap;

use super::host::{RunCtx, done_since};
use super::select::Selected;
use crate::converge::{self, probe::Now, step::Step};
use crate::fleet::HostCtx;
use crate::plan::{HostFacts, Stage, digest::digest};

/// A later stage whose steps are probed ahead of its turn.
pub struct Later {
    pub name: &'static str,
    pub digest: String,
    pub steps: Vec<Step>,
}

/// Probe answers for later stages of this host, taken after its last change: a stage
/// that finds its answers here sends no probe of its own.
#[derive(Default)]
pub struct Lookahead {
    answers: HashMap<&'static str, (String, Vec<Now>)>,
}

impl Lookahead {
    /// The answers for this stage, if they were probed for the same Ops.
    pub fn take(&mut self, name: &str, digest: &str) -> Option<Vec<Now>> {
        self.answers
            .remove(name)
            .filter(|(d, _)| d == digest)
            .map(|(_, now)| now)
    }

    pub fn learn(&mut self, learned: converge::Ahead, later: &[Later]) {
        match learned {
            converge::Ahead::Fresh(mut now) => {
                self.answers.clear();
                for l in later {
                    let rest = now.split_off(l.steps.len().min(now.len()));
                    let theirs = std::mem::replace(&mut now, rest);
                    self.answers.insert(l.name, (l.digest.clone(), theirs));
                }
            }
            converge::Ahead::Unchanged => {}
            converge::Ahead::Stale => self.answers.clear(),
        }
    }
}

/// The later stages that can be probed now: planned on the same facts, up to the first
/// that waits for another host (what it is handed changes its plan) or cannot plan;
/// stages that will be skipped as done need no probe.
pub fn plan_later(
    run: &RunCtx,
    ctx: &HostCtx,
    hf: &HostFacts,
    later: &[(&Selected, &dyn Stage)],
) -> Vec<Later> {
    let mut out = Vec::new();
    for &(sel, stage) in later {
        if !stage.waits_for(&run.inv, &hf.host).is_empty() {
            break;
        }
        let Ok(ops) = stage.plan(&run.inv, hf) else {
            break;
        };
        let d = digest(&ops);
        if done_since(run, &ctx.host.name, sel, stage.checkpointed(), &d).is_some() {
            continue;
        }
        let steps = converge::step::lower(sel.name, &ops);
        if !steps.is_empty() {
            out.push(Later {
                name: sel.name,
                digest: d,
                steps,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(name: &'static str, digest: &str, n: usize) -> Later {
        Later {
            name,
            digest: digest.into(),
            steps: (0..n)
                .map(|i| Step::LiveModule {
                    name: format!("m{i}"),
                })
                .collect(),
        }
    }

    fn loaded(loaded: bool) -> Now {
        Now::Module {
            loaded,
            loadable: true,
        }
    }

    #[test]
    fn fresh_answers_are_cut_per_stage_and_matched_by_digest() {
        let later = [later("packages", "d1", 1), later("runtime", "d2", 2)];
        let mut ahead = Lookahead::default();
        ahead.learn(
            converge::Ahead::Fresh(vec![loaded(true), loaded(false), loaded(true)]),
            &later,
        );
        // Other Ops than those probed: no answers, the stage probes for itself.
        assert_eq!(ahead.take("packages", "other"), None);
        ahead.learn(
            converge::Ahead::Fresh(vec![loaded(true), loaded(false), loaded(true)]),
            &later,
        );
        assert_eq!(ahead.take("packages", "d1"), Some(vec![loaded(true)]));
        // A stage that changed nothing leaves the rest as they were.
        ahead.learn(converge::Ahead::Unchanged, &later[1..]);
        assert_eq!(
            ahead.take("runtime", "d2"),
            Some(vec![loaded(false), loaded(true)])
        );
        assert_eq!(ahead.take("runtime", "d2"), None);
    }

    #[test]
    fn a_change_that_was_not_probed_again_drops_every_answer() {
        let later = [later("packages", "d1", 1)];
        let mut ahead = Lookahead::default();
        ahead.learn(converge::Ahead::Fresh(vec![loaded(true)]), &later);
        ahead.learn(converge::Ahead::Stale, &later);
        assert_eq!(ahead.take("packages", "d1"), None);
    }
}
