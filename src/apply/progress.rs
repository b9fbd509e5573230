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

    /// A step inside a node (e.g. `waiting for RUNNING`).
    pub fn step(&self, label: &str, what: &str) {
        match self {
            Progress::Live { lines, .. } => {
                if let Some((_, bar)) = lines
                    .lock()
                    .expect("progress lock")
                    .iter()
                    .find(|(l, _)| l == label)
                {
                    bar.set_message(format!("{label}: {what}"));
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

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_millis(1234)), "1.2s");
        assert_eq!(human(Duration::from_secs(184)), "3m04s");
    }
}
