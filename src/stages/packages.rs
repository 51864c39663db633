//! Stage `packages`: the bundle's Debian packages for the host's OS, installed offline.
//!
//! The `.deb`s in the bundle's `packages/<os-id>-<version>/` (from the host's
//! `/etc/os-release`, e.g. `debian-12`) for the host's architecture (and `all`) are
//! uploaded by content to `/var/cache/gpuctl/debs/` — a re-run finds them by sha256 and
//! sends nothing — then installed together by one `apt-get install` of the local files,
//! with every package source switched off (`Dir::Etc::SourceList=/dev/null`, and the
//! `sources.list.d` parts too): apt knows no archive, so nothing is fetched, a dependency
//! the bundle lacks fails the stage before dpkg changes anything, and apt orders the
//! packages itself. (`--no-download` is not used: apt 2.6 then refuses local files with
//! "Pathname to install is not absolute".)
//!
//! The guard asks dpkg, per package, whether it is installed at the bundle's version or a
//! newer one (a security update the admin applied is not downgraded); only packages below
//! it are installed.
//!
//! Packages for hosts of one role only live one level down, in `packages/<os>/<role>/`
//! (`server`, `worker`, `nfs`, `registry`): the NFS server's `nfs-kernel-server` goes to
//! `packages/debian-12/nfs/` and reaches the NFS server alone (the host with the `nfs` role
//! or the one `storage.nfs.server` names), installed in the same `apt-get` as the rest.
//!
//! Without `bundle:` in the inventory, or with a bundle that has no packages at all, the
//! stage has nothing to do. A bundle with packages, but none for this host's OS, fails
//! the host: it would otherwise go on without its container runtime.

use std::sync::Arc;

use anyhow::bail;

use crate::bundle::{self, Bundle, Deb};
use crate::inventory::Inventory;
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::transport::shell::quote;

/// Where the packages wait on the host (kept, so a re-run uploads nothing).
pub const DEB_DIR: &str = "/var/cache/gpuctl/debs";

/// The role directories whose packages `host` gets.
fn roles(inv: &Inventory, host: &crate::inventory::Host) -> Vec<&'static str> {
    let mut roles: Vec<&'static str> = host.roles.iter().map(|r| r.as_str()).collect();
    if inv.is_nfs_server(host) && !roles.contains(&"nfs") {
        roles.push("nfs");
    }
    roles
}

pub struct Packages {
    /// Loaded and verified before any host is touched; `None` without `bundle:`.
    pub bundle: Option<Arc<Bundle>>,
}

impl Stage for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let Some(bundle) = &self.bundle else {
            return Ok(Vec::new());
        };
        let have = bundle.package_dirs();
        if have.is_empty() {
            return Ok(Vec::new());
        }
        let f = &hf.facts;
        if f.os_id.is_empty() || f.os_id == "unknown" || f.os_version.is_empty() {
            bail!(
                "the host's /etc/os-release names no ID and VERSION_ID, so gpuctl cannot \
                 pick its packages from the bundle (it has {})",
                have.join(", ")
            );
        }
        let os_dir = bundle::os_dir(&f.os_id, &f.os_version);
        let arch = bundle::dpkg_arch(&f.arch);
        let mut debs = bundle.debs(&os_dir, arch);
        for role in roles(inv, &hf.host) {
            debs.extend(bundle.debs(&format!("{os_dir}/{role}"), arch));
        }
        // A bundle for another OS or architecture is refused; one whose packages for this
        // OS are all for other roles' hosts leaves this host nothing to install.
        if debs.is_empty() && bundle.has_debs_for(&os_dir, arch) {
            return Ok(Vec::new());
        }
        if debs.is_empty() {
            bail!(
                "the bundle {} has no packages for {os_dir} ({arch}); it has packages for {}. \
                 Add packages/{os_dir}/*.deb to the bundle (and bundle.yaml), or leave this \
                 host out with --hosts",
                bundle.dir.display(),
                have.join(", ")
            );
        }
        let mut ops: Vec<Op> = debs
            .iter()
            .map(|d| Op::Upload {
                src: bundle.local_path(&d.file).display().to_string(),
                dest: format!("{DEB_DIR}/{}", d.file_name),
                sha256: d.file.sha256.clone(),
                mode: 0o644,
            })
            .collect();
        ops.push(Op::Command {
            run: install_script(&debs),
            guard: guard(&debs),
            undo: None,
            rerun_on: Vec::new(),
        });
        Ok(ops)
    }
    fn notes(&self, inv: &Inventory, _hf: &HostFacts) -> Vec<String> {
        match (&inv.bundle, &self.bundle) {
            (None, _) => vec!["no `bundle:` in the inventory: gpuctl installs no packages".into()],
            (Some(_), Some(b)) if b.package_dirs().is_empty() => {
                vec![format!("the bundle {} has no packages", b.dir.display())]
            }
            _ => Vec::new(),
        }
    }
}

/// One `dpkg-query` for every package of the bundle, then a shell function `ok KEY
/// VERSION`: the package (`name:arch`) is installed at VERSION or newer. dpkg runs again
/// only to compare a version that is not exactly the one wanted.
fn ok_fn(debs: &[Deb]) -> String {
    let names: Vec<String> = debs.iter().map(|d| quote(&d.query_name())).collect();
    format!(
        "s=\"\n$(dpkg-query -W -f '${{Package}}:${{Architecture}} ${{Version}} ${{Status}}\\n' {} 2>/dev/null)\"\n\
         ok() {{ l=${{s#*\"\n$1 \"}}; [ \"$l\" != \"$s\" ] || return 1; l=${{l%%\"\n\"*}}; \
         case $l in *' installed') ;; *) return 1 ;; esac; \
         [ \"${{l%% *}}\" = \"$2\" ] || dpkg --compare-versions \"${{l%% *}}\" ge \"$2\"; }}",
        names.join(" ")
    )
}

/// How [`ok_fn`] names a package: dpkg-query's `${Package}:${Architecture}`.
fn key(d: &Deb) -> String {
    format!("{}:{}", d.name, d.arch)
}

fn guard(debs: &[Deb]) -> String {
    let checks: Vec<String> = debs
        .iter()
        .map(|d| format!("ok {} {}", quote(&key(d)), quote(&d.version)))
        .collect();
    format!("{}\n{}", ok_fn(debs), checks.join(" && "))
}

fn install_script(debs: &[Deb]) -> String {
    let names: Vec<&str> = debs.iter().map(|d| d.name.as_str()).collect();
    let mut s = format!("# install {} from {DEB_DIR}\n", names.join(", "));
    s.push_str(&ok_fn(debs));
    s.push_str("\nset --\n");
    for d in debs {
        s.push_str(&format!(
            "ok {} {} || set -- \"$@\" {}\n",
            quote(&key(d)),
            quote(&d.version),
            quote(&format!("{DEB_DIR}/{}", d.file_name))
        ));
    }
    s.push_str(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends -o Dir::Etc::SourceList=/dev/null \
         -o Dir::Etc::SourceParts=/dev/null -o DPkg::Lock::Timeout=120 \
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \"$@\"\n",
    );
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bundle::BundleFile;
    use crate::stages::sample;

    fn file(path: &str) -> BundleFile {
        BundleFile {
            path: path.into(),
            sha256: format!("{:0>64}", path.len()),
            size: 1,
        }
    }

    fn sample_bundle() -> Arc<Bundle> {
        Arc::new(Bundle {
            dir: "/srv/bundle".into(),
            name: "sample".into(),
            versions: Default::default(),
            files: vec![
                file("packages/debian-12/libonig5_6.9.8-1_amd64.deb"),
                file("packages/debian-12/jq_1.6-2.1+deb12u3_amd64.deb"),
                file("packages/debian-12/jq_1.6-2.1+deb12u3_arm64.deb"),
                file("packages/ubuntu-22.04/tzdata_2024a-0ubuntu0.22.04_all.deb"),
                file("bin/k3s"),
            ],
        })
    }

    fn debian(inv: &Inventory, host: &str) -> HostFacts {
        let mut hf = sample::facts(inv, host);
        hf.facts.os_id = "debian".into();
        hf.facts.os_version = "12".into();
        hf.facts.arch = "x86_64".into();
        hf
    }

    #[test]
    fn debian_amd64_gets_its_packages_uploaded_then_installed() {
        let inv = sample::inventory();
        let stage = Packages {
            bundle: Some(sample_bundle()),
        };
        let ops = stage.plan(&inv, &debian(&inv, "cp1")).unwrap();
        insta::assert_yaml_snapshot!(ops);
    }

    #[test]
    fn a_host_whose_os_the_bundle_lacks_fails_saying_what_there_is() {
        let inv = sample::inventory();
        let stage = Packages {
            bundle: Some(sample_bundle()),
        };
        let mut hf = debian(&inv, "cp1");
        hf.facts.os_version = "11".into();
        let err = stage.plan(&inv, &hf).unwrap_err().to_string();
        assert!(err.contains("no packages for debian-11 (amd64)"), "{err}");
        assert!(err.contains("debian-12, ubuntu-22.04"), "{err}");
        hf.facts.os_id = String::new();
        let err = stage.plan(&inv, &hf).unwrap_err().to_string();
        assert!(err.contains("names no ID and VERSION_ID"), "{err}");
        // Ubuntu on arm64 has only an `all` package: that is enough.
        hf.facts.os_id = "ubuntu".into();
        hf.facts.os_version = "22.04".into();
        hf.facts.arch = "aarch64".into();
        let ops = stage.plan(&inv, &hf).unwrap();
        assert_eq!(ops.len(), 2, "{ops:?}");
    }

    #[test]
    fn role_directories_reach_only_hosts_of_that_role() {
        let yaml = sample::YAML.replace(
            "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n",
            "storage:\n  local_path: { path: /data/k8s/local-path, default: true }\n  nfs: { server: gpu1, export: /srv/nfs }\n",
        )
        .replace("    roles: [worker]\n    gpu: true", "    roles: [worker, nfs]\n    gpu: true");
        let inv = sample::load(&yaml);
        let mut bundle = (*sample_bundle()).clone();
        bundle.files.push(file(
            "packages/debian-12/nfs/nfs-kernel-server_2.6.2-4_amd64.deb",
        ));
        bundle.files.push(file(
            "packages/debian-12/server/etcd-client_3.4.23-4_amd64.deb",
        ));
        let stage = Packages {
            bundle: Some(Arc::new(bundle)),
        };
        let uploads = |host: &str| -> Vec<String> {
            stage
                .plan(&inv, &debian(&inv, host))
                .unwrap()
                .iter()
                .filter_map(|op| match op {
                    Op::Upload { dest, .. } => {
                        Some(dest.rsplit('/').next().unwrap_or("").to_string())
                    }
                    _ => None,
                })
                .collect()
        };
        let gpu1 = uploads("gpu1");
        assert!(
            gpu1.iter().any(|d| d.starts_with("nfs-kernel-server_")),
            "{gpu1:?}"
        );
        assert!(
            !gpu1.iter().any(|d| d.starts_with("etcd-client_")),
            "{gpu1:?}"
        );
        let cp1 = uploads("cp1");
        assert!(cp1.iter().any(|d| d.starts_with("etcd-client_")), "{cp1:?}");
        assert!(
            !cp1.iter().any(|d| d.starts_with("nfs-kernel-server_")),
            "{cp1:?}"
        );
        assert!(cp1.iter().any(|d| d.starts_with("jq_")), "{cp1:?}");
    }

    #[test]
    fn without_a_bundle_or_packages_there_is_nothing_to_do() {
        let inv = sample::inventory();
        let hf = debian(&inv, "cp1");
        let none = Packages { bundle: None };
        assert!(none.plan(&inv, &hf).unwrap().is_empty());
        assert_eq!(
            none.notes(&inv, &hf),
            ["no `bundle:` in the inventory: gpuctl installs no packages"]
        );
        let empty = Packages {
            bundle: Some(Arc::new(Bundle {
                dir: "/b".into(),
                name: "x".into(),
                versions: Default::default(),
                files: vec![file("bin/k3s")],
            })),
        };
        assert!(empty.plan(&inv, &hf).unwrap().is_empty());
    }
}
