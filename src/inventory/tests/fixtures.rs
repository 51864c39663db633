//! Error and warning fixtures, the example inventories and the starter.
//!
//! Each file in `errors/` lists the problems it must produce as `# expect: LINE:COL: PATH:
//! MESSAGE` lines (a prefix of the full problem text); the file must produce exactly those
//! problems, no more. Files in `warnings/` load, with exactly their `# warn:` lines.

use std::path::{Path, PathBuf};

use super::{fixture_dir, load_err, load_ok, opts, short};
use crate::inventory::{
    Cni, ContainerRuntime, Distribution, GpuPresence, Role, STARTER, load_text,
};
use crate::transport::Endpoint;

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn marked<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(marker))
        .collect()
}

/// Every expectation matches a distinct item, and nothing is left over.
fn compare(name: &str, expected: &[&str], got: &[String]) -> Option<String> {
    let mut left: Vec<&String> = got.iter().collect();
    let mut missing = Vec::new();
    for e in expected {
        match left.iter().position(|g| g.starts_with(e)) {
            Some(i) => {
                left.remove(i);
            }
            None => missing.push(*e),
        }
    }
    if missing.is_empty() && left.is_empty() {
        return None;
    }
    Some(format!(
        "{name}:\n  expected but not reported:\n    {}\n  reported but not expected:\n    {}",
        missing.join("\n    "),
        left.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n    ")
    ))
}

#[test]
fn every_error_fixture_reports_exactly_its_problems() {
    let files = yaml_files(&fixture_dir().join("errors"));
    assert!(files.len() >= 30, "only {} error fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let expected = marked(&text, "# expect: ");
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");
        let err = load_err(path, &opts());
        assert!(
            err.problems.iter().all(|p| p.file == name),
            "{name}: wrong file in {err}"
        );
        let got: Vec<String> = err.problems.iter().map(short).collect();
        failures.extend(compare(&name, &expected, &got));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_warning_fixture_loads_with_exactly_its_warnings() {
    let files = yaml_files(&fixture_dir().join("warnings"));
    assert!(files.len() >= 6, "only {} warning fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let expected = marked(&text, "# warn: ");
        assert!(!expected.is_empty(), "{name} has no `# warn:` line");
        let inv = load_ok(path, &opts());
        let prefix = format!("{name}:");
        let got: Vec<String> = inv
            .warnings
            .iter()
            .map(|w| w.strip_prefix(&prefix).unwrap_or(w).to_string())
            .collect();
        failures.extend(compare(&name, &expected, &got));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn many_problems_are_all_reported_one_per_line() {
    let path = fixture_dir().join("errors/many-problems.yaml");
    let err = load_err(&path, &opts());
    assert_eq!(err.problems.len(), 19, "{err}");
    let shown = err
        .to_string()
        .replace(&format!("{}/", fixture_dir().display()), "");
    // Sorted by position, one line each, after one summary line.
    assert_eq!(shown.lines().count(), 20);
    assert!(!shown.contains("hunter2"), "a secret leaked into the error");
    insta::assert_snapshot!(shown);
}

#[test]
fn a_missing_file_is_one_problem_that_says_what_to_do() {
    let err = load_err(Path::new("no/such/inventory.yaml"), &opts());
    assert_eq!(err.problems.len(), 1);
    let text = err.to_string();
    assert!(
        text.contains("no/such/inventory.yaml: cannot read the inventory"),
        "{text}"
    );
    assert!(text.contains("gpuctl init"), "{text}");
}

fn example(name: &str) -> crate::inventory::Inventory {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("inventories")
        .join(name);
    let inv = load_ok(&path, &opts());
    assert!(inv.warnings.is_empty(), "{name}: {:?}", inv.warnings);
    inv
}

#[test]
fn example_single_box_is_one_host_that_does_everything() {
    let inv = example("single-box.yaml");
    assert_eq!(inv.cluster.container_runtime, ContainerRuntime::Docker);
    assert_eq!(inv.hosts.len(), 1);
    let h = &inv.hosts[0];
    assert_eq!(
        h.roles.iter().copied().collect::<Vec<_>>(),
        [Role::Server, Role::Worker, Role::Nfs]
    );
    assert_eq!(h.gpu, GpuPresence::Yes);
    assert_eq!(
        inv.storage.nfs.as_ref().map(|n| n.server.as_str()),
        Some("astro")
    );
    assert!(inv.sudo_password.is_some());
}

#[test]
fn example_lab_reaches_55_hosts_through_the_bastion() {
    let inv = example("lab-ha-bastion.yaml");
    assert_eq!(inv.hosts.len(), 55);
    assert_eq!(inv.servers().count(), 3);
    let gpus = inv
        .hosts
        .iter()
        .filter(|h| h.gpu == GpuPresence::Yes)
        .count();
    assert_eq!(gpus, 50);
    for h in &inv.hosts {
        let Endpoint::Ssh(t) = &h.endpoint else {
            panic!("{} is not ssh", h.name)
        };
        assert_eq!(t.user, "ops");
        assert_eq!(t.jumps.len(), 1, "{}", h.name);
        assert_eq!(t.jumps[0].display(), "jump@js.example.org:9022");
    }
    assert_eq!(inv.users.tiers.len(), 4);
    assert_eq!(inv.users.users.len(), 3);
    assert_eq!(inv.known_hosts[0], inv.base_dir.join("known_hosts"));
}

#[test]
fn example_kubeadm_calico_uses_kubeadm_defaults() {
    let inv = example("kubeadm-calico.yaml");
    assert_eq!(inv.cluster.distribution, Distribution::Kubeadm);
    assert_eq!(inv.cluster.cni, Cni::Calico);
    assert_eq!(inv.cluster.version, "v1.30.6");
    assert_eq!(inv.hosts.len(), 3);
}

#[test]
fn the_starter_inventory_validates_without_warnings() {
    let dir = fixture_dir();
    let inv = load_text(STARTER, &dir.join("starter.yaml"), &dir, &opts())
        .unwrap_or_else(|e| panic!("starter is invalid:\n{e}"));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    assert_eq!(inv.cluster.name, "mycluster");
    assert_eq!(inv.hosts.len(), 1);
}

/// Bad input must never panic: every prefix of every fixture, and every fixture with one
/// line removed, loads to an inventory or to problems.
#[test]
fn truncated_and_mangled_inventories_never_panic() {
    let dir = fixture_dir();
    let mut texts = vec![STARTER.to_string()];
    for sub in ["errors", "warnings"] {
        for path in yaml_files(&dir.join(sub)) {
            texts.push(std::fs::read_to_string(path).unwrap_or_default());
        }
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories");
    for path in yaml_files(&examples) {
        texts.push(std::fs::read_to_string(path).unwrap_or_default());
    }
    let mut variants = 0;
    for text in &texts {
        let mut cases: Vec<String> = Vec::new();
        if text.len() < 4000 {
            cases.extend(
                (0..text.len())
                    .step_by(2)
                    .filter(|&i| text.is_char_boundary(i))
                    .map(|i| text[..i].to_string()),
            );
        }
        let lines: Vec<&str> = text.lines().collect();
        cases.extend((0..lines.len()).map(|skip| {
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            kept.join("\n")
        }));
        for case in &cases {
            let _ = load_text(case, &dir.join("mangled.yaml"), &dir, &opts());
            variants += 1;
        }
    }
    assert!(variants > 3000, "only {variants} variants tried");
}

#[test]
fn x_keys_hold_anchors_that_hosts_merge() {
    let text = "\
x-gpu-worker: &w { roles: [worker], gpu: true, labels: { gpu-type: A100 } }
cluster: { name: lab }
hosts:
  - { name: ctl, address: 10.0.0.1, roles: [server] }
  - { <<: *w, name: gpu01, address: 10.0.1.1 }
  - { <<: *w, name: gpu02, address: 10.0.1.2, gpu: false }
";
    let inv = super::load_text_file(text, &opts()).unwrap_or_else(|e| panic!("{e}"));
    let gpu = |i: usize| inv.hosts[i].gpu;
    assert_eq!((gpu(1), gpu(2)), (GpuPresence::Yes, GpuPresence::No));
    assert!(inv.hosts[2].roles.contains(&Role::Worker));
    assert_eq!(
        inv.hosts[1].labels.get("gpu-type").map(String::as_str),
        Some("A100")
    );
    // Elsewhere an `x-` key is still unknown.
    let text = "cluster: { name: lab, x-note: hi }\nhosts:\n  - { name: n, address: 10.0.0.1, roles: [server] }\n";
    assert!(super::load_text_file(text, &opts()).is_err());
}
