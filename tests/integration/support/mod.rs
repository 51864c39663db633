//! Helpers shared by the integration tests.

// Each test module uses the part of the helpers it needs, so some go unused in any one build
// configuration.
#![allow(dead_code)]

pub mod fake_registry;
pub mod gpuctl;
pub mod harbor;
pub mod images;
pub mod lab;
pub mod registry;
pub mod tcp_proxy;
