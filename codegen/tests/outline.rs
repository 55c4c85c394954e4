//! Large loop bodies compile like straight-line code (outlined into synthetic
//! functions, then chunked): bounded frames, results bit-identical to the interpreter,
//! guards reported as the interpreter reports them, nested loops and loop-driver step
//! functions with large bodies.

use jitad_codegen::{compile_module, CallError, CompileOptions};
use jitad_ir::interp::EvalError;
use jitad_ir::{parse_module, Function, Inst, Module, Op, Region};
use std::fmt::Write as _;

/// Options: no verifier (slow on huge functions); a small threshold in debug builds so
/// the outlining paths run on programs of a size debug builds handle quickly.
fn opts() -> CompileOptions {
    CompileOptions {
        verify: false,
        chunk_size: if cfg!(debug_assertions) { 200 } else { 1000 },
        chunk_threshold: if cfg!(debug_assertions) { 300 } else { 2000 },
        ..CompileOptions::default()
    }
}

/// Body instructions for the large loop (about `2 n + n` of them): `n` products of the
/// carried value, all live until a reverse-order sum (the allocator's worst case).
fn body_size() -> usize {
    std::env::var("JITAD_OUTLINE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 700 } else { 7000 })
}

/// Writes the large body into `s` (value names prefixed by `p`), reading `%{t}` and the
/// index `%{i}`, defining `%{out}`. `guard_limit`: a guard `i < limit` after the products.
/// `inner`: a nested loop of that many body products, added to the sum.
#[allow(clippy::too_many_arguments)] // a test generator: names and shape, all plain values
fn write_body(
    s: &mut String,
    p: &str,
    t: &str,
    i: &str,
    out: &str,
    n: usize,
    guard_limit: Option<i64>,
    inner: Option<usize>,
) {
    for k in 0..n {
        let _ = writeln!(
            s,
            "    %{p}c{k} = const {}.25 : f64\n    %{p}v{k} = mul %{t}, %{p}c{k}",
            k % 97
        );
    }
    if let Some(lim) = guard_limit {
        let _ = writeln!(
            s,
            "    %{p}lim = const {lim} : i64\n    %{p}ok = lt %{i}, %{p}lim\n    guard %{p}ok"
        );
    }
    let mut acc = format!("%{p}v{}", n - 1);
    if let Some(m) = inner {
        let _ = writeln!(
            s,
            "    %{p}w = loop %{p}j in 0..3 (%{p}u = %{p}v0 : f64) {{"
        );
        let q = format!("{p}n");
        write_body(
            s,
            &q,
            &format!("{p}u"),
            &format!("{p}j"),
            &format!("{q}out"),
            m,
            None,
            None,
        );
        let _ = writeln!(s, "    yield %{q}out\n    }}");
        let _ = writeln!(s, "    %{p}a = add {acc}, %{p}w");
        acc = format!("%{p}a");
    }
    for k in (0..n - 1).rev() {
        let _ = writeln!(s, "    %{p}s{k} = add {acc}, %{p}v{k}");
        acc = format!("%{p}s{k}");
    }
    let _ = writeln!(s, "    %{out} = sin {acc}");
}

/// `@main(x)`: a guard, a 3-trip loop with the large body, another guard.
fn program(n: usize, guard_limit: Option<i64>, inner: Option<usize>) -> String {
    let mut s = String::from(
        "func @main(%x: f64) -> f64 {\n  %z = const 0.0 : f64\n  %pos = gt %x, %z\n  guard %pos\n",
    );
    s.push_str("  %r = loop %i in 0..3 (%t = %x : f64) {\n");
    write_body(&mut s, "", "t", "i", "next", n, guard_limit, inner);
    s.push_str("    yield %next\n  }\n");
    s.push_str("  %ten = const 10.0 : f64\n  %small = lt %r, %ten\n  guard %small\n  ret %r\n}\n");
    s
}

/// Guards of `f` in program order (preorder over regions).
fn guards(f: &Function) -> Vec<Inst> {
    let mut out = vec![];
    let mut stack: Vec<(Region, usize)> = vec![(f.body, 0)];
    while let Some((r, pos)) = stack.pop() {
        let Some(&inst) = f.regions[r].insts.get(pos) else {
            continue;
        };
        stack.push((r, pos + 1));
        if matches!(f.insts[inst].op, Op::Guard) {
            out.push(inst);
        }
        for &nr in f.insts[inst].regions.iter().rev() {
            stack.push((nr, 0));
        }
    }
    out
}

/// Compiles `entry`, runs it at `x`, and checks the result (or the failing guard)
/// against the interpreter. Returns the handle's stats line.
fn check(m: &Module, entry: &str, x: f64) -> jitad_codegen::Compiled {
    let f = compile_module(m, entry, &opts()).unwrap();
    let mut out = [0.0];
    let got = f.call_f64(&[x], &mut out);
    match jitad_ir::interp::eval_f64(m, entry, &[x]) {
        Ok(want) => {
            got.unwrap();
            assert_eq!(
                out[0].to_bits(),
                want[0].to_bits(),
                "{} vs {}",
                out[0],
                want[0]
            );
        }
        Err(EvalError::GuardFailed { func, inst }) => {
            let g = m.get(&func).unwrap();
            let ordinal = guards(g).iter().position(|&i| i == inst).unwrap();
            assert_eq!(
                got,
                Err(CallError::GuardFailed {
                    func,
                    guard: ordinal
                })
            );
        }
        Err(e) => panic!("interpreter failed: {e}"),
    }
    f
}

/// A loop body of thousands of instructions, all products live until the end, compiles
/// into chunks with small frames and matches the interpreter bit for bit.
#[test]
fn large_loop_body_is_chunked_and_matches() {
    let n = body_size();
    let m = parse_module(&program(n, None, None)).unwrap();
    let f = check(&m, "main", 0.5);
    let st = f.stats();
    eprintln!(
        "body of {} insts: {} chunks, largest frame {} bytes, compile {:?} (cranelift {:?})",
        3 * n,
        st.chunks,
        st.max_frame_bytes,
        st.total,
        st.cranelift
    );
    assert!(st.chunks >= 2, "the loop body was not split: {st:?}");
    assert!(
        st.max_frame_bytes < 16 * 1024,
        "frame {} bytes",
        st.max_frame_bytes
    );
}

/// Guards before, inside and after a large body: a failure inside the body reports the
/// guard the interpreter reports (the original function and its ordinal), and so does
/// the guard after the loop.
#[test]
fn guard_in_large_body_reports_the_original_guard() {
    let n = body_size() / 2;
    // Fails at iteration 2 inside the body.
    let m = parse_module(&program(n, Some(2), None)).unwrap();
    check(&m, "main", 0.5);
    // Passes inside; the guard before the loop fails.
    let m = parse_module(&program(n, Some(100), None)).unwrap();
    check(&m, "main", -0.5);
    check(&m, "main", 0.5);
    // A guard inside a nested large body, inside a large body.
    let mut s = String::from(
        "func @main(%x: f64) -> f64 {\n  %z = const 0.0 : f64\n  %pos = gt %x, %z\n  guard %pos\n",
    );
    s.push_str("  %r = loop %i in 0..3 (%t = %x : f64) {\n");
    write_body(&mut s, "", "t", "i", "mid", n, Some(100), None);
    s.push_str("    %w = loop %j in 0..3 (%u = %mid : f64) {\n");
    write_body(&mut s, "q", "u", "j", "qo", n, Some(2), None);
    s.push_str("    yield %qo\n    }\n    yield %w\n  }\n");
    s.push_str("  %ten = const 10.0 : f64\n  %small = lt %r, %ten\n  guard %small\n  ret %r\n}\n");
    let m = parse_module(&s).unwrap();
    check(&m, "main", 0.5);
    // The guard after the loop fails: its ordinal counts the outlined body's guard.
    let post = program(n, Some(100), None).replace("const 10.0 : f64", "const -2.0 : f64");
    let m = parse_module(&post).unwrap();
    check(&m, "main", 0.5);
}

/// Synthetic frames do not count against the IR's call-depth limit: a chain as deep as
/// the interpreter accepts, ending in a large loop body, compiles and runs; one frame
/// deeper is rejected by both.
#[test]
fn outlined_frames_do_not_count_against_the_call_depth_limit() {
    let n = body_size() / 2;
    let chain = |depth: usize| {
        let mut s = String::new();
        for d in 0..depth - 1 {
            let _ = writeln!(
                s,
                "func @f{d}(%x: f64) -> f64 {{\n  %r = call @f{}(%x)\n  ret %r\n}}\n",
                d + 1
            );
        }
        let last = program(n, None, None).replace("@main", &format!("@f{}", depth - 1));
        s.push_str(&last);
        parse_module(&s).unwrap()
    };
    let limit = jitad_ir::callgraph::MAX_CALL_DEPTH;
    let mut accepted = 0;
    for depth in [limit - 1, limit, limit + 1] {
        let m = chain(depth);
        let interp = jitad_ir::interp::eval_f64(&m, "f0", &[0.5]);
        let jit = compile_module(&m, "f0", &opts());
        assert_eq!(
            interp.is_ok(),
            jit.is_ok(),
            "depth {depth}: {interp:?} vs {:?}",
            jit.err()
        );
        if let (Ok(want), Ok(f)) = (interp, jit) {
            accepted += 1;
            // Run on a thread with room for the recorded stack need.
            let need = f.stack_bytes();
            let got = std::thread::Builder::new()
                .stack_size(usize::try_from(need).unwrap() + (1 << 20))
                .spawn(move || {
                    let mut out = [0.0];
                    f.call_f64(&[0.5], &mut out).map(|()| out[0])
                })
                .unwrap()
                .join()
                .unwrap()
                .unwrap();
            assert_eq!(got.to_bits(), want[0].to_bits());
        }
    }
    assert_eq!(
        accepted, 2,
        "the interpreter should accept depths up to {limit}"
    );
}

/// A large body holding a nested loop, small or itself large.
#[test]
fn nested_loops_in_large_bodies() {
    let n = body_size() / 2;
    for inner in [10, n] {
        let m = parse_module(&program(n, None, Some(inner))).unwrap();
        check(&m, "main", 0.5);
        check(&m, "main", 1.75);
    }
}

/// A `tapeloop`/`revloop` pair (the shape reverse mode emits) whose forward step holds
/// a loop with a large body, and whose backward step calls it too.
#[test]
fn loop_driver_steps_with_large_loop_bodies() {
    let n = body_size() / 2;
    let mut s = String::from(
        "func @g(%x: f64) -> (f64, f64) {\n\
         \x20 %r, %tape0 = tapeloop 0..4 checkpoint auto:268435456 fwd @step (%x) caps ()\n\
         \x20 %one = const 1.0 : f64\n\
         \x20 %x_bar = revloop 0..4 checkpoint auto:268435456 fwd @step bwd @step.bwd tape %tape0 (%x) caps () seed (%one)\n\
         \x20 ret %r, %x_bar\n}\n\n\
         func @step(%k: i64, %a: f64) -> f64 {\n\
         \x20 %s = loop %i in 0..2 (%t = %a : f64) {\n",
    );
    write_body(&mut s, "", "t", "i", "next", n, None, None);
    s.push_str("    yield %next\n  }\n  ret %s\n}\n\n");
    // The backward step: a_bar = s_bar * cos(a) + (a large loop's result) * 0, so the
    // gradient depends on the loop having run.
    s.push_str(
        "func @step.bwd(%k: i64, %a: f64, %a_bar: f64) -> f64 {\n\
         \x20 %s = call @step(%k, %a)\n\
         \x20 %c = cos %a\n\
         \x20 %p = mul %a_bar, %c\n\
         \x20 %q = mul %s, %c\n\
         \x20 %r = add %p, %q\n\
         \x20 ret %r\n}\n",
    );
    let m = parse_module(&s).unwrap();
    let f = compile_module(&m, "g", &opts()).unwrap();
    assert!(f.stats().chunks >= 2, "{:?}", f.stats());
    for x in [0.5, 1.25] {
        let mut out = [0.0; 2];
        f.call_f64(&[x], &mut out).unwrap();
        let want = jitad_ir::interp::eval_f64(&m, "g", &[x]).unwrap();
        assert_eq!(out[0].to_bits(), want[0].to_bits());
        assert_eq!(out[1].to_bits(), want[1].to_bits());
    }
}
