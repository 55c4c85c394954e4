//! Parser robustness: random bytes, random token soup and mutated valid files give
//! `Ok` or `Err`, never a panic, a hang or a stack overflow; deep nesting is an error.

use jitad_ir::parse::MAX_NESTING;
use jitad_ir::testgen::{random_module, GenOptions};
use jitad_ir::{parse_module, print_module, ParseErrorKind};
use proptest::prelude::*;
use std::path::Path;

/// Valid sources: the golden inputs and outputs, and a few generated modules.
fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jir"))
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    for seed in 0..4 {
        let opts = GenOptions {
            all_types: seed % 2 == 0,
            num_insts: 24,
            ..GenOptions::default()
        };
        out.push(print_module(&random_module(seed, &opts)));
    }
    // Tensor programs: shapes, axes, ranges, permutations to mutate.
    for seed in 4..6 {
        let opts = GenOptions {
            num_insts: 24,
            tensors: true,
            ..GenOptions::default()
        };
        out.push(print_module(&random_module(seed, &opts)));
    }
    out
}

/// Parsing either succeeds, and then the result prints and reparses to the same text,
/// or fails with a position inside the input.
fn check(src: &str) {
    match parse_module(src) {
        Ok(m) => {
            let text = print_module(&m);
            let again = parse_module(&text).map(|m| print_module(&m));
            assert_eq!(again.as_deref(), Ok(text.as_str()), "source:\n{src}");
        }
        Err(e) => {
            let lines = src.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "{e} for {src:?}");
            assert!(e.col >= 1, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, char),
    Replace(usize, char),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        Just('%'),
        Just('@'),
        Just('{'),
        Just('}'),
        Just('('),
        Just(')'),
        Just(','),
        Just(':'),
        Just('='),
        Just('.'),
        Just('-'),
        Just(';'),
        Just('\n'),
        Just('['),
        Just('9'),
        Just('x'),
        Just('é'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), ch.clone()).prop_map(|(a, c)| Mutation::Insert(a, c)),
        (any::<usize>(), ch).prop_map(|(a, c)| Mutation::Replace(a, c)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn apply(src: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    let len = chars.len();
    let at = |a: usize| if len == 0 { 0 } else { a % (len + 1) };
    match *m {
        Mutation::Delete(a, n) => {
            let s = at(a).min(len);
            let e = (s + n).min(len);
            chars.drain(s..e);
        }
        Mutation::Insert(a, c) => chars.insert(at(a), c),
        Mutation::Replace(a, c) => {
            if len > 0 {
                chars[a % len] = c;
            }
        }
        Mutation::Truncate(a) => chars.truncate(at(a)),
        Mutation::Duplicate(a, n) => {
            let s = at(a).min(len);
            let e = (s + n).min(len);
            let piece: Vec<char> = chars[s..e].to_vec();
            chars.splice(s..s, piece);
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup_never_panics(
        toks in proptest::collection::vec(
            prop_oneof![
                Just("func"), Just("@f"), Just("@g"), Just("%x"), Just("%y"), Just("("),
                Just(")"), Just("{"), Just("}"), Just("->"), Just(":"), Just(","), Just("="),
                Just("f64"), Just("i64"), Just("bool"), Just("f32[2,3]"), Just("add"),
                Just("const"), Just("1.5"), Just("-3"), Just("nan"), Just("-inf"),
                Just("loop"), Just("in"), Just(".."), Just("yield"), Just("ret"),
                Just("call"), Just("powi"), Just("cast"), Just("\n"), Just("; c\n"),
            ],
            0..80,
        ),
    ) {
        check(&toks.join(" "));
    }

    #[test]
    fn mutated_valid_files_never_panic(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let corpus = corpus();
        let mut src = corpus[pick % corpus.len()].clone();
        for m in &muts {
            src = apply(&src, m);
        }
        check(&src);
    }
}

#[test]
fn ten_thousand_nested_loops_are_an_error_not_a_stack_overflow() {
    let n = 10_000;
    let mut src = String::from("func @f(%x: f64) -> f64 {\n");
    for k in 0..n {
        src.push_str(&format!(
            "%r{k} = loop %i{k} in 0..1 (%a{k} = %x : f64) {{\n"
        ));
    }
    for k in (0..n).rev() {
        src.push_str(&format!("yield %a{k}\n}}\n"));
    }
    src.push_str("ret %x\n}\n");
    let e = parse_module(&src).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooDeep(MAX_NESTING));
    assert_eq!(e.line, MAX_NESTING + 2);
    // Unbalanced openers only.
    let e = parse_module(&"loop %i in 0..1 () {".repeat(n)).unwrap_err();
    assert!(matches!(e.kind, ParseErrorKind::Expected { .. }));
    let src = format!("func @f() -> () {{{}", "loop %i in 0..1 () {".repeat(n));
    assert_eq!(
        parse_module(&src).unwrap_err().kind,
        ParseErrorKind::TooDeep(MAX_NESTING)
    );
}

#[test]
fn huge_shapes_and_lists_are_bounded() {
    let dims = vec!["7"; 100_000].join(",");
    let e = parse_module(&format!("func @f(%t: f64[{dims}]) -> () {{ ret }}")).unwrap_err();
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    // A long flat program is fine (no recursion per instruction).
    let mut src = String::from("func @f(%x: f64) -> f64 {\n  %a0 = neg %x\n");
    for k in 1..50_000 {
        src.push_str(&format!("  %a{k} = neg %a{}\n", k - 1));
    }
    src.push_str("  ret %a49999\n}\n");
    let m = parse_module(&src).unwrap();
    assert_eq!(m.funcs[0].num_insts(), 50_001);
    assert!(
        print_module(&m) == src,
        "printing a long program changed it"
    );
}
