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

#[test]
fn run_gradient_with_either_engine() {
    for engine in ["jit", "interp"] {
        let (ok, out, err) = jitad(&[
            "run",
            "tests/ir/quickstart.jir",
            "--args",
            "3,2",
            "--grad",
            "--json",
            "--engine",
            engine,
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["results"], serde_json::json!([5.0]), "{engine}");
        assert_eq!(v["gradient"], serde_json::json!([6.0, -4.0]), "{engine}");
    }
    // --wrt picks parameters: ∂f/∂y only.
    let (ok, out, _) = jitad(&[
        "run",
        "tests/ir/quickstart.jir",
        "--args",
        "3,2",
        "--grad",
        "--wrt",
        "1",
    ]);
    assert!(ok);
    assert_eq!(out, "5.0\ngradient: -4.0\n");
    // The engines agree on DESIGN.md's @g (a call and a 1000-trip loop).
    let args = [
        "run",
        "tests/ir/design_g.jir",
        "--func",
        "g",
        "--args",
        "0.3,3",
    ];
    let jit = jitad(&args);
    let interp = jitad(&[&args[..], &["--engine", "interp"]].concat());
    assert!(jit.0 && interp.0);
    assert_eq!(jit.1, interp.1);
}

#[test]
fn dump_derivatives_are_parseable_and_match_the_goldens() {
    let (ok, out, err) = jitad(&["dump", "tests/ir/quickstart.jir", "--emit", "grad"]);
    assert!(ok, "{err}");
    let golden = std::fs::read_to_string("tests/ir/ad/quickstart.grad.expected.jir").unwrap();
    assert_eq!(out, golden);
    for emit in ["opt", "jvp", "vjp", "grad", "hvp"] {
        for file in ["tests/ir/quickstart.jir", "tests/ir/ad/call.jir"] {
            let (ok, out, err) = jitad(&["dump", file, "--emit", emit]);
            assert!(ok, "{file} --emit {emit}: {err}");
            let m = jitad_ir::parse_module(&out).unwrap_or_else(|e| panic!("{emit}: {e}\n{out}"));
            jitad_ir::verify_module(&m).unwrap_or_else(|e| panic!("{emit}: {e}\n{out}"));
        }
    }
    // --wrt restricts the tangent inputs: one dx, no dy.
    let (ok, out, _) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "jvp",
        "--wrt",
        "0",
    ]);
    assert!(ok);
    assert!(
        out.starts_with("func @f.jvp.wrt0(%x: f64, %y: f64, %dx: f64)"),
        "{out}"
    );
}

#[test]
fn dump_machine_stages_and_graphs() {
    let (ok, clif, err) = jitad(&["dump", "tests/ir/quickstart.jir", "--emit", "clif"]);
    assert!(ok, "{err}");
    assert!(clif.contains("fadd") && clif.contains("fmul"), "{clif}");
    let (ok, asm, err) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "asm",
        "--of",
        "grad",
    ]);
    assert!(ok, "{err}");
    assert!(asm.contains("ret"), "{asm}");
    let (ok, dot, _) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "dot",
        "--of",
        "grad",
    ]);
    assert!(ok);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("#c0392b"), "adjoint nodes are red: {dot}");
    let (ok, dot, _) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "dot",
        "--of",
        "jvp",
    ]);
    assert!(ok);
    assert!(dot.contains("#1f5fbf"), "tangent nodes are blue: {dot}");
    // --of is for machine stages and pictures only.
    let (ok, _, err) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "ir",
        "--of",
        "grad",
    ]);
    assert!(!ok);
    assert!(err.contains("--of"), "{err}");
}

#[test]
fn derivative_and_guard_errors_are_clear() {
    // Reverse over reverse through a reversed loop is not supported: a clear error.
    let (ok, _, err) = jitad(&["dump", "tests/ir/revloop.jir", "--emit", "vjp"]);
    assert!(!ok);
    assert!(err.contains("not supported yet"), "{err}");
    // Forward over reverse through it is (hvp of a function with a loop).
    let (ok, out, err) = jitad(&["dump", "tests/ir/loops/geometric.jir", "--emit", "hvp"]);
    assert!(ok, "{err}");
    assert!(out.contains("tapeloop") && out.contains(".tan"), "{out}");
    // A bad --wrt index.
    let (ok, _, err) = jitad(&[
        "dump",
        "tests/ir/quickstart.jir",
        "--emit",
        "grad",
        "--wrt",
        "5",
    ]);
    assert!(!ok);
    assert!(err.contains("out of range"), "{err}");
    // A failed guard asks for a re-trace, from both engines.
    let dir = std::env::temp_dir().join(format!("jitad-cli-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("guard.jir");
    std::fs::write(
        &file,
        "func @f(%x: f64) -> f64 {\n  %z = const 0.0 : f64\n  %c = gt %x, %z\n  guard %c\n  %y = sqrt %x\n  ret %y\n}\n",
    )
    .unwrap();
    for engine in ["jit", "interp"] {
        let f = file.to_str().unwrap();
        let (ok, out, _) = jitad(&["run", f, "--args", "4", "--engine", engine]);
        assert!(ok);
        assert_eq!(out, "2.0\n");
        let (ok, _, err) = jitad(&["run", f, "--args", "-1", "--engine", engine]);
        assert!(!ok, "{engine}");
        assert!(err.contains("re-trace"), "{engine}: {err}");
    }
}

#[test]
fn bench_json_rows() {
    let (ok, out, err) = jitad(&["bench", "--quick", "--json", "quickstart"]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let legs: Vec<&str> = rows.iter().map(|r| r["leg"].as_str().unwrap()).collect();
    assert_eq!(
        legs,
        [
            "hand",
            "jit",
            "interp",
            "tape-replay",
            "tape-record",
            "forward-jit"
        ]
    );
    for r in &rows {
        assert_eq!(r["problem"], "quickstart");
        assert_eq!(r["n"], 2);
        assert!(r["median_ns"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn demo_checks_itself() {
    let (ok, out, err) = jitad(&["demo"]);
    assert!(ok, "{err}");
    for needle in [
        "func @f(",
        "func @f.jvp(",
        "func @f.grad(",
        "gradient             = (6, -4)",
        "faster",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

/// Writes `text` to a fresh file in the temporary directory.
fn temp_jir(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jitad-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.jir"));
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn check_passes_on_the_golden_programs() {
    for file in [
        "tests/ir/quickstart.jir",
        "tests/ir/ad/call.jir",
        "tests/ir/ad/double_where.jir",
        "tests/ir/ad/quickstart.jir",
        "tests/ir/loops/geometric.jir",
        "tests/ir/loops/lorenz.jir",
    ] {
        let (ok, out, err) = jitad(&["check", file]);
        assert!(ok, "{file}: {out}{err}");
        assert!(
            !out.contains("FAIL") && !out.contains("DIFFERENT"),
            "{file}: {out}"
        );
        // Every function of these files is checked at the 3 default points.
        let rows = out.lines().filter(|l| l.ends_with("| ok |")).count();
        let funcs = std::fs::read_to_string(file)
            .unwrap()
            .matches("func @")
            .count();
        assert_eq!(rows, 3 * funcs, "{file}: {out}");
    }
    // Given points, more random ones, and --func.
    let (ok, out, err) = jitad(&[
        "check",
        "tests/ir/loops/lorenz.jir",
        "--func",
        "loss",
        "--args",
        "10,28,2.5,1,1,1,20",
        "--points",
        "2",
        "--seed",
        "9",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("| @loss |").count(), 3, "{out}");
    assert!(!out.contains("@rk4"), "{out}");
    // The random points take the trip count from --args.
    assert_eq!(out.matches(", 20) |").count(), 3, "{out}");
}

#[test]
fn check_fails_with_a_non_zero_status_on_disagreement() {
    // floor is flat (derivative 0) but jumps at 1: central differences there see the
    // jump, so reverse mode and finite differences disagree.
    let file = temp_jir(
        "floor",
        "func @f(%x: f64) -> f64 {\n  %y = floor %x\n  ret %y\n}\n",
    );
    let f = file.to_str().unwrap();
    let (ok, out, err) = jitad(&["check", f, "--args", "1"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("| FAIL |") && out.contains("@f at --args=1.0"),
        "{out}"
    );
    assert!(err.contains("disagree"), "{err}");
    // Away from the jump it is fine.
    let (ok, out, err) = jitad(&["check", f, "--args", "1.5"]);
    assert!(ok, "{out}{err}");
    // JSON says the same.
    let (ok, out, _) = jitad(&["check", f, "--args", "1", "--json"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["functions"][0]["passed"], false, "{v}");
    assert_eq!(v["functions"][0]["points"][0]["reverse"][0], 0.0, "{v}");
}

#[test]
fn check_reports_skips_guards_and_bad_arguments() {
    let file = temp_jir(
        "mixed",
        "func @count(%x: f64) -> i64 {\n  %n = const 1 : i64\n  ret %n\n}\n\
         func @ints(%n: i64) -> f64 {\n  %x = cast %n : f64\n  ret %x\n}\n\
         func @pos(%x: f64) -> f64 {\n  %z = const 0.5 : f64\n  %c = gt %x, %z\n  guard %c\n  %y = log %x\n  ret %y\n}\n",
    );
    let f = file.to_str().unwrap();
    let (ok, out, err) = jitad(&["check", f, "--points", "8"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("| @count | — | — | — | — | — | skipped: result 0 is i64"),
        "{out}"
    );
    assert!(out.contains("skipped: no float parameters"), "{out}");
    // Random points in [0.1, 0.9] fall on both sides of @pos's guard.
    assert!(out.contains("not checked: guard"), "{out}");
    assert!(out.contains("| ok |"), "{out}");
    // --args that fit no function, or not the named one: an error.
    let (ok, _, err) = jitad(&["check", f, "--args", "1,2,3"]);
    assert!(!ok);
    assert!(err.contains("--args fit no function"), "{err}");
    let (ok, _, err) = jitad(&["check", f, "--func", "pos", "--args", "x"]);
    assert!(!ok);
    assert!(err.contains("bad --args for @pos"), "{err}");
    let (ok, _, err) = jitad(&["check", f, "--func", "nope"]);
    assert!(!ok);
    assert!(err.contains("no function @nope"), "{err}");
}

#[test]
fn json_keeps_infinities_and_nan() {
    let file = temp_jir(
        "sqrt",
        "func @s(%x: f64) -> f64 {\n  %y = sqrt %x\n  ret %y\n}\n",
    );
    let f = file.to_str().unwrap();
    for engine in ["jit", "interp"] {
        let run = |x: &str| {
            let (ok, out, err) = jitad(&[
                "run",
                f,
                &format!("--args={x}"),
                "--grad",
                "--json",
                "--engine",
                engine,
            ]);
            assert!(ok, "{err}");
            out.trim().to_string()
        };
        // sqrt′(0) = +∞, sqrt′(−0) = −∞; sqrt(−1) is NaN.
        assert_eq!(run("0"), r#"{"gradient":["inf"],"results":[0.0]}"#);
        assert_eq!(run("-0.0"), r#"{"gradient":["-inf"],"results":[-0.0]}"#);
        assert_eq!(run("-1"), r#"{"gradient":["nan"],"results":["nan"]}"#);
        // And what is written reads back exactly with the library's reader.
        let v: serde_json::Value = serde_json::from_str(&run("-0.0")).unwrap();
        let g = jitad::json::json_to_f64(&v["gradient"][0]).unwrap();
        let y = jitad::json::json_to_f64(&v["results"][0]).unwrap();
        assert_eq!(g, f64::NEG_INFINITY);
        assert_eq!(y.to_bits(), (-0.0f64).to_bits());
    }
}

#[test]
fn tensor_programs_run_on_both_engines_with_json_inputs() {
    let dir = std::env::temp_dir().join(format!("jitad-cli-tensors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inputs = dir.join("inputs.json");
    std::fs::write(
        &inputs,
        "[[[1,2,3],[4,5,6]], [0,1,2,3,4,5,6,7,8,9,10,11], [10,20,30], 2.0, 1]",
    )
    .unwrap();
    let inputs = inputs.to_string_lossy().into_owned();
    std::fs::write(
        dir.join("rows.json"),
        "[[[1,2,3],[4,5,6],[7,8,9],[10,11,12]]]",
    )
    .unwrap();
    let file = "tests/ir/tensors.jir";
    let (ok, out, err) = jitad(&[
        "run", file, "--inputs", &inputs, "--engine", "interp", "--json",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(r#"{"results":[1420.0,{"data":[32.0,38.0,"#),
        "{out}"
    );
    // The JIT runs them too, printing the same digits.
    let (ok, jit_out, err) = jitad(&["run", file, "--inputs", &inputs, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(jit_out, out);
    // A loop carrying a tensor: compiled, the same digits as the interpreter's.
    let rows = dir.join("rows.json").to_string_lossy().into_owned();
    let run_rows = |engine: &str| {
        let (ok, out, err) = jitad(&[
            "run", file, "--func", "rows", "--inputs", &rows, "--engine", engine, "--json",
        ]);
        assert!(ok, "{engine}: {err}");
        out
    };
    let jit_rows = run_rows("jit");
    assert!(jit_rows.contains("[2.0,4.0,6.0,8.0,"), "{jit_rows}");
    assert_eq!(jit_rows, run_rows("interp"));
    // Tensor parameters cannot come from --args.
    let (ok, _, err) = jitad(&["run", file, "--args", "1,2,3,4,5", "--engine", "interp"]);
    assert!(!ok);
    assert!(err.contains("--inputs"), "{err}");
    // A wrong element count is an error naming the input.
    std::fs::write(dir.join("bad.json"), "[[1,2], [0], [1,2,3], 1.0, 0]").unwrap();
    let bad = dir.join("bad.json").to_string_lossy().into_owned();
    let (ok, _, err) = jitad(&["run", file, "--inputs", &bad, "--engine", "interp"]);
    assert!(!ok);
    assert!(
        err.contains("input 0 (f64[2,3])") && err.contains("expected 6 elements"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    // `jitad dump big.jir | head -1`: the reader goes away after one line; the writer
    // must stop with status 0 and no panic message, as `cat` would.
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // Far more than a pipe's buffer (64 KiB), so the writer meets the closed pipe.
    let text: String = (0..5000)
        .map(|i| format!("func @f{i}(%x: f64) -> f64 {{\n  %y = sin %x\n  ret %y\n}}\n"))
        .collect();
    let file = temp_jir("many_for_head", &text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitad"))
        .args(["dump", file.to_str().unwrap(), "--emit", "ir"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jitad");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("func @"), "{first}");
    // The reader is dropped here, closing the pipe.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.success() || out.status.code().is_none(),
        "{:?} {err}",
        out.status
    );
}
