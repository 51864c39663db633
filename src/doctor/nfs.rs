//! S3: NFS, from each host's own script. Every node (server or worker) has `mount.nfs`
//! (Debian's nfs-common): the kubelet mounts NFS volumes itself, so a node without the
//! client fails every pod that lands on it with an NFS volume ("bad option; ... you might
//! need a /sbin/mount.<type> helper program"), the classic half-working NFS storage class.
//! The inventory's NFS server lists the export among the active ones (`exportfs -s`). That
//! the nodes reach its port 2049 is N4's.

use super::{Findings, HostInput, Severity};
use crate::inventory::Role;

pub fn host_check(input: &HostInput, out: &mut Findings) {
    let Some(nfs) = &input.plan.nfs else {
        return;
    };
    let host = &input.host.name;
    let roles = &input.host.roles;
    if roles.contains(&Role::Server) || roles.contains(&Role::Worker) {
        match input.ev.bin("mount.nfs") {
            Some(path) => {
                out.add(
                    "S3",
                    Severity::Ok,
                    format!("the NFS client is here ({path})"),
                );
            }
            None => {
                out.add(
                    "S3",
                    Severity::Error,
                    "mount.nfs is missing: pods with an NFS volume cannot start on this node",
                )
                .fix(format!(
                    "put nfs-common and its dependencies into the bundle's packages/<os>/, then \
                     gpuctl install --inventory INVENTORY --only packages --hosts {host}"
                ));
            }
        }
    }
    if !nfs.servers.iter().any(|s| s == host) {
        return;
    }
    let Some(table) = input.ev.cmd("exportfs").filter(|c| c.ok()) else {
        out.add(
            "S3",
            Severity::Error,
            format!(
                "this is the NFS server, and exportfs is missing or failed: {} is not exported",
                nfs.export
            ),
        )
        .evidence(
            input
                .ev
                .cmd("exportfs")
                .map(|c| c.lines.clone())
                .unwrap_or_default(),
        )
        .fix(format!(
            "gpuctl install --inventory INVENTORY --only packages,nfs --hosts {host}"
        ));
        return;
    };
    let exported = table
        .lines
        .iter()
        .any(|l| l.split_whitespace().next() == Some(nfs.export.as_str()));
    if exported {
        out.add("S3", Severity::Ok, format!("{} is exported", nfs.export));
    } else {
        out.add(
            "S3",
            Severity::Error,
            format!("{} is not among the active exports", nfs.export),
        )
        .evidence(table.lines.clone())
        .fix(format!(
            "gpuctl install --inventory INVENTORY --only nfs --hosts {host} (the /etc/exports \
             block and exportfs -ra)"
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::doctor::reads::NfsPlan;
    use crate::doctor::testing::Case;
    use crate::doctor::{Finding, Severity};

    fn s3(c: Case, server: bool) -> Vec<Finding> {
        let mut c = c;
        c.plan.nfs = Some(NfsPlan {
            export: "/srv/nfs/share".into(),
            servers: if server {
                vec![c.host.name.clone()]
            } else {
                Vec::new()
            },
        });
        c.findings().into_iter().filter(|f| f.id == "S3").collect()
    }

    #[test]
    fn every_node_needs_the_client_and_the_server_the_export() {
        let node = Case::healthy("n1", false);
        let f = s3(node.clone(), false);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].fix.as_deref().unwrap().contains("nfs-common"));
        let with_client = node.with("@@t kv bin.mount.nfs=/sbin/mount.nfs");
        assert_eq!(s3(with_client.clone(), false)[0].severity, Severity::Ok);

        let exporting = with_client
            .clone()
            .with("@@t cmd exportfs")
            .with("/srv/nfs/share  10.0.0.1(rw,sync)")
            .with("@@t status exportfs 0");
        let f = s3(exporting, true);
        assert!(f.iter().all(|x| x.severity == Severity::Ok), "{f:?}");
        let other = with_client
            .clone()
            .with("@@t cmd exportfs")
            .with("/other 10.0.0.1(rw)")
            .with("@@t status exportfs 0");
        let f = s3(other, true);
        assert!(
            f.iter()
                .any(|x| x.severity == Severity::Error && x.title.contains("not among"))
        );
        let f = s3(with_client, true);
        assert!(
            f.iter()
                .any(|x| x.severity == Severity::Error && x.title.contains("exportfs is missing"))
        );
    }
}
