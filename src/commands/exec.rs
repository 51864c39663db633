//! `gpuctl exec -- CMD`: run a command on all or some hosts, like pdsh, and print the
//! output grouped per host — hosts with identical output and status folded together, as
//! `dshbak -c` does, so fifty identical answers read as one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::ExecArgs;
use crate::fleet::Progress;
use crate::transport::Command;

use super::connect::open_fleet;

/// One host's answer: everything it printed, in arrival order, and its status.
#[derive(Clone, PartialEq, Eq)]
struct Answer {
    output: Vec<u8>,
    status: Option<u32>,
}

pub async fn run(args: &ExecArgs) -> anyhow::Result<()> {
    let script = args.command.join(" ");
    let (_inv, fleet) = open_fleet(&args.connect, Progress::detect())?;
    let sudo = args.sudo;
    let timeout = args.timeout.map(Duration::from_secs);
    let report = fleet
        .run(move |ctx| {
            let script = script.clone();
            async move {
                ctx.progress.step("running");
                let combined = Arc::new(Mutex::new(Vec::new()));
                let sink_buf = Arc::clone(&combined);
                let mut cmd = Command::new(script)
                    .sudo(sudo)
                    .sink(Arc::new(move |_, bytes| {
                        if let Ok(mut buf) = sink_buf.lock() {
                            buf.extend_from_slice(bytes);
                        }
                    }));
                if let Some(t) = timeout {
                    cmd = cmd.timeout(t);
                }
                let out = ctx.run(cmd).await?;
                let output = combined.lock().map(|b| b.clone()).unwrap_or_default();
                Ok(Answer {
                    output,
                    status: out.status,
                })
            }
        })
        .await;

    // Fold hosts with the same answer, keeping inventory order of first appearance.
    let mut groups: Vec<(Vec<String>, Answer)> = Vec::new();
    for result in &report.results {
        if let Ok(answer) = &result.outcome {
            match groups.iter_mut().find(|(_, a)| a == answer) {
                Some((hosts, _)) => hosts.push(result.host.clone()),
                None => groups.push((vec![result.host.clone()], answer.clone())),
            }
        }
    }
    let mut nonzero = Vec::new();
    for (hosts, answer) in &groups {
        let status = match answer.status {
            Some(code) => format!("exit {code}"),
            None => "no exit status".to_string(),
        };
        println!("== {} ({status}) ==", hosts.join(","));
        let text = String::from_utf8_lossy(&answer.output);
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
        if answer.status != Some(0) {
            nonzero.extend(hosts.iter().cloned());
        }
    }
    // Unreachable hosts and non-zero exits both make the run fail; both are listed.
    eprint!("{}", report.failure_summary());
    if !nonzero.is_empty() {
        eprintln!("the command exited non-zero on: {}", nonzero.join(", "));
    }
    let failed = report.failure_count() + nonzero.len();
    if failed > 0 {
        return Err(crate::exit::HostsFailed {
            failed,
            total: report.results.len(),
        }
        .into());
    }
    Ok(())
}
