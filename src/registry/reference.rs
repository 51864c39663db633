//! Image references (`nginx`, `ghcr.io/org/app:1.2@sha256:…`) parsed with Docker's
//! normalisation rules, so that a name written the way people write it for `docker pull`
//! means the same image here.
//!
//! The rules, from the distribution project's `reference` package:
//! - the first path component is a registry host only if it contains `.` or `:`, is
//!   `localhost`, or has an uppercase letter; otherwise the registry is `docker.io`;
//! - `index.docker.io` is the same registry as `docker.io`;
//! - a single-component name on `docker.io` lives under `library/`;
//! - with neither tag nor digest, the tag is `latest`.

use std::fmt;

use super::digest::{Digest, DigestError};

/// The registry Docker assumes when a name has none.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Host, with `:port` when one was given (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Path inside the registry (`library/nginx`, `team/sub/app`).
    pub repository: String,
    /// `latest` when neither a tag nor a digest was written.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a reference was refused; each message quotes the input and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "image reference is empty: write a name such as nginx:1.27 or registry.example.com/team/app:1.0"
    )]
    Empty,
    #[error(
        "image reference \"{input}\" contains whitespace: write it without spaces, e.g. nginx:1.27"
    )]
    Whitespace { input: String },
    #[error(
        "image reference \"{input}\": registry \"{registry}\" is not a valid host[:port]: write e.g. registry.example.com:5000/team/app:1.0"
    )]
    BadRegistry { input: String, registry: String },
    #[error(
        "image reference \"{input}\" has no repository after registry \"{registry}\": write e.g. {registry}/team/app:1.0"
    )]
    MissingRepository { input: String, registry: String },
    #[error(
        "image reference \"{input}\": repository \"{repository}\" must be lowercase: write \"{suggestion}\""
    )]
    Uppercase {
        input: String,
        repository: String,
        suggestion: String,
    },
    #[error(
        "image reference \"{input}\" has an empty path component (a leading, trailing or doubled \"/\"): write e.g. team/app"
    )]
    EmptyComponent { input: String },
    #[error(
        "image reference \"{input}\": path component \"{component}\" is not valid: use lowercase letters and digits, joined by single \".\", \"_\", \"__\" or runs of \"-\", starting and ending with a letter or digit"
    )]
    BadComponent { input: String, component: String },
    #[error(
        "image reference \"{input}\": the name is {len} characters long; registries accept at most 255"
    )]
    TooLong { input: String, len: usize },
    #[error(
        "image reference \"{input}\": tag \"{tag}\" is not valid: a tag is 1 to 128 letters, digits, \"_\", \".\" or \"-\", not starting with \".\" or \"-\" (e.g. :1.27-alpine)"
    )]
    BadTag { input: String, tag: String },
    #[error("image reference \"{input}\": {source}")]
    BadDigest {
        input: String,
        #[source]
        source: DigestError,
    },
}

impl Reference {
    /// Parses `[registry/]path[:tag][@digest]` and applies Docker's normalisation.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(ReferenceError::Whitespace {
                input: input.to_string(),
            });
        }
        let err_input = || input.to_string();

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::BadDigest {
                    input: err_input(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                input: err_input(),
                tag: tag.to_string(),
            });
        }

        let (registry, path) = split_registry(name);
        if registry != DOCKER_HUB && !valid_registry(registry) {
            return Err(ReferenceError::BadRegistry {
                input: err_input(),
                registry: registry.to_string(),
            });
        }
        if path.is_empty() {
            return Err(ReferenceError::MissingRepository {
                input: err_input(),
                registry: registry.to_string(),
            });
        }
        let registry = if registry == DOCKER_HUB_LEGACY {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        check_repository(input, &repository)?;
        let full_len = registry.len() + 1 + repository.len();
        if full_len > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                input: err_input(),
                len: full_len,
            });
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The short form Docker prints: no `docker.io/`, no `library/` for official images.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        format!("{name}{}", self.suffix())
    }

    /// What to ask the registry for: the digest when there is one (it pins the content),
    /// else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(inner) = registry.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let Some((addr, after)) = inner.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_repository(input: &str, repository: &str) -> Result<(), ReferenceError> {
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            input: input.to_string(),
            repository: repository.to_string(),
            suggestion: input.to_ascii_lowercase(),
        });
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(ReferenceError::EmptyComponent {
                input: input.to_string(),
            });
        }
        if !valid_component(component) {
            return Err(ReferenceError::BadComponent {
                input: input.to_string(),
                component: component.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = component.chars().peekable();
    loop {
        // one run of letters/digits
        let mut run = 0;
        while chars.peek().is_some_and(|&c| alnum(c)) {
            chars.next();
            run += 1;
        }
        if run == 0 {
            return false;
        }
        // then the end, or one separator followed by another run
        let Some(&sep) = chars.peek() else {
            return true;
        };
        chars.next();
        match sep {
            '.' => {}
            '_' => {
                if chars.peek() == Some(&'_') {
                    chars.next();
                }
            }
            '-' => {
                while chars.peek() == Some(&'-') {
                    chars.next();
                }
            }
            _ => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    tag.len() <= MAX_TAG_LEN
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-')
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
