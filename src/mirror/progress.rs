//! Progress of a pull or push: on a terminal one bar with bytes, rate and time left; in a
//! pipe or CI log one plain line per blob. Always on standard error, so standard output
//! carries only the summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::registry::{Digest, ProgressFn};

/// The progress display of one run.
#[derive(Clone)]
pub struct Transfer {
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// A bar on a terminal (unless `NO_COLOR` is set), plain lines otherwise.
    pub fn start(verb: &str, total_bytes: u64, blobs: usize) -> Transfer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if !std::io::stderr().is_terminal() || no_color {
            if blobs > 0 {
                eprintln!("{verb} {blobs} blobs ({})", human_bytes(total_bytes));
            }
            return Transfer { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner:.cyan} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(format!("{verb} {blobs} blobs"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Transfer { bar: Some(bar) }
    }

    /// A callback for the registry client: bytes moved.
    pub fn bytes(&self) -> Option<ProgressFn> {
        let bar = self.bar.clone()?;
        Some(Arc::new(move |n| bar.inc(n)))
    }

    /// One blob finished.
    pub fn done(&self, what: &str, digest: &Digest, size: u64, repository: &str) {
        let line = format!(
            "  {what} {} ({}) {repository}",
            short(digest),
            human_bytes(size)
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A line about something other than a blob.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `sha256:0123456789ab`: enough to tell blobs apart in a progress line.
pub fn short(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{}:{}", digest.algorithm(), &hex[..hex.len().min(12)])
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
