//! `gpuctl users add|list|remove`.
//!
//! `add` and `remove` change the inventory's `users.list` (see `inventory::edit`: one line,
//! the rest of the file untouched, the result validated as a whole inventory before it is
//! written) and then converge the `users` stage on the first server, exactly as
//! `gpuctl install --only users` would. The file is written first: if the cluster cannot
//! be reached, the next install converges it, and nothing the admin asked for is lost.
//! `list` reads the namespaces and ResourceQuotas gpuctl made back from the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use crate::cli::{ClusterArgs, ConnectArgs, UsersAddArgs, UsersListArgs, UsersRemoveArgs};
use crate::exit::BadInput;
use crate::fleet::Progress;
use crate::install::{self, RunOptions, Selection, report};
use crate::inventory::edit::{self, NewUser};
use crate::inventory::{self as inventory_mod, Inventory, LoadOptions};
use crate::render::namespace_for;
use crate::stages::ready::kubectl;
use crate::table::Table;
use crate::transport::Command;
use crate::transport::shell::quote;

use super::connect::{load_inventory, open_fleet};

pub async fn add(args: &UsersAddArgs) -> anyhow::Result<()> {
    let path = &args.cluster.inventory.inventory;
    let inv = load_inventory(path)?;
    let wanted = NewUser {
        name: args.user.clone(),
        email: args.email.clone(),
        tier: args.tier.clone(),
        data_path: args.data_path.clone(),
    };
    match inv.users.users.iter().find(|u| u.name == args.user) {
        Some(u)
            if u.email == wanted.email
                && u.tier == wanted.tier
                && u.data_path.as_ref().map(|p| p.display().to_string()) == wanted.data_path =>
        {
            println!("{} is in {} already; converging", args.user, path.display());
        }
        Some(u) => {
            return Err(BadInput(format!(
                "{} is in {} already, with email {}, tier {}: change that entry by hand and \
                 run `gpuctl install --inventory {} --only users`, or remove the user first",
                u.name,
                path.display(),
                u.email,
                u.tier,
                quote(&path.display().to_string())
            ))
            .into());
        }
        None => {
            let line = rewrite(&inv, |text, file| edit::add_user(text, file, &wanted))?;
            println!("added {} to {}:{line}", args.user, path.display());
        }
    }
    converge(&args.cluster, None).await
}

pub async fn remove(args: &UsersRemoveArgs) -> anyhow::Result<()> {
    let path = &args.cluster.inventory.inventory;
    let inv = load_inventory(path)?;
    let ns = namespace_for(&args.user);
    let kubectl = kubectl(&inv);
    if !args.yes {
        let keep = if args.purge {
            "and their data volume object (the files stay on the NFS server)"
        } else {
            "(their data volume is kept)"
        };
        super::install::confirm(&format!(
            "remove user {}: delete namespace {ns} and everything in it {keep}?",
            args.user
        ))?;
    }
    let line = rewrite(&inv, |text, file| edit::remove_user(text, file, &args.user))?;
    println!("removed {} from {}:{line}", args.user, path.display());
    let purge = args
        .purge
        .then(|| format!("{kubectl} delete persistentvolume gpuctl-data-{ns} --ignore-not-found"));
    converge(&args.cluster, purge).await
}

pub async fn list(args: &UsersListArgs) -> anyhow::Result<()> {
    let inv = load_inventory(&args.cluster.inventory.inventory)?;
    let (_, fleet) = open_fleet(&first_server(&inv, &args.cluster)?, Progress::Quiet)?;
    let kubectl = kubectl(&inv);
    let script = format!(
        "{kubectl} get namespaces -l gpuctl.io/user -o json --request-timeout=10s && echo '@@quotas' && \
         {kubectl} get resourcequotas --all-namespaces -l app.kubernetes.io/managed-by=gpuctl -o json --request-timeout=10s"
    );
    let report = fleet
        .run(move |ctx| {
            let script = script.clone();
            async move {
                let out = ctx.run(Command::new(script).sudo(true)).await?;
                if !out.success() {
                    anyhow::bail!(
                        "kubectl failed ({}): {}",
                        out.status.map_or("killed".into(), |s| format!("exit {s}")),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
        })
        .await;
    report.check()?;
    let stdout = report
        .results
        .into_iter()
        .next()
        .and_then(|r| r.outcome.ok())
        .context("no answer from the first server")?;
    print!("{}", table(&inv, &stdout)?);
    Ok(())
}

/// Edits the inventory text with `change`, validates the result as a whole inventory, and
/// writes it atomically. Returns the line the edit is at.
fn rewrite(
    inv: &Inventory,
    change: impl FnOnce(&str, &str) -> Result<(String, usize), edit::EditError>,
) -> anyhow::Result<usize> {
    let path = &inv.path;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    let (new, line) = change(&text, &shown).map_err(|e| BadInput(e.to_string()))?;
    inventory_mod::load_text(&new, path, &inv.base_dir, &LoadOptions::default()).map_err(|e| {
        BadInput(format!(
            "{shown} was not changed: with this edit it would not be valid:\n{e}"
        ))
    })?;
    crate::state::atomic::write(path, new.as_bytes())
        .with_context(|| format!("cannot write {shown}"))?;
    Ok(line)
}

/// Connection arguments for the first server alone, where cluster stages run.
fn first_server(inv: &Inventory, args: &ClusterArgs) -> anyhow::Result<ConnectArgs> {
    let Some(first) = inv.servers().next() else {
        return Err(BadInput("the inventory has no server".into()).into());
    };
    Ok(ConnectArgs {
        inventory: args.inventory.clone(),
        hosts: Some(first.name.clone()),
        concurrency: 1,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: args.connect_timeout,
    })
}

/// `gpuctl install --only users` on the first server, then `after` there (as root).
async fn converge(args: &ClusterArgs, after: Option<String>) -> anyhow::Result<()> {
    // Loaded again: the file has just changed.
    let inv = load_inventory(&args.inventory.inventory)?;
    let connect = first_server(&inv, args)?;
    let (inv, fleet) = open_fleet(&connect, Progress::detect())?;
    let inventory_arg = format!(
        "--inventory {}",
        quote(&args.inventory.inventory.display().to_string())
    );
    let result = install::run(
        Arc::clone(&inv),
        &fleet,
        RunOptions {
            selection: Selection {
                only: vec!["users".into()],
                ..Selection::default()
            },
            mode: crate::converge::Mode::Apply,
            inventory_arg: inventory_arg.clone(),
            bundle: None,
            reset: false,
        },
    )
    .await?;
    print!("{}", report::stages(&result, false));
    for note in &result.notes {
        println!("note: {note}");
    }
    let failed = result.failed() > 0 || !result.notes.is_empty() || result.interrupted;
    if failed {
        return Err(anyhow::anyhow!(
            "the inventory is saved, but the cluster does not have the change yet: fix what \
             is said above, then run `gpuctl install {inventory_arg} --only users`"
        ));
    }
    if let Some(script) = after {
        let report = fleet
            .run(move |ctx| {
                let script = script.clone();
                async move {
                    let out = ctx.run(Command::new(script).sudo(true)).await?;
                    if !out.success() {
                        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
                    }
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
                }
            })
            .await;
        report.check()?;
        for r in report.results {
            if let Ok(said) = r.outcome
                && !said.is_empty()
            {
                println!("{said}");
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct List<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Namespace {
    metadata: Meta,
}

#[derive(Deserialize)]
struct Quota {
    metadata: Meta,
    #[serde(default)]
    spec: QuotaSpec,
    #[serde(default)]
    status: QuotaStatus,
}

#[derive(Default, Deserialize)]
struct QuotaSpec {
    #[serde(default)]
    hard: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct QuotaStatus {
    #[serde(default)]
    hard: BTreeMap<String, String>,
    #[serde(default)]
    used: BTreeMap<String, String>,
}

/// The quota columns: header, and the ResourceQuota key (as the `users` template writes it).
const COLUMNS: [(&str, &str); 5] = [
    ("CPU", "requests.cpu"),
    ("MEMORY", "requests.memory"),
    ("GPU", "requests.nvidia.com/gpu"),
    ("STORAGE", "requests.storage"),
    ("PVCS", "persistentvolumeclaims"),
];

/// One row per user of the inventory or of the cluster, from kubectl's two answers
/// (namespaces, then quotas, split by the `@@quotas` line).
fn table(inv: &Inventory, stdout: &str) -> anyhow::Result<String> {
    let (ns_json, quota_json) = stdout
        .split_once("\n@@quotas\n")
        .context("kubectl's answer lacks its second part")?;
    let namespaces: List<Namespace> =
        serde_json::from_str(ns_json).context("kubectl get namespaces gave no JSON list")?;
    let quotas: List<Quota> =
        serde_json::from_str(quota_json).context("kubectl get resourcequotas gave no JSON list")?;
    let mut t = Table::new(
        ["USER", "NAMESPACE", "TIER"]
            .into_iter()
            .chain(COLUMNS.iter().map(|(h, _)| *h))
            .chain(["STATE"]),
    );
    let in_cluster: BTreeMap<String, &Namespace> = namespaces
        .items
        .iter()
        .filter_map(|n| Some((n.metadata.labels.get("gpuctl.io/user")?.clone(), n)))
        .collect();
    let mut names: Vec<String> = inv.users.users.iter().map(|u| u.name.clone()).collect();
    let extra: Vec<String> = in_cluster
        .keys()
        .filter(|n| !names.contains(n))
        .cloned()
        .collect();
    names.extend(extra);
    for name in names {
        let listed = inv.users.users.iter().find(|u| u.name == name);
        let ns = in_cluster.get(&name);
        let namespace = ns.map_or_else(|| namespace_for(&name), |n| n.metadata.name.clone());
        let quota = quotas
            .items
            .iter()
            .find(|q| q.metadata.namespace == namespace);
        let tier = ns
            .and_then(|n| n.metadata.labels.get("gpuctl.io/tier").cloned())
            .or_else(|| listed.map(|u| u.tier.clone()))
            .unwrap_or_default();
        let state = match (listed, ns) {
            (Some(u), Some(_)) if u.tier != tier => {
                "tier changed in the inventory: run install --only users"
            }
            (Some(_), Some(_)) => "ok",
            (Some(_), None) => "not in the cluster yet: run install --only users",
            (None, _) => "not in the inventory: the next install removes it",
        };
        let mut row = vec![name.clone(), namespace.clone(), tier];
        for (_, key) in COLUMNS {
            row.push(match quota {
                Some(q) => {
                    let hard = q.status.hard.get(key).or_else(|| q.spec.hard.get(key));
                    format!(
                        "{}/{}",
                        q.status.used.get(key).map_or("?", String::as_str),
                        hard.map_or("-", String::as_str)
                    )
                }
                None => "-".into(),
            });
        }
        row.push(state.into());
        t.row(row);
    }
    Ok(t.render())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stages::sample;

    #[test]
    fn the_table_shows_used_over_hard_and_who_is_missing_where() {
        let yaml = format!(
            "{}\nusers:\n  list:\n    - {{ name: alice, email: a@x.example, tier: mid }}\n    - {{ name: bob, email: b@x.example, tier: small }}\n",
            sample::YAML
        );
        let inv = sample::load(&yaml);
        let ns = r#"{"items":[
            {"metadata":{"name":"alice","labels":{"gpuctl.io/user":"alice","gpuctl.io/tier":"mid"}}},
            {"metadata":{"name":"carol","labels":{"gpuctl.io/user":"carol","gpuctl.io/tier":"big"}}}]}"#;
        let quotas = r#"{"items":[{"metadata":{"name":"gpuctl-tier","namespace":"alice"},
            "spec":{"hard":{"requests.cpu":"24.5"}},
            "status":{"hard":{"requests.cpu":"24.5","requests.nvidia.com/gpu":"2"},"used":{"requests.cpu":"1500m","requests.nvidia.com/gpu":"1"}}}]}"#;
        let out = table(&inv, &format!("{ns}\n@@quotas\n{quotas}")).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("USER"), "{out}");
        assert!(
            lines[1].starts_with("alice") && lines[1].contains("1500m/24.5"),
            "{out}"
        );
        assert!(
            lines[1].contains(" 1/2 ") && lines[1].ends_with("ok"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("bob") && lines[2].contains("not in the cluster yet"),
            "{out}"
        );
        assert!(
            lines[3].starts_with("carol") && lines[3].contains("not in the inventory"),
            "{out}"
        );
        assert!(table(&inv, "{}").is_err());
    }
}
