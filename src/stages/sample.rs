//! A sample inventory for the stages' snapshot tests: a server, a GPU worker, a worker
//! reached only by name (no internal address), extra DNS names and data directories.

use std::path::Path;

use crate::inventory::{Inventory, LoadOptions, load_text};
use crate::plan::HostFacts;

pub const YAML: &str = r#"
cluster:
  name: sample
  data_dir: /home/data/k3s/var
ssh:
  user: ops
dns:
  hosts:
    - { ip: 192.168.3.14, names: [login.lab.example, lab.example] }
storage:
  local_path: { path: /data/k8s/local-path, default: true }
hosts:
  - name: cp1
    address: 10.0.0.1
    roles: [server]
  - name: gpu1
    address: 10.0.0.2
    roles: [worker]
    gpu: true
  - name: far
    address: far.lab.example
    roles: [worker]
"#;

pub fn inventory() -> Inventory {
    load(YAML)
}

/// An inventory from `yaml` (a variant of [`YAML`]), loaded as the sample is.
pub fn load(yaml: &str) -> Inventory {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
    let opts = LoadOptions {
        no_ssh_config: true,
        home: Some(fixtures.join("home")),
        user: Some("tester".into()),
        ..LoadOptions::default()
    };
    load_text(yaml, &fixtures.join("sample.yaml"), &fixtures, &opts)
        .unwrap_or_else(|e| panic!("the inventory should load:\n{e}\n{yaml}"))
}

/// Facts of a plain (not container) host with nothing odd about it.
pub fn facts(inv: &Inventory, host: &str) -> HostFacts {
    let h = inv
        .hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap_or_else(|| panic!("no host {host} in the sample"));
    let mut hf = HostFacts::bare(h);
    hf.facts.cpus = 4;
    hf.facts.memory_mib = 8192;
    hf.facts.hostname = host.to_string();
    hf
}

/// [`facts`] of `host` as a cluster stage sees them: with every host's facts in `nodes`
/// (none of them listing GPUs).
pub fn cluster_facts(inv: &Inventory, host: &str) -> HostFacts {
    let mut hf = facts(inv, host);
    for h in &inv.hosts {
        hf.nodes.insert(h.name.clone(), facts(inv, &h.name).facts);
    }
    hf
}

/// An example inventory of `inventories/` (`single-box`), loaded as the tests load the sample.
pub fn example(name: &str) -> Inventory {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let opts = LoadOptions {
        no_ssh_config: true,
        home: Some(root.join("tests/fixtures/inventory/home")),
        user: Some("tester".into()),
        ..LoadOptions::default()
    };
    crate::inventory::load(&root.join(format!("inventories/{name}.yaml")), &opts)
        .unwrap_or_else(|e| panic!("inventories/{name}.yaml should load:\n{e}"))
}
