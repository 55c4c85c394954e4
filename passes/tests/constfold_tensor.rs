//! Constant folding over uniform tensors keeps the interpreter's bits for the ops whose
//! tensor kernels (`jitad_ir::vmath`) differ from the scalar ops (libm): the fold of
//! `tanh (fill c)` is `fill vmath::tanh1(c)`, not `fill libm::tanh(c)`.

use jitad_ir::interp::{eval, Val};
use jitad_ir::math::f64m;
use jitad_ir::vmath;
use jitad_ir::{parse_module, print_module, verify_module, Op};
use jitad_passes::constfold::constfold;

/// The first input in a sweep of [lo, hi] where the tensor kernel and libm disagree.
fn disagreement(lo: f64, hi: f64, vm: fn(f64) -> f64, lm: fn(f64) -> f64) -> f64 {
    let n = 100_000;
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / n as f64)
        .find(|&x| vm(x).to_bits() != lm(x).to_bits())
        .expect("the kernels differ from libm somewhere in the sweep")
}

/// Folds `op` of a uniform tensor (`fill`, or `broadcast` of a `const`) and checks the
/// folded program gives the interpreter's bits, which are the kernel's.
fn check(op: &str, c: f64, kernel: fn(f64) -> f64, source: &str) {
    let text = match source {
        "fill" => format!(
            "func @f() -> f64[2,3] {{\n  %u = fill {c:?} : f64[2,3]\n  %r = {op} %u\n  ret %r\n}}\n"
        ),
        _ => format!(
            "func @f() -> f64[2,3] {{\n  %c = const {c:?} : f64\n  %u = broadcast %c : f64[2,3]\n  %r = {op} %u\n  ret %r\n}}\n"
        ),
    };
    let mut m = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify_module(&m).expect("verifies");
    let before = eval(&m, "f", &[]).expect("evaluates");
    let f = m.funcs.first_mut().expect("one function");
    assert!(constfold(f), "nothing folded:\n{text}");
    // The op became a fill of one value.
    assert!(
        f.insts.values().any(|d| matches!(d.op, Op::Fill(_, _)))
            && !f.insts.values().any(|d| d.op.name() == op),
        "{}",
        print_module(&m)
    );
    verify_module(&m).expect("verifies after folding");
    let after = eval(&m, "f", &[]).expect("evaluates");
    assert_eq!(
        before,
        after,
        "{op} {c:?} ({source}):\n{}",
        print_module(&m)
    );
    let want = kernel(c).to_bits();
    let Val::Tensor(t) = &after[0] else {
        panic!("not a tensor")
    };
    for v in t.as_f64().expect("f64") {
        assert_eq!(v.to_bits(), want, "{op} {c:?}");
    }
}

#[test]
fn folding_uniform_tensors_uses_the_tensor_kernels() {
    let tc = disagreement(0.1, 3.0, vmath::tanh1, |x| f64m::tanh(x));
    let sc = disagreement(-8.0, 8.0, vmath::sigmoid1, |x| f64m::sigmoid(x));
    for source in ["fill", "broadcast"] {
        check("tanh", tc, vmath::tanh1, source);
        check("sigmoid", sc, vmath::sigmoid1, source);
        check("exp", 0.75, vmath::exp1, source);
        check("log", 0.75, vmath::log1, source);
    }
}
