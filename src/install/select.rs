//! Which stages a run covers, from `--only`, `--skip`, `--from`, `--force` and `--verify`.
//!
//! `facts` always runs: it is the first round trip to every host, costs nothing extra and
//! every other stage plans from its answers, so asking to skip it is an error rather than
//! something silently ignored.

use crate::exit::BadInput;

/// The flags as given.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub from: Option<String>,
    pub force: Vec<String>,
    /// Probe stages even when their checkpoint says done (drift repair).
    pub verify: bool,
}

/// One stage of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// Index into the list of all stages.
    pub index: usize,
    pub name: &'static str,
    /// Ignore the checkpoint: probe (and apply) even when done.
    pub ignore_checkpoint: bool,
}

/// The stages to run, in order, or an error naming the unknown stage and the known ones.
pub fn select(names: &[&'static str], sel: &Selection) -> Result<Vec<Selected>, BadInput> {
    let check = |flag: &str, given: &[String]| -> Result<(), BadInput> {
        for g in given {
            if !names.contains(&g.as_str()) {
                return Err(BadInput(format!(
                    "{flag} {g}: there is no stage {g:?}; the stages are {}",
                    names.join(", ")
                )));
            }
        }
        Ok(())
    };
    check("--only", &sel.only)?;
    check("--skip", &sel.skip)?;
    check("--force", &sel.force)?;
    check("--from", sel.from.as_slice())?;
    if sel.skip.iter().any(|s| s == "facts") {
        return Err(BadInput(
            "--skip facts: facts cannot be skipped, every other stage plans from its answers \
             (it changes nothing and costs no extra round trip)"
                .into(),
        ));
    }
    let from = sel
        .from
        .as_ref()
        .and_then(|f| names.iter().position(|n| n == f))
        .unwrap_or(0);
    let mut out = Vec::new();
    for (index, &name) in names.iter().enumerate() {
        let wanted = if name == "facts" {
            true
        } else if !sel.only.is_empty() {
            sel.only.iter().any(|o| o == name)
        } else {
            index >= from
        };
        if !wanted || sel.skip.iter().any(|s| s == name) {
            continue;
        }
        out.push(Selected {
            index,
            name,
            ignore_checkpoint: sel.verify || sel.force.iter().any(|f| f == name),
        });
    }
    for f in &sel.force {
        if !out.iter().any(|s| s.name == f) {
            return Err(BadInput(format!(
                "--force {f}: that stage is not part of this run (see --only, --skip, --from)"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["facts", "preflight", "os", "runtime"];

    fn names_of(sel: &Selection) -> Vec<&'static str> {
        select(&NAMES, sel)
            .unwrap()
            .iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn only_skip_and_from_pick_stages_and_facts_always_runs() {
        assert_eq!(names_of(&Selection::default()), NAMES);
        let only = Selection {
            only: vec!["os".into()],
            ..Selection::default()
        };
        assert_eq!(names_of(&only), ["facts", "os"]);
        let from = Selection {
            from: Some("os".into()),
            skip: vec!["runtime".into()],
            ..Selection::default()
        };
        assert_eq!(names_of(&from), ["facts", "os"]);
    }

    #[test]
    fn force_and_verify_ignore_checkpoints() {
        let sel = Selection {
            force: vec!["os".into()],
            ..Selection::default()
        };
        let s = select(&NAMES, &sel).unwrap();
        assert!(s.iter().all(|s| s.ignore_checkpoint == (s.name == "os")));
        let sel = Selection {
            verify: true,
            ..Selection::default()
        };
        assert!(
            select(&NAMES, &sel)
                .unwrap()
                .iter()
                .all(|s| s.ignore_checkpoint)
        );
    }

    #[test]
    fn unknown_or_impossible_stages_are_bad_input() {
        let err = select(
            &NAMES,
            &Selection {
                only: vec!["oss".into()],
                ..Selection::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "--only oss: there is no stage \"oss\"; the stages are facts, preflight, os, runtime"
        );
        let err = select(
            &NAMES,
            &Selection {
                skip: vec!["facts".into()],
                ..Selection::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot be skipped"));
        let err = select(
            &NAMES,
            &Selection {
                only: vec!["os".into()],
                force: vec!["runtime".into()],
                ..Selection::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("not part of this run"));
    }
}
