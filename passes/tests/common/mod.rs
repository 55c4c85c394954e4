//! Helpers shared by the integration tests.
#![allow(dead_code)]

use jitad_codegen::{compile_module, CompileError, CompileOptions, Compiled};
use jitad_ir::{interp, verify_module, Module, Val};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Compiled functions by (module text, function); `None` for a tensor program the JIT
/// does not lower.
type JitCache = HashMap<(String, String), Option<Rc<Compiled>>>;

thread_local! {
    /// The cache of [`try_compiled`], so repeated evaluations (finite differences)
    /// compile once.
    static JIT: RefCell<JitCache> = RefCell::new(HashMap::new());
}

/// The JIT-compiled `func` of `m` (cached).
pub fn compiled(m: &Module, func: &str) -> Rc<Compiled> {
    try_compiled(m, func)
        .unwrap_or_else(|| panic!("compile @{func}: the JIT refuses this tensor program"))
}

/// True when some value of `m` has a tensor type.
pub fn has_tensors(m: &Module) -> bool {
    m.funcs
        .iter()
        .any(|f| f.values.iter().any(|(_, d)| d.ty.scalar().is_none()))
}

/// The JIT-compiled `func` of `m` (cached), or `None` exactly when `m` holds tensors
/// and the JIT refuses them as not yet supported (`CompileError::Unsupported`:
/// tensors through `tapeloop`/`revloop`); any other compile error panics.
pub fn try_compiled(m: &Module, func: &str) -> Option<Rc<Compiled>> {
    let key = (jitad_ir::print_module(m), func.to_string());
    if let Some(c) = JIT.with(|j| j.borrow().get(&key).cloned()) {
        return c;
    }
    let opts = CompileOptions {
        verify: true,
        ..CompileOptions::default()
    };
    let c = match compile_module(m, func, &opts) {
        Ok(c) => Some(Rc::new(c)),
        Err(CompileError::Unsupported { .. }) if has_tensors(m) => None,
        Err(e) => panic!("compile @{func}: {e}"),
    };
    JIT.with(|j| j.borrow_mut().insert(key, c.clone()));
    c
}

/// Evaluates `func` on f64 arguments with the interpreter and with the JIT, asserts
/// that both engines agree bit for bit (any NaN equals any NaN), and returns the f64
/// results (panics on failure: tests). So every derivative test runs compiled too —
/// except tensor programs the JIT refuses ([`try_compiled`]): those run in the
/// interpreter alone.
pub fn eval(m: &Module, func: &str, args: &[f64]) -> Vec<f64> {
    let vals: Vec<Val> = args.iter().map(|&x| Val::F64(x)).collect();
    let interp: Vec<f64> = interp::eval(m, func, &vals)
        .unwrap_or_else(|e| panic!("eval @{func}{args:?}: {e}"))
        .into_iter()
        .map(|v| v.as_f64().expect("float result"))
        .collect();
    let Some(c) = try_compiled(m, func) else {
        return interp;
    };
    let mut out: Vec<Val> = c.results().iter().map(|_| Val::F64(0.0)).collect();
    c.call(&vals, &mut out)
        .unwrap_or_else(|e| panic!("JIT @{func}{args:?}: {e}"));
    for (k, (a, b)) in interp.iter().zip(&out).enumerate() {
        let b = b.as_f64().expect("float result");
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "@{func}{args:?} result {k}: interpreter {a:e}, JIT {b:e}\n{}",
            jitad_ir::print_module(m)
        );
    }
    interp
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
