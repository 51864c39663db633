//! `mirror-images list`: every image an install will use, from an images file and from
//! manifest files and directories, one entry per normalised reference with every place it
//! was found. Which strings count as images is decided in [`super::image_match`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

use super::images_file;
use super::scan::scan;
use crate::registry::Reference;

/// Where one image was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A line of the images file.
    ImagesFile { file: String, line: usize },
    /// A string value inside a manifest document.
    Manifest {
        file: String,
        /// `Kind/namespace/name`, `Kind/name`, or `document N` when it has no kind.
        object: String,
        path: String,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::ImagesFile { file, line } => write!(f, "{file}:{line}"),
            Place::Manifest { file, object, path } => write!(f, "{file}  {object}  {path}"),
        }
    }
}

/// One image and every place it was found, in the order they were read.
#[derive(Clone, Debug)]
pub struct Found {
    pub reference: Reference,
    pub places: Vec<Place>,
}

/// Manifest text that is not in a file: gpuctl's rendered templates. `name` is what a
/// place shows for it (`template gpu/device-plugin.yaml`).
pub struct InMemory {
    pub name: String,
    pub text: String,
}

/// Reads the images file (entries kept as they are, no matching rule), every manifest and
/// every in-memory manifest, and returns the images sorted by normalised reference. The
/// error lists every file that cannot be read or parsed, each as `FILE:LINE: problem`.
pub fn discover(
    images: Option<&Path>,
    manifests: &[PathBuf],
    in_memory: &[InMemory],
) -> Result<Vec<Found>, String> {
    let mut by_reference: BTreeMap<String, Found> = BTreeMap::new();
    let mut add = |reference: Reference, place: Place| {
        by_reference
            .entry(reference.to_string())
            .or_insert_with(|| Found {
                reference,
                places: Vec::new(),
            })
            .places
            .push(place);
    };
    if let Some(path) = images {
        for entry in images_file::read(path)? {
            let place = Place::ImagesFile {
                file: path.display().to_string(),
                line: entry.line,
            };
            add(entry.reference, place);
        }
    }

    let mut problems = Vec::new();
    let mut files = Vec::new();
    for root in manifests {
        if let Err(e) = collect_files(root, &mut files) {
            problems.push(e);
        }
    }
    let texts = files
        .iter()
        .map(|file| (file.display().to_string(), read_documents(file)))
        .chain(in_memory.iter().map(|m| {
            let docs = parse_yaml(&m.name, &m.text);
            (m.name.clone(), docs)
        }));
    for (name, docs) in texts {
        match docs {
            Ok(docs) => {
                for (index, doc) in docs.iter().enumerate() {
                    let object = object_name(doc, index);
                    for hit in scan(doc) {
                        let place = Place::Manifest {
                            file: name.clone(),
                            object: object.clone(),
                            path: hit.path,
                        };
                        add(hit.reference, place);
                    }
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} manifest problem{}:\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        ));
    }
    Ok(by_reference.into_values().collect())
}

/// A file as given, or every `*.yaml`, `*.yml` and `*.json` under a directory, sorted by
/// path. Hidden directories (`.git`) are skipped, and symlinked directories are not
/// followed (a link back up would never end).
fn collect_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = std::fs::metadata(root).map_err(|e| {
        format!(
            "{}: {e}; give a manifest file or a directory of *.yaml, *.yml or *.json files",
            root.display()
        )
    })?;
    if meta.is_file() {
        out.push(root.to_path_buf());
        return Ok(());
    }
    let mut found = Vec::new();
    walk_dir(root, &mut found)?;
    found.sort();
    out.extend(found);
    Ok(())
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if kind.is_dir() {
            if !hidden {
                walk_dir(&path, out)?;
            }
        } else if path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Every document of a file: JSON for `*.json`, else multi-document YAML. Empty documents
/// (a trailing `---`) are dropped.
fn read_documents(file: &Path) -> Result<Vec<Value>, String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: cannot read: {e}"))?;
    if file.extension().is_some_and(|e| e == "json") {
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{name}:{}: not valid JSON: {e}", e.line()))?;
        return Ok(vec![doc]);
    }
    parse_yaml(&name.to_string(), &text)
}

/// Every non-empty document of a multi-document YAML text; errors name `name`, the line
/// and the document.
pub fn parse_yaml(name: &str, text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    // After a syntax error the iterator repeats it forever: the first error ends the file.
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(doc) => docs.push(doc),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(":{}", l.line()))
                    .unwrap_or_default();
                return Err(format!(
                    "{name}{at}: document {} is not valid YAML: {e}",
                    index + 1
                ));
            }
        }
    }
    Ok(docs)
}

/// `Kind/namespace/name` from a Kubernetes object's `kind` and `metadata`.
fn object_name(doc: &Value, index: usize) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let Some(kind) = text(doc.get("kind")) else {
        return format!("document {}", index + 1);
    };
    let meta = doc.get("metadata");
    let name = text(meta.and_then(|m| m.get("name"))).unwrap_or_else(|| "-".to_string());
    match text(meta.and_then(|m| m.get("namespace"))) {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The images as an images file that `mirror-images pull --images` reads: normalised
/// references, sorted, each after a comment saying where it was found.
pub fn images_file_text(found: &[Found]) -> String {
    let mut out = String::from(
        "# Written by `gpuctl mirror-images list --output images`: every image found,\n\
         # normalised and sorted, after the first place it was found.\n",
    );
    for image in found {
        if let Some(first) = image.places.first() {
            let more = image.places.len() - 1;
            let (file, rest) = match first {
                Place::ImagesFile { file, line } => (file, format!("line {line}")),
                Place::Manifest { file, object, path } => (file, format!("{object} {path}")),
            };
            out.push_str(&format!("# from {file}: {rest}"));
            if more > 0 {
                out.push_str(&format!(" (and {more} more)"));
            }
            out.push('\n');
        }
        out.push_str(&format!("{}\n", image.reference));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_name_the_line_and_document() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "a: 1\n---\nb: [1, 2\nc: 3\n").unwrap_or_else(|e| panic!("{e}"));
        let err = read_documents(&file).err().unwrap_or_default();
        assert!(err.contains("document 2 is not valid YAML"), "{err}");
        assert!(
            err.contains("bad.yaml:4:") || err.contains("bad.yaml:5:"),
            "{err}"
        );
    }

    #[test]
    fn objects_are_named_by_kind_namespace_and_name() {
        let doc: Value =
            serde_yaml::from_str("kind: Deployment\nmetadata: {name: web, namespace: ml}")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(object_name(&doc, 0), "Deployment/ml/web");
        let doc: Value = serde_yaml::from_str("kind: ClusterRole\nmetadata: {name: r}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(object_name(&doc, 0), "ClusterRole/r");
        assert_eq!(object_name(&Value::Null, 2), "document 3");
    }
}
