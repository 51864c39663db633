//! gpuctl's integration tests: one binary, one module per topic, helpers in `support`.

mod cli;
mod converge;
mod doctor;
mod install;
mod kubernetes;
mod lab_smoke;
mod mirror;
mod registry;
mod stages;
mod support;
mod transport;
