// This is the door the lint in `clippy.toml` sends everyone to.
#![allow(clippy::disallowed_methods)]

//! Printing: the command line's one door to stdout and stderr (no `println!`, which panics when
//! the reader is gone).
//!
//! A reader that goes away (`kiln plan --json | head -1`, a pager quit early) is not an error: the
//! rest of the output is dropped quietly and the command goes on to its normal end and exit code
//! — an apply is never cut short because nobody reads its log. Any other failure to write stdout
//! (a full disk behind a redirect) is an error. Writing stderr is best effort: there is nowhere
//! left to report its failure.

use std::fmt;
use std::io::Write;

use miette::{Diagnostic, ReportHandler};

use crate::manifest::ManifestError;

/// Whether stdout takes colour: a terminal, and no `NO_COLOR` (<https://no-color.org>).
pub fn stdout_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && no_color_unset()
}

/// Whether stderr takes colour (logs, progress): a terminal, and no `NO_COLOR`.
pub fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && no_color_unset()
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Write `text` to stdout.
pub fn print(text: &str) -> miette::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(miette::miette!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Write `text` and a newline to stdout.
pub fn println(text: &str) -> miette::Result<()> {
    print(&format!("{text}\n"))
}

/// Write `text` and a newline to stderr, best effort.
pub fn eprintln(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}").and_then(|()| err.flush());
}

/// Show a diagnostic on stderr as miette's report does (colour only on a terminal without
/// `NO_COLOR`).
pub fn diagnostic(d: &dyn Diagnostic) {
    struct Shown<'a>(&'a dyn Diagnostic);
    impl fmt::Debug for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            miette::MietteHandler::default().debug(self.0, f)
        }
    }
    eprintln(&format!("{:?}", Shown(d)));
}

/// Show a command's error on stderr. A manifest's problems come first, then the summary that
/// counts them and names their files, so the summary is what is left on the screen.
pub fn report(report: &miette::Report) {
    match report.downcast_ref::<ManifestError>() {
        Some(e) => manifest_error(e),
        None => eprintln(&format!("{report:?}")),
    }
}

/// Show a manifest's problems, then its summary.
pub fn manifest_error(e: &ManifestError) {
    for p in e.shown_problems() {
        diagnostic(p);
    }
    diagnostic(&e.summary());
}
