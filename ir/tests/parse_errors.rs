//! Parse errors that need Rust rather than a text file: generated input (nesting one
//! past the limit) and the `parse_function` API. Every other parse error class is a
//! case in `tests/ir/errors/parse_*.jir`, with the expected message written on the
//! line and column it must point at (run by `tests/filetests.rs`).

use jitad_ir::parse::MAX_NESTING;
use jitad_ir::{parse_function, parse_module, verify_module, ParseError, ParseErrorKind};

#[track_caller]
fn err(src: &str) -> ParseError {
    match parse_module(src) {
        Ok(m) => panic!("parsed, expected an error:\n{m}"),
        Err(e) => e,
    }
}

#[track_caller]
fn at(e: &ParseError, line: usize, col: usize) {
    assert_eq!((e.line, e.col), (line, col), "{e}");
    assert!(e.to_string().starts_with(&format!("{line}:{col}: ")), "{e}");
    assert!(e.to_string().contains("expected"), "no `expected` in: {e}");
}

#[test]
fn parse_function_wants_exactly_one_function() {
    let e = parse_function("func @a() -> () { ret }\nfunc @b() -> () { ret }").unwrap_err();
    at(&e, 1, 1);
    assert!(matches!(e.kind, ParseErrorKind::Expected { .. }));
    let e = parse_function("").unwrap_err();
    at(&e, 1, 1);
    assert!(parse_function("func @a() -> () { ret }").is_ok());
}

#[test]
fn too_deep() {
    let depth = MAX_NESTING + 1;
    let mut src = String::from("func @f() -> () {\n");
    for k in 0..depth {
        src.push_str(&format!("loop %i{k} in 0..1 () {{\n"));
    }
    let e = err(&src);
    at(&e, MAX_NESTING + 2, 1);
    assert_eq!(e.kind, ParseErrorKind::TooDeep(MAX_NESTING));
    // Exactly MAX_NESTING levels are fine.
    let mut ok = String::from("func @f() -> () {\n");
    for k in 0..MAX_NESTING {
        ok.push_str(&format!("loop %i{k} in 0..1 () {{\n"));
    }
    for _ in 0..MAX_NESTING {
        ok.push_str("yield }\n");
    }
    ok.push_str("ret }\n");
    let m = parse_module(&ok).unwrap();
    assert!(verify_module(&m).is_ok());
    assert_eq!(
        parse_module(&m.to_string()).unwrap().to_string(),
        m.to_string()
    );
}
