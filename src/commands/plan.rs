//! `gpuctl plan`: what `install` would change, per host and stage, as diffs. Every stage
//! is probed (checkpoints are not trusted, so drift shows too); nothing is written, no
//! lock is taken. Exits 0 whether or not there are changes; 1 when a host could not be
//! probed.

use crate::cli::PlanArgs;
use crate::converge::Mode;
use crate::fleet::Progress;
use crate::install::{self, RunOptions, Selection, report};
use crate::transport::shell::quote;

use super::connect::open_fleet;

pub async fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let selection = Selection {
        only: args.only.clone(),
        skip: args.skip.clone(),
        verify: true,
        ..Selection::default()
    };
    install::select::select(&crate::stages::names(), &selection)?;
    let (inv, fleet) = open_fleet(&args.connect, Progress::detect())?;
    let bundle = install::load_bundle(&inv, &selection).await?;
    let result = install::run(
        inv,
        &fleet,
        RunOptions {
            selection,
            mode: Mode::DryRun,
            inventory_arg: format!(
                "--inventory {}",
                quote(&args.connect.inventory.inventory.display().to_string())
            ),
            bundle,
            reset: false,
        },
    )
    .await?;
    print!("{}", report::stages(&result, true));
    println!();
    println!("{}", report::total(&result));
    if result.failed() > 0 {
        return Err(crate::exit::HostsFailed {
            failed: result.failed(),
            total: result.rows.len(),
        }
        .into());
    }
    Ok(())
}
