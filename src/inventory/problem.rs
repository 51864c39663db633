//! Problems found in an inventory, each tied to `file:line:col` and the key path, and the
//! error that carries all of them.
//!
//! Loading never stops at the first problem: the decoder and the resolver push into one
//! [`Problems`] collector so the admin fixes the whole file in one round.

use std::fmt;

/// A position in the inventory file, both 1-based (as editors count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where a value is: its position and its key path (`hosts[3].ssh.port`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct At {
    pub pos: Pos,
    pub path: String,
}

impl At {
    pub fn new(pos: Pos, path: impl Into<String>) -> At {
        At {
            pos,
            path: path.into(),
        }
    }
}

/// One problem (or warning) in an inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The inventory file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem is about the whole file (it could not be read).
    pub line: usize,
    pub col: usize,
    /// The key path, e.g. `hosts[1].roles[0]`; empty for the document itself.
    pub path: String,
    /// What is wrong, and what was expected.
    pub message: String,
    /// What to write instead, when there is one obvious fix.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in an inventory, reported together. Nothing runs on any host
/// until an inventory loads without one.
#[derive(Clone, Debug, thiserror::Error)]
pub struct InventoryError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let noun = if n == 1 { "problem" } else { "problems" };
        write!(
            f,
            "{}: {n} {noun} in the inventory (nothing was run):",
            self.file
        )?;
        for p in &self.problems {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

/// Collects problems and warnings while an inventory is decoded and resolved.
#[derive(Debug)]
pub struct Problems {
    file: String,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Problems {
    pub fn new(file: impl Into<String>) -> Problems {
        Problems {
            file: file.into(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn make(&self, at: &At, message: String, hint: Option<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: at.pos.line,
            col: at.pos.col,
            path: at.path.clone(),
            message,
            hint,
        }
    }

    /// A problem that makes the inventory invalid.
    pub fn error(&mut self, at: &At, message: impl Into<String>) {
        let p = self.make(at, message.into(), None);
        self.errors.push(p);
    }

    /// A problem with a suggested fix.
    pub fn error_hint(&mut self, at: &At, message: impl Into<String>, hint: impl Into<String>) {
        let p = self.make(at, message.into(), Some(hint.into()));
        self.errors.push(p);
    }

    /// A problem about the file as a whole (it cannot be read at all).
    pub fn error_file(&mut self, message: impl Into<String>, hint: Option<String>) {
        let p = self.make(&At::default(), message.into(), hint);
        self.errors.push(p);
    }

    /// Something that does not stop anything but the admin should know.
    pub fn warn(&mut self, at: &At, message: impl Into<String>, hint: Option<String>) {
        let p = self.make(at, message.into(), hint);
        self.warnings.push(p);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The error with every problem in file order, or the warnings when there is none.
    pub fn finish(mut self) -> Result<Vec<Problem>, InventoryError> {
        if self.errors.is_empty() {
            let mut seen = std::collections::HashSet::new();
            self.warnings.retain(|p| seen.insert(p.to_string()));
            self.warnings.sort_by_key(|p| (p.line, p.col));
            return Ok(self.warnings);
        }
        // Stable: problems at the same place keep the order they were found in.
        // A shared setting (a top-level bastion) is checked once per host; say it once.
        let mut seen = std::collections::HashSet::new();
        self.errors.retain(|p| seen.insert(p.to_string()));
        self.errors.sort_by_key(|p| (p.line, p.col));
        Err(InventoryError {
            file: self.file,
            problems: self.errors,
        })
    }
}

/// The closest candidate to `word`, when one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_display_has_position_path_and_hint() {
        let p = Problem {
            file: "lab.yaml".into(),
            line: 12,
            col: 7,
            path: "hosts[1].roles[0]".into(),
            message: "unknown role \"master\"".into(),
            hint: Some("write \"server\"".into()),
        };
        assert_eq!(
            p.to_string(),
            "lab.yaml:12:7: hosts[1].roles[0]: unknown role \"master\" — write \"server\""
        );
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        let keys = ["identity_file", "user", "port"];
        assert_eq!(did_you_mean("identityfile", keys), Some("identity_file"));
        assert_eq!(did_you_mean("prot", keys), Some("port"));
        assert_eq!(did_you_mean("zzzz", keys), None);
    }
}
