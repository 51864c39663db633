//! Registry credentials from a docker `config.json`: an `auths` entry for a private source
//! registry (pull), and a real credential-helper program (the `docker-credential-NAME get`
//! protocol, a script on PATH) for the mirror (push), both against htpasswd registries.
//! No secret may appear in any output, `--verbose` included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Work, count};
use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::images::single_arch;
use crate::support::registry::TestRegistry;

const PULL_SECRET: &str = "Pull-Secret-4u";
const PUSH_SECRET: &str = "Push-Secret-9z";
const HELPER: &str = "gpuctltest";

/// A docker config directory and a bin directory with the credential helper.
struct DockerSetup {
    config_dir: PathBuf,
    bin: PathBuf,
    helper_log: PathBuf,
}

impl DockerSetup {
    /// `answers`: (server address → (user, secret)) the helper knows; anything else it
    /// answers with the protocol's "credentials not found".
    fn new(work: &Work, config: &str, answers: &[(&str, &str, &str)]) -> DockerSetup {
        let config_dir = work.path("docker-config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config.json"), config).unwrap();
        let bin = work.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let helper_log = work.path("helper.log");
        let mut cases = String::new();
        for (server, user, secret) in answers {
            cases.push_str(&format!(
                "  '{server}') printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}\\n' \"$server\" ;;\n"
            ));
        }
        let script = format!(
            "#!/bin/sh\n# A credential helper speaking the docker-credential-helpers protocol.\n\
             [ \"$1\" = get ] || {{ echo \"unsupported: $1\" >&2; exit 1; }}\n\
             read -r server\n\
             echo \"$server\" >> '{}'\n\
             case \"$server\" in\n{cases}  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            helper_log.display()
        );
        let path = bin.join(format!("docker-credential-{HELPER}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        DockerSetup {
            config_dir,
            bin,
            helper_log,
        }
    }

    fn gpuctl(&self) -> Gpuctl {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Gpuctl::new()
            .env("DOCKER_CONFIG", &self.config_dir.display().to_string())
            .env("PATH", &path)
    }

    fn helper_asked(&self) -> String {
        std::fs::read_to_string(&self.helper_log).unwrap_or_default()
    }
}

fn no_secret(out: &Outcome) {
    for secret in [PULL_SECRET, PUSH_SECRET, "Wrong-Secret-7x"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

fn pull(setup: &DockerSetup, images: &Path, bundle: &Path, upstream: &str) -> Outcome {
    setup
        .gpuctl()
        .args(["mirror-images", "pull", "--verbose", "--images"])
        .args([images.display().to_string()])
        .args(["--bundle".to_string(), bundle.display().to_string()])
        .args(["--insecure-registry", upstream])
        .run()
}

fn push(setup: &DockerSetup, bundle: &Path, to: &str) -> Outcome {
    setup
        .gpuctl()
        .args([
            "mirror-images",
            "push",
            "--verbose",
            "--insecure",
            "--bundle",
        ])
        .args([bundle.display().to_string()])
        .args(["--to", to])
        .run()
}

/// A private upstream holding `team/private:1.0`, a private mirror, and a pulled bundle
/// (pulled with the config's `auths` entry).
fn private_pair(work: &Work) -> (TestRegistry, TestRegistry, PathBuf, DockerSetup) {
    let upstream = TestRegistry::basic_auth("puller", PULL_SECRET);
    let layout = single_arch(&work.path("layout"), "1.0", 1, 8 * 1024);
    upstream.copy_layout(&layout, "1.0", "team/private", None);
    let mirror = TestRegistry::basic_auth("pusher", PUSH_SECRET);
    let auth = data_encoding::BASE64.encode(format!("puller:{PULL_SECRET}").as_bytes());
    let config = format!(
        r#"{{"auths":{{"http://{}/v2/":{{"auth":"{auth}"}}}},"credHelpers":{{"{}":"{HELPER}"}}}}"#,
        upstream.addr, mirror.addr
    );
    let setup = DockerSetup::new(work, &config, &[(&mirror.addr, "pusher", PUSH_SECRET)]);
    (upstream, mirror, work.path("bundle"), setup)
}

#[test]
fn auths_entries_pull_and_a_credential_helper_pushes() {
    let work = Work::new();
    let (upstream, mirror, bundle, setup) = private_pair(&work);
    let images = work.images_file(&[format!("{}/team/private:1.0", upstream.addr)]);

    let pulled = pull(&setup, &images, &bundle, &upstream.addr).success();
    no_secret(&pulled);
    assert!(
        pulled.stderr.contains(&format!(
            "credentials for {}: user puller from auths[\"http://{}/v2/\"] in {}",
            upstream.addr,
            upstream.addr,
            setup.config_dir.join("config.json").display()
        )),
        "{}",
        pulled.stderr
    );
    assert_eq!(
        count(&pulled.stdout, "blobs downloaded"),
        2,
        "{}",
        pulled.stdout
    );

    let pushed = push(&setup, &bundle, &mirror.addr).success();
    no_secret(&pushed);
    assert!(
        pushed.stderr.contains(&format!(
            "credentials for {}: user pusher from credHelpers → docker-credential-{HELPER}",
            mirror.addr
        )),
        "{}",
        pushed.stderr
    );
    // The helper got the registry's address on standard input, as the protocol says.
    assert_eq!(setup.helper_asked().trim(), mirror.addr);
    let up = upstream.skopeo_raw_manifest("team/private", "1.0");
    let down = mirror.skopeo_raw_manifest("team/private", "1.0");
    assert_eq!(up, down);
}

#[test]
fn creds_store_flags_first_and_refused_helpers_are_clear() {
    let work = Work::new();
    let (upstream, mirror, bundle, setup) = private_pair(&work);
    let images = work.images_file(&[format!("{}/team/private:1.0", upstream.addr)]);
    pull(&setup, &images, &bundle, &upstream.addr).success();

    // credsStore serves every registry; the helper has nothing for upstream, so its auths
    // entry is used there.
    let auth = data_encoding::BASE64.encode(format!("puller:{PULL_SECRET}").as_bytes());
    std::fs::write(
        setup.config_dir.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}},"credsStore":"{HELPER}"}}"#,
            upstream.addr
        ),
    )
    .unwrap();
    let pushed = push(&setup, &bundle, &mirror.addr).success();
    no_secret(&pushed);
    assert!(
        pushed.stderr.contains(&format!(
            "user pusher from credsStore → docker-credential-{HELPER}"
        )),
        "{}",
        pushed.stderr
    );
    let again = setup
        .gpuctl()
        .args(["mirror-images", "pull", "--verbose", "--update", "--images"])
        .args([images.display().to_string()])
        .args(["--bundle".to_string(), bundle.display().to_string()])
        .args(["--insecure-registry", &upstream.addr])
        .run()
        .success();
    assert!(
        again.stderr.contains(&format!(
            "credentials for {}: user puller from auths[\"{}\"]",
            upstream.addr, upstream.addr
        )),
        "{}",
        again.stderr
    );

    // --username/--password-env come before the docker config.
    let flagged = setup
        .gpuctl()
        .args([
            "mirror-images",
            "push",
            "--verbose",
            "--insecure",
            "--bundle",
        ])
        .args([bundle.display().to_string()])
        .args(["--to", &mirror.addr])
        .args(["--username", "pusher", "--password-env", "GPUCTL_TEST_PW"])
        .env("GPUCTL_TEST_PW", PUSH_SECRET)
        .run()
        .success();
    no_secret(&flagged);
    assert!(
        flagged
            .stderr
            .contains("user pusher from --username and --password-env"),
        "{}",
        flagged.stderr
    );

    // A helper that hands out a wrong secret: a clear authentication error, no secret.
    let wrong = DockerSetup::new(
        &work,
        &format!(r#"{{"credHelpers":{{"{}":"{HELPER}"}}}}"#, mirror.addr),
        &[(&mirror.addr, "pusher", "Wrong-Secret-7x")],
    );
    let refused = push(&wrong, &bundle, &mirror.addr).code(1);
    no_secret(&refused);
    assert!(
        refused
            .stderr
            .contains("refused the credentials of user \"pusher\""),
        "{}",
        refused.stderr
    );

    // A helper that is not installed is named, with what to do.
    std::fs::write(
        wrong.config_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"not-installed"}}}}"#, mirror.addr),
    )
    .unwrap();
    let missing = push(&wrong, &bundle, &mirror.addr).code(2);
    assert!(
        missing
            .stderr
            .contains("credential helper docker-credential-not-installed")
            && missing.stderr.contains("PATH"),
        "{}",
        missing.stderr
    );
}
