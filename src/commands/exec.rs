//! `gpuctl exec`: run a command on all or some hosts.

use crate::cli::ExecArgs;

pub async fn run(_args: &ExecArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
