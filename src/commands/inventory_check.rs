//! `gpuctl inventory check`: validate and print the resolved hosts table.
//!
//! It contacts no host: it shows what gpuctl *would* connect to, after `~/.ssh/config`
//! and the defaults, so a wrong user or bastion is seen before anything runs.

use crate::cli::InventoryArgs;
use crate::inventory::{self, GpuPresence, Inventory, LoadOptions};
use crate::table::Table;
use crate::transport::Endpoint;

pub fn run(args: &InventoryArgs) -> anyhow::Result<()> {
    let inv = inventory::load(&args.inventory, &LoadOptions::default())?;
    for w in &inv.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", render(&inv));
    Ok(())
}

/// The summary line and the hosts table.
pub fn render(inv: &Inventory) -> String {
    let c = &inv.cluster;
    let mut out = format!(
        "cluster {}: {} {}, {}, {}; pods {}, services {}\n\n",
        c.name,
        serde_name(&c.distribution),
        c.version,
        serde_name(&c.cni),
        serde_name(&c.container_runtime),
        c.pod_cidr,
        c.service_cidr,
    );
    let mut table = Table::new(["NAME", "ADDRESS", "VIA", "ROLES", "GPU", "LABELS"]);
    for h in &inv.hosts {
        let (address, via) = match &h.endpoint {
            Endpoint::Local => ("local".to_string(), "-".to_string()),
            Endpoint::Ssh(t) if t.jumps.is_empty() => (t.display(), "-".to_string()),
            Endpoint::Ssh(t) => (
                t.display(),
                t.jumps
                    .iter()
                    .map(|j| j.display())
                    .collect::<Vec<_>>()
                    .join(" → "),
            ),
        };
        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
        let gpu = match h.gpu {
            GpuPresence::Yes => "yes",
            GpuPresence::No => "no",
            GpuPresence::Auto => "auto",
        };
        let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labels = if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(",")
        };
        table.row([
            h.name.clone(),
            address,
            via,
            roles.join(","),
            gpu.to_string(),
            labels,
        ]);
    }
    out.push_str(&table.render());
    let n = inv.hosts.len();
    out.push_str(&format!(
        "\n{n} host{}, {} server{}; inventory is valid\n",
        if n == 1 { "" } else { "s" },
        inv.servers().count(),
        if inv.servers().count() == 1 { "" } else { "s" },
    ));
    out
}

fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_host_with_its_route() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let opts = LoadOptions {
            no_ssh_config: true,
            home: Some(root.join("tests/fixtures/inventory/home")),
            user: Some("tester".into()),
            ..LoadOptions::default()
        };
        let inv = inventory::load(&root.join("inventories/kubeadm-calico.yaml"), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(render(&inv));

        let text = "cluster: { name: lab }\nssh: { user: ops, bastion: { host: js.example.org, port: 9022, user: jump } }\nhosts:\n  - { name: a, address: 10.0.0.1, roles: [server, worker], labels: { zone: a } }\n  - { name: me, connection: local, roles: [worker] }\n";
        let inv = inventory::load_text(text, std::path::Path::new("t.yaml"), root, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        let table = render(&inv);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ADDRESS", "VIA", "ROLES", "GPU", "LABELS"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "a",
                "ops@10.0.0.1:22",
                "jump@js.example.org:9022",
                "server,worker",
                "auto",
                "zone=a"
            ]
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["me", "local", "-", "worker", "auto", "-"]
        );
        // Columns line up: every row starts its ADDRESS at the same offset.
        let col = lines[2].find("ADDRESS");
        assert_eq!(lines[3].find("ops@"), col);
        assert_eq!(lines[4].find("local"), col);
    }

    #[test]
    fn an_invalid_inventory_is_exit_code_2_with_every_problem() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let args = InventoryArgs {
            inventory: root.join("tests/fixtures/inventory/errors/many-problems.yaml"),
        };
        let err = run(&args)
            .err()
            .unwrap_or_else(|| panic!("an invalid inventory passed"));
        assert_eq!(crate::exit::code_for(&err), crate::exit::BAD_INPUT);
        assert_eq!(format!("{err:#}").lines().count(), 20);
    }
}
