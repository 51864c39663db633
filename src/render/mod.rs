//! Templates: every manifest and config file gpuctl writes for the cluster, as handlebars
//! files under `templates/`, embedded in the binary and overridable one by one with
//! `--templates DIR`.
//!
//! Strict mode is on, so a template naming a value the context does not have fails with the
//! template and line instead of rendering an empty string into a manifest. Nothing is
//! HTML-escaped: the output is YAML and config text. A template that renders to nothing but
//! whitespace (a component the inventory turns off) produces no file.

mod context;
pub use context::{namespace_for, node_address};
mod embedded;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;

pub use context::context;

use crate::inventory::Inventory;

/// The file name suffix of a template; the rendered file's name drops it.
const SUFFIX: &str = ".hbs";

/// A problem with the templates or the values they are rendered with.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("--templates {dir}: {message}")]
    Override { dir: PathBuf, message: String },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("{0}")]
    Context(String),
}

/// The loaded template set: the embedded ones, each possibly replaced by a file of the
/// override directory.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Template name (its path under `templates/` with the suffix) → where it came from.
    sources: BTreeMap<String, Source>,
}

/// Where a template's text came from, for messages and `render`'s listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Embedded,
    Override(PathBuf),
}

/// One rendered file: its name (`gpu/device-plugin.yaml`) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub name: String,
    pub text: String,
}

impl Templates {
    /// The embedded templates, with the files of `overrides` (same relative names, e.g.
    /// `DIR/gpu/device-plugin.yaml.hbs`) in their place. A file in `overrides` that names no
    /// embedded template is an error: a typo there would otherwise be ignored silently.
    pub fn load(overrides: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut texts: BTreeMap<String, (String, Source)> = embedded::TEMPLATES
            .iter()
            .map(|(name, text)| (name.to_string(), (text.to_string(), Source::Embedded)))
            .collect();
        if let Some(dir) = overrides {
            for (name, path) in override_files(dir)? {
                if !texts.contains_key(&name) {
                    let known: Vec<&str> = embedded::TEMPLATES.iter().map(|(n, _)| *n).collect();
                    return Err(TemplateError::Override {
                        dir: dir.to_path_buf(),
                        message: format!(
                            "{name} replaces no template; the templates are: {}",
                            known.join(", ")
                        ),
                    });
                }
                let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Override {
                    dir: dir.to_path_buf(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                texts.insert(name, (text, Source::Override(path)));
            }
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        let mut sources = BTreeMap::new();
        for (name, (text, source)) in texts {
            // Registered under the name without the suffix so partials read naturally:
            // `{{> dns/hosts.server}}`.
            let key = name.trim_end_matches(SUFFIX).to_string();
            registry
                .register_template_string(&key, text)
                .map_err(|e| TemplateError::Template {
                    name: describe(&name, &source),
                    message: e.to_string(),
                })?;
            sources.insert(name, source);
        }
        Ok(Templates { registry, sources })
    }

    /// Every template name with where it came from.
    pub fn sources(&self) -> &BTreeMap<String, Source> {
        &self.sources
    }

    /// Renders one template (`gpu/device-plugin.yaml`) with `ctx`.
    pub fn render_one(
        &self,
        name: &str,
        ctx: &serde_json::Value,
    ) -> Result<Option<Rendered>, TemplateError> {
        let text = self
            .registry
            .render(name, ctx)
            .map_err(|e| TemplateError::Template {
                name: self.describe_key(name),
                message: render_message(&e),
            })?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(Rendered {
            name: name.to_string(),
            text: tidy(&text),
        }))
    }

    /// Renders every template for `inv`, in name order; templates that render to nothing
    /// (turned off by the inventory) are left out.
    pub fn render_all(&self, inv: &Inventory) -> Result<Vec<Rendered>, TemplateError> {
        let ctx = context(inv)?;
        let mut out = Vec::new();
        for name in self.sources.keys() {
            let key = name.trim_end_matches(SUFFIX);
            if let Some(r) = self.render_one(key, &ctx)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn describe_key(&self, key: &str) -> String {
        let name = format!("{key}{SUFFIX}");
        match self.sources.get(&name) {
            Some(source) => describe(&name, source),
            None => name,
        }
    }
}

fn describe(name: &str, source: &Source) -> String {
    match source {
        Source::Embedded => name.to_string(),
        Source::Override(path) => format!("{name} (from {})", path.display()),
    }
}

/// Handlebars' own message, with the line and column it found.
fn render_message(e: &handlebars::RenderError) -> String {
    let mut msg = e.to_string();
    if let (Some(line), Some(col)) = (e.line_no, e.column_no)
        && !msg.contains("line")
    {
        msg.push_str(&format!(" (line {line}, column {col})"));
    }
    msg
}

/// Blank lines left by `{{#if}}`/`{{!-- --}}` lines are dropped at the top, and runs of
/// blank lines are folded, so rendered YAML reads like hand-written YAML.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = true;
    for line in text.lines() {
        let is_blank = line.trim().is_empty();
        if is_blank && blank {
            continue;
        }
        blank = is_blank;
        out.push_str(line.trim_end());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The `*.hbs` files under `dir`, by their name relative to it (`/`-separated).
fn override_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, TemplateError> {
    let err = |message: String| TemplateError::Override {
        dir: dir.to_path_buf(),
        message,
    };
    if !dir.is_dir() {
        return Err(err("is not a directory".to_string()));
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| err(format!("{}: {e}", d.display())))?;
        for entry in entries {
            let path = entry.map_err(|e| err(e.to_string()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "hbs") {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|e| err(e.to_string()))?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push((rel, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests;
