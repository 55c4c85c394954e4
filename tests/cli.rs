//! The `jitad` binary end to end: good files give the right numbers, bad files a clear
//! error on stderr and a non-zero exit status.

use std::process::Command;

fn jitad(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jitad"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run jitad");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_evaluates_and_prints_json() {
    // f(3, 2) = (3 + 2)(3 - 2) = 5.
    let (ok, out, _) = jitad(&["run", "tests/ir/quickstart.jir", "--args", "3,2", "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), r#"{"results":[5.0]}"#);
    // DESIGN.md's @g calls @h and loops 1000 times; at x = 0 every value is 0.
    let (ok, out, _) = jitad(&[
        "run",
        "tests/ir/design_g.jir",
        "--func",
        "g",
        "--args",
        "0,3",
    ]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn dump_prints_the_expected_text() {
    let (ok, out, _) = jitad(&["dump", "tests/ir/quickstart.jir", "--emit", "ir"]);
    assert!(ok);
    let expected = std::fs::read_to_string("tests/ir/quickstart.expected.jir").unwrap();
    assert_eq!(out, expected);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("jitad-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jir");
    std::fs::write(&bad, "func @f(%x: f64) -> f64 {\n  %y = bogus %x\n}\n").unwrap();
    let (ok, _, err) = jitad(&["dump", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("2:8"), "{err}");
    let (ok, _, err) = jitad(&["run", "tests/ir/quickstart.jir", "--args", "3"]);
    assert!(!ok);
    assert!(err.contains("expected 2 argument"), "{err}");
    let (ok, _, _) = jitad(&["run", "no/such/file.jir"]);
    assert!(!ok);
}
