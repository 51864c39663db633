//! `gpuctl ping`: connect, check sudo, print facts.

use crate::cli::PingArgs;

pub async fn run(_args: &PingArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
