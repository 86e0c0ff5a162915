//! Output for people (text, progress bars on a terminal) and for scripts (`--json`).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// How to print.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    pub(crate) json: bool,
    quiet: bool,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Self { json, quiet }
    }

    /// Prints `text` for people, or `value` as one JSON line for scripts.
    pub(crate) fn print(&self, text: impl std::fmt::Display, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    /// A byte progress bar on stderr, hidden when quiet, in JSON mode, or when stderr is not a
    /// terminal.
    pub(crate) fn bar(&self, total: Option<u64>, what: &str) -> ProgressBar {
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg} {spinner} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        bar
    }
}

/// An error chain on one line: "what failed: why: why".
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        // Skip causes already spelled out by the message above them.
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    // Errors echo what the user typed (ids, paths): never send its control characters
    // (escape sequences) to the terminal raw.
    cairn_node::printable(&parts.join(": ").replace('\n', " "))
}
