//! Replays every committed fuzz finding (`tests/fuzz/regressions/*.jir`) through the
//! whole pipeline in-process: each must now pass every check. Files in
//! `tests/fuzz/pending/` (found, not fixed yet) are not replayed.

use jitad_fuzz::case::{make_case, Corpus};
use jitad_fuzz::check::check_text;
use std::path::Path;

fn check_seed_of(text: &str) -> u64 {
    text.lines()
        .take_while(|l| l.starts_with(';'))
        .find_map(|l| l.strip_prefix("; check-seed:"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn committed_regressions_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jir"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for p in &files {
        let text = std::fs::read_to_string(p).expect("readable regression file");
        if let Err(f) = check_text(&text, check_seed_of(&text)) {
            failures.push(format!("{}: {f}", p.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A few cases of a fixed run, so `cargo test` exercises the fuzzer end to end.
#[test]
fn a_few_fixed_cases_pass() {
    let corpus = Corpus::load(&jitad_fuzz::case::default_corpus_dir());
    assert!(corpus.files.len() >= 10, "corpus too small");
    for id in 0..6 {
        let c = make_case(1, id, &corpus);
        if let Err(f) = check_text(&c.text, c.check_seed) {
            panic!("case {id} ({}): {f}\n{}", c.origin, c.text);
        }
    }
}

/// Case texts are reproducible from (seed, id), which is what lets the driver write
/// the case a dead worker was running.
#[test]
fn cases_are_deterministic() {
    let corpus = Corpus::load(&jitad_fuzz::case::default_corpus_dir());
    for id in 0..20 {
        let (a, b) = (make_case(9, id, &corpus), make_case(9, id, &corpus));
        assert_eq!((a.text, a.check_seed), (b.text, b.check_seed));
    }
}
