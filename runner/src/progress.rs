//! A one-line progress display on stderr (`[123/236] fsm.arc.stop.stop_copy ... 0 failed`),
//! redrawn in place. It is shown only where someone watches and nothing else draws: stderr is
//! a terminal while stdout is not (the per-check output goes to a file or a pipe). When stdout
//! is the terminal, the per-check lines there already are the progress; when stderr is not a
//! terminal (CI logs, `2>file`), nothing is drawn at all.
//!
//! The fuzzer uses [`Progress::status`] with its own text (operations, arcs covered,
//! findings).

use std::io::{IsTerminal, Write};

/// The progress line.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: usize,
    done: usize,
    failed: usize,
    /// Whether a line is currently drawn (and must be erased before other stderr output).
    drawn: bool,
}

impl Progress {
    /// A progress line for `total` steps, shown when stderr is a terminal and stdout is not
    /// (and not with `--quiet`).
    pub fn auto(total: usize, quiet: bool) -> Progress {
        let enabled = !quiet && std::io::stderr().is_terminal() && !std::io::stdout().is_terminal();
        Progress::new(total, enabled)
    }

    pub fn new(total: usize, enabled: bool) -> Progress {
        Progress { enabled, total, done: 0, failed: 0, drawn: false }
    }

    /// `[n/N] label ... k failed`, cut to `width` columns.
    pub fn render(n: usize, total: usize, label: &str, failed: usize, width: usize) -> String {
        let head = format!("[{n}/{total}] ");
        let tail = format!(" ... {failed} failed");
        let room = width.saturating_sub(head.chars().count() + tail.chars().count() + 1);
        let label = if label.chars().count() > room {
            let keep: String = label.chars().take(room.saturating_sub(1)).collect();
            format!("{keep}\u{2026}")
        } else {
            label.to_string()
        };
        format!("{head}{label}{tail}")
    }

    /// A step starts: draws `[done+1/total] label ... failed`.
    pub fn start(&mut self, label: &str) {
        if self.enabled {
            let line = Progress::render(self.done + 1, self.total, label, self.failed, terminal_width());
            self.draw(&line);
        }
    }

    /// A step ended.
    pub fn finish(&mut self, failed: bool) {
        self.done += 1;
        if failed {
            self.failed += 1;
        }
    }

    /// Draws any text as the progress line (the fuzzer's status).
    #[allow(dead_code, reason = "the fuzzer's status line")]
    pub fn status(&mut self, text: &str) {
        if self.enabled {
            let width = terminal_width().saturating_sub(1);
            let line: String = text.chars().take(width).collect();
            self.draw(&line);
        }
    }

    fn draw(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line (before other output on stderr, and at the end).
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Columns of the terminal on stderr (80 when unknown).
fn terminal_width() -> usize {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into the pointer we pass, which points at
    // a live, properly aligned local; the result is only read when the call succeeds.
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_col > 0 { usize::from(ws.ws_col) } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_position_name_and_failures() {
        assert_eq!(
            Progress::render(123, 236, "fsm.arc.stop.stop_copy", 0, 80),
            "[123/236] fsm.arc.stop.stop_copy ... 0 failed"
        );
    }

    #[test]
    fn long_names_are_cut_to_the_terminal_width() {
        let line = Progress::render(1, 9, "debate.postcopy.stop_copy_to_precopy_refused", 2, 40);
        assert!(line.chars().count() < 40, "{line}");
        assert!(line.starts_with("[1/9] debate.") && line.ends_with("\u{2026} ... 2 failed"), "{line}");
        // Even a terminal too narrow for the frame does not panic.
        assert!(Progress::render(1, 9, "x", 0, 3).ends_with("failed"));
    }

    #[test]
    fn a_disabled_line_counts_but_never_draws() {
        let mut p = Progress::new(3, false);
        p.start("a");
        p.finish(true);
        p.status("fuzzing");
        assert_eq!((p.done, p.failed, p.drawn), (1, 1, false));
    }
}
