//! `gpuctl copy SRC DEST`: put one local file on all or some hosts, like `pdcp`, but
//! atomic (a reader never sees half a file), verified by sha256 on each host, and resumed
//! where a broken transfer stopped.

use std::sync::Arc;

use crate::cli::CopyArgs;
use crate::exit::BadInput;
use crate::fleet::Progress;
use crate::table::Table;
use crate::transport::{PutOptions, PutReport};

use super::connect::open_fleet;

pub async fn run(args: &CopyArgs) -> anyhow::Result<()> {
    let meta = std::fs::metadata(&args.src).map_err(|e| {
        BadInput(format!(
            "cannot read {}: {e}; give an existing local file",
            args.src.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(BadInput(format!("{} is not a regular file", args.src.display())).into());
    }
    if !args.dest.starts_with('/') {
        return Err(BadInput(format!(
            "destination `{}` must be an absolute path on the hosts, e.g. /data/{}",
            args.dest,
            args.src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
        .into());
    }
    // Every put starts by hashing the file (once per process, see transport::sha256_file):
    // begun now, the hash runs while the SSH handshakes do instead of after them. Its
    // result is read through the same cache, so an error here surfaces there.
    let early = args.src.clone();
    tokio::spawn(async move { crate::transport::sha256_file(&early).await });
    let (_inv, fleet) = open_fleet(&args.connect, Progress::detect())?;
    let src = Arc::new(args.src.clone());
    let dest = Arc::new(args.dest.clone());
    let opts = PutOptions {
        mode: args.mode,
        owner: args.owner.clone(),
        sudo: args.sudo,
        progress: None,
        stall_timeout: None,
    };
    let report = fleet
        .run(move |ctx| {
            let (src, dest, opts) = (Arc::clone(&src), Arc::clone(&dest), opts.clone());
            async move { Ok(ctx.put(&src, &dest, &opts).await?) }
        })
        .await;

    let mut table = Table::new(["HOST", "RESULT", "SENT", "SHA256"]);
    for result in &report.results {
        if let Ok(r) = &result.outcome {
            table.row([
                result.host.clone(),
                outcome_word(r).to_string(),
                format!("{} bytes", r.bytes_sent),
                r.sha256.clone(),
            ]);
        }
    }
    print!("{}", table.render());
    report.check()?;
    Ok(())
}

fn outcome_word(r: &PutReport) -> &'static str {
    if r.unchanged {
        "unchanged"
    } else if r.bytes_sent < r.bytes_total {
        "resumed"
    } else {
        "copied"
    }
}
