//! gpuctl: turn bare Linux machines into an offline GPU machine-learning cluster over SSH.
//!
//! Layers, from the top (data flows down, never back up):
//! `cli` → `commands` → `inventory` → `fleet` → `transport`. See `docs/architecture.md`.
//! `registry` (image references and a registry HTTP client) stands beside them, and
//! `mirror` (image bundles, lock files, pull and push) on top of it.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod facts;
pub mod fleet;
pub mod inventory;
pub mod mirror;
pub mod registry;
pub mod secret;
pub mod table;
pub mod transport;
