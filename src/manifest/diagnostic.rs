//! Manifest problems as miette diagnostics: each one points at a span of the file it is in
//! (`kiln.toml` or `envs/<env>.toml`), has a namespaced code and a help line. All problems of a
//! run are collected into one [`ManifestError`].
//!
//! What a problem renders is bounded whatever the file holds: long source lines are cut around
//! the label ([`super::excerpt`]), and a message, label or help longer than [`MAX_TEXT`]
//! characters (one quoting a huge value) is cut with `…`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceCode};

use super::excerpt::Excerpt;

/// The longest message, label or help shown, in characters.
pub const MAX_TEXT: usize = 1000;

/// `text`, cut to [`MAX_TEXT`] characters.
fn clip(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// The files of one manifest, by index.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<(String, Arc<String>)>,
}

/// Index into [`Sources`].
pub type FileId = usize;

impl Sources {
    pub fn add(&mut self, name: String, text: String) -> FileId {
        self.files.push((name, Arc::new(text)));
        self.files.len() - 1
    }

    pub fn name(&self, id: FileId) -> &str {
        &self.files[id].0
    }

    /// What a problem with labels on `spans` of file `id` shows of it.
    fn excerpt(&self, id: FileId, spans: &[Range<usize>]) -> NamedSource<Excerpt> {
        let (name, text) = &self.files[id];
        NamedSource::new(name.clone(), Excerpt::new(text.clone(), spans))
    }
}

/// Where a problem is: a file and a byte range in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct At {
    pub file: FileId,
    pub span: Range<usize>,
}

/// One problem.
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    pub severity: Severity,
    pub at: Option<At>,
    /// More places (e.g. every member of a cycle).
    pub also: Vec<(At, String)>,
    src: Option<NamedSource<Excerpt>>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: clip(message.into()),
            label: String::new(),
            help: None,
            severity: Severity::Error,
            at: None,
            also: Vec::new(),
            src: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, message)
        }
    }

    pub fn at(mut self, at: &At, label: impl Into<String>) -> Problem {
        self.at = Some(at.clone());
        self.label = clip(label.into());
        self
    }

    pub fn also(mut self, at: &At, label: impl Into<String>) -> Problem {
        self.also.push((at.clone(), clip(label.into())));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(clip(help.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Attach the file text so the problem renders on its own.
    pub fn attach(mut self, sources: &Sources) -> Problem {
        if let Some(at) = &self.at {
            // Labels elsewhere in another file cannot be shown with this source: keep those in the same file.
            let file = at.file;
            self.also.retain(|(a, _)| a.file == file);
            let spans: Vec<Range<usize>> = std::iter::once(&at.span)
                .chain(self.also.iter().map(|(a, _)| &a.span))
                .cloned()
                .collect();
            self.src = Some(sources.excerpt(file, &spans));
        }
        self
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("at", &self.at)
            .finish()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("kiln::manifest::{}", self.code)))
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.src.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let at = self.at.as_ref()?;
        let excerpt = self.src.as_ref()?.inner();
        let shown = |span: &Range<usize>| excerpt.map(span.start)..excerpt.map(span.end);
        let first = LabeledSpan::new_primary_with_span(
            Some(self.label.clone()).filter(|l| !l.is_empty()),
            shown(&at.span),
        );
        let rest = self
            .also
            .iter()
            .map(move |(a, l)| LabeledSpan::new_with_span(Some(l.clone()), shown(&a.span)));
        Some(Box::new(std::iter::once(first).chain(rest)))
    }
}

/// Every problem found in one run (errors and warnings).
#[derive(Debug)]
pub struct ManifestError {
    /// The manifest directory.
    pub dir: PathBuf,
    /// The files the errors are in, as the diagnostics name them (`kiln.toml`,
    /// `envs/production.toml`), in the order they were read.
    pub files: Vec<String>,
    /// `dir` has no `kiln.toml` (the only problem then).
    pub missing: bool,
    /// Found by a plan against OCI's lists (reads were sent; nothing was changed).
    pub live: bool,
    pub problems: Vec<Problem>,
}

impl ManifestError {
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }

    /// The problems to show before the summary (none when there is no `kiln.toml`: the summary
    /// says it).
    pub fn shown_problems(&self) -> &[Problem] {
        match self.missing {
            true => &[],
            false => &self.problems,
        }
    }

    /// The last thing shown: how many problems, in which files, and what to do.
    pub fn summary(&self) -> impl Diagnostic + '_ {
        Summary(self)
    }

    fn code_name(&self) -> &'static str {
        match self.missing {
            true => "kiln::manifest::missing",
            false => "kiln::manifest::invalid",
        }
    }

    fn help_text(&self) -> &'static str {
        match self.missing {
            true => "run kiln in a directory with a `kiln.toml`, or pass the directory",
            false if self.live => "fix the problems above; nothing was changed in OCI",
            false => "fix the problems above; nothing was sent to OCI",
        }
    }

    /// The problems, then the summary, as plain text at `width` columns (tests, logs).
    pub fn render_plain(&self, width: usize) -> String {
        let mut out = String::new();
        for p in self.shown_problems() {
            out.push_str(&render_plain(p, width));
            out.push('\n');
        }
        out.push_str(&render_plain(&self.summary(), width));
        out
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing {
            return write!(f, "no `kiln.toml` in `{}`", self.dir.display());
        }
        let n = self.errors();
        let s = if n == 1 { "" } else { "s" };
        if self.files.is_empty() {
            return write!(
                f,
                "{n} problem{s} with the manifest in `{}`",
                self.dir.display()
            );
        }
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("`{}`", self.dir.join(f).display()))
            .collect();
        let named = match files.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => files.join(""),
        };
        write!(f, "{n} problem{s} in {named}")
    }
}

impl std::error::Error for ManifestError {}

impl Diagnostic for ManifestError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code_name()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.help_text()))
    }

    /// For a generic rendering (`{:?}` of a report): the problems after the summary. The command
    /// line shows [`ManifestError::shown_problems`], then [`ManifestError::summary`].
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        match self.missing {
            true => None,
            false => Some(Box::new(self.problems.iter().map(|p| p as &dyn Diagnostic))),
        }
    }
}

/// The last line of a [`ManifestError`]: how many problems, in which files, and what to do.
struct Summary<'a>(&'a ManifestError);

impl fmt::Debug for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

impl std::error::Error for Summary<'_> {}

impl Diagnostic for Summary<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.code_name()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.help_text()))
    }
}

/// Render any diagnostic as plain text at `width` columns (tests, logs, non-terminals).
pub fn render_plain(d: &dyn Diagnostic, width: usize) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(width);
    handler
        .render_report(&mut out, d)
        .expect("rendering to a string cannot fail");
    out
}
