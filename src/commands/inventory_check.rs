//! `gpuctl inventory check`: validate and print the resolved hosts table.

use crate::cli::InventoryArgs;

pub fn run(_args: &InventoryArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
