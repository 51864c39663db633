//! Which strings in a manifest name a container image.
//!
//! Images hide outside `image:` fields (ConfigMap lists, env values, args, annotations,
//! custom resources), so every string is a candidate; the rule below keeps the ones that
//! are references and drops words, URLs, paths and versions. A token is an image when
//! [`Reference::parse`] accepts it, it is not a URL (`://`), a path (`/…`, `./…`, `~…`)
//! or a bare version (`v1.2.3`, `1.27`), and one of:
//!
//! 1. it is pinned by digest (`…@sha256:…`);
//! 2. it sits under an image key: the key (or `--flag=` / `NAME=` before it) ends in
//!    `image`, `images` or `imagename`, ignoring case, `-`, `_` and a `.json`/`.yaml`
//!    extension (`image`, `baseImage`, `NOTEBOOK_IMAGE`, `--sidecar-image=`,
//!    `notebook-images.json`); a generic key (`value`, `options`,
//!    `default`, `values`) under such a key counts too (`image.options[2]`);
//! 3. it has a tag and a `/` in its name (`quay.io/x/y:1.0`, `team/app:1.0`);
//! 4. it is a one-word name with a version tag, a digit (or `v` and a digit) first and a
//!    `.` in it (`nginx:1.27`, `python:3.11-slim`).
//!
//! An untagged name is accepted only under an image key: `kubeflow.org/v1` (an
//! apiVersion), `nvidia.com/gpu` (a resource) and `nginx` under an unrelated key all parse
//! as references but are not images. `imagePullPolicy` and `imageTag` are not image keys:
//! their values are not references. A name whose first character is not a letter needs an
//! explicit registry (`10.0.0.5:5000/app:1`), so `1/2:3` and `10:30` are not images.

use crate::registry::Reference;
use crate::registry::reference::DOCKER_HUB;

/// Keys whose value is held for the key above them (`image: {value: …, options: […]}`).
const GENERIC_KEYS: &[&str] = &["value", "values", "options", "default"];

/// Whether `key` names an image-holding field (rule 2).
pub fn is_image_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    // An annotation key like `sidecar.istio.io/proxyImage`: only its last segment counts;
    // a ConfigMap key like `notebook-images.json` is judged without its extension.
    let k = k.rsplit('/').next().unwrap_or_default();
    let k = [".json", ".yaml", ".yml"]
        .iter()
        .find_map(|ext| k.strip_suffix(ext))
        .unwrap_or(k);
    k.ends_with("image") || k.ends_with("images") || k.ends_with("imagename")
}

/// Whether a string under the keys `keys` (nearest last) is under an image key.
pub fn under_image_key(keys: &[&str]) -> bool {
    match keys {
        [.., parent, last] if GENERIC_KEYS.contains(&last.to_ascii_lowercase().as_str()) => {
            is_image_key(parent)
        }
        [.., last] => is_image_key(last),
        [] => false,
    }
}

/// Every image reference in one string value: the string is split into tokens at
/// whitespace and commas (lists such as `a:1, b:2`), quotes and brackets are trimmed, and
/// `--flag=VALUE` / `NAME=VALUE` tokens are judged by their value, with the flag or name as
/// key. Returns each match with the reference parsed (not yet normalised for display).
pub fn find_in_string(text: &str, under_image: bool) -> Vec<Reference> {
    let mut found = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == ',') {
        let token = raw.trim_matches(|c: char| "\"'`;()[]{}".contains(c));
        if token.is_empty() {
            continue;
        }
        let (hint, value) = match token.split_once('=') {
            Some((name, value)) => (
                under_image || is_image_key(name.trim_start_matches('-')),
                value.trim_matches(|c: char| "\"'`".contains(c)),
            ),
            None => (under_image, token),
        };
        if let Some(reference) = match_token(value, hint) {
            found.push(reference);
        }
    }
    found
}

/// The matching rule for one token (see the module docs).
pub fn match_token(token: &str, under_image: bool) -> Option<Reference> {
    if token.contains("://")
        || token.starts_with(['/', '.', '~'])
        || token.ends_with('/')
        || is_version(token)
    {
        return None;
    }
    let reference = Reference::parse(token).ok()?;
    let written_registry = reference.registry != DOCKER_HUB || token.starts_with("docker.io/");
    if !written_registry && !token.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    if reference.digest.is_some() || under_image {
        return Some(reference);
    }
    // The tag as written: after the last ':' that follows the last '/'.
    let name_part = token.split('@').next().unwrap_or_default();
    let after_slash = name_part.rsplit('/').next().unwrap_or_default();
    let tag = after_slash.split_once(':').map(|(_, t)| t)?;
    let version_tag = {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        t.starts_with(|c: char| c.is_ascii_digit()) && t.contains('.')
    };
    (name_part.contains('/') || version_tag).then_some(reference)
}

/// `1.27`, `v1.2.3`, `2024.01.5-rc1`: a version number, not an image.
fn is_version(token: &str) -> bool {
    let t = token.strip_prefix(['v', 'V']).unwrap_or(token);
    let core = t.split(['-', '+']).next().unwrap_or_default();
    !core.is_empty()
        && core.starts_with(|c: char| c.is_ascii_digit())
        && core.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn yes(token: &str, under_image: bool) -> String {
        match_token(token, under_image)
            .unwrap_or_else(|| panic!("{token:?} (under image key: {under_image}) is an image"))
            .to_string()
    }

    fn no(token: &str, under_image: bool) {
        assert!(
            match_token(token, under_image).is_none(),
            "{token:?} (under image key: {under_image}) is not an image"
        );
    }

    #[test]
    fn references_that_look_like_images_are_found_anywhere() {
        assert_eq!(yes("quay.io/x/y:1.0", false), "quay.io/x/y:1.0");
        assert_eq!(
            yes("kubeflownotebookswg/jupyter-scipy:v1.8.0", false),
            "docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0"
        );
        assert_eq!(yes("nginx:1.27", false), "docker.io/library/nginx:1.27");
        assert_eq!(
            yes("python:3.11-slim", false),
            "docker.io/library/python:3.11-slim"
        );
        assert_eq!(
            yes("localhost:5000/app:dev", false),
            "localhost:5000/app:dev"
        );
        assert_eq!(yes("10.0.0.5:5000/app:1", false), "10.0.0.5:5000/app:1");
        let pinned = format!("ghcr.io/org/app@{DIGEST}");
        assert_eq!(yes(&pinned, false), pinned);
        assert_eq!(
            yes(&format!("busybox@{DIGEST}"), false),
            format!("docker.io/library/busybox@{DIGEST}")
        );
    }

    #[test]
    fn untagged_names_count_only_under_an_image_key() {
        assert_eq!(yes("nginx", true), "docker.io/library/nginx:latest");
        assert_eq!(yes("gcr.io/team/app", true), "gcr.io/team/app:latest");
        assert_eq!(
            yes("busybox:latest", true),
            "docker.io/library/busybox:latest"
        );
        no("nginx", false);
        no("gcr.io/team/app", false);
        no("busybox:latest", false);
    }

    #[test]
    fn words_urls_paths_versions_and_api_groups_are_not_images() {
        for token in [
            "kubeflow.org/v1",
            "nvidia.com/gpu",
            "app.kubernetes.io/name",
            "http://example.com/app:1.0",
            "https://quay.io/x/y:1.0",
            "/usr/local/bin/app",
            "./scripts/run.sh",
            "~/data",
            "v1.2.3",
            "1.27",
            "2024.01.5-rc1",
            "redis:6379",
            "app:web",
            "10:30",
            "1/2:3",
            "0.0.0.0:8080",
            DIGEST,
            "Always",
            "",
        ] {
            no(token, false);
        }
        // Under an image key, a version or a URL is still not an image.
        no("v1.2.3", true);
        no("https://quay.io/x/y:1.0", true);
    }

    #[test]
    fn image_keys() {
        for key in [
            "image",
            "images",
            "baseImage",
            "NOTEBOOK_IMAGE",
            "sidecar-image",
            "sidecar.istio.io/proxyImage",
            "imageName",
            "notebook-images.json",
        ] {
            assert!(is_image_key(key), "{key}");
        }
        for key in [
            "imagePullPolicy",
            "imageTag",
            "name",
            "command",
            "imageVersion",
        ] {
            assert!(!is_image_key(key), "{key}");
        }
        assert!(under_image_key(&[
            "spawnerFormDefaults",
            "image",
            "options"
        ]));
        assert!(under_image_key(&["image", "value"]));
        assert!(!under_image_key(&["env", "value"]));
        assert!(!under_image_key(&[]));
    }

    #[test]
    fn lists_flags_and_assignments_in_one_string() {
        let found = |text: &str, hint: bool| -> Vec<String> {
            find_in_string(text, hint)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            found("quay.io/a/b:1.0, ghcr.io/c/d:2.0 nginx:1.27", false),
            vec![
                "quay.io/a/b:1.0",
                "ghcr.io/c/d:2.0",
                "docker.io/library/nginx:1.27"
            ]
        );
        assert_eq!(
            found("--sidecar-image=quay.io/x/y:1.0", false),
            vec!["quay.io/x/y:1.0"]
        );
        assert_eq!(
            found("--helper-image=busybox --port=8080", false),
            vec!["docker.io/library/busybox:latest"]
        );
        assert_eq!(
            found("export IMAGE=\"alpine\"; run.sh", false),
            vec!["docker.io/library/alpine:latest"]
        );
        assert!(found("--log-level=debug see https://kubeflow.org/docs", false).is_empty());
        assert!(found("the quick brown fox", false).is_empty());
    }
}
