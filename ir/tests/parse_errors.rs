//! One rejection test per parse error class: the kind, the line:column, and a message
//! that says what was expected.

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
fn unexpected_character() {
    let e = err("func @f() -> () {\n  $\n}");
    at(&e, 2, 3);
    assert_eq!(e.kind, ParseErrorKind::UnexpectedChar('$'));
    // Columns count characters, not bytes.
    let e = err("; é\nfunc @f() -> () { ret } é");
    at(&e, 2, 25);
    assert_eq!(e.kind, ParseErrorKind::UnexpectedChar('é'));
    let e = err("func @f() -> () {\n  %a = const 1 : f64 . \n}");
    assert_eq!(e.kind, ParseErrorKind::UnexpectedChar('.'));
    at(&e, 2, 22);
}

#[test]
fn expected_token() {
    let e = err("func @f( -> ()");
    at(&e, 1, 10);
    assert!(matches!(&e.kind, ParseErrorKind::Expected { found, .. } if found == "`->`"));
    let e = err("func @f(%x: f64) -> f64 {\n  %a = add %x,\n}");
    at(&e, 3, 1);
    assert!(matches!(e.kind, ParseErrorKind::Expected { .. }));
    let e = err("func @f() -> () {\n  %a\n}");
    at(&e, 3, 1);
    let e = err("@f");
    at(&e, 1, 1);
    assert_eq!(e.to_string(), "1:1: expected `func`, found `@f`");
    let e = err("func @f(%) -> () { ret }");
    at(&e, 1, 9);
    // parse_function wants exactly one function.
    let e = parse_function("func @a() -> () { ret }\nfunc @b() -> () { ret }").unwrap_err();
    at(&e, 1, 1);
    assert!(matches!(e.kind, ParseErrorKind::Expected { .. }));
}

#[test]
fn unknown_op() {
    let e = err("func @f(%x: f64) -> f64 {\n  %y = frob %x\n  ret %y\n}");
    at(&e, 2, 8);
    assert_eq!(e.kind, ParseErrorKind::UnknownOp("frob".into()));
}

#[test]
fn unknown_type() {
    let e = err("func @f(%x: f65) -> () {\n ret\n}");
    at(&e, 1, 13);
    assert_eq!(e.kind, ParseErrorKind::UnknownType("f65".into()));
}

#[test]
fn bad_number_literal() {
    let e = err("func @f() -> i64 {\n  %k = const 9223372036854775808 : i64\n  ret %k\n}");
    at(&e, 2, 14);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f(%x: f64) -> f64 {\n  %p = powi %x, 3000000000\n  ret %p\n}");
    at(&e, 2, 17);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f(%t: f64[1,2,3,4,5]) -> () { ret }");
    at(&e, 1, 25);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f(%t: f64[]) -> () { ret }");
    at(&e, 1, 17);
    let e = err("func @f(%t: f64[4294967296]) -> () { ret }");
    at(&e, 1, 17);
    let e = err("func @f() -> f64 {\n  %k = const 1e999 : f64\n  ret %k\n}");
    at(&e, 2, 14);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f() -> f32 {\n  %k = const 1e39 : f32\n  ret %k\n}");
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f() -> f64 {\n  %k = const 1.e3 : f64\n  ret %k\n}");
    at(&e, 2, 14);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f() -> f64 {\n  %k = const 12abc : f64\n  ret %k\n}");
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
    let e = err("func @f() -> () {\n  loop %i in 0..99999999999999999999 () { yield }\n  ret\n}");
    at(&e, 2, 17);
    assert!(matches!(e.kind, ParseErrorKind::BadNumber { .. }));
}

#[test]
fn undefined_value() {
    let e = err("func @f(%x: f64) -> f64 {\n  %a = add %x, %z\n  ret %a\n}");
    at(&e, 2, 16);
    assert_eq!(e.kind, ParseErrorKind::UndefinedValue("z".into()));
    // Defined later in the text is not defined yet.
    let e = err("func @f(%x: f64) -> f64 {\n  %a = add %x, %b\n  %b = neg %x\n  ret %a\n}");
    at(&e, 2, 16);
    // A loop's results are not visible in its own body.
    let e = err(
        "func @f(%x: f64) -> f64 {\n  %r = loop %i in 0..2 (%a = %x : f64) {\n    \
         yield %r\n  }\n  ret %r\n}",
    );
    at(&e, 3, 11);
    assert_eq!(e.kind, ParseErrorKind::UndefinedValue("r".into()));
    // Names are per function.
    let e = err("func @f(%x: f64) -> f64 { ret %x }\nfunc @g() -> f64 { ret %x }");
    at(&e, 2, 24);
}

#[test]
fn use_of_a_closed_loop_body_value_parses_and_is_left_to_the_verifier() {
    let src = "func @f(%x: f64) -> f64 {\n  %r = loop %i in 0..2 (%a = %x : f64) {\n    \
               %b = neg %a\n    yield %b\n  }\n  ret %b\n}\n";
    let m = parse_module(src).expect("scoping is the verifier's business");
    assert!(verify_module(&m).is_err());
}

#[test]
fn duplicate_value() {
    let e = err("func @f(%x: f64) -> f64 {\n  %a = neg %x\n  %a = neg %a\n  ret %a\n}");
    at(&e, 3, 3);
    assert_eq!(e.kind, ParseErrorKind::DuplicateValue("a".into()));
    let e = err("func @f(%x: f64, %x: f64) -> f64 { ret %x }");
    at(&e, 1, 18);
    let e = err("func @f(%x: f64) -> (f64, f64) {\n  %a, %a = call @f(%x)\n  ret %a, %a\n}");
    at(&e, 2, 7);
    // Loop results and body values share one namespace.
    let e = err(
        "func @f(%x: f64) -> f64 {\n  %r = loop %i in 0..2 (%a = %x : f64) {\n    \
         %r = neg %a\n    yield %r\n  }\n  ret %r\n}",
    );
    at(&e, 2, 3);
    assert_eq!(e.kind, ParseErrorKind::DuplicateValue("r".into()));
}

#[test]
fn duplicate_function() {
    let e = err("func @f() -> () { ret }\n\nfunc @f() -> () { ret }");
    at(&e, 3, 6);
    assert_eq!(e.kind, ParseErrorKind::DuplicateFunction("f".into()));
}

#[test]
fn unknown_callee() {
    let e = err("func @f(%x: f64) -> f64 {\n  %y = call @nope(%x)\n  ret %y\n}");
    at(&e, 2, 13);
    assert_eq!(e.kind, ParseErrorKind::UnknownCallee("nope".into()));
}

#[test]
fn type_error() {
    let e = err("func @f(%x: f64, %n: i64) -> f64 {\n  %a = add %x, %n\n  ret %a\n}");
    at(&e, 2, 8);
    assert!(matches!(e.kind, ParseErrorKind::Type(_)));
    assert!(e.to_string().contains("i64"), "{e}");
    let e = err("func @f() -> f64 {\n  %k = const true : f64\n  ret %k\n}");
    at(&e, 2, 14);
    assert!(matches!(e.kind, ParseErrorKind::Type(_)));
    let e = err("func @f() -> i64 {\n  %k = const 0.5 : i64\n  ret %k\n}");
    assert!(matches!(e.kind, ParseErrorKind::Type(_)));
    let e = err(
        "func @f(%x: f64) -> f64 {\n  %r = loop %i in 0..2 (%a = %x : f32) {\n    \
         yield %a\n  }\n  ret %r\n}",
    );
    at(&e, 2, 35);
    assert!(matches!(e.kind, ParseErrorKind::Type(_)));
    let e = err("func @f(%x: f64) -> f64 {\n  %y = call @f(%x, %x)\n  ret %y\n}");
    at(&e, 2, 8);
    let e = err("func @f(%x: f64) -> () {\n  loop %i in 0..%x () { yield }\n  ret\n}");
    at(&e, 2, 3);
    let e = err("func @f(%x: f64) -> () {\n  %k = cast %x : f64[2]\n  ret\n}");
    at(&e, 2, 18);
    assert!(matches!(e.kind, ParseErrorKind::Type(_)));
}

#[test]
fn result_count() {
    let e = err("func @f(%c: bool) -> () {\n  %a = guard %c\n  ret\n}");
    at(&e, 2, 8);
    assert_eq!(
        e.kind,
        ParseErrorKind::ResultCount {
            op: "guard".into(),
            expected: 0,
            found: 1
        }
    );
    let e = err("func @f(%x: f64) -> f64 {\n  %r, %s = loop %i in 0..2 (%a = %x : f64) {\n    yield %a\n  }\n  ret %r\n}");
    at(&e, 2, 12);
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

#[test]
fn unterminated() {
    let e = err("func @f(%x: f64) -> f64 {\n  ret %x\n");
    at(&e, 3, 1);
    assert_eq!(
        e.kind,
        ParseErrorKind::Unterminated {
            what: "function @f".into(),
            open_line: 1,
            open_col: 25
        }
    );
    let e = err("func @f(%x: f64) -> () {\n  loop %i in 0..2 () {\n    yield");
    at(&e, 3, 10);
    assert!(matches!(
        e.kind,
        ParseErrorKind::Unterminated { ref what, open_line: 2, open_col: 22 } if what == "loop"
    ));
}
