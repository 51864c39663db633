//! What a person watching a run sees: one live line per host on a terminal, plain
//! `[host] message` lines otherwise (pipes, CI logs, `NO_COLOR`).
//!
//! Everything goes to standard error so that standard output carries only results
//! (tables, command output, JSON) and stays safe to pipe.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::transport::ProgressFn;

/// How progress is shown for a whole run.
#[derive(Clone)]
pub enum Progress {
    /// Live lines, one per host.
    Live(MultiProgress),
    /// `[host] message` lines.
    Plain,
    /// Nothing (tests, `--json`).
    Quiet,
}

impl Progress {
    /// Live on a terminal without `NO_COLOR`, plain otherwise.
    pub fn detect() -> Progress {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if std::io::stderr().is_terminal() && !no_color {
            Progress::Live(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Plain
        }
    }

    /// The line of one host.
    pub fn host(&self, name: &str) -> HostProgress {
        let bar = match self {
            Progress::Live(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            _ => None,
        };
        HostProgress {
            name: name.to_string(),
            bar,
            plain: matches!(self, Progress::Plain),
        }
    }

    /// Prints a line above the live lines (or plainly).
    pub fn println(&self, text: &str) {
        match self {
            Progress::Live(multi) => {
                let _ = multi.println(text);
            }
            Progress::Plain => eprintln!("{text}"),
            Progress::Quiet => {}
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.cyan} {prefix:.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// The progress line of one host.
#[derive(Clone)]
pub struct HostProgress {
    name: String,
    bar: Option<ProgressBar>,
    plain: bool,
}

impl HostProgress {
    /// What the host is doing now.
    pub fn step(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        } else if self.plain {
            eprintln!("[{}] {msg}", self.name);
        }
    }

    /// A byte counter for a transfer of `total` bytes; plain mode prints every 10%.
    pub fn transfer(&self, what: &str, total: u64) -> ProgressFn {
        if let Some(bar) = &self.bar {
            bar.set_style(bytes_style());
            bar.set_length(total);
            bar.set_position(0);
            bar.set_message(what.to_string());
            let bar = bar.clone();
            return Arc::new(move |done| bar.set_position(done));
        }
        if !self.plain {
            return Arc::new(|_| {});
        }
        let name = self.name.clone();
        let what = what.to_string();
        let last_decile = Arc::new(AtomicU64::new(0));
        Arc::new(move |done| {
            let decile = (done.saturating_mul(10)).checked_div(total).unwrap_or(10);
            if decile > last_decile.load(Ordering::Relaxed) {
                last_decile.store(decile, Ordering::Relaxed);
                eprintln!("[{name}] {what}: {}%", decile * 10);
            }
        })
    }

    /// The host finished; the line stays with a final word.
    pub fn finish(&self, ok: bool, msg: &str) {
        let mark = if ok { "ok" } else { "FAILED" };
        if let Some(bar) = &self.bar {
            bar.set_style(
                ProgressStyle::with_template("{prefix:.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.finish_with_message(format!("{mark} {msg}"));
        } else if self.plain {
            eprintln!("[{}] {mark} {msg}", self.name);
        }
    }
}
