//! jitad's one test harness for text expectations, shared by the golden suites of every
//! crate (a dev-dependency only; it knows nothing of the IR, so any crate can use it
//! without a dependency cycle).
//!
//! - [`Golden`]: compare produced text with an expected file. On mismatch the failure
//!   shows a unified diff (`--- expected` / `+++ got`, three lines of context); with
//!   `JITAD_BLESS=1` in the environment the expected file is rewritten instead and the
//!   diff printed. All mismatches of a suite are collected and reported together by
//!   [`Golden::finish`]. Read a blessed file before committing it: a golden file pins
//!   shape, not truth.
//! - [`filetest`]: Cranelift-style failure cases — `.jir` files whose expected errors
//!   are written as `; error: ...` comments on the lines that cause them.
//!
//! ```
//! let mut g = jitad_testkit::Golden::new("cargo test -p my-crate --test golden");
//! let dir = std::env::temp_dir().join("jitad-testkit-doc");
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("a.expected.txt");
//! std::fs::write(&path, "one\ntwo\n").unwrap();
//! g.check(&path, "one\ntwo\n");
//! g.finish();
//! ```

pub mod filetest;

use std::path::{Path, PathBuf};

/// The environment variable that makes [`Golden::check`] rewrite expected files.
pub const BLESS_VAR: &str = "JITAD_BLESS";

/// True when `JITAD_BLESS=1`.
pub fn bless_enabled() -> bool {
    std::env::var(BLESS_VAR).is_ok_and(|v| v == "1")
}

/// A unified diff from `expected` to `got` (3 lines of context), labelled with `name`;
/// empty when they are equal.
pub fn unified_diff(name: &str, expected: &str, got: &str) -> String {
    if expected == got {
        return String::new();
    }
    let mut out = similar::TextDiff::from_lines(expected, got)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (expected)"), &format!("{name} (got)"))
        .to_string();
    if !got.ends_with('\n') || !expected.ends_with('\n') {
        out.push_str("(one side lacks a final newline)\n");
    }
    out
}

/// Collects golden-file comparisons and reports every mismatch at the end.
#[derive(Debug)]
pub struct Golden {
    rerun: String,
    bless: bool,
    failures: Vec<String>,
    blessed: Vec<PathBuf>,
    checked: usize,
}

impl Golden {
    /// A new collector; `rerun` is the command that re-runs the suite (shown with
    /// `JITAD_BLESS=1` in front of it when something differs).
    pub fn new(rerun: &str) -> Self {
        Golden {
            rerun: rerun.to_string(),
            bless: bless_enabled(),
            failures: Vec::new(),
            blessed: Vec::new(),
            checked: 0,
        }
    }

    /// Compares `got` with the contents of `expected` (a missing file counts as empty).
    /// Blessing rewrites the file; otherwise a mismatch is recorded with its diff.
    pub fn check(&mut self, expected: &Path, got: &str) {
        self.checked += 1;
        let want = std::fs::read_to_string(expected).unwrap_or_default();
        if want == got {
            return;
        }
        let diff = unified_diff(&expected.display().to_string(), &want, got);
        if self.bless {
            match std::fs::write(expected, got) {
                Ok(()) => {
                    eprintln!("blessed {}:\n{diff}", expected.display());
                    self.blessed.push(expected.to_path_buf());
                }
                Err(e) => self
                    .failures
                    .push(format!("cannot bless {}: {e}", expected.display())),
            }
        } else {
            self.failures.push(format!(
                "{} differs (- expected, + got):\n{diff}",
                expected.display()
            ));
        }
    }

    /// Records a failure that is not a text mismatch (a file that does not parse, an
    /// output that does not verify, ...).
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.failures.push(msg.into());
    }

    /// Number of comparisons made so far.
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// Panics with every recorded failure (and how to bless), if any.
    #[track_caller]
    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} golden failure(s):\n\n{}\n\n(`{BLESS_VAR}=1 {}` rewrites the expected files; \
                 read them before committing)",
                self.failures.len(),
                self.failures.join("\n\n"),
                self.rerun
            );
        }
    }
}
