//! Helpers shared by the integration tests.
#![allow(dead_code)]

use jitad_ir::{interp, verify_module, Module, Val};

/// Evaluates `func` on f64 arguments, returning f64 results (panics on failure: tests).
pub fn eval(m: &Module, func: &str, args: &[f64]) -> Vec<f64> {
    let vals: Vec<Val> = args.iter().map(|&x| Val::F64(x)).collect();
    interp::eval(m, func, &vals)
        .unwrap_or_else(|e| panic!("eval @{func}{args:?}: {e}"))
        .into_iter()
        .map(|v| v.as_f64().expect("float result"))
        .collect()
}

/// Verifies `m`, printing it on failure.
pub fn verified(m: &Module) {
    if let Err(e) = verify_module(m) {
        panic!("{e}\n{}", jitad_ir::print_module(m));
    }
}

/// Central finite difference of result `out` of `func` along direction `u`.
pub fn fd_dir(m: &Module, func: &str, x: &[f64], u: &[f64], out: usize, h: f64) -> f64 {
    let xp: Vec<f64> = x.iter().zip(u).map(|(a, b)| a + h * b).collect();
    let xm: Vec<f64> = x.iter().zip(u).map(|(a, b)| a - h * b).collect();
    (eval(m, func, &xp)[out] - eval(m, func, &xm)[out]) / (2.0 * h)
}

/// |a − b| ≤ tol·max(1, |a|, |b|).
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * 1f64.max(a.abs()).max(b.abs()) || (a.is_nan() && b.is_nan())
}
