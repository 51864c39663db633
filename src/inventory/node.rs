//! The inventory file as a tree of YAML nodes, each with the position it was written at.
//!
//! serde gives a position only for its own first error, and we want every problem with
//! `file:line:col`, so the file is read with an event parser that exposes marks and the
//! decoder (`decode.rs`) walks this tree instead of deserialising. Scalars keep their text
//! and whether they were quoted; the decoder types them by where they stand (a plain `12.5`
//! is a string under `cpu:` and an error under `port:`), which is what the admin meant.
//! Anchors, aliases and `<<` merge keys are expanded here so the decoder never sees them.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::problem::{At, Pos, Problems};

/// A YAML value with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// `~`, `null`, or nothing at all after a key.
    Null,
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
    /// Came from a `<<` merge; a key written in the mapping itself replaces it.
    merged: bool,
}

impl Node {
    /// A short name of the node's kind, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".to_string(),
            Kind::Scalar { text, .. } => format!("{text:?}"),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses the whole file. `None` when it is not YAML at all (the problem is recorded); an
/// empty file is `Some(Null)`.
pub fn parse(text: &str, problems: &mut Problems) -> Option<Node> {
    let mut builder = Builder {
        anchors: HashMap::new(),
        stack: Vec::new(),
        docs: Vec::new(),
        expanded: 0,
    };
    for event in Parser::new_from_str(text) {
        match event {
            Ok((ev, span)) => builder.event(ev, span, problems),
            Err(e) => {
                let at = At::new(
                    Pos {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    "",
                );
                problems.error_hint(
                    &at,
                    format!("this is not valid YAML: {}", e.info()),
                    "check the indentation and quoting around this line",
                );
                return None;
            }
        }
    }
    let mut docs = builder.docs.into_iter();
    let first = docs.next();
    if let Some(second) = docs.next() {
        problems.error_hint(
            &At::new(second.pos, ""),
            "a second YAML document starts here; an inventory is one document",
            "remove the `---` line and everything after it, or move it to its own file",
        );
    }
    Some(first.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        kind: Kind::Null,
    }))
}

enum Frame {
    Seq {
        node_pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        node_pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        /// The key read and waiting for its value.
        pending: Option<(Node, Pos)>,
    },
}

struct Builder {
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Nodes copied by aliases so far.
    expanded: usize,
}

/// Aliases may copy this many nodes in all. Nested aliases grow exponentially (the
/// "billion laughs" file); a real inventory copies a few hundred.
const ALIAS_BUDGET: usize = 100_000;

/// The number of nodes in a tree, without recursion (the tree may be deep).
fn size(node: &Node) -> usize {
    let mut count = 0;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.kind {
            Kind::Seq(items) => todo.extend(items),
            Kind::Map(entries) => todo.extend(entries.iter().map(|e| &e.value)),
            _ => {}
        }
    }
    count
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, span: Span, problems: &mut Problems) {
        let at = pos(&span);
        match ev {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
            Event::Alias(id) => {
                let kind = match self.anchors.get(&id) {
                    Some((n, size)) if self.expanded + size <= ALIAS_BUDGET => {
                        self.expanded += size;
                        n.kind.clone()
                    }
                    Some(_) => {
                        // Said once; later aliases are as over budget as this one.
                        if self.expanded <= ALIAS_BUDGET {
                            problems.error_hint(
                                &At::new(at, ""),
                                format!("aliases here would copy more than {ALIAS_BUDGET} values"),
                                "write the values out, or use fewer nested aliases",
                            );
                        }
                        self.expanded = usize::MAX / 2;
                        Kind::Null
                    }
                    None => Kind::Null,
                };
                let node = Node { pos: at, kind };
                self.value(node, problems);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain) || tag.is_some();
                let kind = if !quoted && is_null_text(&text) {
                    Kind::Null
                } else {
                    Kind::Scalar {
                        text: text.into_owned(),
                        quoted,
                    }
                };
                let node = Node { pos: at, kind };
                if anchor != 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.value(node, problems);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                node_pos: at,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                node_pos: at,
                anchor,
                entries: Vec::new(),
                pending: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        node_pos,
                        anchor,
                        items,
                    }) => (
                        Node {
                            pos: node_pos,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        node_pos,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            pos: node_pos,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return,
                };
                if anchor != 0 {
                    let n = size(&node);
                    self.anchors.insert(anchor, (node.clone(), n));
                }
                self.value(node, problems);
            }
        }
    }

    /// Places a finished node in its parent (or as a document).
    fn value(&mut self, node: Node, problems: &mut Problems) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, pending, ..
            }) => match pending.take() {
                None => *pending = Some((node.clone(), node.pos)),
                Some((key, key_pos)) => add_entry(entries, key, key_pos, node, problems),
            },
        }
    }
}

fn add_entry(
    entries: &mut Vec<Entry>,
    key: Node,
    key_pos: Pos,
    value: Node,
    problems: &mut Problems,
) {
    let key = match key.kind {
        Kind::Scalar { text, .. } => text,
        Kind::Null => {
            problems.error(&At::new(key_pos, ""), "a mapping key is empty");
            return;
        }
        _ => {
            problems.error_hint(
                &At::new(key_pos, ""),
                "a mapping key must be plain text, not a list or mapping",
                "write `name: value`",
            );
            return;
        }
    };
    if key == "<<" {
        merge(entries, value, problems);
        return;
    }
    if let Some(i) = entries.iter().position(|e| e.key == key && e.merged) {
        entries[i] = Entry {
            key,
            key_pos,
            value,
            merged: false,
        };
        return;
    }
    if let Some(first) = entries.iter().find(|e| e.key == key) {
        problems.error_hint(
            &At::new(key_pos, ""),
            format!(
                "key `{key}` appears twice in this mapping (first at line {})",
                first.key_pos.line
            ),
            "keep one of them",
        );
        return;
    }
    entries.push(Entry {
        key,
        key_pos,
        value,
        merged: false,
    });
}

/// `<<: *defaults` (or a list of them): copies the keys the mapping does not set itself.
fn merge(entries: &mut Vec<Entry>, value: Node, problems: &mut Problems) {
    let sources = match value.kind {
        Kind::Map(m) => vec![m],
        Kind::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.kind {
                Kind::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => {
            problems.error_hint(
                &At::new(value.pos, ""),
                "`<<` merges a mapping, but this is not one",
                "write `<<: *anchor` where the anchor names a mapping",
            );
            return;
        }
    };
    for source in sources {
        for e in source {
            if !entries.iter().any(|x| x.key == e.key) {
                entries.push(Entry { merged: true, ..e });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        let mut p = Problems::new("t.yaml");
        let node = parse(text, &mut p);
        assert!(!p.has_errors(), "{:?}", p.finish());
        node.unwrap_or_else(|| panic!("no node"))
    }

    #[test]
    fn positions_are_one_based() {
        let node = parse_ok("a:\n  b: 1\n");
        let Kind::Map(top) = &node.kind else {
            panic!("not a map")
        };
        let Kind::Map(inner) = &top[0].value.kind else {
            panic!("not a map")
        };
        assert_eq!(inner[0].key_pos, Pos { line: 2, col: 3 });
        assert_eq!(inner[0].value.pos, Pos { line: 2, col: 6 });
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let node = parse_ok("d: &d {user: ops, port: 22}\nh:\n  <<: *d\n  port: 2222\n");
        let Kind::Map(top) = &node.kind else {
            panic!("not a map")
        };
        let Kind::Map(h) = &top[1].value.kind else {
            panic!("not a map")
        };
        let keys: Vec<_> = h.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["user", "port"]);
        assert!(matches!(&h[1].value.kind, Kind::Scalar { text, .. } if text == "2222"));
    }

    #[test]
    fn nested_aliases_cannot_blow_up_memory() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = if i == 1 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        let mut p = Problems::new("t.yaml");
        parse(&text, &mut p);
        let err = p.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err.matches("would copy more than").count(), 1, "{err}");
    }

    #[test]
    fn duplicate_keys_and_bad_yaml_are_problems() {
        let mut p = Problems::new("t.yaml");
        parse("a: 1\na: 2\n", &mut p);
        let err = p.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("t.yaml:2:1: key `a` appears twice"), "{err}");

        let mut p = Problems::new("t.yaml");
        assert!(parse("a: [1, 2\nb: 3\n", &mut p).is_none());
        assert!(p.has_errors());
    }
}
