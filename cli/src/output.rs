//! Output for people (text, progress bars on a terminal) and for scripts (`--json`).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressState, ProgressStyle};

/// The window the progress bar's rate is measured over: long enough to smooth chunk-sized
/// steps, short enough to follow a transfer that speeds up or stalls.
const RATE_WINDOW: Duration = Duration::from_secs(3);

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
    /// terminal. It is as wide as the terminal, and shows the rate of the last few seconds and
    /// the time left at that rate (not averages since the start, which lag behind a transfer
    /// whose speed changes).
    pub(crate) fn bar(&self, total: Option<u64>, what: &str) -> ProgressBar {
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {rate} eta {left}"
        } else {
            "{msg} {spinner} {bytes} {rate}"
        };
        let rate = Rate::default();
        let left = rate.clone();
        if let Ok(style) = ProgressStyle::with_template(template) {
            let style = style
                .progress_chars("=> ")
                .with_key(
                    "rate",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = match rate.sample(s) {
                            Some(r) => write!(w, "{}/s", HumanBytes(r as u64)),
                            None => write!(w, "-"),
                        };
                    },
                )
                .with_key(
                    "left",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let remaining = s.len().unwrap_or(0).saturating_sub(s.pos());
                        let _ = match left.sample(s) {
                            Some(r) if r > 0.0 => {
                                let secs = (remaining as f64 / r).ceil() as u64;
                                write!(w, "{}", indicatif::HumanDuration(Duration::from_secs(secs)))
                            }
                            _ => write!(w, "-"),
                        };
                    },
                );
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        bar
    }

    /// Prints one summary line on stderr after a transfer (unless quiet or in JSON mode):
    /// `put 10.0 MiB in 2.1 s (4.8 MiB/s); 5 copies placed`.
    pub(crate) fn summary(&self, what: &str, bytes: u64, started: Instant, extra: Option<String>) {
        if self.quiet || self.json {
            return;
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let extra = extra.map(|e| format!("; {e}")).unwrap_or_default();
        eprintln!(
            "{what} {} in {secs:.1} s ({}/s){extra}",
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / secs) as u64)
        );
    }
}

/// The rate of a progress bar over the last [`RATE_WINDOW`], from the positions it was drawn
/// at; shared by the bar's rate and time-left keys.
#[derive(Clone, Default)]
struct Rate(Arc<Mutex<VecDeque<(Instant, u64)>>>);

impl Rate {
    /// Records the bar's position now and returns bytes per second over the window, once the
    /// window holds two samples apart in time.
    fn sample(&self, s: &ProgressState) -> Option<f64> {
        let now = Instant::now();
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if samples
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) > Duration::from_millis(50))
        {
            samples.push_back((now, s.pos()));
        }
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        let (first, last) = (samples.front()?, samples.back()?);
        let span = last.0.duration_since(first.0).as_secs_f64();
        (span > 0.2).then(|| last.1.saturating_sub(first.1) as f64 / span)
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
