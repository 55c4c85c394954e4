//! Golden text-format tests: every `tests/ir/<name>.jir` (hand-written input, comments
//! and odd spacing allowed) is parsed, verified and printed, and the output must equal
//! `tests/ir/<name>.expected.jir` byte for byte. Printing the parsed expected file must
//! give it back unchanged (print → parse → print is the identity).
//!
//! `JITAD_BLESS=1 cargo test -p jitad-ir --test golden` rewrites the expected files and
//! prints what changed (`jitad_testkit::Golden`, the harness every golden suite shares;
//! a mismatch fails with a unified diff); read the result before committing — a golden
//! file pins shape, not truth.

use jitad_ir::{parse_module, print_module, verify_module, Op};
use jitad_testkit::{unified_diff, Golden};
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

#[test]
fn golden_files() {
    let mut g = Golden::new("cargo test -p jitad-ir --test golden");
    let files = inputs();
    assert!(files.len() >= 6, "golden inputs missing: {files:?}");
    for input in &files {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let src = fs::read_to_string(input).expect("readable input");
        let m = match parse_module(&src) {
            Ok(m) => m,
            Err(e) => {
                g.fail(format!("{name}:{e}"));
                continue;
            }
        };
        if let Err(e) = verify_module(&m) {
            g.fail(format!("{name}: does not verify:\n{e}"));
        }
        let got = print_module(&m);
        g.check(&expected_path(input), &got);
        // The printed output is a fixed point of print ∘ parse.
        match parse_module(&got) {
            Ok(m2) => {
                let again = print_module(&m2);
                if again != got {
                    g.fail(format!(
                        "{name}: print(parse(printed)) != printed:\n{}",
                        unified_diff(&name, &got, &again)
                    ));
                }
            }
            Err(e) => g.fail(format!("{name}: printed output does not parse: {e}")),
        }
    }
    g.finish();
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
