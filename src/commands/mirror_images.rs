//! `gpuctl mirror-images pull|push|check|export`: the connected side pulls an images file
//! into a bundle, the air-gapped side pushes the bundle into its registry and checks that
//! the registry serves all of it, or exports it as a tarball for nodes without a registry.
//! See `docs/mirror.md`.

use std::collections::HashMap;

use anyhow::anyhow;

use crate::cli::{
    ConnectArgs, ExportFormat, InventoryArgs, MirrorCheckArgs, MirrorExportArgs, MirrorPullArgs,
    MirrorPushArgs, MirrorTargetArgs,
};
use crate::exit::BadInput;
use crate::fleet::Progress;
use crate::mirror::check::node_platform;
use crate::mirror::naming::check_prefix;
use crate::transport::Command;

use super::connect::open_fleet;
use crate::mirror::{
    Bundle, CheckOptions, ExportOptions, LockFile, PullOptions, PushOptions, images_file,
};
use crate::registry::{
    ClientOptions, Credentials, DockerConfig, Platform, Reference, RegistryError,
};
use crate::secret::{Secret, SecretSource};
use crate::table::Table;

pub async fn pull(args: &MirrorPullArgs) -> anyhow::Result<()> {
    let images = images_file::read(&args.images).map_err(BadInput)?;
    let mut platforms = Vec::new();
    for text in &args.platform {
        platforms.push(Platform::parse(text).map_err(|e| BadInput(format!("--platform: {e}")))?);
    }
    for registry in &args.insecure_registry {
        check_registry("--insecure-registry", registry)?;
    }
    let mut credentials = HashMap::new();
    let mut registries: Vec<&str> = images
        .iter()
        .map(|i| i.reference.registry.as_str())
        .collect();
    registries.sort_unstable();
    registries.dedup();
    for registry in registries {
        if let Some(found) = lookup(registry, None, args.verbose)? {
            credentials.insert(registry.to_string(), found);
        }
    }
    let report = crate::mirror::pull(PullOptions {
        images,
        bundle: args.bundle.clone(),
        platforms,
        concurrency: usize::from(args.concurrency),
        update: args.update,
        insecure_registries: args.insecure_registry.clone(),
        ca_file: args.ca_file.clone(),
        credentials,
    })
    .await
    .map_err(|e| with_hint(e, "--insecure-registry HOST"))?;
    println!("pulled {}", report.summary());
    if report.failures.is_empty() {
        return Ok(());
    }
    for failure in &report.failures {
        eprintln!("failed: {}", hint_text(failure, "--insecure-registry HOST"));
    }
    Err(anyhow!(
        "{} problem{} while pulling; run the same command again to resume (blobs already in the bundle are kept)",
        report.failures.len(),
        if report.failures.len() == 1 { "" } else { "s" }
    ))
}

pub async fn push(args: &MirrorPushArgs) -> anyhow::Result<()> {
    let (client, to) = target_client(&args.target)?;
    let report = crate::mirror::push(PushOptions {
        bundle: args.bundle.clone(),
        registry: to.clone(),
        prefix: args.target.prefix.clone(),
        client,
        concurrency: usize::from(args.target.concurrency),
        chunk_size: args.chunk_size,
        create_projects: args.create_projects,
    })
    .await
    .map_err(|e| with_hint(e, "--insecure"))?;
    if let Some(harbor) = &report.harbor {
        let list = |v: &[String]| match v.is_empty() {
            true => "none".to_string(),
            false => v.join(", "),
        };
        println!(
            "Harbor {}: projects created: {}; already there: {}",
            harbor.version,
            list(&harbor.created),
            list(&harbor.existing)
        );
    }
    for (reference, digest) in &report.pushed {
        println!("{reference} {digest}");
    }
    println!("pushed {}", report.summary(&to));
    if report.failures.is_empty() {
        return Ok(());
    }
    for failure in &report.failures {
        eprintln!("failed: {}", hint_text(failure, "--insecure"));
    }
    Err(anyhow!(
        "{} problem{} while pushing; run the same command again to finish (what is already in the registry is skipped)",
        report.failures.len(),
        if report.failures.len() == 1 { "" } else { "s" }
    ))
}

pub async fn check(args: &MirrorCheckArgs) -> anyhow::Result<()> {
    let (client, to) = target_client(&args.target)?;
    let lock_path = match (&args.lock, &args.bundle) {
        (Some(lock), _) => lock.clone(),
        (None, Some(bundle)) => Bundle::open(bundle).map_err(BadInput)?.lock_path(),
        (None, None) => inventory_lock(args.target.inventory.as_deref())?,
    };
    let lock = LockFile::read(&lock_path).map_err(BadInput)?;
    let only = match &args.images {
        Some(path) => images_file::read(path)
            .map_err(BadInput)?
            .into_iter()
            .map(|i| i.reference.to_string())
            .collect(),
        None => Vec::new(),
    };
    let platforms = wanted_platforms(args).await?;
    let results = crate::mirror::check(CheckOptions {
        lock,
        only,
        registry: to.clone(),
        prefix: args.target.prefix.clone(),
        client,
        concurrency: usize::from(args.target.concurrency),
        platforms,
    })
    .await
    .map_err(|e| with_hint(e, "--insecure"))?;
    let mut table = Table::new(["IMAGE", "MIRROR", "RESULT"]);
    let mut incomplete = 0;
    for r in &results {
        let verdict = if r.missing.is_empty() {
            "ok".to_string()
        } else {
            incomplete += 1;
            format!("missing: {}", r.missing.join("; "))
        };
        table.row([r.source.clone(), r.mirror.clone(), verdict]);
    }
    print!("{}", table.render());
    if incomplete == 0 {
        println!("all {} images are in {}", results.len(), to);
        return Ok(());
    }
    Err(anyhow!(
        "{incomplete} of {} images are incomplete in {}; run `gpuctl mirror-images push` with the bundle",
        results.len(),
        to
    ))
}

/// Without --bundle or --lock: the lock file of the inventory's bundle.
fn inventory_lock(inventory: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let Some(path) = inventory else {
        return Err(BadInput(
            "give --bundle DIR or --lock FILE (or --inventory FILE, whose bundle holds the lock)"
                .to_string(),
        )
        .into());
    };
    let inv = super::connect::load_inventory(path)?;
    let Some(bundle) = &inv.bundle else {
        return Err(BadInput(format!(
            "{}: no `bundle` to find the lock file in; give --bundle DIR or --lock FILE",
            path.display()
        ))
        .into());
    };
    crate::mirror::lock::in_bundle(bundle).ok_or_else(|| {
        BadInput(format!(
            "no {} in the inventory's bundle {} or its images/; run `gpuctl mirror-images pull --bundle {}/images` on the connected side",
            crate::mirror::lock::LOCK_FILE,
            bundle.display(),
            bundle.display()
        ))
        .into()
    })
}

/// The platforms every image must offer: `--platform`, else (with `--inventory`) the
/// distinct platforms of the inventory's hosts, each asked for its `uname -m`.
async fn wanted_platforms(args: &MirrorCheckArgs) -> anyhow::Result<Vec<Platform>> {
    if !args.platform.is_empty() {
        return args
            .platform
            .iter()
            .map(|p| Platform::parse(p).map_err(|e| BadInput(format!("--platform: {e}")).into()))
            .collect();
    }
    let Some(inventory) = &args.target.inventory else {
        return Ok(Vec::new());
    };
    let connect = ConnectArgs {
        inventory: InventoryArgs {
            inventory: inventory.clone(),
        },
        hosts: None,
        concurrency: 32,
        accept_new_host_keys: false,
        connect_timeout: 15,
    };
    let (_inv, fleet) = open_fleet(&connect, Progress::detect())?;
    let report = fleet
        .run(|ctx| async move {
            let out = ctx.run(Command::new("uname -m")).await?;
            let machine = out.stdout_str();
            match out.success() {
                true => node_platform(&machine).ok_or_else(|| {
                    anyhow!(
                        "`uname -m` says {:?}, which gpuctl cannot map to an image platform; give --platform",
                        machine.trim()
                    )
                }),
                false => Err(anyhow!("`uname -m` failed: {}", out.stderr_str().trim())),
            }
        })
        .await;
    if report.failure_count() > 0 {
        return Err(anyhow!(
            "cannot learn the nodes' platforms:\n{}name them with --platform (e.g. --platform linux/amd64) to check without asking the hosts",
            report.failure_summary()
        ));
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for result in report.results {
        if let Ok(p) = result.outcome
            && !platforms.contains(&p)
        {
            platforms.push(p);
        }
    }
    println!(
        "the nodes run {}",
        platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(platforms)
}

pub fn export(args: &MirrorExportArgs) -> anyhow::Result<()> {
    let ExportFormat::Tar = args.format;
    let platform =
        Platform::parse(&args.platform).map_err(|e| BadInput(format!("--platform: {e}")))?;
    let mut images = Vec::new();
    for text in &args.images {
        images.push(Reference::parse(text).map_err(|e| BadInput(format!("--images: {e}")))?);
    }
    let report = crate::mirror::export(&ExportOptions {
        bundle: args.bundle.clone(),
        out: args.out.clone(),
        images,
        platform,
    })?;
    for image in &report.images {
        println!(
            "{} {} {} (image id {})",
            image.name, image.platform, image.manifest, image.config
        );
    }
    println!("{}", report.summary());
    Ok(())
}

/// Checks the registry flags and loads the password from its environment variable; with
/// `--inventory`, takes all of it from the inventory's `registry`. Returns the client's
/// options and the registry.
fn target_client(target: &MirrorTargetArgs) -> anyhow::Result<(ClientOptions, String)> {
    if let Some(prefix) = &target.prefix {
        check_prefix(prefix).map_err(|e| BadInput(format!("--prefix: {e}")))?;
    }
    if let Some(path) = &target.inventory {
        return inventory_client(path, target.verbose);
    }
    let to = target.to.clone().unwrap_or_default();
    check_registry("--to", &to)?;
    let flags = match (&target.username, &target.password_env) {
        (Some(username), Some(var)) => {
            let source = SecretSource::Env { env: var.clone() };
            let password = Secret::load(&source, &format!("password of registry user {username}"))
                .map_err(|e| BadInput(e.to_string()))?;
            Some(Credentials {
                username: username.clone(),
                password,
            })
        }
        _ => None,
    };
    let credentials = lookup(&to, flags, target.verbose)?;
    Ok((
        ClientOptions {
            insecure: target.insecure,
            ca_file: target.ca_file.clone(),
            credentials,
            ..ClientOptions::default()
        },
        to,
    ))
}

/// The inventory's mirror with its CA and login. For the registry gpuctl runs, the CA and
/// password are made here when the install has not made them yet, so images can be
/// pushed before the install needs them.
fn inventory_client(
    path: &std::path::Path,
    verbose: bool,
) -> anyhow::Result<(ClientOptions, String)> {
    let inv = super::connect::load_inventory(path)?;
    let Some(r) = &inv.registry else {
        return Err(BadInput(format!(
            "{}: no registry to push to: add `registry: {{ mirror: HOST:PORT }}`, give a host \
             the role registry, or use --to",
            path.display()
        ))
        .into());
    };
    let password = match crate::stages::registry::prepare(&inv)
        .map_err(|e| BadInput(format!("the registry gpuctl runs: {e:#}")))?
    {
        Some((_, password)) => Some(password),
        None => match &r.password {
            Some(source) => Some(
                Secret::load(source, "registry password (registry.credentials.password)")
                    .map_err(|e| BadInput(e.to_string()))?,
            ),
            None => None,
        },
    };
    let flags = match (&r.username, password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password,
        }),
        _ => None,
    };
    if verbose && let Some(c) = &flags {
        eprintln!(
            "credentials for {}: user {} from {}",
            r.mirror,
            c.username,
            path.display()
        );
    }
    let credentials = lookup(&r.mirror, flags, verbose)?;
    Ok((
        ClientOptions {
            insecure: r.insecure,
            ca_file: r.ca_file.clone(),
            credentials,
            ..ClientOptions::default()
        },
        r.mirror.clone(),
    ))
}

/// The credentials for one registry: the command-line flags when given, else the docker
/// config's (credHelpers, then credsStore, then auths), else none. With `verbose`, says
/// which on standard error (the user and the source, never the secret).
fn lookup(
    registry: &str,
    flags: Option<Credentials>,
    verbose: bool,
) -> anyhow::Result<Option<Credentials>> {
    let say = |what: String| {
        if verbose {
            eprintln!("credentials for {registry}: {what}");
        }
    };
    if let Some(creds) = flags {
        say(format!(
            "user {} from --username and --password-env",
            creds.username
        ));
        return Ok(Some(creds));
    }
    let Some(config) = DockerConfig::load_default().map_err(BadInput)? else {
        say(match DockerConfig::default_path() {
            Some(path) => format!("none (no {})", path.display()),
            None => "none (neither DOCKER_CONFIG nor HOME is set)".to_string(),
        });
        return Ok(None);
    };
    match config.credentials_for(registry).map_err(BadInput)? {
        Some(found) => {
            let user = if found.credentials.is_identity_token() {
                "an identity token".to_string()
            } else {
                format!("user {}", found.credentials.username)
            };
            say(format!("{user} from {}", found.source));
            Ok(Some(found.credentials))
        }
        None => {
            say(format!(
                "none (no entry in {}); anonymous",
                config.path.display()
            ));
            Ok(None)
        }
    }
}

/// A registry flag must be `host[:port]`, not a URL or a repository.
fn check_registry(flag: &str, registry: &str) -> Result<(), BadInput> {
    let parsed = Reference::parse(&format!("{registry}/x"));
    match parsed {
        Ok(r) if r.registry == registry && r.repository == "x" => Ok(()),
        _ => Err(BadInput(format!(
            "{flag} {registry}: give the registry as host[:port], e.g. registry.lab:5000 (no scheme, no path)"
        ))),
    }
}

/// Names the flag that fixes a TLS problem: the registry error speaks of "the CA file" and
/// "the insecure setting", the command line has flags for both.
fn with_hint(error: anyhow::Error, insecure_flag: &str) -> anyhow::Error {
    let registry = error
        .chain()
        .find_map(|c| c.downcast_ref::<RegistryError>());
    match registry {
        Some(e) if e.untrusted_certificate() => {
            error.context("the registry's certificate is not trusted: pass the CA certificate that signed it with --ca-file FILE")
        }
        Some(RegistryError::Connect { hint, .. }) if hint.contains("plain HTTP") => {
            error.context(format!("the registry speaks plain HTTP: pass {insecure_flag} if it really has no TLS"))
        }
        _ => error,
    }
}

fn hint_text(failure: &str, insecure_flag: &str) -> String {
    if failure.contains("certificate is not trusted") {
        format!("{failure} (pass the CA certificate with --ca-file FILE)")
    } else if failure.contains("answered in plain HTTP") {
        format!("{failure} (pass {insecure_flag} if it really has no TLS)")
    } else if failure.contains("NOT_FOUND: project ") {
        // Harbor's answer to a push into a project that does not exist.
        format!(
            "{failure} (Harbor needs the project first: push with --create-projects, or create it in Harbor)"
        )
    } else {
        failure.to_string()
    }
}
