//! What a diagnostic shows of a file: every line as it is, except a line longer than
//! [`MAX_LINE`] characters, which is cut to a window of [`WINDOW`] characters around the first
//! label on it, with `…` where text was left out.
//!
//! miette prints whole source lines, so one long line (a minified value, a pasted blob) would make
//! a diagnostic as large as the file, and a label more than 65,535 columns into a line makes it
//! panic. An [`Excerpt`] keeps the output bounded whatever the file holds. Only the shown text
//! changes: line numbers and the `file:line:column` header are those of the real file, and label
//! spans are mapped onto the excerpt with [`Excerpt::map`].

use std::ops::Range;
use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Lines up to this many characters are shown whole.
pub const MAX_LINE: usize = 200;
/// How much of a longer line is shown, in characters.
pub const WINDOW: usize = 72;
/// How many of those come before the first label on the line.
const BEFORE: usize = 24;

/// The shown text of one file.
#[derive(Debug)]
pub struct Excerpt {
    original: Arc<String>,
    shown: Arc<String>,
    /// The runs of the original that are shown, in order: (original range, start in `shown`).
    runs: Vec<(Range<usize>, usize)>,
}

impl Excerpt {
    /// The excerpt of `original` for a diagnostic whose labels cover `labels` (byte ranges).
    pub fn new(original: Arc<String>, labels: &[Range<usize>]) -> Excerpt {
        let text = original.as_str();
        let mut shown = String::new();
        let mut runs = Vec::new();
        let mut run_start = 0;
        let keep = |from: usize, to: usize, shown: &mut String, runs: &mut Vec<_>| {
            runs.push((from..to, shown.len()));
            shown.push_str(&text[from..to]);
        };
        let mut line_start = 0;
        // `\r` and `\n` both end a line, as miette counts lines.
        for end in text
            .match_indices(['\n', '\r'])
            .map(|(i, _)| i)
            .chain([text.len()])
        {
            let line = line_start..end;
            line_start = end + 1;
            if line.len() <= MAX_LINE || text[line.clone()].chars().count() <= MAX_LINE {
                continue;
            }
            // The first label that starts on the line; a label that began on an earlier line
            // (or none) anchors the window at the line's start.
            let anchor = labels
                .iter()
                .map(|l| l.start)
                .filter(|s| (line.start..=line.end).contains(s))
                .min()
                .filter(|_| {
                    !labels
                        .iter()
                        .any(|l| l.start < line.start && l.end > line.start)
                })
                .unwrap_or(line.start);
            let from = back(text, anchor, BEFORE, line.start);
            let to = forward(text, from, WINDOW, line.end);
            keep(run_start, line.start, &mut shown, &mut runs);
            if from > line.start {
                shown.push('…');
            }
            keep(from, to, &mut shown, &mut runs);
            if to < line.end {
                shown.push('…');
            }
            run_start = line.end;
        }
        if runs.is_empty() {
            return Excerpt {
                shown: original.clone(),
                runs: vec![(0..text.len(), 0)],
                original,
            };
        }
        keep(run_start, text.len(), &mut shown, &mut runs);
        Excerpt {
            original,
            shown: Arc::new(shown),
            runs,
        }
    }

    /// Where byte `pos` of the original is in the excerpt (a position in text left out maps to
    /// the nearest edge of what is shown).
    pub fn map(&self, pos: usize) -> usize {
        let i = self
            .runs
            .partition_point(|(r, _)| r.start <= pos)
            .saturating_sub(1);
        let (r, at) = &self.runs[i];
        at + (pos.clamp(r.start, r.end) - r.start)
    }

    /// Where byte `pos` of the excerpt came from in the original (a `…` maps to the text it
    /// stands for).
    fn unmap(&self, pos: usize) -> usize {
        let i = self
            .runs
            .partition_point(|(_, at)| *at <= pos)
            .saturating_sub(1);
        let (r, at) = &self.runs[i];
        (r.start + pos.saturating_sub(*at)).min(r.end)
    }

    /// The byte column of original position `pos`, as miette counts it.
    fn column(&self, pos: usize) -> usize {
        let text = &self.original[..pos.min(self.original.len())];
        pos - text.rfind(['\n', '\r']).map_or(0, |i| i + 1)
    }
}

/// The position `n` characters before `pos`, not before `floor`.
fn back(text: &str, pos: usize, n: usize, floor: usize) -> usize {
    text[floor..pos]
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(floor, |(i, _)| floor + i)
}

/// The position `n` characters after `pos`, not after `ceiling`.
fn forward(text: &str, pos: usize, n: usize, ceiling: usize) -> usize {
    text[pos..ceiling]
        .char_indices()
        .nth(n)
        .map_or(ceiling, |(i, _)| pos + i)
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let contents =
            self.shown
                .as_bytes()
                .read_span(span, context_lines_before, context_lines_after)?;
        if self.runs.len() == 1 || context_lines_before != 0 {
            return Ok(contents);
        }
        // The column miette shows in the header: that of the real file.
        Ok(Box::new(MietteSpanContents::new(
            contents.data(),
            *contents.span(),
            contents.line(),
            self.column(self.unmap(span.offset())),
            contents.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lines_are_shown_whole_and_long_ones_around_the_label() {
        let text = Arc::new(format!(
            "a = 1\nb = \"{}X{}\"\nc = 3\n",
            "é".repeat(5000),
            "y".repeat(5000)
        ));
        let x = text.find('X').unwrap();
        let e = Excerpt::new(text.clone(), std::slice::from_ref(&(x..x + 1)));
        let shown = e.shown.as_str();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0], lines[2]), ("a = 1", "c = 3"));
        assert_eq!(lines[1].chars().count(), WINDOW + 2);
        assert!(lines[1].starts_with('…') && lines[1].ends_with('…'));
        assert_eq!(&shown[e.map(x)..e.map(x + 1)], "X");
        assert_eq!(e.unmap(e.map(x)), x);
        assert_eq!(e.column(x), x - 6);
        // Positions left out map to the edges of what is shown.
        assert!(e.map(x - 1000) < e.map(x) && e.map(x + 1000) > e.map(x + 1));
        // A label at the very end of a long line is shown there, not at the cut.
        let eol = text[..text.len() - 1].rfind('\n').unwrap();
        let e = Excerpt::new(text.clone(), std::slice::from_ref(&(eol..eol)));
        assert!(e.shown[..e.map(eol)].ends_with("yy\""));
        assert_eq!(&e.shown[e.map(eol)..], "\nc = 3\n");
        // Nothing to cut: the same text.
        let short = Arc::new("a = 1\n".to_string());
        assert!(Arc::ptr_eq(
            &Excerpt::new(short.clone(), std::slice::from_ref(&(0..1))).shown,
            &short
        ));
    }
}
