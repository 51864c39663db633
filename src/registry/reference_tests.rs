//! Table-driven tests for [`Reference::parse`]: normalisation and every rejection.

use super::*;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn parsed(input: &str) -> Reference {
    match Reference::parse(input) {
        Ok(r) => r,
        Err(e) => panic!("{input:?} was refused: {e}"),
    }
}

/// input, registry, repository, tag, has a digest, canonical form, familiar form
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
    &'static str,
    &'static str,
);

#[test]
fn normalises_like_docker() {
    let cases: &[Case] = &[
        (
            "nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest",
            "nginx:latest",
        ),
        (
            "nginx:1.27-alpine",
            "docker.io",
            "library/nginx",
            Some("1.27-alpine"),
            false,
            "docker.io/library/nginx:1.27-alpine",
            "nginx:1.27-alpine",
        ),
        (
            "library/nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest",
            "nginx:latest",
        ),
        (
            "docker.io/nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest",
            "nginx:latest",
        ),
        (
            "index.docker.io/nginx",
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest",
            "nginx:latest",
        ),
        (
            "index.docker.io/bitnami/redis:7",
            "docker.io",
            "bitnami/redis",
            Some("7"),
            false,
            "docker.io/bitnami/redis:7",
            "bitnami/redis:7",
        ),
        (
            "bitnami/redis",
            "docker.io",
            "bitnami/redis",
            Some("latest"),
            false,
            "docker.io/bitnami/redis:latest",
            "bitnami/redis:latest",
        ),
        (
            "library/a/b",
            "docker.io",
            "library/a/b",
            Some("latest"),
            false,
            "docker.io/library/a/b:latest",
            "library/a/b:latest",
        ),
        (
            "localhost/app",
            "localhost",
            "app",
            Some("latest"),
            false,
            "localhost/app:latest",
            "localhost/app:latest",
        ),
        (
            "localhost:5000/app:v1",
            "localhost:5000",
            "app",
            Some("v1"),
            false,
            "localhost:5000/app:v1",
            "localhost:5000/app:v1",
        ),
        (
            "127.0.0.1:5000/team/app",
            "127.0.0.1:5000",
            "team/app",
            Some("latest"),
            false,
            "127.0.0.1:5000/team/app:latest",
            "127.0.0.1:5000/team/app:latest",
        ),
        (
            "[::1]:5000/app:1",
            "[::1]:5000",
            "app",
            Some("1"),
            false,
            "[::1]:5000/app:1",
            "[::1]:5000/app:1",
        ),
        // "localhost:5000" with no slash is Docker Hub's library/localhost at tag 5000.
        (
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            false,
            "docker.io/library/localhost:5000",
            "localhost:5000",
        ),
        (
            "ghcr.io/org/team/sub/app:2.0",
            "ghcr.io",
            "org/team/sub/app",
            Some("2.0"),
            false,
            "ghcr.io/org/team/sub/app:2.0",
            "ghcr.io/org/team/sub/app:2.0",
        ),
        (
            "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04",
            "nvcr.io",
            "nvidia/k8s/dcgm-exporter",
            Some("3.3.5-3.4.1-ubuntu22.04"),
            false,
            "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04",
            "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04",
        ),
        // An uppercase first component is a host (Docker's rule), even without a dot.
        (
            "Registry/app",
            "Registry",
            "app",
            Some("latest"),
            false,
            "Registry/app:latest",
            "Registry/app:latest",
        ),
        (
            "a/b__c/d.e/f-g/h---i",
            "docker.io",
            "a/b__c/d.e/f-g/h---i",
            Some("latest"),
            false,
            "docker.io/a/b__c/d.e/f-g/h---i:latest",
            "a/b__c/d.e/f-g/h---i:latest",
        ),
        (
            "busybox:_x.Y-1",
            "docker.io",
            "library/busybox",
            Some("_x.Y-1"),
            false,
            "docker.io/library/busybox:_x.Y-1",
            "busybox:_x.Y-1",
        ),
    ];
    for &(input, registry, repository, tag, has_digest, canonical, familiar) in cases {
        let r = parsed(input);
        assert_eq!(r.registry, registry, "{input}");
        assert_eq!(r.repository, repository, "{input}");
        assert_eq!(r.tag.as_deref(), tag, "{input}");
        assert_eq!(r.digest.is_some(), has_digest, "{input}");
        assert_eq!(r.to_string(), canonical, "{input}");
        assert_eq!(r.familiar(), familiar, "{input}");
        // The canonical form parses back to the same reference.
        assert_eq!(parsed(canonical), r, "{input} round trip");
        assert_eq!(parsed(&r.familiar()), r, "{input} familiar round trip");
    }
}

#[test]
fn digests_pin_and_keep_the_tag_only_when_written() {
    let by_digest = parsed(&format!("nginx@{D}"));
    assert_eq!(by_digest.tag, None);
    assert_eq!(
        by_digest.to_string(),
        format!("docker.io/library/nginx@{D}")
    );
    assert_eq!(by_digest.familiar(), format!("nginx@{D}"));
    assert_eq!(by_digest.manifest_reference(), D);

    let both = parsed(&format!("localhost:5000/team/app:1.0@{D}"));
    assert_eq!(both.tag.as_deref(), Some("1.0"));
    assert_eq!(
        both.digest.as_ref().map(ToString::to_string).as_deref(),
        Some(D)
    );
    assert_eq!(both.to_string(), format!("localhost:5000/team/app:1.0@{D}"));
    assert_eq!(both.manifest_reference(), D, "the digest wins over the tag");

    assert_eq!(parsed("nginx:1.27").manifest_reference(), "1.27");
}

#[test]
fn a_128_character_tag_is_accepted_and_129_refused() {
    let ok = format!("app:{}", "a".repeat(128));
    assert_eq!(parsed(&ok).tag.map(|t| t.len()), Some(128));
    let long = format!("app:{}", "a".repeat(129));
    assert!(matches!(
        Reference::parse(&long),
        Err(ReferenceError::BadTag { .. })
    ));
}

#[test]
fn every_rejection_names_the_problem_and_a_fix() {
    let long_name = format!("registry.example.com/{}", "a".repeat(240));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "is empty"),
        ("ngi nx".into(), "contains whitespace"),
        ("nginx\t".into(), "contains whitespace"),
        ("Nginx".into(), "must be lowercase: write \"nginx\""),
        (
            "ghcr.io/Org/App:1".into(),
            "must be lowercase: write \"ghcr.io/org/app:1\"",
        ),
        ("a//b".into(), "empty path component"),
        ("/nginx".into(), "empty path component"),
        ("team/app/".into(), "empty path component"),
        (
            "ghcr.io/".into(),
            "has no repository after registry \"ghcr.io\"",
        ),
        ("-app".into(), "path component \"-app\" is not valid"),
        ("app-".into(), "path component \"app-\" is not valid"),
        ("a..b".into(), "path component \"a..b\" is not valid"),
        ("a___b".into(), "path component \"a___b\" is not valid"),
        ("a._b".into(), "path component \"a._b\" is not valid"),
        ("team/ap+p".into(), "path component \"ap+p\" is not valid"),
        ("nginx:".into(), "tag \"\" is not valid"),
        ("nginx:-x".into(), "tag \"-x\" is not valid"),
        ("nginx:.x".into(), "tag \".x\" is not valid"),
        ("nginx:a/b".into(), "registry \"nginx:a\" is not a valid"),
        ("nginx:a+b".into(), "tag \"a+b\" is not valid"),
        (
            "host:port/app".into(),
            "registry \"host:port\" is not a valid host[:port]",
        ),
        ("host:/app".into(), "registry \"host:\" is not a valid"),
        (
            "-bad.example.com/app".into(),
            "registry \"-bad.example.com\" is not a valid",
        ),
        (
            "bad..example.com/app".into(),
            "registry \"bad..example.com\" is not a valid",
        ),
        ("[::1/app".into(), "registry \"[::1\" is not a valid"),
        (
            "[zz]:5000/app".into(),
            "registry \"[zz]:5000\" is not a valid",
        ),
        ("nginx@".into(), "has no algorithm"),
        ("nginx@sha256:abc".into(), "exactly 64 lowercase hex digits"),
        ("nginx@md5:abc".into(), "\"md5\", which is not supported"),
        (
            format!("nginx@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "lowercase hex",
        ),
        (long_name, "at most 255"),
    ];
    for (input, needle) in &cases {
        match Reference::parse(input) {
            Ok(r) => panic!("{input:?} was accepted as {r}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{input:?}: {msg}");
                if !input.is_empty() {
                    assert!(
                        msg.contains(&format!("\"{input}\"")),
                        "{input:?} not quoted: {msg}"
                    );
                }
            }
        }
    }
}
