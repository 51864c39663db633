//! `gpuctl ping`: connect to every host, find how it becomes root, and print its facts.

use serde::Serialize;

use crate::cli::PingArgs;
use crate::facts::{self, Facts};
use crate::fleet::{Progress, describe};
use crate::table::Table;
use crate::transport::{Command, SudoMode};

use super::connect::open_fleet;

#[derive(Serialize)]
struct HostFacts {
    host: String,
    address: String,
    sudo: SudoMode,
    facts: Facts,
}

pub async fn run(args: &PingArgs) -> anyhow::Result<()> {
    let progress = if args.json {
        Progress::Quiet
    } else {
        Progress::detect()
    };
    let (_inv, fleet) = open_fleet(&args.connect, progress)?;
    let report = fleet
        .run(|ctx| async move {
            ctx.progress.step("gathering facts");
            let out = ctx.run(Command::new(facts::SCRIPT)).await?;
            if !out.success() {
                anyhow::bail!(
                    "the facts script exited with {:?}: {}",
                    out.status,
                    out.stderr_str().trim()
                );
            }
            Ok(HostFacts {
                host: ctx.host.name.clone(),
                address: describe(&ctx.host),
                sudo: ctx.conn.sudo_mode(),
                facts: Facts::parse(&out.stdout_str()),
            })
        })
        .await;

    let found: Vec<&HostFacts> = report
        .results
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        let mut table = Table::new([
            "HOST", "ADDRESS", "SUDO", "OS", "KERNEL", "ARCH", "CPUS", "MEMORY", "GPUS",
        ]);
        for h in &found {
            let f = &h.facts;
            table.row([
                h.host.clone(),
                h.address.clone(),
                sudo_word(h.sudo).to_string(),
                f.os_name.clone(),
                f.kernel.clone(),
                f.arch.clone(),
                f.cpus.to_string(),
                format!("{:.1} GiB", f.memory_mib as f64 / 1024.0),
                f.gpu_summary(),
            ]);
        }
        print!("{}", table.render());
    }
    report.check()?;
    Ok(())
}

fn sudo_word(mode: SudoMode) -> &'static str {
    match mode {
        SudoMode::Root => "root",
        SudoMode::NoPassword => "nopasswd",
        SudoMode::Password => "password",
        SudoMode::Unavailable => "NONE",
    }
}
