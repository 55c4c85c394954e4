//! Failure cases as text, in the style of Cranelift's verifier filetests.
//!
//! A filetest is a text file whose first comment line names its kind (`; test: parse`,
//! `; test: verify`, ...). Lines that are exactly `; ---` split it into *cases*; each
//! case is checked on its own, as the file's text with every line outside the case
//! blanked (so line numbers stay the file's) and cut after the case's last line. A case
//! without code (the header, say) is skipped.
//!
//! The errors a case must produce are written on the lines that cause them:
//!
//! ```text
//! func @f() -> () {
//!   $               ; error: col 3: unexpected character '$'
//! }
//! ```
//!
//! `; error: TEXT` says: an error located on this line has TEXT in its message;
//! `; error: col N: TEXT` also pins the column. A line may carry several (`; error: a
//! ; error: b`). The check is two-way: every expectation is met by an error on its line,
//! and every error lands on a line whose expectations it meets — so a case fails when
//! an error goes missing, moves, or a new one appears. An error located past the case's
//! last line (at the end of the input) belongs to that last line.
//!
//! Where an error is located is the test's business (a parse error has a line and
//! column; a verifier error names an instruction, which the IR test finds in the
//! text); this module knows no IR.

/// One `; error:` expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Line (from 1) it is written on.
    pub line: usize,
    /// Column the error must have, when pinned.
    pub col: Option<usize>,
    /// A substring of the error's message.
    pub text: String,
}

/// One case of a filetest.
#[derive(Clone, Debug)]
pub struct Case {
    /// The file's name, for messages.
    pub file: String,
    /// First and last line (from 1) of the case in the file.
    pub lines: (usize, usize),
    /// The text to check: the file with other cases blanked, cut after this one.
    pub text: String,
    /// Its expectations, in line order.
    pub expects: Vec<Expect>,
}

/// An error as the test located it.
#[derive(Clone, Debug)]
pub struct Located {
    /// Line (from 1).
    pub line: usize,
    /// Column (from 1), when the error has one.
    pub col: Option<usize>,
    /// The full message.
    pub message: String,
}

/// The kind named by the first `; test: KIND` line, if any.
pub fn test_kind(src: &str) -> Option<&str> {
    src.lines()
        .find_map(|l| l.trim().strip_prefix("; test:"))
        .map(str::trim)
}

/// The code of a line: what comes before its `;` comment, trimmed.
pub fn code_of(line: &str) -> &str {
    line.split(';').next().unwrap_or("").trim()
}

fn expects_on(line_no: usize, line: &str) -> Result<Vec<Expect>, String> {
    let mut out = Vec::new();
    for part in line.split("; error:").skip(1) {
        let part = part.trim();
        let (col, text) = match part.strip_prefix("col ") {
            Some(rest) => {
                let (n, t) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("line {line_no}: `col N:` needs a colon"))?;
                let n = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {line_no}: bad column `{n}`"))?;
                (Some(n), t.trim())
            }
            None => (None, part),
        };
        if text.is_empty() {
            return Err(format!("line {line_no}: empty `; error:` expectation"));
        }
        out.push(Expect {
            line: line_no,
            col,
            text: text.to_string(),
        });
    }
    Ok(out)
}

/// The cases of filetest `src` (named `file` in messages).
pub fn cases(file: &str, src: &str) -> Result<Vec<Case>, String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut bounds = Vec::new();
    let mut start = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == "; ---" {
            bounds.push((start, i));
            start = i + 1;
        }
    }
    bounds.push((start, lines.len()));
    let mut out = Vec::new();
    for (s, e) in bounds {
        if !lines[s..e].iter().any(|l| !code_of(l).is_empty()) {
            continue;
        }
        let mut text = String::new();
        let mut expects = Vec::new();
        for (i, l) in lines.iter().enumerate().take(e) {
            if i >= s {
                text.push_str(l);
                expects.extend(expects_on(i + 1, l).map_err(|m| format!("{file}: {m}"))?);
            }
            text.push('\n');
        }
        out.push(Case {
            file: file.to_string(),
            lines: (s + 1, e),
            text,
            expects,
        });
    }
    Ok(out)
}

impl Case {
    /// Checks `errors` against the expectations (both ways); `Err` explains every
    /// mismatch.
    pub fn check(&self, errors: &[Located]) -> Result<(), String> {
        let last = self.lines.1;
        let line_of = |e: &Located| e.line.min(last);
        let meets = |x: &Expect, e: &Located| {
            line_of(e) == x.line
                && e.message.contains(&x.text)
                && x.col.is_none_or(|c| Some(c) == e.col)
        };
        let mut problems = Vec::new();
        if self.expects.is_empty() {
            problems.push(
                "the case expects no error: write `; error: ...` on the failing line".to_string(),
            );
        }
        for x in &self.expects {
            if !errors.iter().any(|e| meets(x, e)) {
                problems.push(format!(
                    "line {}: expected an error{} containing {:?}",
                    x.line,
                    x.col.map(|c| format!(" at column {c}")).unwrap_or_default(),
                    x.text
                ));
            }
        }
        for e in errors {
            if !self.expects.iter().any(|x| meets(x, e)) {
                problems.push(format!(
                    "line {}{}: unexpected error: {}",
                    e.line,
                    e.col.map(|c| format!(" column {c}")).unwrap_or_default(),
                    e.message
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} lines {}-{}:\n  {}",
                self.file,
                self.lines.0,
                self.lines.1,
                problems.join("\n  ")
            ))
        }
    }
}
