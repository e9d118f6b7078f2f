//! Spec problems as data: each [`Problem`] names its YAML path, its file position and a remedy;
//! [`Diagnostics`] carries all of them with the source text so that miette can render snippets
//! and `-o json` can print them as a list. Nothing here reads files or prints.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// A position in the spec file: 1-based line and column, plus the byte range to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u64,
    pub column: u64,
    /// Byte offset and length in the source, when known.
    pub offset: usize,
    pub len: usize,
}

impl Position {
    /// The start of the file.
    pub const START: Position = Position { line: 1, column: 1, offset: 0, len: 0 };

    /// The position of byte `offset` in `source` (line and column counted in characters).
    pub fn of_offset(source: &str, offset: usize, len: usize) -> Position {
        let offset = offset.min(source.len());
        let before = source.get(..offset).unwrap_or("");
        let line = before.bytes().filter(|b| *b == b'\n').count() as u64 + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before.get(line_start..).map(|s| s.chars().count()).unwrap_or(0) as u64 + 1;
        Position { line, column, offset, len }
    }
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// YAML path such as `spec.hosts[2].address`; empty for the document itself.
    pub path: String,
    pub line: u64,
    pub column: u64,
    /// What is wrong, naming the offending value.
    pub message: String,
    /// What to do about it.
    pub help: String,
    #[serde(skip)]
    pub position: Position,
    /// A second place worth showing, e.g. the first of two duplicates.
    #[serde(skip)]
    pub related: Option<(String, Position)>,
    /// Whether the source can be shown (not for unreadable files).
    #[serde(skip)]
    pub snippet: bool,
    /// The source line is too long to show: the human rendering names line and column instead.
    #[serde(skip)]
    pub overlong_line: bool,
}

impl Problem {
    pub fn new(
        path: impl Into<String>,
        position: Position,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Problem {
        Problem {
            path: path.into(),
            line: position.line,
            column: position.column,
            message: message.into(),
            help: help.into(),
            position,
            related: None,
            snippet: true,
            overlong_line: false,
        }
    }

    pub fn with_related(mut self, label: impl Into<String>, position: Position) -> Problem {
        self.related = Some((label.into(), position));
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if self.overlong_line {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl miette::Diagnostic for Problem {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.help.is_empty()).then(|| Box::new(&self.help) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if !self.snippet {
            return None;
        }
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            None,
            (self.position.offset, self.position.len),
        )];
        if let Some((label, pos)) = &self.related {
            labels.push(LabeledSpan::new_with_span(Some(label.clone()), (pos.offset, pos.len)));
        }
        Some(Box::new(labels.into_iter()))
    }
}

/// Most problems reported for one file; rendering tens of thousands helps nobody.
pub const MAX_SHOWN: usize = 200;

/// Source lines longer than this are not shown as snippets (a minified or generated line would
/// flood the terminal); the problem names its line and column instead.
pub const MAX_SNIPPET_LINE: usize = 240;

/// The length in bytes of the source line holding byte `offset`.
fn line_len_at(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    let start = source.as_bytes()[..offset].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let end = source.as_bytes()[offset..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(source.len(), |i| offset + i);
    end - start
}

/// Every problem found in one spec file, with the source for snippets.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The file name shown in reports, e.g. `cluster.yaml`.
    pub origin: String,
    pub problems: Vec<Problem>,
    source: Arc<NamedSource<String>>,
}

impl Diagnostics {
    pub fn new(origin: &str, source: &str, mut problems: Vec<Problem>) -> Diagnostics {
        // File order reads best; the sort is stable so equal positions keep rule order.
        problems.sort_by_key(|p| (p.line, p.column));
        for p in problems.iter_mut().filter(|p| p.snippet) {
            if line_len_at(source, p.position.offset) > MAX_SNIPPET_LINE {
                p.snippet = false;
                p.overlong_line = true;
            }
        }
        if problems.len() > MAX_SHOWN {
            let hidden = problems.len() - MAX_SHOWN;
            problems.truncate(MAX_SHOWN);
            problems.push(Problem::new(
                "",
                Position::START,
                format!("{hidden} more problems are not shown"),
                "fix the ones above and validate again",
            ));
        }
        Diagnostics {
            origin: origin.to_string(),
            problems,
            source: Arc::new(NamedSource::new(origin, source.to_string())),
        }
    }

    /// A single problem in a source that could not be decoded (no snippet).
    pub fn single(origin: &str, mut problem: Problem) -> Diagnostics {
        problem.snippet = false;
        Diagnostics::new(origin, "", vec![problem])
    }

    /// The JSON list `[{path, line, column, message, help}]` that `-o json` prints, pretty.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.problems).unwrap_or_else(|_| "[]".into())
    }

    /// Plain text, one `file:line:col: path: message (help)` per problem; for logs and tests.
    pub fn to_plain(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out.push_str(&format!("{}:{}:{}: {p}\n", self.origin, p.line, p.column));
            if !p.help.is_empty() {
                out.push_str(&format!("  help: {}\n", p.help));
            }
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.len() {
            1 => write!(f, "{} is not a valid cluster spec: 1 problem", self.origin),
            n => write!(f, "{} is not a valid cluster spec: {n} problems", self.origin),
        }
    }
}

impl std::error::Error for Diagnostics {}

impl miette::Diagnostic for Diagnostics {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("kubeforge::spec"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("fix the problems below and run `kubeforge validate` again"))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source.as_ref())
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(self.problems.iter().map(|p| p as &dyn miette::Diagnostic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let src = "a: 1\nbé: 2\n";
        assert_eq!(Position::of_offset(src, 0, 0).line, 1);
        let p = Position::of_offset(src, 5, 1);
        assert_eq!((p.line, p.column), (2, 1));
        let p = Position::of_offset(src, 9, 1);
        assert_eq!((p.line, p.column), (2, 4));
        assert_eq!(Position::of_offset(src, 999, 0).line, 3);
    }

    #[test]
    fn overlong_lines_are_not_shown_but_the_position_is_named() {
        let long = format!("a: [{}]\nb: 1\n", "1,".repeat(500));
        let at = |line: u64, offset: usize| Position { line, column: 5, offset, len: 1 };
        let d = Diagnostics::new(
            "c.yaml",
            &long,
            vec![
                Problem::new("a", at(1, 4), "too deep", "h"),
                Problem::new("b", at(2, long.len() - 5), "bad", "h"),
            ],
        );
        assert!(!d.problems[0].snippet);
        assert_eq!(d.problems[0].to_string(), "a: too deep (line 1, column 5)");
        assert_eq!(d.problems[0].message, "too deep", "JSON has line and column fields");
        assert!(d.problems[1].snippet, "short lines keep their snippet");
        assert_eq!(d.problems[1].to_string(), "b: bad");
    }

    #[test]
    fn problems_sort_by_position_and_serialize_five_fields() {
        let p2 = Problem::new("b", Position { line: 2, column: 1, offset: 5, len: 1 }, "m2", "h2");
        let p1 = Problem::new("a", Position { line: 1, column: 3, offset: 2, len: 1 }, "m1", "h1");
        let d = Diagnostics::new("c.yaml", "a: 1\nb: 2\n", vec![p2, p1]);
        assert_eq!(d.problems[0].path, "a");
        let json = serde_json::to_string(&d.problems).unwrap();
        assert_eq!(
            json,
            r#"[{"path":"a","line":1,"column":3,"message":"m1","help":"h1"},{"path":"b","line":2,"column":1,"message":"m2","help":"h2"}]"#
        );
    }
}
