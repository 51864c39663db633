//! `gpuctl init`: a commented starter inventory, or one converted from Ansible.

use crate::cli::InitArgs;

pub fn run(_args: &InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
