//! `gpuctl reset`: undo what install wrote on every host — managed blocks removed, merged
//! JSON keys taken out, files and uploads removed, services stopped and disabled, then
//! gpuctl's own files — asking first unless `--yes`.

use crate::cli::ResetArgs;
use crate::converge::Mode;
use crate::fleet::Progress;
use crate::install::{self, RunOptions, Selection, report};
use crate::transport::shell::quote;

use super::connect::open_fleet;
use super::install::confirm;

pub async fn run(args: &ResetArgs) -> anyhow::Result<()> {
    let (inv, fleet) = open_fleet(&args.connect, Progress::detect())?;
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    };
    if mode.applies() && !args.yes {
        confirm(&format!(
            "reset (undo install on) {} host(s) of cluster {}?",
            fleet.hosts().len(),
            inv.cluster.name
        ))?;
    }
    let inventory_arg = format!(
        "--inventory {}",
        quote(&args.connect.inventory.inventory.display().to_string())
    );
    let result = install::run(
        inv,
        &fleet,
        RunOptions {
            selection: Selection::default(),
            mode,
            inventory_arg: inventory_arg.clone(),
            bundle: None,
            reset: true,
        },
    )
    .await?;
    print!("{}", report::stages(&result, args.dry_run));
    println!();
    print!("{}", report::table(&result));
    println!("{}", report::total(&result));
    if result.failed() > 0 {
        let mut again = format!("gpuctl reset {inventory_arg}");
        if let Some(hosts) = &args.connect.hosts {
            again.push_str(&format!(" --hosts {}", quote(hosts)));
        }
        println!("after fixing the cause, run again: {again} --yes");
        println!("logs: {}", result.log_dir.display());
        return Err(crate::exit::HostsFailed {
            failed: result.failed(),
            total: result.rows.len(),
        }
        .into());
    }
    Ok(())
}
