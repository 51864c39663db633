//! What every command that contacts hosts does first: load and validate the inventory,
//! pick the hosts, load the sudo password once, and build the fleet.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::ConnectArgs;
use crate::fleet::{Fleet, FleetOptions, Progress, select};
use crate::inventory::{self, Inventory, LoadOptions};
use crate::secret::Secret;
use crate::transport::{ConnectOptions, HostKeyPolicy};

/// Loads the inventory and prints its warnings. Nothing has contacted a host yet.
pub fn load_inventory(path: &std::path::Path) -> anyhow::Result<Arc<Inventory>> {
    let inv = inventory::load(path, &LoadOptions::default())?;
    for warning in &inv.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(Arc::new(inv))
}

/// The inventory and a fleet over the hosts `--hosts` selects.
pub fn open_fleet(
    args: &ConnectArgs,
    progress: Progress,
) -> anyhow::Result<(Arc<Inventory>, Fleet)> {
    let inv = load_inventory(&args.inventory.inventory)?;
    let hosts: Vec<_> = select::select(&inv.hosts, args.hosts.as_deref())?
        .into_iter()
        .cloned()
        .collect();
    // Asked once, before any connection, so fifty hosts never prompt fifty times.
    let sudo_password = inv
        .sudo_password
        .as_ref()
        .map(|source| Secret::load(source, "sudo password"))
        .transpose()
        .context("ssh.sudo_password")?;
    let opts = FleetOptions {
        concurrency: usize::from(args.concurrency),
        connect: ConnectOptions {
            host_keys: HostKeyPolicy {
                known_hosts: inv.known_hosts.clone(),
                accept_new: args.accept_new_host_keys,
            },
            sudo_password,
            connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
            ..ConnectOptions::default()
        },
        progress,
    };
    let fleet = Fleet::new(hosts, &inv.state_dir(), opts)?;
    Ok((inv, fleet))
}
