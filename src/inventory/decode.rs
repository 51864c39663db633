//! Typed reads from the YAML tree that record a problem instead of stopping.
//!
//! Each reader returns `None` (or an empty list) when the value is wrong and has already
//! pushed a problem saying what was expected and what to write, so callers simply carry
//! on and every problem in the file is found in one pass.

use super::node::{Entry, Kind, Node};
use super::problem::{At, Problems, did_you_mean};
use crate::secret::SecretSource;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S<T> {
    pub v: T,
    pub at: At,
}

/// `parent.key`, or `key` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The keys of one mapping, after unknown keys were reported.
pub struct Fields<'a> {
    pub at: At,
    entries: Vec<&'a Entry>,
    /// False when the node was not a mapping at all; missing keys are then not reported
    /// again.
    ok: bool,
    /// How many unknown keys were reported.
    unknown: usize,
}

impl<'a> Fields<'a> {
    /// The value of `key` and its path; `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<(&'a Node, String)> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .filter(|e| !e.value.is_null())
            .map(|e| (&e.value, join(&self.at.path, key)))
    }

    /// Like [`Fields::get`], but a missing key is a problem.
    pub fn require(
        &self,
        p: &mut Problems,
        key: &str,
        example: &str,
    ) -> Option<(&'a Node, String)> {
        let found = self.get(key);
        if found.is_none() && self.ok {
            let what = if self.entries.iter().any(|e| e.key == key) {
                format!("`{key}` has no value")
            } else {
                format!("missing required key `{key}`")
            };
            p.error_hint(&self.at, what, format!("add `{key}: {example}`"));
        }
        found
    }

    /// A mapping with no keys at all (not even unknown ones).
    pub fn is_empty(&self) -> bool {
        self.ok && self.unknown == 0 && self.entries.is_empty()
    }

    /// Whether the key is written at all (even as null): `bastion: []` differs from no
    /// `bastion`.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }
}

/// Reads a mapping. Unknown keys are reported (with the closest known key, or a hint
/// from `hints` for keys people write by habit), all of them, not just the first.
pub fn fields<'a>(
    p: &mut Problems,
    node: &'a Node,
    path: &str,
    known: &[&str],
    hints: &[(&str, &str)],
) -> Fields<'a> {
    let at = At::new(node.pos, path);
    let entries = match &node.kind {
        Kind::Map(entries) => entries,
        Kind::Null => {
            return Fields {
                at,
                entries: Vec::new(),
                ok: true,
                unknown: 0,
            };
        }
        _ => {
            p.error_hint(
                &at,
                format!("expected a mapping, found {}", node.describe()),
                format!(
                    "write `key: value` lines here; known keys: {}",
                    known.join(", ")
                ),
            );
            return Fields {
                at,
                entries: Vec::new(),
                ok: false,
                unknown: 0,
            };
        }
    };
    let mut kept = Vec::new();
    let mut unknown = 0;
    for e in entries {
        if known.contains(&e.key.as_str()) {
            kept.push(e);
            continue;
        }
        // Top-level `x-...` keys hold anchors for the rest of the file, as in compose files.
        if path.is_empty() && e.key.starts_with("x-") {
            continue;
        }
        let key_at = At::new(e.key_pos, join(path, &e.key));
        let hint = if let Some((_, h)) = hints.iter().find(|(k, _)| *k == e.key) {
            h.to_string()
        } else if let Some(close) = did_you_mean(&e.key, known.iter().copied()) {
            format!("did you mean `{close}`?")
        } else {
            format!("known keys here: {}", known.join(", "))
        };
        p.error_hint(&key_at, format!("unknown key `{}`", e.key), hint);
        unknown += 1;
    }
    Fields {
        at,
        entries: kept,
        ok: true,
        unknown,
    }
}

/// Any scalar as text (`12.5` and `true` are text where text is expected).
pub fn string(p: &mut Problems, node: &Node, path: &str) -> Option<S<String>> {
    let at = At::new(node.pos, path);
    match &node.kind {
        Kind::Scalar { text, .. } => Some(S {
            v: text.clone(),
            at,
        }),
        _ => {
            p.error_hint(
                &at,
                format!("expected text, found {}", node.describe()),
                "write a single value here",
            );
            None
        }
    }
}

/// `true` or `false`, unquoted.
pub fn boolean(p: &mut Problems, node: &Node, path: &str) -> Option<S<bool>> {
    let at = At::new(node.pos, path);
    if let Kind::Scalar {
        text,
        quoted: false,
    } = &node.kind
    {
        match text.as_str() {
            "true" | "True" | "TRUE" => return Some(S { v: true, at }),
            "false" | "False" | "FALSE" => return Some(S { v: false, at }),
            _ => {}
        }
    }
    let hint = match &node.kind {
        Kind::Scalar { text, .. } if matches!(text.as_str(), "yes" | "on" | "y" | "Yes") => {
            "write `true` (YAML 1.2 has no yes/on)"
        }
        Kind::Scalar { text, .. } if matches!(text.as_str(), "no" | "off" | "n" | "No") => {
            "write `false` (YAML 1.2 has no no/off)"
        }
        _ => "write `true` or `false` without quotes",
    };
    p.error_hint(
        &at,
        format!("expected true or false, found {}", node.describe()),
        hint,
    );
    None
}

/// An unquoted whole number in `min..=max`; `example` goes into the hint.
pub fn number(
    p: &mut Problems,
    node: &Node,
    path: &str,
    (min, max): (u64, u64),
    example: u64,
) -> Option<S<u64>> {
    let at = At::new(node.pos, path);
    if let Kind::Scalar {
        text,
        quoted: false,
    } = &node.kind
        && let Ok(v) = text.parse::<u64>()
        && (min..=max).contains(&v)
    {
        return Some(S { v, at });
    }
    let hint = match &node.kind {
        Kind::Scalar { text, quoted: true } if text.parse::<u64>().is_ok() => {
            format!("write {text} without quotes")
        }
        _ => format!("write a number such as {example}"),
    };
    p.error_hint(
        &at,
        format!(
            "expected a whole number from {min} to {max}, found {}",
            node.describe()
        ),
        hint,
    );
    None
}

/// A port number.
pub fn port(p: &mut Problems, node: &Node, path: &str) -> Option<S<u16>> {
    let n = number(p, node, path, (1, 65535), 22)?;
    let v = u16::try_from(n.v).ok()?;
    Some(S { v, at: n.at })
}

/// One of a fixed set of words. `aliases` maps words people use elsewhere (`master`) to
/// ours (`server`) for the hint.
pub fn choice<T: Copy>(
    p: &mut Problems,
    node: &Node,
    path: &str,
    noun: &str,
    options: &[(&str, T)],
    aliases: &[(&str, &str)],
) -> Option<S<T>> {
    let text = string(p, node, path)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == text.v) {
        return Some(S { v: *v, at: text.at });
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let lower = text.v.to_ascii_lowercase();
    let suggestion = aliases
        .iter()
        .find(|(a, _)| *a == lower)
        .map(|(_, ours)| *ours)
        .or_else(|| names.iter().copied().find(|n| *n == lower))
        .or_else(|| did_you_mean(&text.v, names.iter().copied()));
    let message = format!(
        "unknown {noun} {:?}; expected one of {}",
        text.v,
        names.join(", ")
    );
    match suggestion {
        Some(s) => p.error_hint(&text.at, message, format!("write \"{s}\"")),
        None => p.error(&text.at, message),
    }
    None
}

/// A list; null is an empty list.
pub fn list<'a>(p: &mut Problems, node: &'a Node, path: &str) -> Vec<(&'a Node, String)> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, index(path, i)))
            .collect(),
        Kind::Null => Vec::new(),
        _ => {
            p.error_hint(
                &At::new(node.pos, path),
                format!("expected a list, found {}", node.describe()),
                "write `[a, b]` or one `- item` per line",
            );
            Vec::new()
        }
    }
}

/// One value or a list of them (`identity_file: a` or `identity_file: [a, b]`).
pub fn one_or_many<'a>(node: &'a Node, path: &str) -> Vec<(&'a Node, String)> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, index(path, i)))
            .collect(),
        Kind::Null => Vec::new(),
        _ => vec![(node, path.to_string())],
    }
}

/// `{ env: NAME }` or `{ prompt: true }`. The secret itself never belongs in the file.
pub fn secret(p: &mut Problems, node: &Node, path: &str) -> Option<S<SecretSource>> {
    let at = At::new(node.pos, path);
    if let Kind::Scalar { .. } = node.kind {
        // Deliberately does not echo the value: it is probably the password itself.
        p.error_hint(
            &at,
            "a secret must not be written in the inventory",
            "write `{ env: VARIABLE }` and export VARIABLE, or `{ prompt: true }` to be asked once",
        );
        return None;
    }
    let f = fields(p, node, path, super::schema::SECRET_KEYS, &[]);
    let env = f.get("env").and_then(|(n, path)| string(p, n, &path));
    let prompt = f.get("prompt").and_then(|(n, path)| boolean(p, n, &path));
    match (env, prompt) {
        (Some(env), None) => {
            let valid = !env.v.is_empty()
                && !env.v.starts_with(|c: char| c.is_ascii_digit())
                && env.v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Some(S {
                    v: SecretSource::Env { env: env.v },
                    at,
                })
            } else {
                p.error_hint(
                    &env.at,
                    format!("{:?} is not an environment variable name", env.v),
                    "use letters, digits and _, e.g. GPUCTL_SUDO_PASSWORD",
                );
                None
            }
        }
        (None, Some(prompt)) if prompt.v => Some(S {
            v: SecretSource::Prompt { prompt: true },
            at,
        }),
        (None, Some(prompt)) => {
            p.error_hint(
                &prompt.at,
                "`prompt: false` asks for nothing",
                "remove the whole key if no secret is needed",
            );
            None
        }
        (Some(_), Some(_)) => {
            p.error_hint(
                &at,
                "give either `env` or `prompt`, not both",
                "keep `env: NAME` for unattended runs",
            );
            None
        }
        (None, None) => {
            if f.is_empty() {
                p.error_hint(
                    &at,
                    "a secret needs `env` or `prompt`",
                    "write `{ env: VARIABLE }` or `{ prompt: true }`",
                );
            }
            None
        }
    }
}

/// A mapping of text to text (labels).
pub fn string_map(p: &mut Problems, node: &Node, path: &str) -> Vec<(S<String>, S<String>)> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .filter_map(|e| {
                let key = S {
                    v: e.key.clone(),
                    at: At::new(e.key_pos, join(path, &e.key)),
                };
                let value = if e.value.is_null() {
                    S {
                        v: String::new(),
                        at: At::new(e.value.pos, join(path, &e.key)),
                    }
                } else {
                    string(p, &e.value, &join(path, &e.key))?
                };
                Some((key, value))
            })
            .collect(),
        Kind::Null => Vec::new(),
        _ => {
            p.error_hint(
                &At::new(node.pos, path),
                format!("expected a mapping, found {}", node.describe()),
                "write `{ key: value }`",
            );
            Vec::new()
        }
    }
}
