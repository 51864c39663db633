//! How hosts are reached: precedence of the inventory, `~/.ssh/config` and defaults, and
//! bastion chains.

use std::path::PathBuf;

use super::{fixture_dir, load_ok, load_text_file, opts, short};
use crate::inventory::{Inventory, LoadOptions};
use crate::secret::SecretSource;
use crate::transport::{Endpoint, SshTarget};

fn target<'a>(inv: &'a Inventory, name: &str) -> &'a SshTarget {
    let host = inv
        .hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no host {name}"));
    match &host.endpoint {
        Endpoint::Ssh(t) => t,
        Endpoint::Local => panic!("{name} is local"),
    }
}

fn key(name: &str) -> PathBuf {
    fixture_dir().join("home/.ssh").join(name)
}

fn with_ssh_config() -> LoadOptions {
    LoadOptions {
        no_ssh_config: false,
        ssh_config: Some(fixture_dir().join("ssh/config")),
        ..opts()
    }
}

fn ok(text: &str) -> Inventory {
    load_text_file(text, &opts()).unwrap_or_else(|e| panic!("should load:\n{e}"))
}

#[test]
fn ssh_config_fills_what_the_inventory_does_not_say() {
    let inv = load_ok(
        &fixture_dir().join("ssh/precedence.yaml"),
        &with_ssh_config(),
    );

    let gpu1 = target(&inv, "gpu1");
    assert_eq!(gpu1.host, "10.9.0.11", "HostName from the ssh config");
    assert_eq!(
        gpu1.port, 2200,
        "top-level ssh.port beats Port in the ssh config"
    );
    assert_eq!(gpu1.user, "cfguser", "User from the ssh config");
    assert_eq!(
        gpu1.identity_files,
        [key("cfg_key")],
        "missing IdentityFile lines are skipped"
    );
    assert!(gpu1.jumps.is_empty());
    let internal = inv.hosts[0].internal_address.map(|ip| ip.to_string());
    assert_eq!(
        internal.as_deref(),
        Some("10.9.0.11"),
        "HostName gives the node IP"
    );

    let gpu2 = target(&inv, "gpu2");
    assert_eq!(
        (gpu2.host.as_str(), gpu2.port),
        ("10.9.0.12", 2222),
        "host ssh block wins"
    );
    assert_eq!(gpu2.user, "hostuser");
    assert_eq!(gpu2.jumps.len(), 1, "ProxyJump from the ssh config");
    let jump = &gpu2.jumps[0];
    assert_eq!(jump.display(), "jumper@203.0.113.7:2200");
    assert_eq!(jump.identity_files, [key("bastion_key")]);

    let other = target(&inv, "other");
    assert_eq!(other.user, "fallback", "`Host *` applies");
    assert_eq!(other.port, 2200);
    assert_eq!(
        other.identity_files,
        [key("id_ed25519")],
        "default keys that exist"
    );
}

#[test]
fn top_level_inventory_user_beats_the_ssh_config() {
    let text = "cluster: { name: lab }\nssh: { user: ops }\nhosts:\n  - { name: gpu1, address: lab-gpu1, roles: [server] }\n";
    let inv = load_text_file(text, &with_ssh_config()).unwrap_or_else(|e| panic!("{e}"));
    let t = target(&inv, "gpu1");
    assert_eq!((t.user.as_str(), t.port), ("ops", 2022));
}

#[test]
fn defaults_apply_when_nothing_is_configured() {
    let inv = ok(
        "cluster: { name: lab }\nhosts:\n  - { name: n1, address: 10.0.0.1, roles: [server] }\n",
    );
    let t = target(&inv, "n1");
    assert_eq!(t.display(), "tester@10.0.0.1:22");
    assert_eq!(t.identity_files, [key("id_ed25519")]);
    assert!(t.use_agent);
    assert_eq!(t.password, None);
    assert_eq!(
        inv.known_hosts,
        [
            inv.base_dir.join("known_hosts"),
            fixture_dir().join("home/.ssh/known_hosts")
        ]
    );
}

#[test]
fn explicit_settings_are_expanded_and_carried() {
    let text = "\
cluster: { name: lab }
ssh:
  user: ops
  identity_file: ~/.ssh/cfg_key
  identity_passphrase: { env: KEY_PASS }
  password: { prompt: true }
  agent: false
  sudo_password: { env: GPUCTL_SUDO_PASSWORD }
hosts:
  - { name: n1, address: 10.0.0.1, roles: [server] }
  - { name: n2, address: 10.0.0.2, roles: [worker], ssh: { identity_file: [~/.ssh/bastion_key], agent: true } }
  - { name: me, connection: local, roles: [worker] }
";
    let inv = ok(text);
    let n1 = target(&inv, "n1");
    assert_eq!(n1.identity_files, [key("cfg_key")]);
    assert_eq!(
        n1.identity_passphrase,
        Some(SecretSource::Env {
            env: "KEY_PASS".into()
        })
    );
    assert_eq!(n1.password, Some(SecretSource::Prompt { prompt: true }));
    assert!(!n1.use_agent);
    let n2 = target(&inv, "n2");
    assert_eq!(n2.identity_files, [key("bastion_key")]);
    assert!(n2.use_agent);
    assert_eq!(inv.hosts[2].endpoint, Endpoint::Local);
    assert_eq!(
        inv.sudo_password,
        Some(SecretSource::Env {
            env: "GPUCTL_SUDO_PASSWORD".into()
        })
    );
}

#[test]
fn bastion_chains_flatten_and_skip_the_host_itself() {
    let text = "\
cluster: { name: lab }
ssh:
  user: ops
  bastion: [{ host: js.example.org, port: 9022, user: jump }, login]
hosts:
  - { name: login, address: 10.0.0.1, roles: [server] }
  - { name: n2, address: 10.0.0.2, roles: [worker] }
  - { name: n3, address: 10.0.0.3, roles: [worker], ssh: { bastion: [] } }
  - { name: n4, address: 10.0.0.4, roles: [worker], ssh: { bastion: n2 } }
";
    let inv = ok(text);
    let chain = |name: &str| -> Vec<String> {
        target(&inv, name)
            .jumps
            .iter()
            .map(SshTarget::display)
            .collect()
    };
    // login is in the top-level chain: it is reached through what comes before it.
    assert_eq!(chain("login"), ["jump@js.example.org:9022"]);
    assert_eq!(chain("n2"), ["jump@js.example.org:9022", "ops@10.0.0.1:22"]);
    assert!(chain("n3").is_empty(), "bastion: [] goes direct");
    // n4 goes through n2, which itself is reached through the top-level chain.
    assert_eq!(
        chain("n4"),
        [
            "jump@js.example.org:9022",
            "ops@10.0.0.1:22",
            "ops@10.0.0.2:22"
        ]
    );
    assert!(
        target(&inv, "n4").jumps.iter().all(|j| j.jumps.is_empty()),
        "hops carry no nested jumps"
    );
}

#[test]
fn an_outside_bastion_falls_back_to_the_top_level_user_and_keys() {
    let text = "\
cluster: { name: lab }
ssh:
  user: ops
  identity_file: ~/.ssh/cfg_key
  bastion: { host: js.example.org }
hosts:
  - { name: n1, address: 10.0.0.1, roles: [server] }
";
    let inv = ok(text);
    let jump = &target(&inv, "n1").jumps[0];
    assert_eq!(jump.display(), "ops@js.example.org:22");
    assert_eq!(jump.identity_files, [key("cfg_key")]);
}

#[test]
fn an_unparsable_ssh_config_is_a_problem_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, "Host x\n    Port not-a-number\n").unwrap_or_else(|e| panic!("{e}"));
    let o = LoadOptions {
        no_ssh_config: false,
        ssh_config: Some(cfg.clone()),
        ..opts()
    };
    let text =
        "cluster: { name: lab }\nhosts:\n  - { name: n1, address: 10.0.0.1, roles: [server] }\n";
    let err = load_text_file(text, &o)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    let shown: Vec<String> = err.problems.iter().map(short).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].contains(&format!("cannot parse the ssh config {}", cfg.display())),
        "{shown:?}"
    );
}

#[test]
fn a_missing_ssh_config_is_fine() {
    let o = LoadOptions {
        no_ssh_config: false,
        ssh_config: Some(fixture_dir().join("ssh/no-such-config")),
        ..opts()
    };
    let text =
        "cluster: { name: lab }\nhosts:\n  - { name: n1, address: 10.0.0.1, roles: [server] }\n";
    assert!(load_text_file(text, &o).is_ok());
}
