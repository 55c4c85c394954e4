//! The reference interpreter against values computed independently with `std`, closed
//! forms, and hand-derived results.

use cranelift_entity::EntityRef;
use jitad_ir::callgraph::LimitError;
use jitad_ir::interp::{eval_function, eval_function_f64, EvalError, Interpreter, Val};
use jitad_ir::{
    eval, eval_f64, Bound, Constant, Function, FunctionBuilder, LoopBounds, Module, Op, ScalarType,
    Signature, Type, Value,
};

/// A function of one or more params of type `tys` applying `op` once.
fn op_fn(op: Op, tys: &[Type]) -> Function {
    let mut b = FunctionBuilder::new("op");
    let ps: Vec<Value> = tys.iter().map(|&t| b.param(t)).collect();
    let r = b.ins1(op, &ps).unwrap();
    b.ret(&[r]).unwrap();
    b.finish().unwrap()
}

fn run1(op: Op, args: &[Val]) -> Val {
    let tys: Vec<Type> = args.iter().map(|a| Type::Scalar(a.ty())).collect();
    let f = op_fn(op, &tys);
    eval_function(&f, None, args).unwrap()[0].clone()
}

fn f64_of(v: Val) -> f64 {
    match v {
        Val::F64(x) => x,
        other => panic!("expected f64, got {other:?}"),
    }
}

fn module(fs: Vec<Function>) -> Module {
    let mut m = Module::new();
    for f in fs {
        m.insert(f);
    }
    m
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn bounds(start: Bound, end: Bound) -> LoopBounds {
    LoopBounds { start, end }
}

#[test]
fn quickstart() {
    let mut b = FunctionBuilder::new("f");
    let x = b.named_param("x", Type::F64);
    let y = b.named_param("y", Type::F64);
    let a = b.ins1(Op::Add, &[x, y]).unwrap();
    let s = b.ins1(Op::Sub, &[x, y]).unwrap();
    let c = b.ins1(Op::Mul, &[a, s]).unwrap();
    b.ret(&[c]).unwrap();
    let m = module(vec![b.finish().unwrap()]);
    // (3+2)(3-2) = 5
    assert_eq!(eval_f64(&m, "f", &[3.0, 2.0]).unwrap(), vec![5.0]);
    assert_eq!(
        eval(&m, "f", &[Val::F64(1.5), Val::F64(-0.5)]).unwrap(),
        vec![Val::F64(2.0)]
    );
}

/// Σ_{i<n} i, with `n` a dynamic bound.
fn triangular() -> Function {
    let mut b = FunctionBuilder::new("tri");
    let n = b.named_param("n", Type::I64);
    let zero = b.constant(Constant::I64(0));
    let r = b
        .build_loop(
            bounds(Bound::Imm(0), Bound::Dyn),
            &[n],
            &[zero],
            |b, i, c| Ok(vec![b.ins1(Op::Add, &[c[0], i])?]),
        )
        .unwrap();
    b.ret(&r).unwrap();
    b.finish().unwrap()
}

#[test]
fn loop_sum_closed_form() {
    let f = triangular();
    for n in [0i64, 1, 2, 5, 100, 1000] {
        let r = eval_function(&f, None, &[Val::I64(n)]).unwrap();
        assert_eq!(r, vec![Val::I64(n * (n - 1) / 2)], "n = {n}");
    }
    // end <= start: zero trips, the result is the init.
    for n in [-1i64, -100, i64::MIN] {
        assert_eq!(
            eval_function(&f, None, &[Val::I64(n)]).unwrap(),
            vec![Val::I64(0)]
        );
    }
}

#[test]
fn loop_with_dynamic_start_and_end() {
    // Σ_{i=a}^{b-1} i = (b(b-1) - a(a-1)) / 2
    let mut b = FunctionBuilder::new("range");
    let lo = b.param(Type::I64);
    let hi = b.param(Type::I64);
    let zero = b.constant(Constant::I64(0));
    let r = b
        .build_loop(
            bounds(Bound::Dyn, Bound::Dyn),
            &[lo, hi],
            &[zero],
            |b, i, c| Ok(vec![b.ins1(Op::Add, &[c[0], i])?]),
        )
        .unwrap();
    b.ret(&r).unwrap();
    let f = b.finish().unwrap();
    for (a, e) in [(3i64, 10i64), (-5, 5), (7, 7), (9, 2)] {
        let want = if e > a {
            (e * (e - 1) - a * (a - 1)) / 2
        } else {
            0
        };
        assert_eq!(
            eval_function(&f, None, &[Val::I64(a), Val::I64(e)]).unwrap(),
            vec![Val::I64(want)]
        );
    }
}

#[test]
fn geometric_series() {
    // s = Σ_{k<n} r^k, carrying (s, p = r^k).
    let mut b = FunctionBuilder::new("geom");
    let r = b.param(Type::F64);
    let n = b.param(Type::I64);
    let zero = b.const_f64(0.0);
    let one = b.const_f64(1.0);
    let out = b
        .build_loop(
            bounds(Bound::Imm(0), Bound::Dyn),
            &[n],
            &[zero, one],
            |b, _i, c| {
                let s = b.ins1(Op::Add, &[c[0], c[1]])?;
                let p = b.ins1(Op::Mul, &[c[1], r])?;
                Ok(vec![s, p])
            },
        )
        .unwrap();
    b.ret(&out).unwrap();
    let f = b.finish().unwrap();
    for (ratio, n) in [(0.5, 10i64), (0.9, 50), (-0.3, 7), (1.1, 20)] {
        let got = eval_function(&f, None, &[Val::F64(ratio), Val::I64(n)]).unwrap();
        let want = (1.0 - ratio.powi(n as i32)) / (1.0 - ratio);
        assert!(
            close(f64_of(got[0].clone()), want, 1e-13),
            "{got:?} vs {want}"
        );
        assert!(close(f64_of(got[1].clone()), ratio.powi(n as i32), 1e-13));
    }
}

#[test]
fn nested_loops() {
    // Σ_{i<n} Σ_{j<m} i·j = (n(n-1)/2)·(m(m-1)/2), in f64 via casts.
    let mut b = FunctionBuilder::new("nest");
    let n = b.param(Type::I64);
    let m = b.param(Type::I64);
    let zero = b.const_f64(0.0);
    let out = b
        .build_loop(
            bounds(Bound::Imm(0), Bound::Dyn),
            &[n],
            &[zero],
            |b, i, c| {
                let fi = b.ins1(Op::Cast(ScalarType::F64), &[i])?;
                b.build_loop(
                    bounds(Bound::Imm(0), Bound::Dyn),
                    &[m],
                    &[c[0]],
                    |b, j, d| {
                        let fj = b.ins1(Op::Cast(ScalarType::F64), &[j])?;
                        let p = b.ins1(Op::Mul, &[fi, fj])?;
                        Ok(vec![b.ins1(Op::Add, &[d[0], p])?])
                    },
                )
            },
        )
        .unwrap();
    b.ret(&out).unwrap();
    let f = b.finish().unwrap();
    for (n, m) in [(0i64, 5i64), (4, 0), (3, 4), (10, 7), (30, 30)] {
        let want = ((n * (n - 1) / 2) * (m * (m - 1) / 2)) as f64;
        assert_eq!(
            eval_function(&f, None, &[Val::I64(n), Val::I64(m)]).unwrap(),
            vec![Val::F64(want)],
            "n={n} m={m}"
        );
    }
}

#[test]
fn yield_permuting_carried_values() {
    // Fibonacci: (a, b) -> (b, a + b); the yield reads the params it overwrites.
    let mut b = FunctionBuilder::new("fib");
    let n = b.param(Type::I64);
    let a0 = b.constant(Constant::I64(0));
    let b0 = b.constant(Constant::I64(1));
    let r = b
        .build_loop(
            bounds(Bound::Imm(0), Bound::Dyn),
            &[n],
            &[a0, b0],
            |b, _i, c| {
                let s = b.ins1(Op::Add, &[c[0], c[1]])?;
                Ok(vec![c[1], s])
            },
        )
        .unwrap();
    b.ret(&[r[0]]).unwrap();
    let f = b.finish().unwrap();
    let fib = [0i64, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55];
    for (n, &want) in fib.iter().enumerate() {
        assert_eq!(
            eval_function(&f, None, &[Val::I64(n as i64)]).unwrap(),
            vec![Val::I64(want)]
        );
    }
}

const POINTS: [f64; 9] = [0.3, -0.7, 1.5, -2.25, 0.0, -0.0, 10.0, 1e-8, 3.75];

#[test]
fn unary_float_ops_match_std() {
    // Single IEEE operations must match exactly; libm transcendentals to a few ulps.
    type U = fn(f64) -> f64;
    let exact: &[(Op, U)] = &[
        (Op::Neg, |x| -x),
        (Op::Sqrt, f64::sqrt),
        (Op::Abs, f64::abs),
        (Op::Floor, f64::floor),
        (Op::Ceil, f64::ceil),
        (Op::Round, f64::round),
        (Op::Trunc, f64::trunc),
        (Op::Powi(3), |x| x * x * x),
        (Op::Powi(0), |_| 1.0),
        (Op::Powi(1), |x| x),
        (Op::Powi(2), |x| x * x),
    ];
    let approx: &[(Op, U)] = &[
        (Op::Exp, f64::exp),
        (Op::Expm1, f64::exp_m1),
        (Op::Log, f64::ln),
        (Op::Log1p, f64::ln_1p),
        (Op::Sin, f64::sin),
        (Op::Cos, f64::cos),
        (Op::Tan, f64::tan),
        (Op::Tanh, f64::tanh),
        (Op::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        (Op::Powi(-2), |x| 1.0 / (x * x)),
        (Op::Powi(5), |x| x.powi(5)),
    ];
    for (op, g) in exact {
        for x in POINTS {
            let got = f64_of(run1(op.clone(), &[Val::F64(x)]));
            let want = g(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{op}({x}) = {got}, std gives {want}"
            );
        }
    }
    for (op, g) in approx {
        for x in POINTS {
            let got = f64_of(run1(op.clone(), &[Val::F64(x)]));
            assert!(
                close(got, g(x), 4e-16),
                "{op}({x}) = {got}, std gives {}",
                g(x)
            );
        }
    }
    // erf at known values (Abramowitz & Stegun table).
    let erf = |x| f64_of(run1(Op::Erf, &[Val::F64(x)]));
    assert_eq!(erf(0.0), 0.0);
    assert!(close(erf(0.5), 0.520_499_877_813_046_5, 1e-15));
    assert!(close(erf(-1.0), -0.842_700_792_949_714_9, 1e-15));
    // Edge conventions written on the ops.
    assert!(f64_of(run1(Op::Sqrt, &[Val::F64(-0.0)])).is_sign_negative());
    assert!(f64_of(run1(Op::Sqrt, &[Val::F64(-1.0)])).is_nan());
    assert_eq!(f64_of(run1(Op::Log, &[Val::F64(0.0)])), f64::NEG_INFINITY);
    assert!(f64_of(run1(Op::Neg, &[Val::F64(0.0)])).is_sign_negative());
    assert_eq!(f64_of(run1(Op::Round, &[Val::F64(2.5)])), 3.0);
    assert_eq!(f64_of(run1(Op::Round, &[Val::F64(-2.5)])), -3.0);
    assert_eq!(f64_of(run1(Op::Sigmoid, &[Val::F64(-1000.0)])), 0.0);
}

#[test]
fn binary_float_ops_match_std() {
    type B = fn(f64, f64) -> f64;
    let exact: &[(Op, B)] = &[
        (Op::Add, |a, b| a + b),
        (Op::Sub, |a, b| a - b),
        (Op::Mul, |a, b| a * b),
        (Op::Div, |a, b| a / b),
        (Op::Copysign, f64::copysign),
    ];
    let approx: &[(Op, B)] = &[(Op::Pow, f64::powf), (Op::Atan2, f64::atan2)];
    let pairs = [
        (1.5, 2.0),
        (-0.75, 3.0),
        (2.0, -0.5),
        (0.1, 0.2),
        (1e10, 1e-10),
        (-3.0, -0.0),
        (0.0, 1.0),
    ];
    for (op, g) in exact {
        for (a, b) in pairs {
            let got = f64_of(run1(op.clone(), &[Val::F64(a), Val::F64(b)]));
            let want = g(a, b);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{op}({a}, {b}) = {got}, std gives {want}"
            );
        }
    }
    for (op, g) in approx {
        for (a, b) in pairs {
            let got = f64_of(run1(op.clone(), &[Val::F64(a), Val::F64(b)]));
            assert!(close(got, g(a, b), 4e-16), "{op}({a}, {b}) = {got}");
        }
    }
    // IEEE: x/0 = ±inf, 0/0 = NaN; pow edge cases.
    let div = |a, b| f64_of(run1(Op::Div, &[Val::F64(a), Val::F64(b)]));
    assert_eq!(div(1.0, 0.0), f64::INFINITY);
    assert_eq!(div(1.0, -0.0), f64::NEG_INFINITY);
    assert!(div(0.0, 0.0).is_nan());
    let pow = |a, b| f64_of(run1(Op::Pow, &[Val::F64(a), Val::F64(b)]));
    assert_eq!(pow(f64::NAN, 0.0), 1.0);
    assert_eq!(pow(0.0, -1.0), f64::INFINITY);
    // fma has a single rounding: (1+ε)(1-ε) - 1 = -ε² exactly.
    let e = f64::EPSILON;
    let f = op_fn(Op::Fma, &[Type::F64; 3]);
    let r = eval_function(
        &f,
        None,
        &[Val::F64(1.0 + e), Val::F64(1.0 - e), Val::F64(-1.0)],
    )
    .unwrap();
    assert_eq!(r, vec![Val::F64(-e * e)]);
    assert_ne!(
        (1.0 + e) * (1.0 - e) - 1.0,
        -e * e,
        "the test needs the fused rounding"
    );
}

#[test]
fn min_max_are_ieee_minimum_maximum() {
    let min = |a, b| f64_of(run1(Op::Min, &[Val::F64(a), Val::F64(b)]));
    let max = |a, b| f64_of(run1(Op::Max, &[Val::F64(a), Val::F64(b)]));
    assert_eq!(min(1.0, 2.0), 1.0);
    assert_eq!(max(1.0, 2.0), 2.0);
    assert_eq!(min(-3.0, 2.0), -3.0);
    assert!(min(f64::NAN, 1.0).is_nan());
    assert!(min(1.0, f64::NAN).is_nan());
    assert!(max(f64::NAN, 1.0).is_nan());
    assert!(min(0.0, -0.0).is_sign_negative());
    assert!(min(-0.0, 0.0).is_sign_negative());
    assert!(max(-0.0, 0.0).is_sign_positive());
    assert!(max(0.0, -0.0).is_sign_positive());
}

#[test]
fn f32_ops() {
    let r = run1(Op::Add, &[Val::F32(0.1), Val::F32(0.2)]);
    assert_eq!(r, Val::F32(0.1f32 + 0.2f32));
    let r = run1(Op::Sqrt, &[Val::F32(2.0)]);
    assert_eq!(r, Val::F32(2f32.sqrt()));
    let Val::F32(s) = run1(Op::Sin, &[Val::F32(0.5)]) else {
        panic!("sin f32 gives f32")
    };
    assert!((s - 0.5f32.sin()).abs() <= f32::EPSILON);
    assert_eq!(
        run1(Op::Lt, &[Val::F32(1.0), Val::F32(2.0)]),
        Val::Bool(true)
    );
    assert_eq!(
        run1(Op::Max, &[Val::F32(-1.0), Val::F32(2.0)]),
        Val::F32(2.0)
    );
}

#[test]
fn integer_ops_wrap() {
    let i = Val::I64;
    assert_eq!(run1(Op::Add, &[i(i64::MAX), i(1)]), i(i64::MIN));
    assert_eq!(run1(Op::Sub, &[i(i64::MIN), i(1)]), i(i64::MAX));
    assert_eq!(run1(Op::Mul, &[i(i64::MAX), i(2)]), i(-2));
    assert_eq!(run1(Op::Neg, &[i(i64::MIN)]), i(i64::MIN));
    assert_eq!(run1(Op::Abs, &[i(i64::MIN)]), i(i64::MIN));
    assert_eq!(run1(Op::Abs, &[i(-7)]), i(7));
    assert_eq!(run1(Op::Min, &[i(-7), i(3)]), i(-7));
    assert_eq!(run1(Op::Max, &[i(-7), i(3)]), i(3));
    assert_eq!(run1(Op::Add, &[i(40), i(2)]), i(42));
}

#[test]
fn comparisons() {
    let b = Val::Bool;
    type Pred = fn(f64, f64) -> bool;
    let cases: &[(Op, Pred)] = &[
        (Op::Lt, |a, b| a < b),
        (Op::Le, |a, b| a <= b),
        (Op::Gt, |a, b| a > b),
        (Op::Ge, |a, b| a >= b),
        (Op::Eq, |a, b| a == b),
        (Op::Ne, |a, b| a != b),
    ];
    let pairs = [
        (1.0, 2.0),
        (2.0, 1.0),
        (1.0, 1.0),
        (0.0, -0.0),
        (f64::NAN, 1.0),
        (f64::NAN, f64::NAN),
    ];
    for (op, g) in cases {
        for (x, y) in pairs {
            assert_eq!(
                run1(op.clone(), &[Val::F64(x), Val::F64(y)]),
                b(g(x, y)),
                "{op}({x}, {y})"
            );
        }
        for (x, y) in [(1i64, 2i64), (2, 1), (5, 5), (i64::MIN, i64::MAX)] {
            assert_eq!(
                run1(op.clone(), &[Val::I64(x), Val::I64(y)]),
                b(g(x as f64, y as f64)),
                "{op}({x}, {y}) on i64"
            );
        }
    }
    assert_eq!(run1(Op::Eq, &[b(true), b(true)]), b(true));
    assert_eq!(run1(Op::Eq, &[b(true), b(false)]), b(false));
    assert_eq!(run1(Op::Ne, &[b(true), b(false)]), b(true));
}

#[test]
fn select_picks_a_branch() {
    let f = op_fn(Op::Select, &[Type::BOOL, Type::F64, Type::F64]);
    let run = |c| eval_function(&f, None, &[Val::Bool(c), Val::F64(1.0), Val::F64(f64::NAN)]);
    assert_eq!(run(true).unwrap(), vec![Val::F64(1.0)]);
    assert!(f64_of(run(false).unwrap()[0].clone()).is_nan());
}

fn cast(v: Val, to: ScalarType) -> Val {
    run1(Op::Cast(to), &[v])
}

#[test]
fn cast_edge_cases() {
    use ScalarType::*;
    // float -> int: truncate towards zero, saturate, NaN -> 0.
    assert_eq!(cast(Val::F64(2.7), I64), Val::I64(2));
    assert_eq!(cast(Val::F64(-2.7), I64), Val::I64(-2));
    assert_eq!(cast(Val::F64(f64::NAN), I64), Val::I64(0));
    assert_eq!(cast(Val::F64(1e300), I64), Val::I64(i64::MAX));
    assert_eq!(cast(Val::F64(f64::NEG_INFINITY), I64), Val::I64(i64::MIN));
    assert_eq!(cast(Val::F32(f32::INFINITY), I64), Val::I64(i64::MAX));
    // int -> float rounds to nearest (even).
    let big = (1i64 << 53) + 1;
    assert_eq!(cast(Val::I64(big), F64), Val::F64(9007199254740992.0));
    assert_eq!(cast(Val::I64(16_777_217), F32), Val::F32(16_777_216.0));
    // f64 <-> f32.
    assert_eq!(cast(Val::F64(0.1), F32), Val::F32(0.1f32));
    assert_eq!(cast(Val::F64(1e300), F32), Val::F32(f32::INFINITY));
    assert_eq!(cast(Val::F32(0.1), F64), Val::F64(f64::from(0.1f32)));
    // bool -> number: 0 or 1.
    assert_eq!(cast(Val::Bool(true), F64), Val::F64(1.0));
    assert_eq!(cast(Val::Bool(false), F32), Val::F32(0.0));
    assert_eq!(cast(Val::Bool(true), I64), Val::I64(1));
    // number -> bool: != 0 (NaN is != 0; -0.0 is not).
    assert_eq!(cast(Val::F64(0.0), Bool), Val::Bool(false));
    assert_eq!(cast(Val::F64(-0.0), Bool), Val::Bool(false));
    assert_eq!(cast(Val::F64(f64::NAN), Bool), Val::Bool(true));
    assert_eq!(cast(Val::F64(0.5), Bool), Val::Bool(true));
    assert_eq!(cast(Val::I64(-3), Bool), Val::Bool(true));
    assert_eq!(cast(Val::I64(0), Bool), Val::Bool(false));
    // identity.
    assert_eq!(cast(Val::I64(-3), I64), Val::I64(-3));
}

/// `@h(x) = (2x, x + 1)`; `@g(x) = h(x).0 * h(x).1`, summed over a loop of 3 trips.
fn call_module() -> Module {
    let mut b = FunctionBuilder::new("h");
    let x = b.param(Type::F64);
    let two = b.const_f64(2.0);
    let one = b.const_f64(1.0);
    let d = b.ins1(Op::Mul, &[two, x]).unwrap();
    let s = b.ins1(Op::Add, &[x, one]).unwrap();
    b.ret(&[d, s]).unwrap();
    let h = b.finish().unwrap();

    let mut b = FunctionBuilder::new("g");
    b.declare("h", h.sig.clone());
    let x = b.param(Type::F64);
    let hs = b.call("h", &[x]).unwrap();
    let p = b.ins1(Op::Mul, &[hs[0], hs[1]]).unwrap();
    let zero = b.const_f64(0.0);
    let acc = b
        .build_loop(
            bounds(Bound::Imm(0), Bound::Imm(3)),
            &[],
            &[zero],
            |b, _i, c| {
                let r = b.call("h", &[c[0]])?;
                Ok(vec![b.ins1(Op::Add, &[r[0], r[1]])?])
            },
        )
        .unwrap();
    b.ret(&[p, acc[0]]).unwrap();
    module(vec![b.finish().unwrap(), h])
}

#[test]
fn calls_with_multiple_results() {
    let m = call_module();
    assert_eq!(eval_f64(&m, "h", &[3.0]).unwrap(), vec![6.0, 4.0]);
    // g(3) = 6·4 = 24; the loop iterates c -> 3c + 1 from 0: 1, 4, 13.
    assert_eq!(eval_f64(&m, "g", &[3.0]).unwrap(), vec![24.0, 13.0]);
    // A reused interpreter gives the same answers and keeps its buffers.
    let mut it = Interpreter::new();
    let mut out = Vec::new();
    let g = m.get("g").unwrap();
    for x in [3.0, -1.0, 0.5] {
        it.run(g, Some(&m), &[Val::F64(x)], &mut out).unwrap();
        assert_eq!(out, vec![Val::F64(2.0 * x * (x + 1.0)), Val::F64(13.0)]);
    }
}

#[test]
fn unknown_callee_and_recursion_limit() {
    let m = call_module();
    let g = m.get("g").unwrap();
    // Without the module, @h is unknown.
    assert_eq!(
        eval_function(g, None, &[Val::F64(1.0)]),
        Err(EvalError::UnknownFunction("h".into()))
    );
    assert_eq!(
        eval_f64(&m, "nope", &[]),
        Err(EvalError::UnknownFunction("nope".into()))
    );
    // @r(x) = r(x): unbounded recursion gives an error, not a stack overflow.
    let mut b = FunctionBuilder::new("r");
    b.declare(
        "r",
        Signature {
            params: vec![Type::F64],
            results: vec![Type::F64],
        },
    );
    let x = b.param(Type::F64);
    let y = b.call("r", &[x]).unwrap();
    b.ret(&y).unwrap();
    let m = module(vec![b.finish().unwrap()]);
    let e = eval_f64(&m, "r", &[1.0]).unwrap_err();
    assert!(
        matches!(&e, EvalError::Limit(LimitError::Unbounded { chain, limit: 1000 }) if chain == "@r -> @r"),
        "{e}"
    );
    let f = m.get("r").unwrap();
    let e = Interpreter::new()
        .with_max_call_depth(10)
        .eval(f, Some(&m), &[Val::F64(1.0)])
        .unwrap_err();
    assert!(matches!(
        e,
        EvalError::Limit(LimitError::Unbounded { limit: 10, .. })
    ));
}

#[test]
fn guard_failure_asks_for_a_retrace() {
    // @f(x, y) { guard (gt x y); ret x } — traced at x > y.
    let mut b = FunctionBuilder::new("f");
    let x = b.param(Type::F64);
    let y = b.param(Type::F64);
    let c = b.ins1(Op::Gt, &[x, y]).unwrap();
    b.ins(Op::Guard, &[c]).unwrap();
    b.ret(&[x]).unwrap();
    let m = module(vec![b.finish().unwrap()]);
    assert_eq!(eval_f64(&m, "f", &[3.0, 2.0]).unwrap(), vec![3.0]);
    let e = eval_f64(&m, "f", &[1.0, 2.0]).unwrap_err();
    assert!(matches!(&e, EvalError::GuardFailed { func, .. } if func == "f"));
    assert!(e.to_string().contains("re-trace"), "{e}");
}

#[test]
fn argument_errors() {
    let m = call_module();
    assert_eq!(
        eval_f64(&m, "h", &[1.0, 2.0]),
        Err(EvalError::ArgCount {
            func: "h".into(),
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        eval(&m, "h", &[Val::I64(1)]),
        Err(EvalError::ArgType {
            func: "h".into(),
            index: 0,
            expected: Type::F64,
            got: Type::I64
        })
    );
    // eval_f64 on a function returning i64.
    let tri = triangular();
    assert!(matches!(
        eval_function_f64(&tri, None, &[3.0]),
        Err(EvalError::ArgType { .. })
    ));
    let e = eval_function(&tri, None, &[Val::I64(3)]).unwrap();
    assert_eq!(e, vec![Val::I64(3)]);
}

#[test]
fn malformed_functions_give_errors_not_panics() {
    let sig = |n: usize| Signature {
        params: vec![Type::F64; n],
        results: vec![Type::F64],
    };
    // No terminator.
    let mut f = Function::new("nt", sig(1));
    let x = f.params()[0];
    f.append_inst(f.body, Op::Neg, vec![x], &[Type::F64], None);
    assert!(matches!(
        eval_function(&f, None, &[Val::F64(1.0)]),
        Err(EvalError::Malformed { .. })
    ));
    // An operand that does not exist.
    let mut f = Function::new("bad", sig(1));
    let ghost = Value::new(999);
    f.append_inst(f.body, Op::Neg, vec![ghost], &[Type::F64], None);
    assert!(matches!(
        eval_function(&f, None, &[Val::F64(1.0)]),
        Err(EvalError::Malformed { .. })
    ));
    // Wrong operand count and type.
    for (op, args) in [
        (Op::Add, 1usize),
        (Op::Sin, 0),
        (Op::Fma, 2),
        (Op::Select, 3),
    ] {
        let mut f = Function::new("arity", sig(1));
        let x = f.params()[0];
        let inst = f.append_inst(f.body, op, vec![x; args], &[Type::F64], None);
        let r = f.result(inst);
        f.append_inst(f.body, Op::Ret, vec![r], &[], None);
        assert!(matches!(
            eval_function(&f, None, &[Val::F64(1.0)]),
            Err(EvalError::Malformed { .. })
        ));
    }
    // An op with no result slot; a guard on a float; yield in a function body.
    for op in [Op::Sin, Op::Guard, Op::Yield] {
        let mut f = Function::new("odd", sig(1));
        let x = f.params()[0];
        f.append_inst(f.body, op, vec![x], &[], None);
        f.append_inst(f.body, Op::Ret, vec![x], &[], None);
        assert!(matches!(
            eval_function(&f, None, &[Val::F64(1.0)]),
            Err(EvalError::Malformed { .. })
        ));
    }
    // A loop without a body region; ret with the wrong count.
    let mut f = Function::new("lp", sig(1));
    let x = f.params()[0];
    let l = Op::Loop(Box::new(bounds(Bound::Imm(0), Bound::Imm(2))));
    let inst = f.append_inst(f.body, l, vec![x], &[Type::F64], None);
    let r = f.result(inst);
    f.append_inst(f.body, Op::Ret, vec![r, r], &[], None);
    assert!(matches!(
        eval_function(&f, None, &[Val::F64(1.0)]),
        Err(EvalError::Malformed { .. })
    ));
    // A loop whose body region is the function body (so it contains itself).
    let mut f = Function::new("self", sig(1));
    let x = f.params()[0];
    let body = f.body;
    let l = Op::Loop(Box::new(bounds(Bound::Imm(0), Bound::Imm(2))));
    f.append_inst(body, l, vec![], &[], Some(body));
    f.append_inst(body, Op::Ret, vec![x], &[], None);
    assert!(matches!(
        eval_function(&f, None, &[Val::F64(1.0)]),
        Err(EvalError::Malformed { .. })
    ));
    let mut f = Function::new("rc", sig(1));
    let x = f.params()[0];
    f.append_inst(f.body, Op::Ret, vec![x, x], &[], None);
    assert!(matches!(
        eval_function(&f, None, &[Val::F64(1.0)]),
        Err(EvalError::Malformed { .. })
    ));
}

#[test]
fn val_display_and_accessors() {
    assert_eq!(Val::F64(5.0).to_string(), "5.0");
    assert_eq!(Val::F64(f64::NAN).to_string(), "nan");
    assert_eq!(Val::I64(-3).to_string(), "-3");
    assert_eq!(Val::Bool(true).to_string(), "true");
    assert_eq!(Val::F32(0.5).as_f64(), Some(0.5));
    assert_eq!(Val::I64(1).as_f64(), None);
    assert_eq!(Val::Bool(true).ty(), ScalarType::Bool);
}
