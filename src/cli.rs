//! Command-line definitions (clap derive). One variant per command; each calls one
//! function in `commands/`. Only commands that work are listed here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::commands;

/// Turn bare Linux machines into an offline GPU machine-learning cluster over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "gpuctl",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter inventory (or convert an Ansible inventory)
    Init(InitArgs),
    /// Inspect an inventory without contacting any host
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Connect to every host, check sudo and print each host's facts
    Ping(PingArgs),
    /// Run a shell command on all or some hosts, output grouped per host
    Exec(ExecArgs),
    /// Copy a local file to all or some hosts: atomic, sha256-verified, resumable
    Copy(CopyArgs),
    /// Converge every host, stage by stage; resumes by itself from the checkpoint journal
    Install(InstallArgs),
    /// Show what install would change, per host and stage, as diffs (changes nothing)
    Plan(PlanArgs),
    /// Read-only health checks on every host, with evidence and the exact fix
    #[command(long_about = DOCTOR_ABOUT)]
    Doctor(DoctorArgs),
    /// List the images an install uses, pull them into a bundle, push them into a registry
    #[command(subcommand)]
    MirrorImages(MirrorImagesCommand),
    /// Undo what install wrote on every host: managed blocks, files, merged keys, services
    Reset(ResetArgs),
    /// Write the cluster's admin kubeconfig (server address rewritten, mode 0600)
    Kubeconfig(KubeconfigArgs),
    /// Write every manifest and config file gpuctl renders from its templates, for review
    #[command(long_about = RENDER_ABOUT)]
    Render(RenderArgs),
    /// Add, list and remove the cluster's users (namespace, quota tier, data volume)
    #[command(subcommand, long_about = USERS_ABOUT)]
    Users(UsersCommand),
    /// Build the offline bundle on a connected machine, or verify one before use
    #[command(subcommand)]
    Bundle(BundleCommand),
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Download every file of a spec (sha256-pinned, resumable), render its kustomize
    /// components, and write bundle.yaml
    #[command(
        long_about = "Download every file of a spec (sha256-pinned, resumable), render its \
                      kustomize components with the kubectl or kustomize on PATH, and write \
                      bundle.yaml listing every file with its sha256 and size. Run it on a \
                      connected machine; carry the directory across the air gap. Files already \
                      there with their pinned sha256 are kept, a partial download is resumed, \
                      and entries of an existing bundle.yaml for files the spec does not name \
                      stay. The spec format is in docs/offline-bundle.md.",
        after_help = "Example:\n  gpuctl bundle create --spec bundle-spec.yaml --out bundle/\n  gpuctl bundle create --spec bundle-spec.yaml --out bundle/ --base-url https://mirror.example.cn/k3s"
    )]
    Create(BundleCreateArgs),
    /// Check every file of a bundle against bundle.yaml (sha256 and size)
    Verify(BundleVerifyArgs),
}

#[derive(Debug, Args)]
pub struct BundleCreateArgs {
    /// The bundle spec (YAML): name, base_url, files with url and sha256, components
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The bundle directory to fill (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Fetch from this base URL instead of the spec's base_url (a domestic mirror of the
    /// same files; the sha256 pins still decide)
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct BundleVerifyArgs {
    /// The bundle directory (the one with bundle.yaml)
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
}

const USERS_ABOUT: &str = "Add, list and remove the cluster's users.

The inventory's users.list is the one list of users: `add` and `remove` edit that list in the \
inventory file (one line each; comments and layout are kept), then converge the `users` stage \
on the first server, as `gpuctl install --only users` would. A user is a namespace, the \
ResourceQuota of their tier, the `edit` role for their email and, with --data-path, a \
read-only volume of the shared NFS data. See docs/users.md.";

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user to the inventory and create their namespace, quota and role now
    #[command(
        after_help = "Example:\n  gpuctl users add --inventory lab.yaml --user alice --email alice@lab.example --tier mid --data-path /data/share/alice"
    )]
    Add(UsersAddArgs),
    /// Every user with their tier and quota, used/hard, as the cluster reports them
    List(UsersListArgs),
    /// Take a user out of the inventory and delete their namespace and all in it
    #[command(
        long_about = "Take a user out of the inventory and delete their namespace and \
                      everything in it (asks first unless --yes). The volume of shared data is \
                      kept unless --purge: it names data others may read. --purge deletes the \
                      PersistentVolume object only, never files on the NFS server."
    )]
    Remove(UsersRemoveArgs),
}

/// How the `users` commands reach the cluster: the first server only.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Trust and record the first server's host key if known_hosts lacks it
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for the SSH connection
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Args)]
pub struct UsersAddArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The user's name; their namespace is this, lowercased, other characters as `-`
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The email the cluster's authentication reports for them (gets the `edit` role)
    #[arg(long, value_name = "EMAIL")]
    pub email: String,
    /// A tier of users.tiers (small, mid and big exist unless the inventory redefines them)
    #[arg(long, value_name = "TIER")]
    pub tier: String,
    /// A directory of the NFS export the user may read (needs storage.nfs)
    #[arg(long, value_name = "PATH")]
    pub data_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct UsersListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct UsersRemoveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The user to remove
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// Also delete the user's data PersistentVolume object (never the files it points at)
    #[arg(long)]
    pub purge: bool,
    /// Do not ask before removing
    #[arg(long)]
    pub yes: bool,
}

const RENDER_ABOUT: &str =
    "Write every manifest and config file gpuctl renders from its templates, for review or GitOps.

Contacts no host. Each template under templates/ (embedded in gpuctl) is rendered with the \
inventory; components the inventory turns off render to nothing and get no file. --templates DIR \
replaces any template by a file with the same relative name (DIR/gpu/device-plugin.yaml.hbs). \
Templates are strict: a value the context lacks is an error naming the template and line. \
See docs/templates.md for every template and the values they see. For each of stack.components \
it also writes stack/<component>/: the bundle's manifests under upstream/ and a \
kustomization.yaml mapping every image to the mirror (docs/stack.md).

Exit status: 0 written, 2 for a bad inventory, template or output directory.";

/// `gpuctl render`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  gpuctl render --inventory lab.yaml --out rendered/")]
pub struct RenderArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// The directory to write into (created if missing; files gpuctl renders are replaced)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A directory of templates replacing the embedded ones of the same relative name
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MirrorImagesCommand {
    /// Resolve every image of an images file to a digest (written to the bundle's lock
    /// file) and download it into the bundle, each blob once for the whole set
    #[command(
        after_help = "Example:\n  gpuctl mirror-images pull --images images.txt --bundle ./bundle --platform linux/amd64\n\n\
        The lock file is <DIR>/images.lock.yaml; a second pull keeps its pins and downloads\n\
        only what the bundle lacks."
    )]
    Pull(MirrorPullArgs),
    /// Push every image of the bundle's lock file into a registry, digests unchanged;
    /// every blob to send is verified first, nothing is sent if one is damaged
    #[command(
        after_help = "Example:\n  REGISTRY_PASSWORD=... gpuctl mirror-images push --bundle ./bundle --to registry.lab:5000 \\\n      --username admin --password-env REGISTRY_PASSWORD --ca-file ca.pem\n\n\
        What the registry already holds is skipped, so an interrupted push is finished by\n\
        running it again; images it holds whole are not read from the bundle again."
    )]
    Push(MirrorPushArgs),
    /// Check that a registry serves every locked image, for every locked platform (manifests
    /// and blobs); lists what is missing and exits 1 if anything is
    Check(MirrorCheckArgs),
    /// Write images of the bundle, one platform each, as one tarball that `docker load`
    /// and `ctr images import` both accept (k3s imports it from its agent/images directory)
    #[command(
        after_help = "Example:\n  gpuctl mirror-images export --bundle ./bundle --format tar --out images.tar --platform linux/amd64\n\n\
        Images keep their upstream names (docker.io/library/busybox:1.36). For a cluster without\n\
        a registry, copy the file into /var/lib/rancher/k3s/agent/images/ on every node before\n\
        k3s starts, or load it with `docker load -i` or `ctr -n k8s.io images import`."
    )]
    Export(MirrorExportArgs),
    /// List every image an install uses, found in an images file and in manifests (image
    /// fields, env values, args, annotations, ConfigMap data, custom resources)
    #[command(long_about = MIRROR_LIST_ABOUT)]
    List(MirrorListArgs),
}

const MIRROR_LIST_ABOUT: &str =
    "List every image an install uses, one line per image with where it was found.

Every string value of every manifest is searched, including JSON and YAML held inside strings \
(ConfigMap data) and lists separated by commas or spaces. A string is an image when the \
reference parser accepts it, it is not a URL, a path or a bare version, and: it is pinned by \
digest; or it sits under an image key (a key, env name or --flag= ending in image, images or \
imagename, or value/options/default under one); or it has a tag and a / in its name \
(quay.io/x/y:1.0); or it is one word with a version tag (nginx:1.27). Entries of --images are \
taken as they are. With --inventory, gpuctl's own templates are rendered for it (as `gpuctl \
render` writes them) and each stack component's manifests are read from the bundle. See \
docs/mirror.md, \"Finding every image\".

Exit status: 0 listed, 2 for a file that cannot be read or parsed (every one is named, with \
its line).";

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("sources").required(true).multiple(true).args(["inventory", "images", "manifests"])),
    after_help = "Examples:\n  gpuctl mirror-images list --inventory lab.yaml\n  gpuctl mirror-images list --manifests ./manifests --images extra.txt --output images > images.txt"
)]
pub struct MirrorListArgs {
    /// The images the install of this inventory uses: gpuctl's templates rendered with it,
    /// and the manifests of its stack components in the bundle (BUNDLE/manifests/NAME/)
    #[arg(long, short, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// With --inventory: templates replacing the embedded ones (as `gpuctl render --templates`)
    #[arg(long, value_name = "DIR", requires = "inventory")]
    pub templates: Option<PathBuf>,
    /// An images file whose entries are listed as they are (with their line)
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// A manifest file, or a directory searched recursively for *.yaml, *.yml and *.json
    /// (sorted; hidden directories skipped); repeatable
    #[arg(long, value_name = "PATH")]
    pub manifests: Vec<PathBuf>,
    /// `text`: one line per image with the first place it was found and how many more;
    /// `images`: an images file for `mirror-images pull --images` on standard output
    #[arg(long, value_enum, default_value_t = ListOutput::Text)]
    pub output: ListOutput,
    /// With --output text, every place each image was found, one per line
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListOutput {
    Text,
    Images,
}

#[derive(Debug, Args)]
pub struct MirrorPullArgs {
    /// The images file: one image reference per line, `#` starts a comment
    #[arg(long, value_name = "FILE")]
    pub images: PathBuf,
    /// The bundle directory; created when missing. Blobs already in it are not downloaded again
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Keep only these platforms of multi-platform images, comma-separated
    /// (e.g. linux/amd64,linux/arm64); default: every platform
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH")]
    pub platform: Vec<String>,
    /// How many downloads run at once, for all images together
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Resolve tags again instead of keeping the digests pinned in the lock file
    #[arg(long)]
    pub update: bool,
    /// Speak plain HTTP (no TLS) to this source registry, `host[:port]`; repeatable
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Trust the CA certificates in this PEM file (for source registries with a private CA)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Say which credentials each registry is read with, and where they came from (never
    /// the secret itself)
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct MirrorPushArgs {
    /// The bundle directory written by `mirror-images pull`
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub target: MirrorTargetArgs,
    /// Blobs larger than this are uploaded in chunks of this size (suffix K, M or G)
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "BYTES")]
    pub chunk_size: u64,
    /// The registry is Harbor: create the projects the push needs (the first path
    /// component of each repository) that do not exist yet, as private projects, with the
    /// push's login. Harbor refuses a push into a missing project
    #[arg(long)]
    pub create_projects: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("lock_source").args(["bundle", "lock"])))]
pub struct MirrorCheckArgs {
    /// The bundle whose lock file says what the mirror must hold (with --inventory, the
    /// default is the inventory's `bundle`)
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The lock file itself (`images.lock.yaml`), instead of --bundle
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Check only the images of this images file (each must be in the lock); default: all
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Every image must offer these platforms, comma-separated (e.g. linux/amd64,linux/arm64).
    /// With --inventory and no --platform: the platforms of the inventory's hosts, each
    /// asked over SSH (`uname -m`)
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH")]
    pub platform: Vec<String>,
    #[command(flatten)]
    pub target: MirrorTargetArgs,
}

#[derive(Debug, Args)]
pub struct MirrorExportArgs {
    /// The bundle directory written by `mirror-images pull`
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// The archive format; `tar` is an OCI image layout plus Docker's manifest.json
    #[arg(long, value_enum, default_value_t = ExportFormat::Tar)]
    pub format: ExportFormat,
    /// The tarball to write (written to a temp file beside it, then renamed)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Export only these images of the bundle, as references (`busybox:1.36` is
    /// docker.io/library/busybox:1.36); repeatable; default: every image
    #[arg(long, value_name = "IMAGE", num_args = 1..)]
    pub images: Vec<String>,
    /// The platform to export of every image (one per image: Docker's format has no
    /// platforms)
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH")]
    pub platform: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Tar,
}

/// The mirror registry and how to reach it; shared by push and check.
#[derive(Debug, Args)]
pub struct MirrorTargetArgs {
    /// The mirror registry, `host[:port]`. docker.io/library/nginx goes to
    /// REGISTRY/library/nginx (the upstream path is kept)
    #[arg(long, value_name = "REGISTRY", required_unless_present = "inventory")]
    pub to: Option<String>,
    /// Take the registry from this inventory instead: `registry.mirror`, its CA and
    /// login (for the registry gpuctl runs on a `registry` host, the CA and password
    /// gpuctl made, made now if the install has not run yet)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["to", "insecure", "ca_file", "username"]
    )]
    pub inventory: Option<PathBuf>,
    /// Put every repository under this path: REGISTRY/PREFIX/library/nginx
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// Speak plain HTTP to the registry (only for a registry without TLS)
    #[arg(long)]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file (a registry with a private CA)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The registry user. Without --username, credentials come from the docker config
    /// (`$DOCKER_CONFIG/config.json` or ~/.docker/config.json: credHelpers, credsStore, auths)
    #[arg(long, requires = "password_env", value_name = "USER")]
    pub username: Option<String>,
    /// The environment variable that holds the password (it is never given on the command line)
    #[arg(long, requires = "username", value_name = "VAR")]
    pub password_env: Option<String>,
    /// How many registry operations run at once, for all images together (push sends at
    /// most as many blobs of 32 MiB or more at once as this machine has cores)
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Say which credentials the registry is used with, and where they came from (never
    /// the secret itself)
    #[arg(long, short)]
    pub verbose: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a size; write e.g. 64M, 512K or 1G");
    let (digits, factor) = match text.trim().char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1024),
        Some((i, 'M' | 'm')) => (&text[..i], 1024 * 1024),
        Some((i, 'G' | 'g')) => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n >= 1024)
        .ok_or_else(bad)
}

const DOCTOR_ABOUT: &str = "Read-only health checks on every host, with evidence and the exact fix.

One read-only script per host gathers the evidence in one round trip (sudo only to read files \
the login user cannot); nothing is ever written on a host, unless --smoke asks for the one \
check that writes (R8: a pod per GPU node runs nvidia-smi, then its namespace is deleted). Findings carry a stable id (H2, G5, \
R5, ...; see docs/doctor.md), a severity (ok, skip, info, warn, error), the lines they were \
judged on, and the command that fixes them. Hosts are also compared with each other: the odd \
one out (kernel, MTU, sysctls, GPU counts), duplicate hostnames, clock skew. Once k3s is \
installed, one more read-only script on the first server reads the cluster (API, nodes, \
labels, GPUs, storage classes, CoreDNS entries).

Exit status: 0 when no finding is an error, 1 when any is (an unreachable host is one), \
2 for a bad flag or inventory.";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the inventory ("-" for standard output)
    #[arg(long, short, default_value = "inventory.yaml")]
    pub out: PathBuf,
    /// Convert this Ansible inventory (INI or YAML) instead of writing the starter
    #[arg(long, value_name = "FILE")]
    pub from_ansible: Option<PathBuf>,
    /// Overwrite the output file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Validate an inventory and print the resolved hosts table
    Check(InventoryArgs),
}

/// Where the inventory is.
#[derive(Debug, Args, Clone)]
pub struct InventoryArgs {
    /// The inventory file
    #[arg(long, short, env = "GPUCTL_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,
}

/// How to connect to hosts; shared by every command that does.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Only these hosts: comma-separated names or globs (`gpu*`), or roles as `role:worker`
    #[arg(long, value_name = "PATTERN")]
    pub hosts: Option<String>,
    /// How many hosts to work on at once
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Trust and record host keys not yet in known_hosts (a changed key is still refused)
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for each SSH connection
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the facts as JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Run the command as root (through sudo when the login is not root)
    #[arg(long)]
    pub sudo: bool,
    /// Give up on a host after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// The command, after `--`; it runs through `sh -c` on each host
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Write as root (through sudo when the login is not root)
    #[arg(long)]
    pub sudo: bool,
    /// File mode on the hosts, in octal
    #[arg(long, value_parser = parse_mode, value_name = "OCTAL")]
    pub mode: Option<u32>,
    /// Owner on the hosts, as `user:group`
    #[arg(long, value_name = "USER:GROUP")]
    pub owner: Option<String>,
    /// The local file
    pub src: PathBuf,
    /// The absolute path on each host
    pub dest: String,
}

/// `gpuctl install`.
///
/// Stages run in order on every host (facts, preflight, os, packages, registry, runtime, nfs,
/// kubernetes: k3s or kubeadm), then the cluster stages once on the first server (cni,
/// ready, kubeconfig, labels, gpu, dns, storage, stack, users).
/// Joining nodes wait for the first server's kubernetes stage. A stage whose Ops are the same
/// as when it last succeeded on a host is skipped; a changed inventory re-runs exactly the
/// stages it changes. A host that fails stops there, the others carry on, and the run ends
/// with a table and the command that resumes. See docs/install.md.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Run only these stages (comma-separated); facts always runs
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "STAGE",
        conflicts_with = "from"
    )]
    pub only: Vec<String>,
    /// Leave these stages out (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub skip: Vec<String>,
    /// Start at this stage (facts still runs first)
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Probe and apply these stages even where their checkpoint says done
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub force: Vec<String>,
    /// Probe every stage even where done, and repair what drifted
    #[arg(long)]
    pub verify: bool,
    /// Probe and show what would change; change nothing, write no journal, take no lock
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when standard input is not a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

/// `gpuctl plan`: every stage probed on every host, changes shown as diffs, nothing written.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Show only these stages (comma-separated); facts always runs
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub only: Vec<String>,
    /// Leave these stages out (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    pub skip: Vec<String>,
}

/// `gpuctl kubeconfig`: the admin kubeconfig of the first server, its server address
/// rewritten to `https://<api_endpoint, else the first server's address>:6443`, its
/// cluster, context and user named after the cluster, written with mode 0600 (atomically).
/// The credentials in it are never printed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gpuctl kubeconfig --inventory lab.yaml\n        writes .gpuctl/<cluster>/kubeconfig beside the inventory\n      gpuctl kubeconfig --inventory lab.yaml --merge\n        merges it into $KUBECONFIG (its first file) or ~/.kube/config, keeping other contexts"
)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Write it here instead of .gpuctl/<cluster>/kubeconfig (with --merge: merge into
    /// this file)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Merge into an existing kubeconfig ($KUBECONFIG's first file, else ~/.kube/config),
    /// replacing this cluster's entries and keeping every other context
    #[arg(long)]
    pub merge: bool,
    /// Trust and record the first server's host key if known_hosts lacks it
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for the SSH connection
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Only checks of these layers: host, gpu, runtime, mirror, kubernetes, network,
    /// storage, stack (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "LAYER,...")]
    pub only: Vec<String>,
    /// Leave out findings of these check ids, e.g. H4,H11 (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub ignore: Vec<String>,
    /// Print the report as JSON (schema: docs/doctor.schema.json)
    #[arg(long)]
    pub json: bool,
    /// Show passing checks one per line, with their evidence
    #[arg(long, short)]
    pub verbose: bool,
    /// Also write everything doctor saw (report and each host's evidence, credentials
    /// redacted) to this .tar.gz, to carry out of an air-gapped site
    #[arg(long, value_name = "FILE.tar.gz")]
    pub support_bundle: Option<PathBuf>,
    /// Also run the checks that write (R8, N6): a pod per GPU node with one GPU runs
    /// nvidia-smi from the mirror's CUDA image, and one pod looks up every dns.hosts name;
    /// their namespace is deleted afterwards
    #[arg(long)]
    pub smoke: bool,
    /// How long the smoke pods get to finish
    #[arg(
        long,
        default_value_t = 180,
        value_name = "SECONDS",
        requires = "smoke"
    )]
    pub smoke_timeout: u64,
}

/// `gpuctl reset`: every install stage in reverse, each of its Ops undone (see
/// docs/install.md).
#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Probe and show what would be undone; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when standard input is not a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("`{text}` is not a file mode; write it in octal, e.g. 0644"))
}

/// Parses arguments, runs the command, and turns the result into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::exit::BAD_INPUT
            } else {
                crate::exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(crate::exit::FAILED);
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::exit::report(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("10").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5G").is_err());
    }
}
