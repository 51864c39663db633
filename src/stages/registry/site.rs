//! What the registry gpuctl runs (on the inventory's `registry` host) is made of, kept in
//! `.gpuctl/<cluster>/registry/` beside the inventory and made on first use: the CA that
//! signs the registry's certificate, that certificate and its key, the login's generated
//! password and its htpasswd line.
//!
//! Why on the admin's machine and not on the registry host: every node must trust the
//! same CA and `mirror-images push` must know the password, and both must outlive the
//! registry host being rebuilt. Everything is written once and then reused, so the nodes'
//! trust and logins stay valid across re-runs. Only the server certificate is made again,
//! by the same CA, when the names it must carry change or it nears its end.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::secret::Secret;

/// The login gpuctl gives its registry when the inventory names no `registry.credentials`.
pub const USERNAME: &str = "gpuctl";

/// The CA is made for ten years, the server certificate for three and made again when
/// fewer than 60 days remain (at the next install or plan).
const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 1095;
const RENEW_DAYS: i64 = 60;

/// Where each file lives.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    /// `<state dir>/registry/`.
    pub fn new(state_dir: &Path) -> Self {
        Paths {
            dir: state_dir.join("registry"),
        }
    }
    /// The CA certificate every node trusts (`registry.ca_file` when gpuctl makes it).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// The names in the server certificate and its end, one per line, to know when to
    /// make it again.
    fn cert_info(&self) -> PathBuf {
        self.dir.join("server.info")
    }
    /// The generated password (`registry.credentials` when the inventory names none).
    pub fn password(&self) -> PathBuf {
        self.dir.join("password")
    }
    fn htpasswd(&self) -> PathBuf {
        self.dir.join("htpasswd")
    }
}

/// What the `registry` stage puts on the registry host.
#[derive(Clone, Debug)]
pub struct Materials {
    /// The server certificate (PEM), `None` for a plain-HTTP registry (`registry.insecure`).
    pub cert: Option<String>,
    /// Its key.
    pub key: Option<Secret>,
    /// `USER:BCRYPT`, the registry's htpasswd file.
    pub htpasswd: Secret,
}

/// Makes the generated password when it does not exist yet. Called before the password is
/// loaded from it.
pub fn ensure_password(paths: &Paths) -> anyhow::Result<()> {
    let path = paths.password();
    if path.exists() {
        return Ok(());
    }
    private_dir(&paths.dir)?;
    let bytes = random::<24>()?;
    let password = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    write_private(&path, format!("{password}\n").as_bytes())
}

/// The CA, the server certificate for `names` (a plain-HTTP registry has neither), and the
/// htpasswd line for `username`/`password`: the existing ones when they still fit, new
/// ones otherwise.
pub fn ensure(
    paths: &Paths,
    cluster: &str,
    tls: bool,
    names: &[String],
    username: &str,
    password: &Secret,
) -> anyhow::Result<Materials> {
    private_dir(&paths.dir)?;
    let (cert, key) = if tls {
        let (ca_params, ca_key) = ensure_ca(paths, cluster)?;
        let (cert, key) = ensure_cert(paths, names, ca_params, &ca_key)?;
        (Some(cert), Some(key))
    } else {
        (None, None)
    };
    Ok(Materials {
        cert,
        key,
        htpasswd: ensure_htpasswd(paths, username, password)?,
    })
}

fn ca_params(cluster: &str) -> anyhow::Result<CertificateParams> {
    // The same subject every time: the stored key and this subject make the issuer, so the
    // CA certificate never has to be parsed back.
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("gpuctl registry CA ({cluster})"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn ensure_ca(paths: &Paths, cluster: &str) -> anyhow::Result<(CertificateParams, KeyPair)> {
    let mut params = ca_params(cluster)?;
    let (ca, key_path) = (paths.ca(), paths.ca_key());
    match (ca.exists(), key_path.exists()) {
        (true, true) => {
            let pem = read(&key_path)?;
            let key = KeyPair::from_pem(&pem).with_context(|| {
                format!(
                    "{}: not a private key gpuctl wrote; restore it from a backup, or remove \
                     the whole directory {} to make a new CA (every node then gets the new one \
                     at the next install)",
                    key_path.display(),
                    paths.dir.display()
                )
            })?;
            Ok((params, key))
        }
        (false, false) => {
            let key = KeyPair::generate()?;
            set_validity(&mut params, CA_DAYS);
            let cert = params.self_signed(&key)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            crate::state::atomic::write_mode(&ca, cert.pem().as_bytes(), Some(0o644))
                .with_context(|| format!("writing {}", ca.display()))?;
            Ok((params, key))
        }
        _ => anyhow::bail!(
            "{} holds only half of the registry's CA (ca.pem and ca.key belong together): \
             restore the missing file, or remove the whole directory to make a new CA",
            paths.dir.display()
        ),
    }
}

fn ensure_cert(
    paths: &Paths,
    names: &[String],
    ca_params: CertificateParams,
    ca_key: &KeyPair,
) -> anyhow::Result<(String, Secret)> {
    let today = chrono::Utc::now().date_naive();
    let wanted = names.join("\n");
    if let (Ok(info), Ok(cert), Ok(key)) = (
        std::fs::read_to_string(paths.cert_info()),
        std::fs::read_to_string(paths.cert()),
        std::fs::read_to_string(paths.key()),
    ) && let Some((end, held)) = info.split_once('\n')
        && held.trim_end() == wanted
        && chrono::NaiveDate::parse_from_str(end, "%Y-%m-%d")
            .is_ok_and(|end| (end - today).num_days() > RENEW_DAYS)
    {
        return Ok((cert, Secret::new(key)));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())
        .context("a name of the registry host is not valid in a certificate")?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_DAYS);
    let cert = params.signed_by(&key, &Issuer::new(ca_params, ca_key))?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    write_private(&paths.key(), key.as_bytes())?;
    crate::state::atomic::write_mode(&paths.cert(), cert.as_bytes(), Some(0o644))?;
    let end = today + chrono::TimeDelta::days(SERVER_DAYS);
    write_private(
        &paths.cert_info(),
        format!("{}\n{wanted}\n", end.format("%Y-%m-%d")).as_bytes(),
    )?;
    Ok((cert, Secret::new(key)))
}

fn ensure_htpasswd(paths: &Paths, username: &str, password: &Secret) -> anyhow::Result<Secret> {
    let path = paths.htpasswd();
    // bcrypt salts at random: the stored line is kept while it matches, so the registry's
    // file (and the stage's digest) stays the same from run to run.
    if let Ok(line) = std::fs::read_to_string(&path)
        && let Some((user, hash)) = line.trim_end().split_once(':')
        && user == username
        && bcrypt::verify(password.expose(), hash).unwrap_or(false)
    {
        return Ok(Secret::new(line.trim_end()));
    }
    let hash = bcrypt::hash_with_result(password.expose(), bcrypt::DEFAULT_COST)?
        .format_for_version(bcrypt::Version::TwoY);
    let line = format!("{username}:{hash}");
    write_private(&path, format!("{line}\n").as_bytes())?;
    Ok(Secret::new(line))
}

/// From yesterday (a node whose clock is a little behind still accepts it) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) {
    use chrono::Datelike as _;
    let from = chrono::Utc::now().date_naive() - chrono::TimeDelta::days(1);
    let to = from + chrono::TimeDelta::days(days + 1);
    let ymd = |d: chrono::NaiveDate| {
        // chrono's months and days always fit; the fallbacks are never taken.
        rcgen::date_time_ymd(
            d.year(),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = ymd(from);
    params.not_after = ymd(to);
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The directory, mode 0700: it holds the CA's key and the password.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::state::atomic::write_mode(path, bytes, Some(0o600))
        .with_context(|| format!("writing {}", path.display()))
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_then_reused_and_the_certificate_follows_the_names() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        ensure_password(&paths).unwrap();
        let pw = std::fs::read_to_string(paths.password()).unwrap();
        assert!(pw.trim_end().len() >= 32, "{pw:?}");
        ensure_password(&paths).unwrap();
        assert_eq!(std::fs::read_to_string(paths.password()).unwrap(), pw);
        assert_eq!(mode(&paths.dir), 0o700);
        assert_eq!(mode(&paths.password()), 0o600);

        let secret = Secret::new(pw.trim_end());
        let names = ["registry.lab".to_string(), "10.0.0.3".to_string()];
        let a = ensure(&paths, "lab", true, &names, USERNAME, &secret).unwrap();
        let ca = std::fs::read_to_string(paths.ca()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        assert_eq!(mode(&paths.ca_key()), 0o600);
        assert_eq!(mode(&paths.key()), 0o600);
        let (user, hash) = a.htpasswd.expose().split_once(':').unwrap();
        assert_eq!(user, USERNAME);
        assert!(hash.starts_with("$2y$"), "{hash}");
        assert!(bcrypt::verify(secret.expose(), hash).unwrap());

        // A second run changes nothing: same CA, certificate, key and htpasswd line.
        let b = ensure(&paths, "lab", true, &names, USERNAME, &secret).unwrap();
        assert_eq!(b.cert, a.cert);
        assert_eq!(
            b.key.as_ref().map(Secret::expose),
            a.key.as_ref().map(Secret::expose)
        );
        assert_eq!(b.htpasswd.expose(), a.htpasswd.expose());
        assert_eq!(std::fs::read_to_string(paths.ca()).unwrap(), ca);

        // Another name: a new certificate from the same CA; another password: a new line.
        let more = [names[0].clone(), names[1].clone(), "r1".to_string()];
        let other = Secret::new("another-password");
        let c = ensure(&paths, "lab", true, &more, USERNAME, &other).unwrap();
        assert_ne!(c.cert, a.cert);
        assert_eq!(std::fs::read_to_string(paths.ca()).unwrap(), ca);
        assert_ne!(c.htpasswd.expose(), a.htpasswd.expose());
        assert!(
            bcrypt::verify(
                "another-password",
                c.htpasswd.expose().split_once(':').unwrap().1
            )
            .unwrap()
        );

        // Plain HTTP: no certificate at all.
        let d = ensure(&paths, "lab", false, &more, USERNAME, &other).unwrap();
        assert!(d.cert.is_none() && d.key.is_none());
    }

    #[test]
    fn half_a_ca_is_refused_rather_than_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        let pw = Secret::new("a-password");
        ensure(&paths, "lab", true, &["r".into()], USERNAME, &pw).unwrap();
        std::fs::remove_file(paths.ca_key()).unwrap();
        let err = ensure(&paths, "lab", true, &["r".into()], USERNAME, &pw).unwrap_err();
        assert!(
            format!("{err:#}").contains("only half of the registry's CA"),
            "{err:#}"
        );
    }
}
