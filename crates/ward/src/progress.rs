//! A progress bar on stderr for large attachment transfers, drawn only when stderr is a
//! terminal (never into logs or pipes).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use ward_client::{Direction, Progress};

/// Transfers smaller than this get no bar.
const LARGE: u64 = 8 * 1024 * 1024;
/// Redraw at most this often.
const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 30;

/// One bar, reused for each file of a command.
pub struct Bar {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
}

impl Bar {
    pub fn new() -> Self {
        Bar {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
        }
    }

    /// The drawing callback, or none when stderr is not a terminal. Hand it to the SDK as
    /// `drawer.as_mut().map(|f| f as ProgressFn<'_>)`.
    pub fn drawer(&mut self) -> Option<impl FnMut(&Progress<'_>) + Send + '_> {
        let enabled = self.enabled;
        enabled.then_some(move |p: &Progress<'_>| self.draw(p))
    }

    fn draw(&mut self, p: &Progress<'_>) {
        if p.total < LARGE {
            return;
        }
        let now = Instant::now();
        if p.done == 0 || self.last.is_none() {
            self.started = now;
        }
        let finished = p.done >= p.total;
        if !finished && self.last.is_some_and(|l| now - l < REDRAW) {
            return;
        }
        self.last = Some(now);
        let frac = p.done as f64 / p.total as f64;
        let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let secs = (now - self.started).as_secs_f64().max(1e-3);
        let verb = match p.direction {
            Direction::Upload => "upload",
            Direction::Download => "download",
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{verb} {} [{}{}] {:>3.0}% {:.1}/{:.1} MiB {:.1} MiB/s ",
            p.file_name,
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            frac * 100.0,
            mib(p.done),
            mib(p.total),
            mib(p.done) / secs,
        );
        if finished {
            let _ = writeln!(err);
            self.last = None;
        }
        let _ = err.flush();
    }
}
