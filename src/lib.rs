//! gpuctl: turn bare Linux machines into an offline GPU machine-learning cluster over SSH.
//!
//! Layers, from the top (data flows down, never back up):
//! `cli` → `commands` → `install` (stages from `stages`, planned as `plan` Ops, carried out
//! by `converge`, checkpointed by `state`) → `inventory` → `fleet` → `transport`. See
//! `docs/architecture.md`.
//! `registry` (image references and a registry HTTP client) stands beside them, and
//! `mirror` (image bundles, lock files, pull and push) on top of it.

pub mod bundle;
pub mod cli;
pub mod commands;
pub mod converge;
pub mod doctor;
pub mod exit;
pub mod facts;
pub mod fleet;
pub mod install;
pub mod inventory;
pub mod kube;
pub mod mirror;
pub mod plan;
pub mod registry;
pub mod render;
pub mod secret;
pub mod stages;
pub mod state;
pub mod table;
pub mod tar;
pub mod transport;
