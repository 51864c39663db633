//! The stages of `gpuctl install`, one per file, in the order they run.
//!
//! Each is a [`Stage`]: a name, a scope and a pure `plan` from the inventory and one
//! host's facts to Ops. Only host-scoped stages exist so far; cluster-scoped ones (run
//! through `kubectl` on the first server) join the list when their Ops do.

pub mod facts;
pub mod os;
pub mod preflight;

use crate::plan::Stage;

/// Every stage, in order.
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(facts::FactsStage),
        Box::new(preflight::Preflight),
        Box::new(os::Os),
    ]
}

/// The stage names, in order (for flags and messages).
pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name()).collect()
}

#[cfg(test)]
pub(crate) mod sample;
