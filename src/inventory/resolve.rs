//! Raw inventory → resolved [`Inventory`]: every default decided here, once, and every
//! value checked against the others. Runs even when decoding found problems, so one load
//! reports everything; it returns an inventory only when there is no problem at all.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::decode::S;
use super::endpoint::{SshEnv, expand};
use super::hosts;
use super::model::*;
use super::problem::{At, Problems, did_you_mean};
use super::raw::*;
use super::syntax;
use crate::secret::SecretSource;

pub const K3S_VERSION: &str = "v1.30.6+k3s1";
pub const KUBEADM_VERSION: &str = "v1.30.6";

/// The quota tiers every inventory starts with; `users.tiers` overrides them key by key.
pub fn default_tiers() -> BTreeMap<String, Tier> {
    let tier = |cpu: &str, memory: &str, gpu, storage: &str| Tier {
        cpu: cpu.into(),
        memory: memory.into(),
        gpu,
        storage: storage.into(),
        pvcs: 5,
    };
    BTreeMap::from([
        ("small".to_string(), tier("12.5", "64Gi", 1, "100Gi")),
        ("mid".to_string(), tier("24.5", "128Gi", 2, "500Gi")),
        ("big".to_string(), tier("32.5", "250Gi", 4, "1Ti")),
    ])
}

pub fn resolve(
    p: &mut Problems,
    raw: &RawInventory,
    env: &SshEnv<'_>,
    path: PathBuf,
) -> Option<Inventory> {
    let (cluster, facts) = cluster(p, &raw.cluster);
    let hosts = hosts::resolve_hosts(p, raw, env, &facts);
    let registry = raw.registry.as_ref().and_then(|r| registry(p, r, env));
    let dns = dns(p, &raw.dns);
    let storage = storage(p, raw);
    let runtime_class = match &raw.gpu.runtime_class {
        Some(rc) => label_or_problem(p, rc, "RuntimeClass name"),
        None => Some("nvidia".to_string()),
    };
    let stack = Stack {
        components: raw
            .stack
            .iter()
            .filter_map(|c| label_or_problem(p, c, "component name"))
            .collect(),
        timeout: std::time::Duration::from_secs(raw.stack_timeout.as_ref().map_or(600, |t| t.v)),
        tls: raw.stack_tls.as_ref().and_then(|t| {
            let name = match &t.name {
                Some(n) => label_or_problem(p, n, "Secret name")?,
                None => "kubeflow-gateway-tls".to_string(),
            };
            let namespace = match &t.namespace {
                Some(n) => label_or_problem(p, n, "namespace")?,
                None => "istio-system".to_string(),
            };
            Some(StackTls {
                cert: expand(env, &t.cert.as_ref()?.v),
                key: expand(env, &t.key.as_ref()?.v),
                name,
                namespace,
            })
        }),
    };
    if !stack.components.is_empty()
        && !storage.local_path.as_ref().is_some_and(|l| l.default)
        && !storage.nfs.as_ref().is_some_and(|n| n.default)
    {
        p.warn(
            &At::new(
                raw.stack.first().map(|c| c.at.pos).unwrap_or_default(),
                "stack.components",
            ),
            "no storage class is marked default; the stack's volume claims will stay pending",
            Some("set `default: true` on storage.local_path or storage.nfs".into()),
        );
    }
    let users = users(p, &raw.users);
    let mut known_hosts = vec![match &raw.ssh.known_hosts {
        Some(k) => expand(env, &k.v),
        None => env.base_dir.join("known_hosts"),
    }];
    let personal = env.home.join(".ssh").join("known_hosts");
    if !known_hosts.contains(&personal) {
        known_hosts.push(personal);
    }
    let state_dir = state_dir(
        env.base_dir,
        cluster.as_ref().map_or("", |c| c.name.as_str()),
    );
    let registry = serve_registry(p, raw, registry, &hosts, &state_dir);
    if p.has_errors() {
        return None;
    }
    Some(Inventory {
        path,
        base_dir: env.base_dir.to_path_buf(),
        cluster: cluster?,
        sudo_password: raw.ssh.sudo_password.as_ref().map(|s| s.v.clone()),
        known_hosts,
        bundle: raw.bundle.as_ref().map(|b| expand(env, &b.v)),
        registry,
        dns,
        storage,
        gpu: GpuSettings {
            device_plugin: raw.gpu.device_plugin.as_ref().is_none_or(|b| b.v),
            runtime_class: runtime_class?,
            dcgm_exporter: raw.gpu.dcgm_exporter.as_ref().is_some_and(|b| b.v),
        },
        stack,
        users,
        hosts: hosts.into_iter().collect::<Option<Vec<_>>>()?,
        warnings: Vec::new(),
    })
}

fn label_or_problem(p: &mut Problems, s: &S<String>, what: &str) -> Option<String> {
    match syntax::dns_label(&s.v) {
        Ok(()) => Some(s.v.clone()),
        Err(why) => {
            p.error_hint(
                &s.at,
                format!("{:?} is not a valid {what}: {why}", s.v),
                format!("write \"{}\"", syntax::to_dns_label(&s.v)),
            );
            None
        }
    }
}

fn absolute(p: &mut Problems, s: &S<String>, what: &str) -> Option<PathBuf> {
    if s.v.starts_with('/') {
        Some(PathBuf::from(&s.v))
    } else {
        p.error_hint(
            &s.at,
            format!("{what} {:?} must be an absolute path (it is on the hosts, not beside the inventory)", s.v),
            format!("write \"/{}\"", s.v.trim_start_matches("./")),
        );
        None
    }
}

fn cidr(p: &mut Problems, s: Option<&S<String>>, default: &str, at: &At) -> Option<S<IpNet>> {
    let Some(s) = s else {
        let v = default.parse().ok()?;
        return Some(S { v, at: at.clone() });
    };
    match s.v.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(S {
            v: net,
            at: s.at.clone(),
        }),
        Ok(net) => {
            p.error_hint(
                &s.at,
                format!("{} has host bits set", s.v),
                format!("write \"{}\"", net.trunc()),
            );
            None
        }
        Err(_) => {
            p.error_hint(
                &s.at,
                format!("{:?} is not a CIDR range", s.v),
                format!("write it like \"{default}\""),
            );
            None
        }
    }
}

fn version(p: &mut Problems, v: &S<String>, dist: Distribution) -> Option<String> {
    let core = |s: &str| {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    let text = v.v.as_str();
    let bare = text.strip_prefix('v').unwrap_or(text);
    let ok = match dist {
        Distribution::K3s => bare.split_once("+k3s").is_some_and(|(c, n)| {
            core(c) && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        }),
        Distribution::Kubeadm => core(bare),
    };
    if ok && text.starts_with('v') {
        return Some(text.to_string());
    }
    let core_part = bare.split('+').next().unwrap_or(bare);
    let hint = match dist {
        Distribution::K3s if core(core_part) => format!("write \"v{core_part}+k3s1\""),
        Distribution::K3s => format!("write a k3s release such as \"{K3S_VERSION}\""),
        Distribution::Kubeadm if core(core_part) => format!("write \"v{core_part}\""),
        Distribution::Kubeadm => {
            format!("write a Kubernetes release such as \"{KUBEADM_VERSION}\"")
        }
    };
    let what = match dist {
        Distribution::K3s => "a k3s release (like v1.30.6+k3s1)",
        Distribution::Kubeadm => "a Kubernetes release (like v1.30.6)",
    };
    p.error_hint(&v.at, format!("version {text:?} is not {what}"), hint);
    None
}

fn cluster(p: &mut Problems, c: &RawCluster) -> (Option<Cluster>, hosts::ClusterFacts) {
    let name = c
        .name
        .as_ref()
        .and_then(|n| label_or_problem(p, n, "cluster name"));
    let distribution = c.distribution.as_ref().map_or(Distribution::K3s, |d| d.v);
    let version = match &c.version {
        Some(v) => version(p, v, distribution),
        None => Some(
            match distribution {
                Distribution::K3s => K3S_VERSION,
                Distribution::Kubeadm => KUBEADM_VERSION,
            }
            .to_string(),
        ),
    };
    let (pod_default, svc_default) = match distribution {
        Distribution::K3s => ("10.42.0.0/16", "10.43.0.0/16"),
        Distribution::Kubeadm => ("10.244.0.0/16", "10.96.0.0/12"),
    };
    let pod_cidr = cidr(
        p,
        c.pod_cidr.as_ref(),
        pod_default,
        &At::new(c.at.pos, "cluster.pod_cidr"),
    );
    let service_cidr = cidr(
        p,
        c.service_cidr.as_ref(),
        svc_default,
        &At::new(c.at.pos, "cluster.service_cidr"),
    );
    if let (Some(pod), Some(svc)) = (&pod_cidr, &service_cidr)
        && (pod.v.contains(&svc.v) || svc.v.contains(&pod.v))
    {
        let at = if c.service_cidr.is_some() {
            &svc.at
        } else {
            &pod.at
        };
        p.error_hint(
            at,
            format!("pod_cidr {} and service_cidr {} overlap", pod.v, svc.v),
            format!(
                "use ranges that do not overlap, e.g. the defaults {pod_default} and {svc_default}"
            ),
        );
    }
    let api_endpoint = c.api_endpoint.as_ref().and_then(|a| {
        if a.v.parse::<IpAddr>().is_ok() || syntax::dns_name(&a.v).is_ok() {
            Some(a.v.clone())
        } else {
            p.error_hint(
                &a.at,
                format!("api_endpoint {:?} is not an IP address or DNS name", a.v),
                "write a name or address without scheme or port, e.g. k8s.lab.example",
            );
            None
        }
    });
    let cni = c.cni.as_ref().map_or(
        match distribution {
            Distribution::K3s => Cni::Flannel,
            Distribution::Kubeadm => Cni::Calico,
        },
        |c| c.v,
    );
    let container_runtime = c
        .container_runtime
        .as_ref()
        .map_or(ContainerRuntime::Containerd, |r| r.v);
    if distribution == Distribution::Kubeadm
        && let Some(rt) = &c.container_runtime
        && rt.v == ContainerRuntime::Docker
    {
        p.error_hint(
            &rt.at,
            "kubeadm (Kubernetes 1.24 and later) cannot use docker as the container runtime",
            "write `container_runtime: containerd`, or use `distribution: k3s` which can drive docker",
        );
    }
    let data_dir = c.data_dir.as_ref().map(|d| absolute(p, d, "data_dir"));
    let facts = hosts::ClusterFacts {
        distribution,
        pod_cidr: pod_cidr.as_ref().map(|c| c.v),
        service_cidr: service_cidr.as_ref().map(|c| c.v),
        has_api_endpoint: c.api_endpoint.is_some(),
    };
    let cluster = (|| {
        Some(Cluster {
            name: name?,
            distribution,
            version: version?,
            api_endpoint,
            pod_cidr: pod_cidr?.v,
            service_cidr: service_cidr?.v,
            cni,
            data_dir: match data_dir {
                Some(d) => Some(d?),
                None => None,
            },
            container_runtime,
        })
    })();
    (cluster, facts)
}

fn registry(p: &mut Problems, r: &RawRegistry, env: &SshEnv<'_>) -> Option<Registry> {
    let mirror = r.mirror.as_ref()?;
    if let Err(why) = syntax::registry_address(&mirror.v) {
        p.error_hint(
            &mirror.at,
            format!("mirror {:?}: {why}", mirror.v),
            "write host:port, e.g. registry.lab:5000",
        );
    }
    // Not checked here: only the commands that talk to the registry need the file, and
    // they say so when it is missing.
    let ca_file = r.ca_file.as_ref().map(|c| expand(env, &c.v));
    if r.password.is_some() && r.username.is_none() {
        p.error_hint(
            &r.at,
            "registry credentials have a password but no username",
            "add `username:` under credentials",
        );
    }
    Some(Registry {
        mirror: mirror.v.clone(),
        insecure: r.insecure.as_ref().is_some_and(|b| b.v),
        ca_file,
        username: r.username.as_ref().map(|u| u.v.clone()),
        password: r.password.as_ref().map(|s| s.v.clone()),
        served_by: None,
    })
}

/// With a host of role `registry`, gpuctl runs the registry there (stage `registry`): the
/// mirror defaults to that host's address on port 5000, its CA and login are gpuctl's own
/// (`.gpuctl/<cluster>/registry/`) unless the inventory names credentials, and a CA file
/// of the site's cannot be used (gpuctl signs the registry's certificate with its CA).
fn serve_registry(
    p: &mut Problems,
    raw: &RawInventory,
    registry: Option<Registry>,
    hosts: &[Option<Host>],
    state_dir: &std::path::Path,
) -> Option<Registry> {
    let served: Vec<&Host> = hosts
        .iter()
        .flatten()
        .filter(|h| h.roles.contains(&Role::Registry))
        .collect();
    let Some(host) = served.first() else {
        return registry;
    };
    if served.len() > 1 {
        p.error_hint(
            &raw.hosts_at,
            format!(
                "{} hosts have role registry ({}); gpuctl runs one registry",
                served.len(),
                served
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "keep the role on one host",
        );
    }
    let mut r = match registry {
        Some(r) => r,
        None => {
            let Some(address) = host.node_address() else {
                p.error_hint(
                    &raw.hosts_at,
                    format!(
                        "host {} has role registry, and the nodes cannot reach it at its SSH \
                         address; say where they pull from",
                        host.name
                    ),
                    "add `registry: { mirror: HOST:5000 }`, or `internal_address:` to the host",
                );
                return None;
            };
            let mirror = if address.contains(':') {
                format!("[{address}]:5000")
            } else {
                format!("{address}:5000")
            };
            Registry {
                mirror,
                insecure: false,
                ca_file: None,
                username: None,
                password: None,
                served_by: None,
            }
        }
    };
    // A mirror without a port means 443 (or 80), which the service's user cannot bind.
    if r.mirror_port() < 1024 {
        p.error_hint(
            raw.registry
                .as_ref()
                .and_then(|r| r.mirror.as_ref())
                .map_or(&raw.hosts_at, |m| &m.at),
            format!(
                "registry.mirror {:?}: the registry gpuctl runs on {} listens on the mirror's \
                 port, as an unprivileged user, so the port must be written and at least 1024",
                r.mirror, host.name
            ),
            "write e.g. `mirror: registry.lab:5000`",
        );
    }
    let paths = crate::stages::registry::site::Paths::new(state_dir);
    if let Some(ca) = raw.registry.as_ref().and_then(|r| r.ca_file.as_ref()) {
        p.error_hint(
            &ca.at,
            format!(
                "registry.ca_file with a host of role registry ({}): gpuctl runs that registry \
                 and signs its certificate with a CA of its own ({})",
                host.name,
                paths.ca().display()
            ),
            "remove ca_file; or, for a registry the site runs itself, remove the role registry",
        );
    }
    if !r.insecure {
        r.ca_file = Some(paths.ca());
    }
    if r.username.is_some() && r.password.is_none() {
        p.error_hint(
            raw.registry.as_ref().map_or(&raw.hosts_at, |r| &r.at),
            format!(
                "registry.credentials has a username but no password, and the registry gpuctl \
                 runs on {} logs that user in with it",
                host.name
            ),
            "add `password: { env: REGISTRY_PASSWORD }` under credentials, or leave credentials \
             out for a generated login",
        );
    }
    if r.username.is_none() {
        r.username = Some(crate::stages::registry::site::USERNAME.to_string());
        r.password = Some(SecretSource::File {
            file: paths.password(),
        });
    }
    r.served_by = Some(host.name.clone());
    Some(r)
}

fn dns(p: &mut Problems, raw: &[RawDnsHost]) -> Dns {
    let mut hosts = Vec::new();
    for d in raw {
        let ip = d.ip.as_ref().and_then(|ip| match ip.v.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.error_hint(
                    &ip.at,
                    format!("{:?} is not an IP address", ip.v),
                    "write an address such as 192.168.3.14",
                );
                None
            }
        });
        for n in &d.names {
            if let Err(why) = syntax::dns_name(&n.v) {
                p.error(&n.at, format!("{:?} is not a DNS name: {why}", n.v));
            }
        }
        if let Some(ip) = ip {
            hosts.push(DnsHost {
                ip,
                names: d.names.iter().map(|n| n.v.clone()).collect(),
            });
        }
    }
    Dns { hosts }
}

fn storage(p: &mut Problems, raw: &RawInventory) -> Storage {
    let s = &raw.storage;
    let local_path = s.local_path.as_ref().and_then(|l| {
        Some(LocalPath {
            path: absolute(p, l.path.as_ref()?, "local_path.path")?,
            default: l.default.as_ref().is_some_and(|b| b.v),
        })
    });
    let nfs = s.nfs.as_ref().and_then(|n| {
        let server = n.server.as_ref()?;
        hosts::check_nfs_server(p, server, raw);
        Some(Nfs {
            server: server.v.clone(),
            export: absolute(p, n.export.as_ref()?, "nfs.export")?,
            provisioner: n.provisioner.as_ref().is_none_or(|b| b.v),
            default: n.default.as_ref().is_some_and(|b| b.v),
        })
    });
    if let (Some(l), Some(n)) = (&s.local_path, &s.nfs)
        && let (Some(ld), Some(nd)) = (&l.default, &n.default)
        && ld.v
        && nd.v
    {
        p.error_hint(
            &nd.at,
            "both local_path and nfs are marked default; a cluster has one default storage class",
            "set `default: false` on one of them",
        );
    }
    Storage { local_path, nfs }
}

fn users(p: &mut Problems, raw: &RawUsers) -> Users {
    let mut tiers = default_tiers();
    for t in &raw.tiers {
        if let Err(why) = syntax::dns_label(&t.name.v) {
            p.error(
                &t.name.at,
                format!("tier name {:?} is not valid: {why}", t.name.v),
            );
        }
        let base = tiers.get(&t.name.v).cloned();
        let mut missing = Vec::new();
        let mut text =
            |field: &Option<S<String>>, key: &'static str, default: Option<&String>| -> String {
                match (field, default) {
                    (Some(v), _) => {
                        if let Err(why) = syntax::quantity(&v.v) {
                            p.error_hint(&v.at, why, "write e.g. \"12.5\", 500m, 64Gi or 1Ti");
                        }
                        v.v.clone()
                    }
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        missing.push(key);
                        String::new()
                    }
                }
            };
        let cpu = text(&t.cpu, "cpu", base.as_ref().map(|b| &b.cpu));
        let memory = text(&t.memory, "memory", base.as_ref().map(|b| &b.memory));
        let storage = text(&t.storage, "storage", base.as_ref().map(|b| &b.storage));
        let mut num = |field: &Option<S<u64>>, key: &'static str, default: Option<u32>| -> u32 {
            match (field, default) {
                (Some(v), _) => u32::try_from(v.v).unwrap_or(u32::MAX),
                (None, Some(d)) => d,
                (None, None) => {
                    missing.push(key);
                    0
                }
            }
        };
        let gpu = num(&t.gpu, "gpu", base.as_ref().map(|b| b.gpu));
        let pvcs = num(&t.pvcs, "pvcs", base.as_ref().map(|b| b.pvcs));
        if !missing.is_empty() {
            p.error_hint(
                &t.name.at,
                format!("new tier {:?} is missing {}", t.name.v, missing.join(", ")),
                "a tier other than small, mid and big needs cpu, memory, gpu, storage and pvcs",
            );
        }
        tiers.insert(
            t.name.v.clone(),
            Tier {
                cpu,
                memory,
                gpu,
                storage,
                pvcs,
            },
        );
    }
    let mut users: Vec<User> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for u in &raw.list {
        let Some(name) = &u.name else { continue };
        if let Err(why) = syntax::dns_label(&name.v) {
            p.error_hint(
                &name.at,
                format!("user name {:?} is not valid: {why} (it names the user's profile and namespace)", name.v),
                format!("write \"{}\"", syntax::to_dns_label(&name.v)),
            );
        }
        if let Some(line) = seen.get(&name.v) {
            p.error_hint(
                &name.at,
                format!("user {:?} is listed twice (first at line {line})", name.v),
                "keep one entry",
            );
        }
        seen.insert(name.v.clone(), name.at.pos.line);
        let tier = match &u.tier {
            Some(t) if tiers.contains_key(&t.v) => t.v.clone(),
            Some(t) => {
                let known: Vec<&str> = tiers.keys().map(String::as_str).collect();
                let hint = did_you_mean(&t.v, known.iter().copied())
                    .map(|c| format!("write \"{c}\""))
                    .unwrap_or_else(|| {
                        format!(
                            "define it under users.tiers, or use one of {}",
                            known.join(", ")
                        )
                    });
                p.error_hint(
                    &t.at,
                    format!("unknown tier {:?}; the tiers are {}", t.v, known.join(", ")),
                    hint,
                );
                t.v.clone()
            }
            None => "small".to_string(),
        };
        let email = u.email.as_ref().map(|e| e.v.clone()).unwrap_or_default();
        if let Some(e) = &u.email
            && !e
                .v
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
        {
            p.error_hint(
                &e.at,
                format!("{:?} is not an email address", e.v),
                "write name@domain.example",
            );
        }
        let data_path = u
            .data_path
            .as_ref()
            .and_then(|d| absolute(p, d, "data_path"));
        users.push(User {
            name: name.v.clone(),
            email,
            tier,
            data_path,
        });
    }
    Users { tiers, users }
}
