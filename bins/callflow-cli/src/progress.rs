//! `analyze`'s progress line on standard error: percent and bytes read, packets per second, sessions closed, time spent; only on a terminal and for a large file.
//!
//! Hand-written rather than with a progress-bar crate: one line redrawn with `\r` a few
//! times a second needs no dependency. The clock is read once every 4096 frames, so the
//! cost per frame is a counter. The line is cleared when the analysis ends, so what
//! follows on the terminal (warnings, a shell prompt) starts on a clean line.

use callflow_correlate::AnalyzeControl;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Files from this size on get a progress line (smaller ones are read in a moment).
pub const LARGE: u64 = 64 * 1024 * 1024;

/// Whether to show progress: standard error is a terminal and the capture is large.
pub fn wanted(stderr_is_terminal: bool, total_bytes: Option<u64>) -> bool {
    stderr_is_terminal && total_bytes.is_some_and(|t| t >= LARGE)
}

/// The control `analyze` runs with: a progress line when [`wanted`], else nothing.
pub fn control(total_bytes: Option<u64>) -> Box<dyn AnalyzeControl> {
    if wanted(std::io::stderr().is_terminal(), total_bytes) {
        Box::new(Progress::new(total_bytes.unwrap_or(0)))
    } else {
        Box::new(callflow_correlate::Unattended)
    }
}

struct Progress {
    total: u64,
    started: Instant,
    last_draw: Instant,
    drawn: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let now = Instant::now();
        Progress { total, started: now, last_draw: now, drawn: false }
    }
}

/// The progress line: ` 36% 512.0/1400.0 MB  1624000 packets, 812k packets/s  310 sessions  2.0 s`.
pub fn line(bytes: u64, total: u64, frames: u64, sessions: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { frames as f64 / secs } else { 0.0 };
    let rate = if rate >= 1e6 {
        format!("{:.1}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.0}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    };
    let mb = |b: u64| b as f64 / 1e6;
    let pct = (bytes.min(total) * 100).checked_div(total).unwrap_or(0);
    format!(
        "{pct:>3}% {:.1}/{:.1} MB  {frames} packets, {rate} packets/s  {sessions} sessions  {secs:.1} s",
        mb(bytes),
        mb(total)
    )
}

impl AnalyzeControl for Progress {
    fn on_frame(&mut self, frames: u64, bytes_consumed: u64) -> ControlFlow<()> {
        self.on_progress(frames, bytes_consumed, 0)
    }

    fn on_progress(&mut self, frames: u64, bytes_consumed: u64, sessions: u64) -> ControlFlow<()> {
        if frames.is_multiple_of(4096) {
            let now = Instant::now();
            if now.duration_since(self.last_draw) >= Duration::from_millis(200) {
                self.last_draw = now;
                self.drawn = true;
                let text = line(bytes_consumed, self.total, frames, sessions, now.duration_since(self.started));
                let _ = write!(std::io::stderr(), "\r{text}\x1b[K");
            }
        }
        ControlFlow::Continue(())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_on_a_terminal_for_a_large_file() {
        assert!(wanted(true, Some(LARGE)));
        assert!(!wanted(false, Some(LARGE)), "not when standard error is a file or a pipe");
        assert!(!wanted(true, Some(LARGE - 1)), "not for a small file");
        assert!(!wanted(true, None), "not for standard input, whose size is unknown");
    }

    #[test]
    fn the_line_says_percent_bytes_and_rate() {
        assert_eq!(
            line(512_000_000, 1_400_000_000, 1_624_000, 310, Duration::from_secs(2)),
            " 36% 512.0/1400.0 MB  1624000 packets, 812k packets/s  310 sessions  2.0 s"
        );
        assert_eq!(line(0, 0, 0, 0, Duration::ZERO), "  0% 0.0/0.0 MB  0 packets, 0 packets/s  0 sessions  0.0 s");
    }
}
