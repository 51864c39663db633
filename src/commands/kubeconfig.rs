//! `gpuctl kubeconfig`: fetch the admin kubeconfig from the first server and write it here
//! (see `stages::kubeconfig` for the rewrite, the merge and the 0600 atomic write).

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::{ConnectArgs, KubeconfigArgs};
use crate::exit::BadInput;
use crate::fleet::Progress;
use crate::stages::kubeconfig::{default_path, rewrite, save, server_url};

use super::connect::open_fleet;

pub async fn run(args: &KubeconfigArgs) -> anyhow::Result<()> {
    let inv = super::connect::load_inventory(&args.inventory.inventory)?;
    let Some(first) = inv.servers().next().map(|h| h.name.clone()) else {
        return Err(BadInput("the inventory has no server".into()).into());
    };
    let dest = match (&args.out, args.merge) {
        (Some(out), _) => out.clone(),
        (None, true) => merge_target()?,
        (None, false) => default_path(&inv),
    };
    let connect = ConnectArgs {
        inventory: args.inventory.clone(),
        hosts: Some(first.clone()),
        concurrency: 1,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: args.connect_timeout,
    };
    let (inv, fleet) = open_fleet(&connect, Progress::detect())?;
    let admin = crate::stages::kubeconfig::admin_kubeconfig(&inv);
    let report = fleet
        .run(move |ctx| async move { Ok(ctx.get(admin, true).await?) })
        .await;
    report.check()?;
    let bytes = report
        .results
        .into_iter()
        .next()
        .and_then(|r| r.outcome.ok())
        .context("no answer from the first server")?;
    let server = server_url(&inv);
    let ours = rewrite(&String::from_utf8_lossy(&bytes), &inv.cluster.name, &server)?;
    let change = save(&dest, &ours, args.merge, true)?;
    let what = if change.is_some() {
        if args.merge { "merged into" } else { "wrote" }
    } else {
        "already up to date:"
    };
    println!(
        "{what} {} (mode 0600): context {} → {server}",
        dest.display(),
        inv.cluster.name
    );
    if args.merge {
        println!(
            "use it with: kubectl config use-context {}",
            inv.cluster.name
        );
    } else {
        println!(
            "use it with: kubectl --kubeconfig {} get nodes",
            dest.display()
        );
    }
    Ok(())
}

/// `$KUBECONFIG`'s first file, else `~/.kube/config`: where kubectl looks first.
fn merge_target() -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        BadInput("--merge: neither KUBECONFIG nor HOME is set; name the file with --out".into())
    })?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}
