//! The images file: one image reference per line, `#` starts a comment, blank lines are
//! ignored. Every bad line is reported at once, with its line number.

use std::path::Path;

use crate::registry::Reference;

/// One image asked for, with where it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLine {
    pub line: usize,
    /// As written (without comment and surrounding blanks).
    pub source: String,
    pub reference: Reference,
}

/// Reads and parses an images file. The error lists every problem, one per line, each
/// as `FILE:LINE: message`.
pub fn read(path: &Path) -> Result<Vec<ImageLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the images file {}: {e}; give a text file with one image reference per line",
            path.display()
        )
    })?;
    parse(&text).map_err(|problems| {
        let mut out = format!(
            "the images file {} has {} bad line{}:",
            path.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for (line, message) in problems {
            out.push_str(&format!("\n  {}:{line}: {message}", path.display()));
        }
        out
    })
}

/// Parses the text of an images file; on failure, every `(line, message)`.
pub fn parse(text: &str) -> Result<Vec<ImageLine>, Vec<(usize, String)>> {
    let mut images: Vec<ImageLine> = Vec::new();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        match Reference::parse(content) {
            Ok(reference) => {
                if let Some(first) = images.iter().find(|i| i.reference == reference) {
                    problems.push((
                        line,
                        format!(
                            "\"{content}\" is the same image as line {} (\"{}\"); list each image once",
                            first.line, first.source
                        ),
                    ));
                } else {
                    images.push(ImageLine {
                        line,
                        source: content.to_string(),
                        reference,
                    });
                }
            }
            Err(e) => problems.push((line, e.to_string())),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if images.is_empty() {
        return Err(vec![(
            1,
            "no image references found: write one per line, e.g. docker.io/library/nginx:1.27"
                .to_string(),
        )]);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_normalisation() {
        let text = "# the stack\n\nnginx:1.27   # web\n  ghcr.io/org/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nlocalhost:5000/x\n";
        let images = parse(text).unwrap_or_else(|p| panic!("{p:?}"));
        let lines: Vec<(usize, String)> = images
            .iter()
            .map(|i| (i.line, i.reference.to_string()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (3, "docker.io/library/nginx:1.27".to_string()),
                (
                    4,
                    "ghcr.io/org/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .to_string()
                ),
                (5, "localhost:5000/x:latest".to_string()),
            ]
        );
        assert_eq!(images[0].source, "nginx:1.27");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "nginx\nteam/App\n\nfoo bar\ndocker.io/library/nginx:latest\nok:1\nbad:tag!\n";
        let problems = parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = problems.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 4, 5, 7], "{problems:?}");
        assert!(
            problems[2].1.contains("same image as line 1"),
            "{problems:?}"
        );
        assert!(problems[0].1.contains("lowercase"), "{problems:?}");
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let problems = parse("# nothing\n\n").err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("no image references"));
    }
}
