//! Diagnostics: every problem found in a config repo, with where it is.
//!
//! Validation collects all problems instead of stopping at the first, so an
//! operator fixes a broken commit in one round trip. Each [`Diagnostic`] names
//! the repo file and, where a span exists, the line and column.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// One problem in the config repo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Diagnostic {
    /// Repo-relative file the problem is in (`hosts/web1.toml`).
    pub file: String,
    /// 1-based line, when the problem has a location.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the problem has a location.
    pub column: Option<usize>,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl Diagnostic {
    /// A problem that concerns a whole file rather than a place in it:
    /// located at its start, so that every diagnostic reads
    /// `FILE:LINE:COL: message` (what editors and CI annotations parse).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: Some(1),
            column: Some(1),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Where only the line is known, its start.
        let line = self.line.unwrap_or(1);
        let column = self.column.unwrap_or(1);
        write!(f, "{}:{line}:{column}: {}", self.file, self.message)
    }
}

/// Where a declaration came from, kept with each resource so that later
/// errors (conflicts, unknown references) can point back at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Origin {
    /// Repo-relative file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Origin {
    /// A diagnostic located at this origin.
    pub fn diag(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: Some(self.line),
            column: Some(self.column),
            message: message.into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A named text with a line index, to turn byte spans into line:column.
/// A clone shares the index.
#[derive(Clone)]
pub(crate) struct SourceText<'a> {
    /// Repo-relative file name.
    pub name: &'a str,
    /// The whole text.
    pub text: &'a str,
    line_starts: std::rc::Rc<[usize]>,
}

impl<'a> SourceText<'a> {
    /// Indexes `text`.
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name,
            text,
            line_starts,
        }
    }

    /// Whether `other` shares this text's line index (a clone does).
    #[cfg(test)]
    pub(crate) fn shares_index(&self, other: &SourceText<'_>) -> bool {
        std::rc::Rc::ptr_eq(&self.line_starts, &other.line_starts)
    }

    /// The origin of a byte offset.
    pub(crate) fn origin(&self, offset: usize) -> Origin {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Origin {
            file: self.name.to_owned(),
            line,
            column,
        }
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.origin(span.start).diag(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let src = SourceText::new("h.toml", "a = 1\nbé = 2\n\nc");
        assert_eq!((src.origin(0).line, src.origin(0).column), (1, 1));
        assert_eq!((src.origin(6).line, src.origin(6).column), (2, 1));
        // The column counts characters, not bytes: 'é' is two bytes.
        assert_eq!((src.origin(9).line, src.origin(9).column), (2, 3));
        assert_eq!(src.origin(14).line, 3);
        assert_eq!(src.origin(15).line, 4);
        assert_eq!(src.origin(999).line, 4);
    }

    #[test]
    fn display_includes_location_when_known() {
        let d = SourceText::new("x.toml", "k = 1").diag(&(4..5), "bad");
        assert_eq!(d.to_string(), "x.toml:1:5: bad");
        assert_eq!(Diagnostic::file("y", "gone").to_string(), "y:1:1: gone");
    }
}
