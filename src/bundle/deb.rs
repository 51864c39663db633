//! A Debian package of the bundle, known by its file name: `<name>_<version>_<arch>.deb`,
//! the name `apt-get download` and every Debian archive give it (an epoch's `:` written
//! `%3a`). The name says which package and version the host must end up with, so the
//! install's guard can ask dpkg without unpacking anything here.

use super::BundleFile;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deb {
    pub file: BundleFile,
    /// The file name alone (`jq_1.6-2.1+deb12u3_amd64.deb`).
    pub file_name: String,
    pub name: String,
    /// With its epoch restored (`1:2.0-1`).
    pub version: String,
    pub arch: String,
}

impl Deb {
    pub fn parse(file: &BundleFile) -> Result<Deb, String> {
        let file_name = file
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&file.path)
            .to_string();
        let fix = "Debian packages in the bundle are named <name>_<version>_<arch>.deb, as \
                   `apt-get download` names them";
        let Some(stem) = file_name.strip_suffix(".deb") else {
            return Err(format!("not a .deb; {fix}"));
        };
        let parts: Vec<&str> = stem.split('_').collect();
        let [name, version, arch] = parts.as_slice() else {
            return Err(format!(
                "the name does not say the package and version; {fix}"
            ));
        };
        let name_ok = name.len() >= 2
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
            });
        let version = version.replace("%3a", ":").replace("%3A", ":");
        let version_ok = !version.is_empty()
            && version.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'~' | b':')
            });
        let arch_ok = !arch.is_empty()
            && arch
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(name_ok && version_ok && arch_ok) {
            return Err(format!(
                "`{name}`, `{version}`, `{arch}` are not a Debian package name, version and \
                 architecture; {fix}"
            ));
        }
        let (name, arch) = ((*name).to_string(), (*arch).to_string());
        Ok(Deb {
            file: file.clone(),
            file_name,
            name,
            version,
            arch,
        })
    }

    /// How dpkg-query names the installed package: `name:arch`, or `name` for `all`.
    pub fn query_name(&self) -> String {
        if self.arch == "all" {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.arch)
        }
    }
}
