//! Walks one parsed manifest document and finds every image reference in its string
//! values, with the path where each was found. Strings that hold JSON or YAML themselves
//! (a ConfigMap's `spawner_ui_config.yaml`, a JSON list of notebook images) are parsed and
//! walked too; their inner path follows a ` > `, as in
//! `data.spawner_ui_config.yaml > spawnerFormDefaults.image.options[2]`.

use serde_yaml::Value;

use super::image_match::{find_in_string, under_image_key};
use crate::registry::Reference;

/// How deep embedded documents are followed (a string holding YAML holding JSON …).
const MAX_EMBEDDED: usize = 4;

/// One step of a path inside a document.
#[derive(Clone, Debug)]
enum Segment {
    Key(String),
    Index(usize),
    /// An `env` entry, named by its `name` (`env[NOTEBOOK_IMAGE]`): indexes shift when
    /// variables are added, names do not.
    Named(String),
    /// The start of a document embedded in a string value.
    Embedded,
}

/// One image found in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub reference: Reference,
    pub path: String,
}

/// Every image reference in `doc`, in document order.
pub fn scan(doc: &Value) -> Vec<Hit> {
    let mut hits = Vec::new();
    walk(doc, &mut Vec::new(), 0, &mut hits);
    hits
}

fn walk(value: &Value, path: &mut Vec<Segment>, embedded: usize, hits: &mut Vec<Hit>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                path.push(Segment::Key(key_text(key)));
                walk(child, path, embedded, hits);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            let is_env = matches!(path.last(), Some(Segment::Key(k)) if k == "env");
            for (index, child) in items.iter().enumerate() {
                let name = child.get("name").and_then(Value::as_str).filter(|_| is_env);
                path.push(match name {
                    Some(name) => Segment::Named(name.to_string()),
                    None => Segment::Index(index),
                });
                walk(child, path, embedded, hits);
                path.pop();
            }
        }
        Value::String(text) => {
            if embedded < MAX_EMBEDDED
                && let Some(inner) = embedded_document(text)
            {
                path.push(Segment::Embedded);
                walk(&inner, path, embedded + 1, hits);
                path.pop();
                return;
            }
            let keys: Vec<&str> = path
                .iter()
                .filter_map(|s| match s {
                    Segment::Key(k) | Segment::Named(k) => Some(k.as_str()),
                    _ => None,
                })
                .collect();
            for reference in find_in_string(text, under_image_key(&keys)) {
                hits.push(Hit {
                    reference,
                    path: render(path),
                });
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, embedded, hits),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A string that is itself a JSON or YAML mapping or list; plain text (a single scalar,
/// or something that does not parse) is `None` and is searched as text.
fn embedded_document(text: &str) -> Option<Value> {
    let trimmed = text.trim_start();
    let parsed = if trimmed.starts_with(['{', '[']) {
        serde_json::from_str::<Value>(text)
            .ok()
            .or_else(|| serde_yaml::from_str(text).ok())
    } else if text.trim_end().contains('\n') {
        serde_yaml::from_str(text).ok()
    } else {
        None
    };
    parsed.filter(|v| matches!(v, Value::Mapping(_) | Value::Sequence(_)))
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    let mut at_start = true;
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !at_start {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Named(n) => out.push_str(&format!("[{n}]")),
            Segment::Embedded => {
                out.push_str(" > ");
                at_start = true;
                continue;
            }
        }
        at_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(yaml: &str) -> Vec<(String, String)> {
        let doc: Value = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        scan(&doc)
            .into_iter()
            .map(|h| (h.reference.to_string(), h.path))
            .collect()
    }

    fn pair(reference: &str, path: &str) -> (String, String) {
        (reference.to_string(), path.to_string())
    }

    #[test]
    fn container_images_env_and_args() {
        let found = hits(
            r#"
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: busybox
      containers:
      - name: app
        image: quay.io/team/app:2.1
        args: ["--sidecar-image=quay.io/x/y:1.0", "--port=8080"]
        env:
        - name: LOG_LEVEL
          value: debug
        - name: NOTEBOOK_IMAGE
          value: jupyter/base-notebook
"#,
        );
        assert_eq!(
            found,
            vec![
                pair(
                    "docker.io/library/busybox:latest",
                    "spec.template.spec.initContainers[0].image"
                ),
                pair(
                    "quay.io/team/app:2.1",
                    "spec.template.spec.containers[0].image"
                ),
                pair(
                    "quay.io/x/y:1.0",
                    "spec.template.spec.containers[0].args[0]"
                ),
                pair(
                    "docker.io/jupyter/base-notebook:latest",
                    "spec.template.spec.containers[0].env[NOTEBOOK_IMAGE].value"
                ),
            ]
        );
    }

    #[test]
    fn documents_inside_strings() {
        let found = hits(
            r#"
data:
  images.json: '["kubeflownotebookswg/jupyter-scipy:v1.8.0", {"name": "x", "image": "gcr.io/a/b"}]'
  spawner_ui_config.yaml: |
    spawnerFormDefaults:
      image:
        value: kubeflownotebookswg/jupyter-scipy:v1.8.0
        options:
        - kubeflownotebookswg/jupyter-pytorch-cuda
        - kubeflownotebookswg/jupyter-tensorflow-cuda
      cpu:
        value: "0.5"
  notes: "see https://www.kubeflow.org/docs/ and nvidia.com/gpu"
"#,
        );
        assert_eq!(
            found,
            vec![
                pair(
                    "docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0",
                    "data.images.json > [0]"
                ),
                pair("gcr.io/a/b:latest", "data.images.json > [1].image"),
                pair(
                    "docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0",
                    "data.spawner_ui_config.yaml > spawnerFormDefaults.image.value"
                ),
                pair(
                    "docker.io/kubeflownotebookswg/jupyter-pytorch-cuda:latest",
                    "data.spawner_ui_config.yaml > spawnerFormDefaults.image.options[0]"
                ),
                pair(
                    "docker.io/kubeflownotebookswg/jupyter-tensorflow-cuda:latest",
                    "data.spawner_ui_config.yaml > spawnerFormDefaults.image.options[1]"
                ),
            ]
        );
    }

    #[test]
    fn a_multi_line_script_is_searched_as_text() {
        let found = hits(
            "command:\n- sh\n- -c\n- |\n  echo start\n  exec run --image=ghcr.io/o/r:3.0 now\n",
        );
        assert_eq!(found, vec![pair("ghcr.io/o/r:3.0", "command[2]")]);
    }
}
