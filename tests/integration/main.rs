//! gpuctl's integration tests: one binary, one module per topic, helpers in `support`.

mod bundle;
mod cli;
mod cluster_stages;
mod converge;
mod doctor;
mod doctor_host;
mod install;
mod k3s_fixture;
mod kubeadm;
mod kubernetes;
mod lab_smoke;
mod mirror;
mod registry;
mod render;
mod stages;
mod support;
mod transport;
