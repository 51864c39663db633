//! Hosts and `ssh:` blocks (top level, per host, bastion hops) as written.

use super::decode::{
    Fields, boolean, choice, fields, one_or_many, port, secret, string, string_map,
};
use super::model::GpuPresence;
use super::node::{Kind, Node};
use super::problem::{At, Problems};
use super::raw::{ConnectionKind, RawHop, RawHost, RawSsh};
use super::schema::*;

/// An `ssh:` block; `known` says which keys this place allows.
pub fn ssh_block(
    p: &mut Problems,
    node: &Node,
    path: &str,
    known: &[&str],
    hints: &[(&str, &str)],
) -> RawSsh {
    let f = fields(p, node, path, known, hints);
    ssh_settings(p, &f)
}

fn ssh_settings(p: &mut Problems, f: &Fields<'_>) -> RawSsh {
    let identity_files = f.get("identity_file").map(|(n, path)| {
        one_or_many(n, &path)
            .into_iter()
            .filter_map(|(n, path)| string(p, n, &path))
            .collect()
    });
    let bastion = if f.has("bastion") {
        Some(match f.get("bastion") {
            None => Vec::new(),
            Some((n, path)) => one_or_many(n, &path)
                .into_iter()
                .filter_map(|(n, path)| hop(p, n, &path))
                .collect(),
        })
    } else {
        None
    };
    RawSsh {
        user: f.get("user").and_then(|(n, path)| string(p, n, &path)),
        port: f.get("port").and_then(|(n, path)| port(p, n, &path)),
        identity_files,
        identity_passphrase: f
            .get("identity_passphrase")
            .and_then(|(n, path)| secret(p, n, &path)),
        password: f.get("password").and_then(|(n, path)| secret(p, n, &path)),
        agent: f.get("agent").and_then(|(n, path)| boolean(p, n, &path)),
        bastion,
        sudo_password: f
            .get("sudo_password")
            .and_then(|(n, path)| secret(p, n, &path)),
        known_hosts: f
            .get("known_hosts")
            .and_then(|(n, path)| string(p, n, &path)),
    }
}

fn hop(p: &mut Problems, node: &Node, path: &str) -> Option<RawHop> {
    match &node.kind {
        Kind::Scalar { .. } => string(p, node, path).map(RawHop::Host),
        _ => {
            let f = fields(
                p,
                node,
                path,
                HOP_KEYS,
                &[("address", "a bastion's address is written `host:`")],
            );
            let ssh = ssh_settings(p, &f);
            let host = f
                .require(p, "host", "js.example.org")
                .and_then(|(n, path)| string(p, n, &path))?;
            Some(RawHop::Outside { host, ssh })
        }
    }
}

pub fn host(p: &mut Problems, node: &Node, path: &str) -> RawHost {
    let f = fields(p, node, path, HOST_KEYS, HOST_HINTS);
    let connection = f.get("connection").and_then(|(n, path)| {
        choice(
            p,
            n,
            &path,
            "connection",
            &[
                ("ssh", ConnectionKind::Ssh),
                ("local", ConnectionKind::Local),
            ],
            &[],
        )
    });
    let is_local = matches!(&connection, Some(c) if c.v == ConnectionKind::Local);
    let address = if is_local {
        f.get("address")
    } else {
        f.require(p, "address", "10.0.0.5")
    }
    .and_then(|(n, path)| string(p, n, &path));
    let mut roles_complete = true;
    let mut roles = Vec::new();
    if let Some((n, path)) = f.require(p, "roles", "[worker]") {
        let items = one_or_many(n, &path);
        if items.is_empty() {
            p.error_hint(
                &At::new(n.pos, path.clone()),
                "a host needs at least one role",
                "write e.g. `roles: [worker]`; roles are server, worker, nfs, registry",
            );
        }
        for (n, path) in items {
            match choice(p, n, &path, "role", ROLES, ROLE_ALIASES) {
                Some(r) => roles.push(r),
                None => roles_complete = false,
            }
        }
    } else {
        roles_complete = false;
    }
    let gpu = f.get("gpu").and_then(|(n, path)| {
        choice(
            p,
            n,
            &path,
            "gpu setting",
            &[
                ("true", GpuPresence::Yes),
                ("false", GpuPresence::No),
                ("auto", GpuPresence::Auto),
            ],
            &[("yes", "true"), ("no", "false"), ("detect", "auto")],
        )
    });
    let taints = f
        .get("taints")
        .map(|(n, path)| {
            one_or_many(n, &path)
                .into_iter()
                .filter_map(|(n, path)| string(p, n, &path))
                .collect()
        })
        .unwrap_or_default();
    RawHost {
        at: f.at.clone(),
        name: f
            .require(p, "name", "node1")
            .and_then(|(n, path)| string(p, n, &path)),
        address,
        connection,
        internal_address: f
            .get("internal_address")
            .and_then(|(n, path)| string(p, n, &path)),
        ssh: f
            .get("ssh")
            .map(|(n, path)| ssh_block(p, n, &path, HOST_SSH_KEYS, HOST_SSH_HINTS))
            .unwrap_or_default(),
        roles,
        roles_complete,
        gpu,
        labels: f
            .get("labels")
            .map(|(n, path)| string_map(p, n, &path))
            .unwrap_or_default(),
        taints,
    }
}
