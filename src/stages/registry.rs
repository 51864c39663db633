//! Stage `registry` (host): on the inventory's `registry` host, the CNCF distribution
//! registry from Debian's `docker-registry` package (in the bundle's
//! `packages/<os>/registry/`, installed by the `packages` stage), configured by gpuctl:
//! `/etc/docker/registry/config.yml` (template `registry/config.yml`), TLS with a
//! certificate from gpuctl's CA, htpasswd logins, and the `docker-registry` service
//! restarted when any of them changed.
//!
//! The CA, certificate and password are made on the admin's machine before any host is
//! touched ([`site`]); the nodes trust the CA through `registry.ca_file` (the `runtime`
//! stage) and log in with the same credentials (`registries.yaml`), and `mirror-images
//! push --inventory` uses both. Other hosts have nothing to do in this stage.

pub mod site;

use std::sync::Arc;

use crate::inventory::Inventory;
use crate::plan::{HostFacts, Op, Scope, Stage};
use crate::render::{Templates, context};

pub struct RegistryStage {
    /// Made before any host is touched, when the inventory has a registry host.
    pub site: Option<Arc<site::Materials>>,
}

pub const CONFIG: &str = "/etc/docker/registry/config.yml";
pub const HTPASSWD: &str = "/etc/docker/registry/htpasswd";
pub const CERT: &str = "/etc/docker/registry/tls/server.pem";
pub const KEY: &str = "/etc/docker/registry/tls/server.key";
pub const SERVICE: &str = "docker-registry";
/// The package's service user, which must read the key and the logins.
const OWNER: &str = "root:docker-registry";

impl Stage for RegistryStage {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn scope(&self) -> Scope {
        Scope::Host
    }
    fn plan(&self, inv: &Inventory, hf: &HostFacts) -> anyhow::Result<Vec<Op>> {
        let Some(r) = &inv.registry else {
            return Ok(Vec::new());
        };
        if r.served_by.as_deref() != Some(hf.host.name.as_str()) {
            return Ok(Vec::new());
        }
        let Some(site) = &self.site else {
            anyhow::bail!("the registry's certificate and login were not prepared");
        };
        let config = Templates::load(None)?
            .render_one("registry/config.yml", &context(inv)?)?
            .map(|r| r.text)
            .unwrap_or_default();
        let mut ops = vec![
            Op::Require {
                check: "test -x /usr/bin/docker-registry".into(),
                message: format!(
                    "docker-registry is missing on {}: put Debian's docker-registry package and \
                     its dependencies (apt-get download docker-registry adduser) into the \
                     bundle's packages/<os>/registry/ so the packages stage installs them here",
                    hf.host.name
                ),
            },
            Op::File {
                path: CONFIG.into(),
                content: config,
                mode: 0o644,
                owner: "root:root".into(),
                secret: false,
            },
            Op::File {
                path: HTPASSWD.into(),
                content: format!("{}\n", site.htpasswd.expose()),
                mode: 0o640,
                owner: OWNER.into(),
                secret: true,
            },
        ];
        let mut watched = vec![CONFIG.to_string(), HTPASSWD.to_string()];
        if let (Some(cert), Some(key)) = (&site.cert, &site.key) {
            ops.push(Op::File {
                path: CERT.into(),
                content: cert.clone(),
                mode: 0o644,
                owner: "root:root".into(),
                secret: false,
            });
            ops.push(Op::File {
                path: KEY.into(),
                content: key.expose().to_string(),
                mode: 0o640,
                owner: OWNER.into(),
                secret: true,
            });
            watched.extend([CERT.to_string(), KEY.to_string()]);
        }
        ops.push(Op::Service {
            name: SERVICE.into(),
            enabled: true,
            running: true,
            restart_on: watched,
        });
        Ok(ops)
    }
}

/// The names the registry's certificate carries: the mirror's host, then the registry
/// host's name and addresses (each once), so nodes and the admin reach it by any of them.
pub fn certificate_names(inv: &Inventory) -> Vec<String> {
    let Some(r) = &inv.registry else {
        return Vec::new();
    };
    let mut names = vec![r.mirror_host().to_string()];
    if let Some(host) = inv
        .hosts
        .iter()
        .find(|h| Some(h.name.as_str()) == r.served_by.as_deref())
    {
        names.push(host.name.clone());
        names.extend(host.node_address());
        if let crate::transport::Endpoint::Ssh(t) = &host.endpoint {
            names.push(t.host.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// Prepares the registry gpuctl runs, when the inventory has a registry host: the password
/// (when gpuctl makes it), the CA, the certificate and the htpasswd line. Returns the
/// materials and the loaded password (the nodes' `registries.yaml` needs it too).
pub fn prepare(
    inv: &Inventory,
) -> anyhow::Result<Option<(Arc<site::Materials>, crate::secret::Secret)>> {
    let Some(r) = inv.registry.as_ref().filter(|r| r.served_by.is_some()) else {
        return Ok(None);
    };
    let paths = site::Paths::new(&inv.state_dir());
    // The inventory refuses a served registry whose credentials lack a password.
    let Some(source) = &r.password else {
        anyhow::bail!("registry.credentials has no password");
    };
    if matches!(source, crate::secret::SecretSource::File { .. }) {
        site::ensure_password(&paths)?;
    }
    let password = crate::secret::Secret::load(source, "registry password")?;
    let materials = site::ensure(
        &paths,
        &inv.cluster.name,
        !r.insecure,
        &certificate_names(inv),
        r.username.as_deref().unwrap_or(site::USERNAME),
        &password,
    )?;
    Ok(Some((Arc::new(materials), password)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::secret::{Secret, SecretSource};
    use crate::stages::sample;

    fn with_registry_host() -> Inventory {
        let yaml = sample::YAML.replace(
            "  - name: far\n",
            "  - name: reg\n    address: 10.0.0.9\n    roles: [registry]\n  - name: far\n",
        );
        sample::load(&yaml)
    }

    #[test]
    fn a_registry_host_alone_gives_the_mirror_a_ca_and_a_login_of_gpuctls_own() {
        let inv = with_registry_host();
        let r = inv.registry.as_ref().unwrap();
        assert_eq!(r.mirror, "10.0.0.9:5000");
        assert_eq!(r.served_by.as_deref(), Some("reg"));
        let dir = inv.state_dir().join("registry");
        assert_eq!(r.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        assert_eq!(r.username.as_deref(), Some(site::USERNAME));
        assert_eq!(
            r.password,
            Some(SecretSource::File {
                file: dir.join("password")
            })
        );
        assert_eq!(certificate_names(&inv), ["10.0.0.9", "reg"]);
    }

    #[test]
    fn only_the_registry_host_runs_it_with_tls_and_logins_restarted_on_change() {
        let inv = with_registry_host();
        let stage = RegistryStage {
            site: Some(Arc::new(site::Materials {
                cert: Some("CERT".into()),
                key: Some(Secret::new("KEY-PEM")),
                htpasswd: Secret::new("gpuctl:$2y$10$hash"),
            })),
        };
        assert!(
            stage
                .plan(&inv, &sample::facts(&inv, "cp1"))
                .unwrap()
                .is_empty()
        );
        let ops = stage.plan(&inv, &sample::facts(&inv, "reg")).unwrap();
        let [
            Op::Require { .. },
            Op::File {
                path: config,
                content,
                ..
            },
            Op::File {
                path: htpasswd,
                secret: true,
                owner,
                ..
            },
            Op::File {
                path: cert,
                secret: false,
                ..
            },
            Op::File {
                path: key,
                secret: true,
                mode: 0o640,
                ..
            },
            Op::Service {
                name, restart_on, ..
            },
        ] = &ops[..]
        else {
            panic!("{ops:#?}")
        };
        assert_eq!(
            [config, htpasswd, cert, key].map(String::as_str),
            [CONFIG, HTPASSWD, CERT, KEY]
        );
        assert_eq!(owner, OWNER);
        assert!(content.contains("addr: \":5000\""), "{content}");
        assert!(
            content.contains("certificate: /etc/docker/registry/tls/server.pem"),
            "{content}"
        );
        assert!(
            content.contains("path: /etc/docker/registry/htpasswd"),
            "{content}"
        );
        assert_eq!(name, SERVICE);
        assert_eq!(restart_on.len(), 4);
        // Without materials the stage refuses instead of writing a registry without logins.
        let bare = RegistryStage { site: None };
        assert!(bare.plan(&inv, &sample::facts(&inv, "reg")).is_err());
    }
}
