//! Plan: stages are pure functions from the inventory and one host's facts to the state
//! that host should be in, written as a short list of typed [`Op`]s.
//!
//! A stage never talks to a host. That single rule is what gives us `plan`, `--dry-run`,
//! idempotent re-runs, checkpoint digests ([`digest`]) and unit tests without a network:
//! the converge executor (`crate::converge`) is the only code that turns Ops into probes
//! and changes.

pub mod digest;
mod finish;
mod op;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use finish::{Fetch, Finish, Wait};
pub use op::{LineState, Op, Undo};

use crate::facts::Facts;
use crate::inventory::{Host, Inventory};
use crate::secret::Secret;
use crate::transport::SudoMode;

/// Where a stage's Ops run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// On every host, each host independently.
    Host,
    /// Once for the cluster, through `kubectl` on the first server.
    Cluster,
}

/// One stage of `gpuctl install`. Stages live one per file under `src/stages/`.
pub trait Stage: Send + Sync {
    /// The name used in flags (`--only os`), the journal and output.
    fn name(&self) -> &'static str;
    fn scope(&self) -> Scope;
    /// What this stage wants on `host`. Pure: no I/O, same input → same Ops.
    ///
    /// An error means the host cannot go on (preflight lists every failed check in it).
    fn plan(&self, inv: &Inventory, host: &HostFacts) -> anyhow::Result<Vec<Op>>;
    /// Findings worth telling the admin that do not stop the stage. Pure, like `plan`.
    fn notes(&self, _inv: &Inventory, _host: &HostFacts) -> Vec<String> {
        Vec::new()
    }
    /// Whether a successful run is remembered and skipped next time while its Ops are the
    /// same. Stages that only read (facts, preflight) run every time: they cost no extra
    /// round trip and their answer may have changed.
    fn checkpointed(&self) -> bool {
        true
    }
    /// Stages of other hosts that must be over before this stage plans on `host` (a
    /// joining node waits for the first server). The engine waits for them while the other
    /// hosts' stages go on, and fails this stage, naming the host, when one of them failed.
    fn waits_for(&self, _inv: &Inventory, _host: &Host) -> Vec<Await> {
        Vec::new()
    }
    /// Files this stage leaves on `host` that the plans of hosts waiting for it need, as
    /// `(key, path)`: read as [`Secret`]s once the stage is done there and handed to the
    /// waiting hosts in [`HostFacts::handed`].
    fn hands_over(&self, _inv: &Inventory, _host: &Host) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Paths the stage's software makes on its own (k3s's data directory), which `reset`
    /// removes after undoing the Ops.
    fn leaves(&self, _inv: &Inventory, _host: &Host) -> Vec<String> {
        Vec::new()
    }
    /// Cluster stages: host stages that must have succeeded on every host of the run before
    /// this one runs.
    fn needs(&self) -> &'static [&'static str] {
        &[]
    }
    /// Cluster stages: what to do on the cluster host after the Ops (`hf`: the first
    /// server's facts, with every node's in [`HostFacts::nodes`]).
    fn finish(&self, _inv: &Inventory, _hf: &HostFacts) -> Option<Finish> {
        None
    }
}

/// One stage of another host that a stage waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Await {
    pub host: String,
    pub stage: &'static str,
    /// Why, for messages: `the first server, whose join token this node needs`.
    pub why: String,
}

/// A value another host's stage handed over (see [`Stage::hands_over`]).
#[derive(Clone, Debug)]
pub enum Handed {
    Value(Secret),
    /// Not there yet, in a dry run: the other host makes it when install runs.
    Later,
    /// It cannot be had, and why.
    Missing(String),
}

/// Everything a stage may know about a host: the inventory entry and what the host said
/// about itself in the `facts` stage.
#[derive(Clone, Debug, Serialize)]
pub struct HostFacts {
    #[serde(skip)]
    pub host: Host,
    pub facts: Facts,
    /// How this login gets root.
    pub sudo: SudoMode,
    /// The host is a container (Docker, Podman, LXC): the kernel, its modules, swap and
    /// most sysctls belong to the machine underneath.
    pub container: bool,
    /// Active swap areas (`/proc/swaps` without its header).
    pub swaps: Vec<String>,
    /// Commands a node needs that are not on `PATH`.
    pub missing_commands: Vec<String>,
    /// `getent hosts $(hostname)` answered.
    pub hostname_resolves: bool,
    /// Disk use of the directories the cluster will fill.
    pub disks: Vec<DiskUse>,
    /// What the stages this stage waits for handed over, by key (filled by the engine just
    /// before the stage plans).
    #[serde(skip)]
    pub handed: BTreeMap<String, Handed>,
    /// Cluster stages: the facts of every host of the run, by name (what each node has,
    /// such as its GPUs). Empty for host stages.
    #[serde(skip)]
    pub nodes: BTreeMap<String, Facts>,
}

/// How full the filesystem holding `path` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskUse {
    pub path: PathBuf,
    /// The mount point that holds it.
    pub mount: String,
    pub used_percent: u32,
}

impl HostFacts {
    /// Facts for a host nothing is known about yet (tests, and `plan` before facts).
    pub fn bare(host: &Host) -> HostFacts {
        HostFacts {
            host: host.clone(),
            facts: Facts::default(),
            sudo: SudoMode::Root,
            container: false,
            swaps: Vec::new(),
            missing_commands: Vec::new(),
            hostname_resolves: true,
            disks: Vec::new(),
            handed: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }
}
