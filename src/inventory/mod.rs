//! Inventory: raw YAML → validated [`Inventory`] with defaults filled and references
//! resolved. Nothing contacts a host before this succeeds.

pub mod model;

use std::path::{Path, PathBuf};

pub use model::*;

/// Every problem found in an inventory, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{path}: invalid inventory")]
pub struct InventoryError {
    pub path: PathBuf,
}

/// Knobs for loading, mostly so tests can point at fixture files.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `~/.ssh/config` to honour; `None` means the user's default.
    pub ssh_config: Option<PathBuf>,
}

/// Reads, validates and resolves an inventory file.
pub fn load(path: &Path, _opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    Err(InventoryError {
        path: path.to_path_buf(),
    })
}
