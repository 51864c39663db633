//! The `runtime` and `packages` stages against real lab nodes: docker's daemon.json merged
//! into the admin's file with docker restarted only when it changed (a fixture stands in
//! for dockerd, which cannot run in a node), and real Debian packages from a bundle
//! installed offline, re-runs sending nothing, a corrupt bundle refused before any host is
//! touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::lab::{Lab, LabSpec};

const RUN_DEADLINE: Duration = Duration::from_secs(300);

fn install(lab: &Lab, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["install", "--yes"])
        .args(extra.iter().copied())
        .inventory(&lab.inventory)
        .spawn()
        .wait(RUN_DEADLINE)
}

/// Inserts `lines` right after `cluster:` (cluster fields) or at the top (top-level keys).
fn edit_inventory(lab: &Lab, cluster: &str, top: &str) {
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let text = text.replacen("cluster:\n", &format!("{top}cluster:\n{cluster}"), 1);
    std::fs::write(&lab.inventory, text).unwrap_or_else(|e| panic!("{e}"));
}

/// The part of a run's output about one host.
fn host_part<'a>(out: &'a Outcome, host: &str) -> &'a str {
    out.stdout
        .split("== ")
        .find(|s| s.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no section for {host}:\n{}", out.stdout))
}

const DOCKER_UNIT: &str = "[Unit]\nDescription=Docker (dockerd fixture of the lab)\n\n\
[Service]\nExecStart=/usr/bin/dockerd\n\n[Install]\nWantedBy=multi-user.target\n";

/// What a docker package leaves on a node, with the fixture as its daemon.
fn install_docker(lab: &Lab, node: &str) {
    lab.install_fixture(node, "dockerd", "/usr/bin/dockerd");
    lab.exec(
        node,
        &format!("mkdir -p /etc/docker && printf '%s' '{DOCKER_UNIT}' > /lib/systemd/system/docker.service"),
    );
}

fn starts(lab: &Lab, node: &str) -> Vec<String> {
    lab.exec(
        node,
        "cat /var/log/gpuctl-lab/dockerd.starts 2>/dev/null || true",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn daemon_json(lab: &Lab, node: &str) -> serde_json::Value {
    let text = lab.exec(node, "cat /etc/docker/daemon.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{node}: {e}:\n{text}"))
}

#[test]
fn docker_gets_its_daemon_json_merged_and_restarts_only_when_it_changed() {
    let lab = Lab::up(&LabSpec::new(2).gpu(1));
    for node in ["node1", "node2"] {
        install_docker(&lab, node);
    }
    lab.exec(
        "node1",
        r#"printf '%s' '{"data-root": "/data/docker", "exec-opts": ["native.cgroupdriver=cgroupfs", "foo=bar"], "insecure-registries": ["mine:5000"]}' > /etc/docker/daemon.json"#,
    );
    edit_inventory(
        &lab,
        "  container_runtime: docker\n",
        "registry: { mirror: \"registry.lab:5000\", insecure: true }\n",
    );

    // node2 is a GPU host without the NVIDIA runtime: it fails before writing anything.
    let out = install(&lab, &["--only", "runtime"]).code(1);
    let node2 = host_part(&out, "node2");
    assert!(
        node2.contains("runtime    FAILED: nvidia-container-runtime is not installed"),
        "{}",
        out.stdout
    );
    lab.exec("node2", "test ! -e /etc/docker/daemon.json");
    assert!(starts(&lab, "node2").is_empty());

    let json = daemon_json(&lab, "node1");
    assert_eq!(json["data-root"], "/data/docker");
    assert_eq!(
        json["exec-opts"],
        serde_json::json!(["native.cgroupdriver=systemd", "foo=bar"])
    );
    assert_eq!(
        json["insecure-registries"],
        serde_json::json!(["mine:5000", "registry.lab:5000"])
    );
    assert_eq!(
        json["registry-mirrors"],
        serde_json::json!(["http://registry.lab:5000"])
    );
    assert_eq!(json["log-driver"], "json-file");
    assert_eq!(json["log-opts"]["max-size"], "100m");
    assert!(json.get("default-runtime").is_none(), "{json}");
    assert_eq!(starts(&lab, "node1").len(), 1);
    assert_eq!(
        lab.exec("node1", "systemctl is-active docker").trim(),
        "active"
    );
    assert_eq!(
        lab.exec("node1", "systemctl is-enabled docker").trim(),
        "enabled"
    );

    // With the toolkit there, node2 converges (default runtime nvidia); node1 is done.
    lab.install_fixture(
        "node2",
        "nvidia-container-runtime",
        "/usr/bin/nvidia-container-runtime",
    );
    let out = install(&lab, &["--only", "runtime"]).success();
    assert!(
        host_part(&out, "node1").contains("runtime    skipped"),
        "{}",
        out.stdout
    );
    let json = daemon_json(&lab, "node2");
    assert_eq!(json["default-runtime"], "nvidia");
    assert_eq!(
        json["runtimes"]["nvidia"]["path"],
        "nvidia-container-runtime"
    );
    assert_eq!(starts(&lab, "node2").len(), 1);

    // Probed again with nothing changed: in sync, and docker is not restarted.
    let out = install(&lab, &["--only", "runtime", "--force", "runtime"]).success();
    assert!(out.stdout.contains("0 changes made"), "{}", out.stdout);
    assert_eq!(starts(&lab, "node1").len(), 1);
    assert_eq!(starts(&lab, "node2").len(), 1);

    // The admin drops exec-opts by hand: --verify puts it back and restarts docker once,
    // which then reads the repaired file.
    lab.exec(
        "node1",
        "python3 -c 'import json; p=\"/etc/docker/daemon.json\"; d=json.load(open(p)); \
         del d[\"exec-opts\"]; json.dump(d, open(p, \"w\"))'",
    );
    let out = install(&lab, &["--only", "runtime", "--verify"]).success();
    assert!(
        host_part(&out, "node1").contains("restart (/etc/docker/daemon.json changed)"),
        "{}",
        out.stdout
    );
    let node1 = starts(&lab, "node1");
    assert_eq!(node1.len(), 2, "{node1:?}");
    let now = lab.exec("node1", "sha256sum < /etc/docker/daemon.json | cut -c1-64");
    assert_eq!(node1[1], format!("start {}", now.trim()));
    assert_eq!(
        daemon_json(&lab, "node1")["exec-opts"],
        serde_json::json!(["native.cgroupdriver=systemd"])
    );
    assert_eq!(starts(&lab, "node2").len(), 1);
}

/// Real Debian packages for the lab's Debian (bookworm, like this machine), fetched by
/// `.ci/run` with `apt-get download` into the target directory: the tests themselves send
/// no traffic beyond this machine and the lab.
pub(crate) fn real_debs(names: &[&str]) -> Vec<PathBuf> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debs");
    let find = |name: &str| {
        std::fs::read_dir(&cache)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb"))
            })
    };
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| find(n).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "this test installs real Debian packages, and {} are not in {}; fetch them first \
         (as .ci/run does): mkdir -p {dir} && cd {dir} && apt-get download {all}",
        missing.join(", "),
        cache.display(),
        dir = cache.display(),
        all = names.join(" "),
    );
    names
        .iter()
        .map(|n| find(n).unwrap_or_else(|| panic!("apt-get download left no {n}_*.deb")))
        .collect()
}

/// Writes `bundle.yaml` for every file under `dir/packages` (role directories too).
fn write_manifest(dir: &Path) {
    let mut yaml = String::from("name: lab-test\nfiles:\n");
    let mut files = Vec::new();
    let mut todo = vec![dir.join("packages")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{e}"));
        let name = f.strip_prefix(dir).unwrap_or(&f).display();
        yaml.push_str(&format!(
            "  - path: {name}\n    sha256: {}\n    size: {}\n",
            hex::encode(Sha256::digest(&bytes)),
            bytes.len()
        ));
    }
    std::fs::write(dir.join("bundle.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn real_debian_packages_install_offline_from_the_bundle_once() {
    let debs = real_debs(&["jq", "libjq1", "libonig5"]);
    let lab = Lab::up(&LabSpec::new(1));
    let bundle = lab.dir().join("bundle");
    let pkgs = bundle.join("packages/debian-12");
    std::fs::create_dir_all(&pkgs).unwrap_or_else(|e| panic!("{e}"));
    // First without libonig5: apt refuses before dpkg changes anything.
    for deb in &debs[..2] {
        std::fs::copy(deb, pkgs.join(deb.file_name().unwrap_or_default()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    write_manifest(&bundle);
    edit_inventory(&lab, "", "bundle: ./bundle\n");
    assert!(!lab.exec_output("node1", "dpkg -s jq").status.success());

    let out = install(&lab, &["--only", "packages"]).code(1);
    assert!(out.stdout.contains("packages   FAILED"), "{}", out.stdout);
    assert!(out.stdout.contains("libonig5"), "{}", out.stdout);
    assert!(!lab.exec_output("node1", "dpkg -s jq").status.success());
    assert!(!lab.exec_output("node1", "dpkg -s libjq1").status.success());

    std::fs::copy(&debs[2], pkgs.join(debs[2].file_name().unwrap_or_default()))
        .unwrap_or_else(|e| panic!("{e}"));
    write_manifest(&bundle);
    let out = install(&lab, &["--only", "packages"]).success();
    assert!(
        out.stdout
            .contains("~ upload /var/cache/gpuctl/debs/libonig5_"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("~ command `# install jq, libjq1, libonig5"),
        "{}",
        out.stdout
    );
    let version = lab.exec("node1", "dpkg-query -W -f '${Version}' jq");
    let jq_deb = debs[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        jq_deb.contains(&format!("_{version}_")),
        "{jq_deb} vs {version}"
    );
    assert_eq!(
        lab.exec("node1", "echo '{\"a\": 41}' | jq '.a + 1'").trim(),
        "42"
    );
    let mtimes = "stat -c '%n %Y %s' /var/cache/gpuctl/debs/*.deb";
    let before = lab.exec("node1", mtimes);

    // Done: skipped; probed anyway: in sync, nothing uploaded or installed again.
    install(&lab, &["--only", "packages"])
        .success()
        .stdout_has("packages   skipped");
    let out = install(&lab, &["--only", "packages", "--force", "packages"]).success();
    assert!(
        out.stdout.contains("packages   in sync (4 checked)"),
        "{}",
        out.stdout
    );
    assert_eq!(lab.exec("node1", mtimes), before);

    // A corrupt package (same size, one byte changed): bad input, no host touched.
    let victim = pkgs.join(debs[0].file_name().unwrap_or_default());
    let mut bytes = std::fs::read(&victim).unwrap_or_else(|e| panic!("{e}"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap_or_else(|e| panic!("{e}"));
    lab.exec("node1", "rm /var/cache/gpuctl/debs/jq_*.deb");
    let journal = "stat -c %Y /var/lib/gpuctl/state.json";
    let journal_before = lab.exec("node1", journal);
    let out = install(&lab, &["--only", "packages", "--force", "packages"]).code(2);
    assert!(
        out.stderr.contains(&format!(
            "packages/debian-12/{jq_deb}: sha256 is {}",
            hex::encode(Sha256::digest(&bytes))
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("== node1"), "{}", out.stdout);
    lab.exec(
        "node1",
        "test -z \"$(ls /var/cache/gpuctl/debs/ | grep '^jq_')\"",
    );
    assert_eq!(lab.exec("node1", journal), journal_before);
}

fn stdout_of(lab: &Lab, node: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&lab.exec_output(node, cmd).stdout)
        .trim()
        .to_string()
}

fn reset(lab: &Lab, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args(["reset"])
        .args(extra.iter().copied())
        .inventory(&lab.inventory)
        .spawn()
        .wait(RUN_DEADLINE)
}

#[test]
fn reset_undoes_what_install_wrote_and_a_second_reset_finds_nothing() {
    let lab = Lab::up(&LabSpec::new(1));
    install_docker(&lab, "node1");
    let admin = r#"{"data-root": "/data/docker", "exec-opts": ["foo=bar"]}"#;
    lab.exec(
        "node1",
        &format!("printf '%s' '{admin}' > /etc/docker/daemon.json"),
    );
    edit_inventory(&lab, "  container_runtime: docker\n", "");
    install(&lab, &["--only", "os,runtime"]).success();
    assert!(
        lab.exec("node1", "cat /etc/hosts")
            .contains("# BEGIN gpuctl hosts")
    );
    assert_eq!(daemon_json(&lab, "node1")["log-driver"], "json-file");
    let sleeping = "ps -eo args | grep -c '^sleep infinity$'";
    assert_eq!(
        stdout_of(&lab, "node1", sleeping),
        "1",
        "the dockerd fixture runs"
    );
    let installed = lab.exec(
        "node1",
        "cat /etc/hosts /etc/sysctl.d/90-gpuctl.conf /etc/docker/daemon.json | sha256sum",
    );

    // Without a terminal reset refuses unless told --yes; a dry run shows and changes nothing.
    reset(&lab, &[]).code(2).stderr_has("pass --yes");
    let dry = reset(&lab, &["--dry-run"]).success();
    for needle in [
        "~ block hosts in /etc/hosts",
        "~ block os in /etc/sysctl.d/90-gpuctl.conf",
        "keys taken out: exec-opts, log-driver, log-opts",
        "~ service docker",
        "note: live kernel settings and loaded modules stay until the next reboot",
    ] {
        assert!(
            dry.stdout.contains(needle),
            "lacks {needle:?}:\n{}",
            dry.stdout
        );
    }
    assert_eq!(
        lab.exec(
            "node1",
            "cat /etc/hosts /etc/sysctl.d/90-gpuctl.conf /etc/docker/daemon.json | sha256sum"
        ),
        installed
    );

    let out = reset(&lab, &["--yes"]).success();
    assert!(out.stdout.contains("changes made"), "{}", out.stdout);
    assert!(!lab.exec("node1", "cat /etc/hosts").contains("gpuctl"));
    assert!(lab.exec("node1", "cat /etc/hosts").contains("localhost"));
    for gone in [
        "/etc/sysctl.d/90-gpuctl.conf",
        "/etc/modules-load.d/gpuctl.conf",
        "/var/lib/gpuctl/state.json",
    ] {
        lab.exec("node1", &format!("test ! -e {gone}"));
    }
    assert_eq!(
        daemon_json(&lab, "node1"),
        serde_json::json!({"data-root": "/data/docker", "exec-opts": ["foo=bar"]})
    );
    // Stopped: systemctl no longer says active, and the fixture's process is gone.
    assert_ne!(
        stdout_of(&lab, "node1", "systemctl is-active docker"),
        "active"
    );
    assert_eq!(stdout_of(&lab, "node1", sleeping), "0");
    assert_eq!(
        stdout_of(&lab, "node1", "systemctl is-enabled docker"),
        "disabled"
    );
    let journal = std::fs::read_to_string(
        lab.dir()
            .join(".gpuctl")
            .read_dir()
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path().join("state.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    assert!(!journal.contains("node1"), "{journal}");

    // Nothing left to undo; and install starts over (its checkpoints were forgotten).
    reset(&lab, &["--yes"])
        .success()
        .stdout_has("0 changes made");
    let again = install(&lab, &["--only", "os"]).success();
    assert!(!again.stdout.contains("skipped"), "{}", again.stdout);
    lab.exec("node1", "test -e /etc/sysctl.d/90-gpuctl.conf");

    // A reset that stops half way (runtime undone, then os refuses a block without its END
    // line) leaves no checkpoint behind: the next install does runtime again.
    install(&lab, &["--only", "runtime"]).success();
    // In place: /etc/hosts is a bind mount, which sed -i cannot rename onto.
    lab.exec(
        "node1",
        "grep -v '# END gpuctl hosts' /etc/hosts > /tmp/h && cat /tmp/h > /etc/hosts",
    );
    let half = reset(&lab, &["--yes"]).code(1);
    assert!(half.stdout.contains("os         FAILED"), "{}", half.stdout);
    assert!(daemon_json(&lab, "node1").get("log-driver").is_none());
    let redo = install(&lab, &["--only", "runtime"]).success();
    assert!(!redo.stdout.contains("skipped"), "{}", redo.stdout);
    assert_eq!(daemon_json(&lab, "node1")["log-driver"], "json-file");
}

/// The HTTP status of `url` through curl, trusting `ca`, logging in with the `user = ...`
/// line of `config` when given (so no password is on a command line or in a message).
fn http_status(url: &str, ca: &Path, config: Option<&Path>) -> String {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ])
    .arg("--cacert")
    .arg(ca);
    if let Some(c) = config {
        cmd.arg("-K").arg(c);
    }
    let out = cmd.arg(url).output().unwrap_or_else(|e| {
        panic!("curl could not run ({e}); apt-get install -y curl, as .ci/run does")
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_registry_host_serves_the_mirror_with_tls_and_a_login_from_gpuctls_own_ca() {
    let debs = real_debs(&["docker-registry", "lsb-base"]);
    let lab = Lab::up(&LabSpec::new(2));
    let bundle = lab.dir().join("bundle");
    let pkgs = bundle.join("packages/debian-12/registry");
    std::fs::create_dir_all(&pkgs).unwrap_or_else(|e| panic!("{e}"));
    for deb in &debs {
        std::fs::copy(deb, pkgs.join(deb.file_name().unwrap_or_default()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    write_manifest(&bundle);
    edit_inventory(&lab, "", "bundle: ./bundle\n");
    // node2 (the first worker) becomes the registry host; nothing else is said about it.
    let text = std::fs::read_to_string(&lab.inventory).unwrap_or_default();
    let text = text.replacen("roles: [worker]", "roles: [registry]", 1);
    std::fs::write(&lab.inventory, &text).unwrap_or_else(|e| panic!("{e}"));
    let ip = text
        .split("name: node2")
        .nth(1)
        .and_then(|s| s.split("internal_address: ").nth(1))
        .and_then(|s| s.lines().next())
        .unwrap_or_else(|| panic!("no internal address for node2:\n{text}"))
        .trim()
        .to_string();

    let out = install(&lab, &["--only", "packages,registry"]).success();
    let state = std::fs::read_dir(lab.dir().join(".gpuctl"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("no .gpuctl/<cluster>"))
        .path()
        .join("registry");
    let ca = state.join("ca.pem");
    let password = std::fs::read_to_string(state.join("password"))
        .unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    let password = password.trim_end();
    assert!(password.len() >= 32);
    assert!(!out.stdout.contains(password) && !out.stderr.contains(password));
    assert!(
        host_part(&out, "node2").contains("registry"),
        "{}",
        out.stdout
    );

    // TLS from gpuctl's CA for the node's address; no login, no entry.
    let v2 = format!("https://{ip}:5000/v2/");
    let login = lab.dir().join("curl-login");
    std::fs::write(&login, format!("user = \"gpuctl:{password}\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(http_status(&v2, &ca, Some(&login)), "200");
    assert_eq!(http_status(&v2, &ca, None), "401");
    // The key and the logins are for the service's user only.
    assert_eq!(
        lab.exec(
            "node2",
            "stat -c '%a %U:%G' /etc/docker/registry/tls/server.key /etc/docker/registry/htpasswd"
        )
        .trim(),
        "640 root:docker-registry\n640 root:docker-registry"
    );

    // `mirror-images push --inventory` finds the registry, its CA and login by itself.
    let work = lab.dir().join("images");
    let upstream = crate::support::registry::TestRegistry::plain();
    let layout = crate::support::images::single_arch(&work.join("layout"), "1", 2, 16 * 1024);
    upstream.copy_layout(&layout, "1", "team/app", None);
    let images = work.join("images.txt");
    std::fs::write(&images, format!("{}/team/app:1\n", upstream.addr))
        .unwrap_or_else(|e| panic!("{e}"));
    let images_bundle = work.join("bundle");
    Gpuctl::new()
        .args([
            "mirror-images",
            "pull",
            "--insecure-registry",
            &upstream.addr,
        ])
        .args([
            "--images".to_string(),
            images.display().to_string(),
            "--bundle".to_string(),
            images_bundle.display().to_string(),
        ])
        .spawn()
        .wait(RUN_DEADLINE)
        .success();
    for verb in ["push", "check"] {
        let out = Gpuctl::new()
            .args(["mirror-images", verb])
            .args([
                "--bundle".to_string(),
                images_bundle.display().to_string(),
                "--inventory".to_string(),
                lab.inventory.display().to_string(),
            ])
            .spawn()
            .wait(RUN_DEADLINE)
            .success();
        assert!(!out.stdout.contains(password) && !out.stderr.contains(password));
        if verb == "check" {
            // The nodes were asked for their architecture, and the image offers it.
            out.stdout_has("the nodes run linux/amd64");
        }
    }

    // A second run changes nothing on the host: the same CA, certificate and login.
    let before = lab.exec(
        "node2",
        "sha256sum /etc/docker/registry/tls/* /etc/docker/registry/htpasswd",
    );
    install(
        &lab,
        &["--only", "packages,registry", "--force", "registry"],
    )
    .success()
    .stdout_has("registry   in sync");
    assert_eq!(
        lab.exec(
            "node2",
            "sha256sum /etc/docker/registry/tls/* /etc/docker/registry/htpasswd"
        ),
        before
    );
    assert_eq!(http_status(&v2, &ca, Some(&login)), "200");
}
