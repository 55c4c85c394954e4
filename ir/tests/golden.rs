//! Golden text-format tests: every `tests/ir/<name>.jir` (hand-written input, comments
//! and odd spacing allowed) is parsed, verified and printed, and the output must equal
//! `tests/ir/<name>.expected.jir` byte for byte. Printing the parsed expected file must
//! give it back unchanged (print → parse → print is the identity).
//!
//! `JITAD_BLESS=1 cargo test -p jitad-ir --test golden` rewrites the expected files and
//! prints what changed; read the result before committing — a golden file pins shape,
//! not truth.

use jitad_ir::{parse_module, print_module, verify_module, Op};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir")
}

/// The input files (`*.jir` but not `*.expected.jir`), sorted.
fn inputs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/ir exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "jir")
                && !p.to_string_lossy().ends_with(".expected.jir")
        })
        .collect();
    out.sort();
    out
}

fn expected_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().expect("file name").to_string_lossy();
    input.with_file_name(format!("{stem}.expected.jir"))
}

fn diff(expected: &str, got: &str) -> String {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(g.len()) {
        match (e.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => out.push_str(&format!("  {a}\n")),
            (a, b) => {
                if let Some(a) = a {
                    out.push_str(&format!("- {a}\n"));
                }
                if let Some(b) = b {
                    out.push_str(&format!("+ {b}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn golden_files() {
    let bless = std::env::var("JITAD_BLESS").is_ok_and(|v| v == "1");
    let files = inputs();
    assert!(files.len() >= 6, "golden inputs missing: {files:?}");
    let mut failures = Vec::new();
    for input in &files {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let src = fs::read_to_string(input).expect("readable input");
        let m = match parse_module(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}:{e}"));
                continue;
            }
        };
        if let Err(e) = verify_module(&m) {
            failures.push(format!("{name}: does not verify:\n{e}"));
        }
        let got = print_module(&m);
        let exp_path = expected_path(input);
        let expected = fs::read_to_string(&exp_path).unwrap_or_default();
        if got != expected {
            if bless {
                fs::write(&exp_path, &got).expect("writable expected file");
                eprintln!("blessed {}:\n{}", exp_path.display(), diff(&expected, &got));
            } else {
                failures.push(format!(
                    "{name}: printed output differs from {} (- expected, + got):\n{}",
                    exp_path.display(),
                    diff(&expected, &got)
                ));
                continue;
            }
        }
        // The expected file is a fixed point of print ∘ parse.
        match parse_module(&got) {
            Ok(m2) => {
                let again = print_module(&m2);
                if again != got {
                    failures.push(format!(
                        "{name}: print(parse(expected)) != expected:\n{}",
                        diff(&got, &again)
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: expected output does not parse: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every op name appears in some expected golden file.
#[test]
fn every_op_has_a_golden_file() {
    let mut words = BTreeSet::new();
    for input in inputs() {
        let text = fs::read_to_string(expected_path(&input)).unwrap_or_default();
        for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            words.insert(w.to_string());
        }
    }
    let missing: Vec<&str> = Op::NAMES
        .iter()
        .copied()
        .filter(|n| !words.contains(*n))
        .collect();
    assert!(missing.is_empty(), "ops without a golden file: {missing:?}");
}
