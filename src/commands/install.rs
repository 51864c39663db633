//! `gpuctl install`: converge every host stage by stage, resuming from the journal.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::cli::InstallArgs;
use crate::converge::Mode;
use crate::exit::BadInput;
use crate::fleet::Progress;
use crate::install::{self, RunOptions, Selection, report};
use crate::transport::shell::quote;

use super::connect::open_fleet;

pub async fn run(args: &InstallArgs) -> anyhow::Result<()> {
    let selection = Selection {
        only: args.only.clone(),
        skip: args.skip.clone(),
        from: args.from.clone(),
        force: args.force.clone(),
        verify: args.verify,
    };
    // Bad stage names are bad input before anything else happens.
    install::select::select(&crate::stages::names(), &selection)?;
    let (inv, fleet) = open_fleet(&args.connect, Progress::detect())?;
    let bundle = install::load_bundle(&inv, &selection).await?;
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    };
    if mode.applies() && !args.yes {
        confirm(&format!(
            "install on {} host(s) of cluster {}?",
            fleet.hosts().len(),
            inv.cluster.name
        ))?;
    }
    let result = install::run(
        inv,
        &fleet,
        RunOptions {
            selection,
            mode,
            inventory_arg: inventory_arg(args),
            bundle,
            reset: false,
        },
    )
    .await?;

    print!("{}", report::stages(&result, args.dry_run));
    println!();
    print!("{}", report::table(&result));
    println!("{}", report::total(&result));
    if result.failed() > 0 {
        println!("resume with: {}", resume_command(args));
        println!("logs: {}", result.log_dir.display());
        let failures: Vec<String> = result
            .rows
            .iter()
            .filter_map(|r| {
                r.failure
                    .as_ref()
                    .map(|(stage, msg)| format!("  {} ({stage}): {}", r.host, first_line(msg)))
            })
            .collect();
        eprintln!("{}", failures.join("\n"));
        return Err(crate::exit::HostsFailed {
            failed: result.failed(),
            total: result.rows.len(),
        }
        .into());
    }
    Ok(())
}

fn inventory_arg(args: &InstallArgs) -> String {
    format!(
        "--inventory {}",
        quote(&args.connect.inventory.inventory.display().to_string())
    )
}

/// The same install again, minus what only made sense once (`--force`, `--verify`,
/// `--dry-run`): the journal makes it pick up where each host stopped.
pub fn resume_command(args: &InstallArgs) -> String {
    let mut cmd = format!("gpuctl install {}", inventory_arg(args));
    let c = &args.connect;
    if let Some(hosts) = &c.hosts {
        cmd.push_str(&format!(" --hosts {}", quote(hosts)));
    }
    if !args.only.is_empty() {
        cmd.push_str(&format!(" --only {}", args.only.join(",")));
    }
    if let Some(from) = &args.from {
        cmd.push_str(&format!(" --from {from}"));
    }
    if !args.skip.is_empty() {
        cmd.push_str(&format!(" --skip {}", args.skip.join(",")));
    }
    if c.concurrency != 32 {
        cmd.push_str(&format!(" --concurrency {}", c.concurrency));
    }
    if c.accept_new_host_keys {
        cmd.push_str(" --accept-new-host-keys");
    }
    if args.yes {
        cmd.push_str(" --yes");
    }
    cmd
}

/// Asks `question` before changing hosts; without a terminal, `--yes` must say so.
pub fn confirm(question: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let command = question.split_whitespace().next().unwrap_or("this command");
        return Err(BadInput(format!(
            "{command} changes hosts and standard input is not a terminal to confirm it: pass \
             --yes (or see what would change first with --dry-run)"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(BadInput("not confirmed; nothing was changed".into()).into())
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
