//! Tests of inventory loading against the fixture files in `tests/fixtures/inventory/`.
//!
//! Fixtures never depend on the machine running the tests: [`opts`] points home at a
//! fixture directory with placeholder keys, ignores the real `~/.ssh/config` and fixes the
//! login name.

mod ansible;
mod docs;
mod fixtures;
mod ssh;

use std::path::{Path, PathBuf};

use super::{Inventory, InventoryError, LoadOptions, Problem, load};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
}

pub fn opts() -> LoadOptions {
    LoadOptions {
        no_ssh_config: true,
        home: Some(fixture_dir().join("home")),
        user: Some("tester".into()),
        ..LoadOptions::default()
    }
}

/// A problem without its file name: `12:7: hosts[1]...`.
pub fn short(p: &Problem) -> String {
    let full = p.to_string();
    full.strip_prefix(&format!("{}:", p.file))
        .unwrap_or(&full)
        .to_string()
}

pub fn load_ok(path: &Path, opts: &LoadOptions) -> Inventory {
    load(path, opts).unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()))
}

pub fn load_err(path: &Path, opts: &LoadOptions) -> InventoryError {
    match load(path, opts) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e,
    }
}

/// Writes `text` as an inventory in a fresh temp dir and loads it.
pub fn load_text_file(text: &str, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("inv.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
    load(&path, opts)
}
