//! Failure cases as text: every `tests/ir/errors/*.jir` file, Cranelift filetest style
//! (see `jitad_testkit::filetest` for the format). `; test: parse` files must fail to
//! parse with the error written on the line (and column) it names; `; test: verify`
//! files must parse and fail verification with exactly the errors written beside the
//! instructions they name.
//!
//! Locating a verifier error: its rendered instruction (`inst4 (%c = mul %a, %b)`) is
//! looked up among the lines of its function, comparing the text inside the parentheses
//! with each line's code (whitespace collapsed, a loop's `{` and `{...}` dropped); an
//! error that names no instruction belongs to its function's `func` line.

use jitad_ir::{parse_module, verify_module, VerifyError};
use jitad_testkit::filetest::{self, code_of, Case, Located};
use std::path::{Path, PathBuf};

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir/errors");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jir"))
        .collect();
    out.sort();
    out
}

fn normalize(code: &str) -> String {
    let code = code.trim();
    let code = code.strip_suffix("{...}").unwrap_or(code).trim_end();
    let code = code.strip_suffix('{').unwrap_or(code);
    code.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The line of `e` in the case text.
fn locate(text: &str, e: &VerifyError) -> Located {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("func @{}(", e.func);
    let start = lines.iter().position(|l| code_of(l).starts_with(&header));
    let message = e.to_string();
    let Some(start) = start else {
        return Located {
            line: 0,
            col: None,
            message: format!("{message} (function not found in the text)"),
        };
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| code_of(l).starts_with("func @"))
        .map_or(lines.len(), |k| start + 1 + k);
    let line = e.inst.as_ref().and_then(|inst| {
        let inner = inst.split_once(" (")?.1.strip_suffix(')')?;
        let want = normalize(inner);
        (start..end).find(|&k| normalize(code_of(lines[k])) == want)
    });
    Located {
        line: line.unwrap_or(start) + 1,
        col: None,
        message,
    }
}

fn run_case(kind: &str, case: &Case) -> Result<(), String> {
    let errors: Vec<Located> = match (kind, parse_module(&case.text)) {
        ("parse", Err(e)) => vec![Located {
            line: e.line,
            col: Some(e.col),
            message: e.to_string(),
        }],
        ("parse", Ok(_)) => vec![],
        ("verify", Err(e)) => {
            return Err(format!(
                "{} lines {}-{}: does not parse: {e}",
                case.file, case.lines.0, case.lines.1
            ))
        }
        ("verify", Ok(m)) => match verify_module(&m) {
            Ok(()) => vec![],
            Err(errs) => errs.errors.iter().map(|e| locate(&case.text, e)).collect(),
        },
        (k, _) => return Err(format!("{}: unknown test kind `{k}`", case.file)),
    };
    case.check(&errors)
}

#[test]
fn failure_filetests() {
    let mut failures = Vec::new();
    let mut n = 0;
    let files = files();
    assert!(files.len() >= 5, "filetests missing: {files:?}");
    for p in &files {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let src = std::fs::read_to_string(p).expect("readable filetest");
        let Some(kind) = filetest::test_kind(&src) else {
            failures.push(format!("{name}: no `; test: KIND` line"));
            continue;
        };
        match filetest::cases(&name, &src) {
            Ok(cases) => {
                for c in &cases {
                    n += 1;
                    if let Err(e) = run_case(kind, c) {
                        failures.push(e);
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(n >= 40, "only {n} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The harness itself fails on a missing, a moved and an unexpected error.
#[test]
fn filetest_harness_catches_mismatches() {
    let src = "; test: parse\nfunc @f() -> () {\n  $   ; error: col 3: unexpected\n}\n";
    let cases = filetest::cases("t", src).unwrap();
    assert!(run_case("parse", &cases[0]).is_ok());
    let moved = "; test: parse\nfunc @f() -> () {\n  $   ; error: col 4: unexpected\n}\n";
    assert!(run_case("parse", &filetest::cases("t", moved).unwrap()[0]).is_err());
    let other_line = "; test: parse\nfunc @f() -> () {  ; error: unexpected\n  $\n}\n";
    assert!(run_case("parse", &filetest::cases("t", other_line).unwrap()[0]).is_err());
    let wrong_text = "; test: parse\nfunc @f() -> () {\n  $   ; error: unknown op\n}\n";
    assert!(run_case("parse", &filetest::cases("t", wrong_text).unwrap()[0]).is_err());
    let parses = "; test: parse\nfunc @f() -> () {  ; error: anything\n  ret\n}\n";
    assert!(run_case("parse", &filetest::cases("t", parses).unwrap()[0]).is_err());
    // Verify: a second, unannotated error fails the case.
    let two = "; test: verify\nfunc @f(%x: f64) -> (f64, f64) {\n  %r = loop %i in 0..2 (%a = %x : f64) {\n    %b = neg %a\n    yield %b\n  }\n  ret %b  ; error: used outside\n}\n";
    assert!(run_case("verify", &filetest::cases("t", two).unwrap()[0]).is_err());
}
