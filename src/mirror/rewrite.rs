//! Rewriting manifests to the mirror: every image reference gpuctl finds in a document
//! (the same rule `mirror-images list` uses, so ConfigMap contents, env values, args and
//! custom resources included) is replaced, where it is written, by its place in the mirror,
//! pinned to the locked digest when the lock file has it.
//!
//! Why rewrite at all when containerd can pull through a mirror: the docker runtime's
//! `registry-mirrors` covers docker.io only, and a reference pinned by digest is what makes
//! a re-install pull exactly what was mirrored. Why textual replacement inside strings
//! rather than re-serialising embedded JSON/YAML: an admin diffing the applied ConfigMap
//! against upstream sees only the image changed, not reformatted JSON.

use std::collections::BTreeSet;

use serde_yaml::Value;

use super::lock::LockFile;
use super::naming::target_repository;
use super::scan::scan;
use crate::registry::Reference;

/// Where images go and what they are pinned to.
pub struct Rewrite<'a> {
    /// `host[:port]` of the mirror.
    pub mirror: &'a str,
    /// The mirror naming prefix (`mirror-images push --prefix`).
    pub prefix: Option<&'a str>,
    /// Pins: a locked reference is written `mirror/path:tag@digest`.
    pub lock: Option<&'a LockFile>,
}

/// One image rewritten, for `plan` and logs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rewritten {
    pub from: String,
    pub to: String,
    /// Whether the lock file pinned it; an unpinned image follows its tag in the mirror.
    pub pinned: bool,
}

impl Rewrite<'_> {
    /// The mirror reference for an upstream one. References already in the mirror are kept.
    pub fn target(&self, source: &Reference) -> Option<Rewritten> {
        if source.registry == self.mirror {
            return None;
        }
        let repo = format!("{}/{}", self.mirror, target_repository(source, self.prefix));
        let tag = source
            .tag
            .as_deref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default();
        let (digest, pinned) = match (&source.digest, self.lock.and_then(|l| l.pinned(source))) {
            (Some(d), _) => (format!("@{d}"), true),
            (None, Some(locked)) => (format!("@{}", locked.digest), true),
            (None, None) => (String::new(), false),
        };
        Some(Rewritten {
            from: source.to_string(),
            to: format!("{repo}{tag}{digest}"),
            pinned,
        })
    }

    /// Rewrites every image of `doc` in place and returns what changed (each image once).
    pub fn document(&self, doc: &mut Value) -> Vec<Rewritten> {
        let images: BTreeSet<String> = scan(doc)
            .into_iter()
            .map(|h| h.reference.to_string())
            .collect();
        if images.is_empty() {
            return Vec::new();
        }
        let mut done = BTreeSet::new();
        self.walk(doc, &images, &mut done);
        done.into_iter().collect()
    }

    /// Rewrites every document of a YAML stream. The text comes back as it was when no
    /// image needed rewriting; otherwise the documents are written out again (comments
    /// dropped), separated by `---`.
    /// `name` says in errors what the text is.
    pub fn text(&self, name: &str, yaml: &str) -> Result<(String, Vec<Rewritten>), String> {
        let mut docs = super::discover::parse_yaml(name, yaml)?;
        let mut all = BTreeSet::new();
        for doc in &mut docs {
            all.extend(self.document(doc));
        }
        if all.is_empty() {
            return Ok((yaml.to_string(), Vec::new()));
        }
        let mut out = String::new();
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&serde_yaml::to_string(doc).map_err(|e| format!("{name}: {e}"))?);
        }
        Ok((out, all.into_iter().collect()))
    }

    fn walk(&self, value: &mut Value, images: &BTreeSet<String>, done: &mut BTreeSet<Rewritten>) {
        match value {
            Value::Mapping(map) => {
                for (_, child) in map.iter_mut() {
                    self.walk(child, images, done);
                }
            }
            Value::Sequence(items) => {
                for child in items {
                    self.walk(child, images, done);
                }
            }
            Value::String(text) => {
                if let Some(new) = self.string(text, images, done) {
                    *text = new;
                }
            }
            Value::Tagged(tagged) => self.walk(&mut tagged.value, images, done),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// The string with every token that is one of `images` replaced; `None` if none is.
    fn string(
        &self,
        text: &str,
        images: &BTreeSet<String>,
        done: &mut BTreeSet<Rewritten>,
    ) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in tokens(text) {
            let Ok(reference) = Reference::parse(&text[start..end]) else {
                continue;
            };
            if !images.contains(&reference.to_string()) {
                continue;
            }
            let Some(rewritten) = self.target(&reference) else {
                continue;
            };
            out.push_str(&text[last..start]);
            out.push_str(&rewritten.to);
            last = end;
            done.insert(rewritten);
        }
        if last == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

/// Byte ranges of the candidate tokens of a string, split and trimmed the way
/// `image_match::find_in_string` reads them: at whitespace and commas, quotes and brackets
/// trimmed, and for `NAME=VALUE` the value.
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let trim = |c: char| "\"'`;()[]{}".contains(c);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if !(c.is_whitespace() || c == ',') {
            continue;
        }
        let (mut s, mut e) = (start, i);
        start = i + c.len_utf8();
        while s < e && text[s..e].starts_with(trim) {
            s += text[s..].chars().next().map_or(1, char::len_utf8);
        }
        while s < e && text[s..e].ends_with(trim) {
            e -= text[..e].chars().next_back().map_or(1, char::len_utf8);
        }
        if let Some(eq) = text[s..e].find('=') {
            s += eq + 1;
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::lock::LockedImage;
    use crate::registry::Digest;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn doc(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn lock() -> LockFile {
        let digest: Digest = DIGEST.parse().unwrap_or_else(|e| panic!("{e:?}"));
        LockFile::new(
            Vec::new(),
            vec![LockedImage {
                source: "nginx:1.27".into(),
                reference: "docker.io/library/nginx:1.27".into(),
                digest,
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                platforms: Vec::new(),
                skipped: Vec::new(),
            }],
        )
    }

    #[test]
    fn images_everywhere_in_a_document_go_to_the_mirror() {
        let lock = lock();
        let rw = Rewrite {
            mirror: "registry.lab:5000",
            prefix: None,
            lock: Some(&lock),
        };
        let mut d = doc(r#"
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: web
          image: nginx:1.27
          args: ["--sidecar-image=quay.io/jetstack/cert-manager-cainjector:v1.14.4", "--port=80"]
          env:
            - { name: NOTEBOOK_IMAGE, value: "kubeflownotebookswg/jupyter-scipy:v1.9.2" }
data:
  images.json: '["kubeflownotebookswg/jupyter-scipy:v1.9.2", "ghcr.io/team/tool:2.0"]'
  note: "version 1.27 of nginx"
"#);
        let changed = rw.document(&mut d);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["image"],
            format!("registry.lab:5000/library/nginx:1.27@{DIGEST}").as_str()
        );
        assert_eq!(
            c["args"][0],
            "--sidecar-image=registry.lab:5000/jetstack/cert-manager-cainjector:v1.14.4"
        );
        assert_eq!(c["args"][1], "--port=80");
        assert_eq!(
            c["env"][0]["value"],
            "registry.lab:5000/kubeflownotebookswg/jupyter-scipy:v1.9.2"
        );
        assert_eq!(
            d["data"]["images.json"],
            r#"["registry.lab:5000/kubeflownotebookswg/jupyter-scipy:v1.9.2", "registry.lab:5000/team/tool:2.0"]"#
        );
        assert_eq!(
            d["data"]["note"], "version 1.27 of nginx",
            "prose is not an image"
        );
        assert_eq!(changed.len(), 4, "{changed:?}");
        assert_eq!(
            changed.iter().filter(|r| r.pinned).count(),
            1,
            "{changed:?}"
        );
    }

    #[test]
    fn a_yaml_stream_is_rewritten_document_by_document() {
        let rw = Rewrite {
            mirror: "registry.lab:5000",
            prefix: None,
            lock: None,
        };
        let stream = "# a comment\nkind: A\nimage: nginx:1.27\n---\n---\nkind: B\nname: x\n";
        let (text, done) = rw.text("t", stream).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            text,
            "kind: A\nimage: registry.lab:5000/library/nginx:1.27\n---\nkind: B\nname: x\n"
        );
        assert_eq!(done.len(), 1);
        let plain = "# kept\nkind: B\n";
        assert_eq!(
            rw.text("t", plain).unwrap_or_else(|e| panic!("{e}")),
            (plain.to_string(), Vec::new())
        );
        assert!(rw.text("t", "a: [").is_err());
    }

    #[test]
    fn a_second_rewrite_changes_nothing() {
        let rw = Rewrite {
            mirror: "registry.lab:5000",
            prefix: Some("mirror"),
            lock: None,
        };
        let mut d = doc("spec: { containers: [ { image: 'registry.k8s.io/pause:3.9' } ] }");
        assert_eq!(rw.document(&mut d).len(), 1);
        assert_eq!(
            d["spec"]["containers"][0]["image"],
            "registry.lab:5000/mirror/pause:3.9"
        );
        let before = d.clone();
        assert!(rw.document(&mut d).is_empty());
        assert_eq!(d, before);
    }

    #[test]
    fn digest_references_keep_their_digest() {
        let rw = Rewrite {
            mirror: "m:5000",
            prefix: None,
            lock: None,
        };
        let mut d = doc(&format!("image: quay.io/a/b@{DIGEST}"));
        let changed = rw.document(&mut d);
        assert_eq!(d["image"], format!("m:5000/a/b@{DIGEST}").as_str());
        assert!(changed[0].pinned);
    }
}
