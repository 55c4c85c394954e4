//! Modules with many functions (issue 11): a fan-out of N small callees and a chain of
//! N functions each calling the next, generated here. Every derivative is checked in
//! both engines (bit for bit) and against the hand-derived value; a chain past the
//! call-depth limit is rejected by both engines, before running, with the same error.

mod common;

use jitad_codegen::{compile_module, CompileError, CompileOptions};
use jitad_ir::callgraph::{LimitError, MAX_CALL_DEPTH};
use jitad_ir::{interp, parse_module, verify_module, EvalError, Module, Val};

/// `@main(x) = Σ_i g_i(x)` with `g_i(u) = sin(c_i·u)`, `c_i = 1 + i/1000`.
fn fan_out(n: usize) -> String {
    let mut s = String::from("func @main(%x: f64) -> f64 {\n");
    for i in 0..n {
        s += &format!("  %y{i} = call @g{i}(%x)\n");
    }
    let mut acc = "%y0".to_string();
    for i in 1..n {
        s += &format!("  %s{i} = add {acc}, %y{i}\n");
        acc = format!("%s{i}");
    }
    s += &format!("  ret {acc}\n}}\n");
    for i in 0..n {
        let c = 1.0 + i as f64 * 1e-3;
        s += &format!(
            "func @g{i}(%u: f64) -> f64 {{\n  %c = const {c:?} : f64\n  %p = mul %u, %c\n  %q = sin %p\n  ret %q\n}}\n"
        );
    }
    s
}

/// `@c0(u) = sin(c1(u))`, ..., `@c{n-1}(u) = sin(u)`: `n` nested sines.
fn chain(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i + 1 < n {
            s += &format!(
                "func @c{i}(%u: f64) -> f64 {{\n  %v = call @c{}(%u)\n  %w = sin %v\n  ret %w\n}}\n",
                i + 1
            );
        } else {
            s += &format!("func @c{i}(%u: f64) -> f64 {{\n  %w = sin %u\n  ret %w\n}}\n");
        }
    }
    s
}

fn parsed(text: &str) -> Module {
    let m = parse_module(text).unwrap();
    verify_module(&m).unwrap();
    m
}

/// The gradient of `func`, cleaned up and verified.
fn grad_of(m: &Module, func: &str) -> (Module, String) {
    grad_with(m, func, true)
}

/// The gradient of `func`, cleaned up with or without inlining, verified.
fn grad_with(m: &Module, func: &str, inline: bool) -> (Module, String) {
    let mut m = m.clone();
    let g = jitad_passes::grad(&mut m, func, &[0]).unwrap();
    let opts = jitad_passes::OptOptions {
        inline,
        ..jitad_passes::OptOptions::default()
    };
    jitad_passes::optimize_module(&mut m, &opts);
    common::verified(&m);
    (m, g)
}

#[test]
fn fan_out_gradient_agrees_and_matches_the_hand_derivative() {
    let n = 300;
    let m = parsed(&fan_out(n));
    let x = 0.7;
    // d/dx Σ sin(c_i x) = Σ c_i cos(c_i x).
    let c = |i: usize| 1.0 + i as f64 * 1e-3;
    let value: f64 = (0..n).map(|i| (c(i) * x).sin()).sum();
    let slope: f64 = (0..n).map(|i| c(i) * (c(i) * x).cos()).sum();
    let (gm, g) = grad_of(&m, "main");
    let out = common::eval(&gm, &g, &[x]);
    assert!(common::close(out[0], value, 1e-12), "{} vs {value}", out[0]);
    assert!(common::close(out[1], slope, 1e-12), "{} vs {slope}", out[1]);
    assert_eq!(
        common::eval(&m, "main", &[x])[0].to_bits(),
        out[0].to_bits()
    );
}

#[test]
fn chain_within_the_limit_runs_in_both_engines() {
    let n = 900;
    let m = parsed(&chain(n));
    let x = 0.5f64;
    let mut value = x;
    let mut slope = 1.0f64;
    for _ in 0..n {
        slope *= value.cos();
        value = value.sin();
    }
    let primal = common::eval(&m, "c0", &[x])[0];
    assert!(common::close(primal, value, 1e-12), "{primal} vs {value}");
    let (gm, g) = grad_of(&m, "c0");
    let out = common::eval(&gm, &g, &[x]);
    assert_eq!(out[0].to_bits(), primal.to_bits());
    assert!(common::close(out[1], slope, 1e-9), "{} vs {slope}", out[1]);
}

/// Both engines reject `func` of `m` with the same limit error, before running.
fn both_reject(m: &Module, func: &str) -> LimitError {
    let from_interp = match interp::eval(m, func, &[Val::F64(0.5)]) {
        Err(EvalError::Limit(e)) => e,
        other => panic!("interpreter: {other:?}"),
    };
    let from_jit = match compile_module(m, func, &CompileOptions::default()) {
        Err(CompileError::Limit(e)) => e,
        Err(e) => panic!("JIT: {e}"),
        Ok(_) => panic!("JIT accepted @{func}"),
    };
    assert_eq!(from_interp, from_jit);
    assert_eq!(from_interp.to_string(), from_jit.to_string());
    from_interp
}

#[test]
fn chain_at_and_past_the_limit() {
    // Exactly MAX_CALL_DEPTH frames: runs.
    let m = parsed(&chain(MAX_CALL_DEPTH));
    let out = common::eval(&m, "c0", &[0.5]);
    assert!(out[0].is_finite());
    // One more: both engines refuse, naming the chain.
    let m = parsed(&chain(MAX_CALL_DEPTH + 1));
    let e = both_reject(&m, "c0");
    assert!(
        matches!(&e, LimitError::CallDepth { depth, limit, chain }
            if *depth == MAX_CALL_DEPTH + 1 && *limit == MAX_CALL_DEPTH
                && chain.starts_with("@c0 -> @c1") && chain.ends_with("@c1000")),
        "{e}"
    );
    // From @c1 the same functions fit.
    assert!(interp::eval(&m, "c1", &[Val::F64(0.5)]).is_ok());
}

#[test]
fn long_chain_verifies_and_is_rejected_alike() {
    let n = 20_000;
    let m = parsed(&chain(n));
    let e = both_reject(&m, "c0");
    assert!(
        matches!(e, LimitError::CallDepth { depth, .. } if depth == n),
        "{e}"
    );
    // Its gradient is refused with the same error, at once, before anything is built
    // (after inlining the chain would fit, but each level's vjp recomputes the levels
    // below: quadratic time). Every AD transform says so.
    let mut gm = m.clone();
    for r in [
        jitad_passes::grad(&mut gm, "c0", &[0]),
        jitad_passes::vjp(&mut gm, "c0", &[0]),
        jitad_passes::jvp(&mut gm, "c0", &[0]),
    ] {
        match r {
            Err(jitad_passes::AdError::Limit(l)) => assert_eq!(l, e),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(gm.funcs.len(), n, "nothing was added");
}
