//! Progress of an apply: on a terminal, one live line per running resource (action, what it waits
//! for, elapsed) with indicatif; otherwise plain timestamped lines. Never prints request bodies or
//! credentials.
//!
//! While the live lines are up, the terminal does not echo control characters: indicatif pads its
//! last line to the terminal's width, so the `^C` a terminal echoes for Ctrl-C would wrap onto a
//! line of its own and leave a frozen copy of the spinners above the interruption notice.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
pub enum Progress {
    /// Live lines on a terminal (stderr).
    Live {
        bars: MultiProgress,
        lines: Mutex<Vec<(String, ProgressBar)>>,
        echo: EchoGuard,
    },
    /// Timestamped lines, for CI logs and pipes.
    Plain { out: Mutex<Box<dyn Write + Send>> },
    /// Nothing (library use, tests).
    Silent,
}

impl Progress {
    /// Live when stderr is a terminal, plain lines otherwise.
    // The progress display is stderr's second door: it owns the live lines while an apply runs.
    #[allow(clippy::disallowed_methods)]
    pub fn for_stderr() -> Progress {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Progress::live(ProgressDrawTarget::stderr(), EchoGuard::quiet_stderr())
        } else {
            Progress::Plain {
                out: Mutex::new(Box::new(std::io::stderr())),
            }
        }
    }

    fn live(target: ProgressDrawTarget, echo: EchoGuard) -> Progress {
        Progress::Live {
            bars: MultiProgress::with_draw_target(target),
            lines: Mutex::new(Vec::new()),
            echo,
        }
    }

    pub fn plain(out: Box<dyn Write + Send>) -> Progress {
        Progress::Plain {
            out: Mutex::new(out),
        }
    }

    fn stamp() -> String {
        chrono::Utc::now().format("%H:%M:%S").to_string()
    }

    /// A node started: `label` is e.g. `create instance.web`.
    pub fn started(&self, label: &str) {
        match self {
            Progress::Live { bars, lines, .. } => {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .expect("valid template"),
                );
                bar.set_message(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                lines
                    .lock()
                    .expect("progress lock")
                    .push((label.to_string(), bar));
            }
            Progress::Plain { out } => {
                let _ = writeln!(
                    out.lock().expect("progress lock"),
                    "{} {label}: started",
                    Self::stamp()
                );
            }
            Progress::Silent => {}
        }
    }

    /// A step inside a node (e.g. `waiting for RUNNING`, or a retry and OCI's reason for it). On
    /// a terminal a long step is wrapped at its width, never cut; plain lines stay whole.
    pub fn step(&self, label: &str, what: &str) {
        // With a time stamp in the log (`-vv`, or `RUST_LOG=kiln::apply=debug`): where an
        // apply's time goes (BENCHMARKS.md section 7).
        tracing::debug!(target: "kiln::apply::progress", "{label}: {what}");
        match self {
            Progress::Live { lines, .. } => {
                if let Some((_, bar)) = lines
                    .lock()
                    .expect("progress lock")
                    .iter()
                    .find(|(l, _)| l == label)
                {
                    // Room for the spinner before the text and the elapsed time after it.
                    let width = terminal_width().saturating_sub(12).max(40);
                    bar.set_message(wrap(&format!("{label}: {what}"), width, "    "));
                }
            }
            Progress::Plain { out } => {
                let _ = writeln!(
                    out.lock().expect("progress lock"),
                    "{} {label}: {what}",
                    Self::stamp()
                );
            }
            Progress::Silent => {}
        }
    }

    /// A node finished (`Ok`) or failed (`Err(message)`).
    pub fn finished(&self, label: &str, elapsed: Duration, result: Result<(), &str>) {
        let text = match result {
            Ok(()) => format!("{label}: done in {}", human(elapsed)),
            Err(e) => format!("{label}: FAILED after {}: {e}", human(elapsed)),
        };
        match self {
            Progress::Live { bars, lines, .. } => {
                let mut lines = lines.lock().expect("progress lock");
                if let Some(i) = lines.iter().position(|(l, _)| l == label) {
                    let (_, bar) = lines.remove(i);
                    bar.finish_and_clear();
                    bars.remove(&bar);
                }
                let mark = if result.is_ok() { "✓" } else { "✗" };
                let _ = bars.println(format!("{mark} {text}"));
            }
            Progress::Plain { out } => {
                let _ = writeln!(
                    out.lock().expect("progress lock"),
                    "{} {text}",
                    Self::stamp()
                );
            }
            Progress::Silent => {}
        }
    }

    /// Take the live lines off the screen and give the terminal back as it was (before kiln
    /// exits at once, after a second Ctrl-C). Plain lines stay.
    pub fn clear(&self) {
        if let Progress::Live { bars, lines, echo } = self {
            for (_, bar) in lines.lock().expect("progress lock").drain(..) {
                bar.finish_and_clear();
                bars.remove(&bar);
            }
            let _ = bars.clear();
            echo.restore();
        }
    }

    /// A free-form line (e.g. the Ctrl-C notice).
    pub fn note(&self, text: &str) {
        match self {
            Progress::Live { bars, .. } => {
                let _ = bars.println(text);
            }
            Progress::Plain { out } => {
                let _ = writeln!(
                    out.lock().expect("progress lock"),
                    "{} {text}",
                    Self::stamp()
                );
            }
            Progress::Silent => {}
        }
    }
}

/// The terminal's echo of control characters (`^C`), off while the live lines are up and back
/// when dropped or [`EchoGuard::restore`]d.
pub struct EchoGuard {
    #[cfg(unix)]
    saved: Mutex<Option<libc::termios>>,
}

impl EchoGuard {
    /// Turn off `ECHOCTL` on the terminal stderr is (when it is one).
    fn quiet_stderr() -> EchoGuard {
        #[cfg(unix)]
        {
            // SAFETY: tcgetattr/tcsetattr on fd 2 with a termios this function owns.
            let saved = unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(2, &mut t) == 0 && t.c_lflag & libc::ECHOCTL != 0 {
                    let mut quiet = t;
                    quiet.c_lflag &= !libc::ECHOCTL;
                    (libc::tcsetattr(2, libc::TCSANOW, &quiet) == 0).then_some(t)
                } else {
                    None
                }
            };
            EchoGuard {
                saved: Mutex::new(saved),
            }
        }
        #[cfg(not(unix))]
        EchoGuard {}
    }

    fn restore(&self) {
        #[cfg(unix)]
        if let Some(t) = self.saved.lock().expect("echo lock").take() {
            // SAFETY: restores the termios read from fd 2 by `quiet_stderr`.
            unsafe {
                libc::tcsetattr(2, libc::TCSANOW, &t);
            }
        }
    }
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The width of the terminal stderr is (80 when it cannot be told).
fn terminal_width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ fills the winsize this function owns.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) } == 0 && size.ws_col > 0 {
            return size.ws_col as usize;
        }
    }
    80
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word gets a line
/// of its own), the lines after the first starting with `indent`. Nothing is dropped.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut line = 0;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            out.push_str(indent);
            line = indent.chars().count();
        } else if line > 0 || !out.is_empty() {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

/// `1.2s`, `3m04s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// A timer for one node.
pub struct Timer(Instant);

impl Timer {
    pub fn start() -> Timer {
        Timer(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 27: a retry's reason is wrapped on a terminal, never cut.
    #[test]
    fn long_steps_wrap_at_spaces_and_keep_every_word() {
        let text = "create image.golden: retrying after 409 IncorrectState (instance `ocid1.instance.…q7xa3t` was captured recently: the next image can be made after 2026-12-06T22:41:07.123Z), next attempt in 4.0s";
        let wrapped = wrap(text, 60, "    ");
        for line in wrapped.lines() {
            assert!(line.chars().count() <= 60, "{line:?}");
        }
        assert_eq!(
            wrapped.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
        assert!(
            wrapped.lines().skip(1).all(|l| l.starts_with("    ")),
            "{wrapped}"
        );
        assert_eq!(wrap("short", 60, "    "), "short");
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_millis(1234)), "1.2s");
        assert_eq!(human(Duration::from_secs(184)), "3m04s");
    }
}
