//! The stages of `gpuctl install`, one per file, in the order they run.
//!
//! Each is a [`Stage`]: a name, a scope and a pure `plan` from the inventory and one
//! host's facts to Ops. Only host-scoped stages exist so far; cluster-scoped ones (run
//! through `kubectl` on the first server) join the list when their Ops do.

pub mod facts;
pub mod os;
pub mod packages;
pub mod preflight;
pub mod runtime;

use std::sync::Arc;

use crate::bundle::Bundle;
use crate::plan::Stage;

/// Every stage, in order. `bundle`: the run's verified bundle, for the stages that send
/// its artifacts (`None` when the inventory names none or no selected stage needs it).
pub fn all(bundle: Option<Arc<Bundle>>) -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(facts::FactsStage),
        Box::new(preflight::Preflight),
        Box::new(os::Os),
        Box::new(packages::Packages { bundle }),
        Box::new(runtime::Runtime),
    ]
}

/// The stage names, in order (for flags and messages).
pub fn names() -> Vec<&'static str> {
    all(None).iter().map(|s| s.name()).collect()
}

/// The stages that send files of the bundle, and the part of it each sends: the bundle is
/// loaded and those files verified before any host is touched, when one of them runs.
pub const BUNDLE_USERS: [(&str, &str); 1] = [("packages", "packages/")];

#[cfg(test)]
pub(crate) mod sample;
