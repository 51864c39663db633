//! Where an image goes in the mirror: the upstream repository path is kept under the mirror
//! host (`docker.io/library/nginx` → `<mirror>/library/nginx`), with an optional prefix
//! (`<mirror>/<prefix>/library/nginx`). Keeping the path is what lets containerd's
//! `hosts.toml` and k3s `registries.yaml` mirrors work without rewriting manifests.

use crate::registry::Reference;

/// The repository in the mirror for an upstream reference.
pub fn target_repository(source: &Reference, prefix: Option<&str>) -> String {
    match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => format!("{prefix}/{}", source.repository),
        None => source.repository.clone(),
    }
}

/// Checks a prefix: lowercase path components, as in a repository name.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let trimmed = prefix.trim_matches('/');
    Reference::parse(&format!("mirror.invalid/{trimmed}/x"))
        .map(|_| ())
        .map_err(|_| {
            format!(
                "prefix \"{prefix}\" is not a repository path: use lowercase letters, digits and separators such as `mirror` or `team/mirror`"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        Reference::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keeps_the_upstream_path_under_the_mirror() {
        let cases = [
            ("nginx:1.27", None, "library/nginx"),
            ("ghcr.io/org/team/app:1", None, "org/team/app"),
            ("registry.k8s.io/pause:3.9", Some("mirror"), "mirror/pause"),
            (
                "nvcr.io/nvidia/k8s-device-plugin:v0.16",
                Some("/lab/gpu/"),
                "lab/gpu/nvidia/k8s-device-plugin",
            ),
            ("nginx", Some(""), "library/nginx"),
        ];
        for (source, prefix, expected) in cases {
            assert_eq!(
                target_repository(&reference(source), prefix),
                expected,
                "{source}"
            );
        }
    }

    #[test]
    fn prefixes_must_be_repository_paths() {
        assert!(check_prefix("mirror").is_ok());
        assert!(check_prefix("team/mirror").is_ok());
        assert!(check_prefix("Team").is_err());
        assert!(check_prefix("a//b").is_err());
    }
}
