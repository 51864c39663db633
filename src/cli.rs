//! Command-line definitions (clap derive). One variant per command; each calls one
//! function in `commands/`. Only commands that work are listed here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// Turn bare Linux machines into an offline GPU machine-learning cluster over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "gpuctl",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter inventory (or convert an Ansible inventory)
    Init(InitArgs),
    /// Inspect an inventory without contacting any host
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Connect to every host, check sudo and print each host's facts
    Ping(PingArgs),
    /// Run a shell command on all or some hosts, output grouped per host
    Exec(ExecArgs),
    /// Copy a local file to all or some hosts: atomic, sha256-verified, resumable
    Copy(CopyArgs),
    /// Converge every host, stage by stage; resumes by itself from the checkpoint journal
    Install(InstallArgs),
    /// Show what install would change, per host and stage, as diffs (changes nothing)
    Plan(PlanArgs),
    /// Undo what install wrote on every host: managed blocks, files, merged keys, services
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the inventory ("-" for standard output)
    #[arg(long, short, default_value = "inventory.yaml")]
    pub out: PathBuf,
    /// Convert this Ansible inventory (INI or YAML) instead of writing the starter
    #[arg(long, value_name = "FILE")]
    pub from_ansible: Option<PathBuf>,
    /// Overwrite the output file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Validate an inventory and print the resolved hosts table
    Check(InventoryArgs),
}

/// Where the inventory is.
#[derive(Debug, Args, Clone)]
pub struct InventoryArgs {
    /// The inventory file
    #[arg(long, short, env = "GPUCTL_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,
}

/// How to connect to hosts; shared by every command that does.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Only these hosts: comma-separated names or globs (`gpu*`), or roles as `role:worker`
    #[arg(long, value_name = "PATTERN")]
    pub hosts: Option<String>,
    /// How many hosts to work on at once
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Trust and record host keys not yet in known_hosts (a changed key is still refused)
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for each SSH connection
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the facts as JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Run the command as root (through sudo when the login is not root)
    #[arg(long)]
    pub sudo: bool,
    /// Give up on a host after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// The command, after `--`; it runs through `sh -c` on each host
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Write as root (through sudo when the login is not root)
    #[arg(long)]
    pub sudo: bool,
    /// File mode on the hosts, in octal
    #[arg(long, value_parser = parse_mode, value_name = "OCTAL")]
    pub mode: Option<u32>,
    /// Owner on the hosts, as `user:group`
    #[arg(long, value_name = "USER:GROUP")]
    pub owner: Option<String>,
    /// The local file
    pub src: PathBuf,
    /// The absolute path on each host
    pub dest: String,
}

/// `gpuctl install`.
///
/// Stages run in order on every host (facts, preflight, os, packages, runtime). A stage whose Ops are the same
/// as when it last succeeded on a host is skipped; a changed inventory re-runs exactly the
/// stages it changes. A host that fails stops there, the others carry on, and the run ends
/// with a table and the command that resumes. See docs/install.md.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Run only these stages (comma-separated); facts always runs
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "STAGE",
        conflicts_with = "from"
    )]
    pub only: Vec<String>,
    /// Leave these stages out (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub skip: Vec<String>,
    /// Start at this stage (facts still runs first)
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Probe and apply these stages even where their checkpoint says done
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub force: Vec<String>,
    /// Probe every stage even where done, and repair what drifted
    #[arg(long)]
    pub verify: bool,
    /// Probe and show what would change; change nothing, write no journal, take no lock
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when standard input is not a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

/// `gpuctl plan`: every stage probed on every host, changes shown as diffs, nothing written.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `gpuctl reset`: every install stage in reverse, each of its Ops undone (see
/// docs/install.md).
#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Probe and show what would be undone; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when standard input is not a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("`{text}` is not a file mode; write it in octal, e.g. 0644"))
}

/// Parses arguments, runs the command, and turns the result into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::exit::BAD_INPUT
            } else {
                crate::exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(crate::exit::FAILED);
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::exit::report(&e),
    }
}
