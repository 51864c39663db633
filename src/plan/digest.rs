//! Checkpoint digests: the sha256 of a stage's Ops, serialized canonically.
//!
//! Canonical means object keys sorted at every depth and no whitespace, so the digest
//! depends only on what the Ops say, not on how serde or a map happened to order them. A
//! changed inventory changes exactly the digests of the stages whose Ops it changes.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Op;

/// `sha256:<hex>` of the canonical JSON of `ops`.
pub fn digest(ops: &[Op]) -> String {
    let value = serde_json::to_value(ops).unwrap_or(Value::Null);
    let mut text = String::new();
    canonical(&value, &mut text);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The digest of a stage whose work is more than its Ops (a cluster stage's wait or
/// fetch): `extra` describes the rest. Equal to [`digest`] when `extra` is empty.
pub fn digest_with(ops: &[Op], extra: &str) -> String {
    if extra.is_empty() {
        return digest(ops);
    }
    let value = serde_json::to_value(ops).unwrap_or(Value::Null);
    let mut text = String::new();
    canonical(&value, &mut text);
    text.push('\n');
    text.push_str(extra);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Writes `value` as JSON with object keys sorted.
pub fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_is_stable_and_depends_only_on_content() {
        let a = vec![Op::JsonMerge {
            path: "/etc/docker/daemon.json".into(),
            merge: json!({"b": 1, "a": {"y": 2, "x": 1}}),
            sets: vec![],
        }];
        // The same object built in another key order.
        let mut inner = serde_json::Map::new();
        inner.insert("x".into(), json!(1));
        inner.insert("y".into(), json!(2));
        let mut outer = serde_json::Map::new();
        outer.insert("a".into(), Value::Object(inner));
        outer.insert("b".into(), json!(1));
        let b = vec![Op::JsonMerge {
            path: "/etc/docker/daemon.json".into(),
            merge: Value::Object(outer),
            sets: vec![],
        }];
        assert_eq!(digest(&a), digest(&b));
        // Pinned: a change here means every existing checkpoint would re-run.
        assert_eq!(
            digest(&[Op::Module {
                name: "overlay".into()
            }]),
            "sha256:c7dc12ae5fc1711c48d8b82950dd3ad915683044a5dabbef562ef643baff2daf"
        );
    }

    #[test]
    fn json_merges_without_sets_keep_the_digests_they_had() {
        // `sets` is left out when empty, so checkpoints made before it existed still match.
        let op = Op::JsonMerge {
            path: "/x.json".into(),
            merge: json!({"a": 1}),
            sets: vec![],
        };
        let mut s = String::new();
        canonical(&serde_json::to_value(&op).unwrap(), &mut s);
        assert_eq!(s, r#"{"merge":{"a":1},"op":"json_merge","path":"/x.json"}"#);
    }

    #[test]
    fn any_change_to_an_op_changes_the_digest() {
        let base = Op::Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        };
        let changed = Op::Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "0".into(),
        };
        assert_ne!(digest(std::slice::from_ref(&base)), digest(&[changed]));
        assert_ne!(digest(std::slice::from_ref(&base)), digest(&[]));
        assert_ne!(
            digest(&[base.clone(), Op::Module { name: "x".into() }]),
            digest(&[Op::Module { name: "x".into() }, base])
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut s = String::new();
        canonical(&json!({"b": [{"d": 1, "c": "x"}], "a": null}), &mut s);
        assert_eq!(s, r#"{"a":null,"b":[{"c":"x","d":1}]}"#);
    }
}
