//! The vocabulary of an inventory file: the keys each mapping accepts, the role names,
//! and hints for keys and words people bring from other installers. `docs/inventory.md`
//! is checked against these lists by a test.

use super::model::Role;

pub const TOP_KEYS: &[&str] = &[
    "cluster", "ssh", "bundle", "registry", "dns", "storage", "gpu", "stack", "users", "hosts",
];
pub const CLUSTER_KEYS: &[&str] = &[
    "name",
    "distribution",
    "version",
    "api_endpoint",
    "pod_cidr",
    "service_cidr",
    "cni",
    "data_dir",
    "container_runtime",
];
/// Keys of an `ssh:` block on a host (and of a bastion hop, with `host`).
pub const HOST_SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity_file",
    "identity_passphrase",
    "password",
    "agent",
    "bastion",
];
/// The top-level `ssh:` block also holds what is shared by every host.
pub const TOP_SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity_file",
    "identity_passphrase",
    "password",
    "agent",
    "bastion",
    "sudo_password",
    "known_hosts",
];
pub const HOP_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "identity_file",
    "identity_passphrase",
    "password",
    "agent",
];
pub const HOST_KEYS: &[&str] = &[
    "name",
    "address",
    "connection",
    "internal_address",
    "ssh",
    "roles",
    "gpu",
    "labels",
    "taints",
];
pub const REGISTRY_KEYS: &[&str] = &["mirror", "insecure", "ca_file", "credentials"];
pub const CREDENTIALS_KEYS: &[&str] = &["username", "password"];
pub const DNS_KEYS: &[&str] = &["hosts"];
pub const DNS_HOST_KEYS: &[&str] = &["ip", "names"];
pub const STORAGE_KEYS: &[&str] = &["local_path", "nfs"];
pub const LOCAL_PATH_KEYS: &[&str] = &["path", "default"];
pub const NFS_KEYS: &[&str] = &["server", "export", "provisioner", "default"];
pub const GPU_KEYS: &[&str] = &["device_plugin", "runtime_class", "dcgm_exporter"];
pub const STACK_KEYS: &[&str] = &["components", "timeout", "tls"];
pub const STACK_TLS_KEYS: &[&str] = &["cert", "key", "name", "namespace"];
pub const USERS_KEYS: &[&str] = &["tiers", "list"];
pub const SECRET_KEYS: &[&str] = &["env", "prompt"];
pub const TIER_KEYS: &[&str] = &["cpu", "memory", "gpu", "storage", "pvcs"];
pub const USER_KEYS: &[&str] = &["name", "email", "tier", "data_path"];

/// Every mapping of the file and its keys, under the heading `docs/inventory.md` gives
/// it; a test checks the document has a row for every key and no other.
#[cfg(test)]
pub const SECTIONS: &[(&str, &[&str])] = &[
    ("Top level", TOP_KEYS),
    ("`cluster`", CLUSTER_KEYS),
    ("`ssh`", TOP_SSH_KEYS),
    ("`hosts[].ssh`", HOST_SSH_KEYS),
    ("A bastion hop", HOP_KEYS),
    ("Secrets", SECRET_KEYS),
    ("`registry`", REGISTRY_KEYS),
    ("`registry.credentials`", CREDENTIALS_KEYS),
    ("`dns`", DNS_KEYS),
    ("`dns.hosts[]`", DNS_HOST_KEYS),
    ("`storage`", STORAGE_KEYS),
    ("`storage.local_path`", LOCAL_PATH_KEYS),
    ("`storage.nfs`", NFS_KEYS),
    ("`gpu`", GPU_KEYS),
    ("`stack`", STACK_KEYS),
    ("`stack.tls`", STACK_TLS_KEYS),
    ("`users`", USERS_KEYS),
    ("`users.tiers.NAME`", TIER_KEYS),
    ("`users.list[]`", USER_KEYS),
    ("`hosts[]`", HOST_KEYS),
];

pub const ROLES: &[(&str, Role)] = &[
    ("server", Role::Server),
    ("worker", Role::Worker),
    ("nfs", Role::Nfs),
    ("registry", Role::Registry),
];
/// Role names from other installers, and ours for them.
pub const ROLE_ALIASES: &[(&str, &str)] = &[
    ("master", "server"),
    ("control-plane", "server"),
    ("controlplane", "server"),
    ("control_plane", "server"),
    ("controller", "server"),
    ("kube_control_plane", "server"),
    ("etcd", "server"),
    ("node", "worker"),
    ("agent", "worker"),
    ("kube_node", "worker"),
    ("nas", "nfs"),
];

/// Keys written by habit from other tools, with what to write instead.
pub const HOST_HINTS: &[(&str, &str)] = &[
    (
        "port",
        "the SSH port goes under the host's ssh block: `ssh: { port: 2222 }`",
    ),
    (
        "user",
        "the login user goes under the host's ssh block: `ssh: { user: ops }`",
    ),
    ("ansible_host", "write `address:`"),
    (
        "ip",
        "write `address:` (and `internal_address:` for the node IP)",
    ),
    (
        "hostname",
        "write `name:` for the node name and `address:` for where to reach it",
    ),
    ("role", "write `roles: [server]` (a list)"),
    (
        "identity_file",
        "write it under the host's ssh block: `ssh: { identity_file: ... }`",
    ),
    (
        "bastion",
        "write it under the host's ssh block: `ssh: { bastion: ... }`",
    ),
];
pub const SSH_HINTS: &[(&str, &str)] = &[
    ("key", "write `identity_file:`"),
    ("private_key", "write `identity_file:`"),
    ("key_path", "write `identity_file:`"),
    ("proxy_jump", "write `bastion:`"),
    ("jump", "write `bastion:`"),
];
pub const HOST_SSH_HINTS: &[(&str, &str)] = &[
    (
        "sudo_password",
        "one sudo password is shared by all hosts: set it in the top-level `ssh:` block",
    ),
    (
        "known_hosts",
        "set `known_hosts` in the top-level `ssh:` block",
    ),
    ("key", "write `identity_file:`"),
    ("proxy_jump", "write `bastion:`"),
];
