//! The templates compiled into the binary, by their path under `templates/`.
//!
//! A list written out by hand rather than a directory walk at build time: adding a template
//! is a deliberate change, and the unit tests check that this list and `templates/` agree.

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

pub const TEMPLATES: &[(&str, &str)] = templates![
    "dns/coredns-custom.yaml.hbs",
    "dns/hosts.server.hbs",
    "gpu/dcgm-exporter.yaml.hbs",
    "gpu/device-plugin.yaml.hbs",
    "gpu/runtimeclass.yaml.hbs",
    "registry/config.yml.hbs",
    "storage/exports.hbs",
    "storage/local-path.yaml.hbs",
    "storage/nfs-provisioner.yaml.hbs",
    "users/profiles.yaml.hbs",
];
