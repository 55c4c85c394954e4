//! The tracer: generic code traced and interpreted agrees with native `f64`; composites
//! agree with `std`; data-dependent branches are guarded; constants fold; misuse is an
//! error, never a panic.

use jitad_ir::interp::{eval_function_f64, EvalError};
use jitad_ir::trace::{trace, trace_scalar, TraceError, Var};
use jitad_ir::{Function, Op};
use num_traits::{Float, ToPrimitive, Zero};

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn quickstart<T: Float>(x: &[T]) -> T {
    (x[0] + x[1]) * (x[0] - x[1])
}

fn rosenbrock<T: Float>(x: &[T]) -> T {
    let one = T::one();
    let hundred = T::from(100.0).unwrap_or_else(T::one);
    let mut s = T::zero();
    for w in x.windows(2) {
        s = s + hundred * (w[1] - w[0].powi(2)).powi(2) + (one - w[0]).powi(2);
    }
    s
}

/// A two-layer tanh network with fixed weights, summed with a softplus-ish tail.
fn mlp<T: Float>(x: &[T]) -> T {
    let w = |v: f64| T::from(v).unwrap_or_else(T::zero);
    let h: Vec<T> = (0..3)
        .map(|j| {
            let mut a = w(0.1 * j as f64 - 0.2);
            for (i, &xi) in x.iter().enumerate() {
                a = a + w(0.3 - 0.17 * (i + 2 * j) as f64) * xi;
            }
            a.tanh()
        })
        .collect();
    let mut y = w(0.05);
    for (j, &hj) in h.iter().enumerate() {
        y = y + w(0.7 - 0.4 * j as f64) * hj;
    }
    (T::one() + y.exp()).ln() + y.sin() * x[0].abs().sqrt()
}

/// Evaluates a traced function's first result, after checking it passes the verifier.
fn eval1(f: &Function, x: &[f64]) -> f64 {
    if let Err(e) = jitad_ir::verify_function(f, None) {
        panic!("traced @{} does not verify:\n{e}", f.name);
    }
    eval_function_f64(f, None, x).unwrap()[0]
}

fn check_generic(
    name: &str,
    g: fn(&[Var]) -> Var,
    native: fn(&[f64]) -> f64,
    example: &[f64],
    others: &[&[f64]],
) {
    let f = trace_scalar(name, example, g).unwrap();
    // At the example, the traced function reproduces the example value exactly.
    let traced_example = g(&example
        .iter()
        .map(|&x| Var::constant(x))
        .collect::<Vec<_>>());
    assert_eq!(
        eval1(&f, example).to_bits(),
        traced_example.value().to_bits()
    );
    for x in std::iter::once(example).chain(others.iter().copied()) {
        let got = eval1(&f, x);
        let want = native(x);
        assert!(
            rel_close(got, want, 1e-14),
            "{name}({x:?}): traced {got}, native {want}"
        );
    }
}

#[test]
fn generic_functions_trace_and_agree_with_native() {
    check_generic(
        "quickstart",
        quickstart,
        quickstart,
        &[3.0, 2.0],
        &[&[5.0, 1.0], &[-1.5, 0.25]],
    );
    assert_eq!(
        eval1(
            &trace_scalar("q", &[3.0, 2.0], quickstart).unwrap(),
            &[3.0, 2.0]
        ),
        5.0
    );
    check_generic(
        "rosenbrock",
        rosenbrock,
        rosenbrock,
        &[1.2, 0.8, -0.4],
        &[&[1.0, 1.0, 1.0], &[-2.0, 3.0, 0.5], &[0.1, 0.2, 0.3]],
    );
    check_generic(
        "mlp",
        mlp,
        mlp,
        &[0.5, -1.0, 2.0],
        &[&[0.0, 0.0, 0.0], &[-3.0, 1.0, 0.25], &[10.0, 5.0, -7.0]],
    );
}

#[test]
fn quickstart_records_the_expected_ops() {
    let f = trace_scalar("f", &[3.0, 2.0], quickstart).unwrap();
    let ops: Vec<&str> = f
        .insts_in_order()
        .iter()
        .map(|&i| f.insts[i].op.name())
        .collect();
    assert_eq!(ops, ["add", "sub", "mul", "ret"]);
    let names: Vec<_> = f.params().iter().map(|&p| f.value_label(p)).collect();
    assert_eq!(names, ["x0", "x1"]);
}

type Unary = (&'static str, fn(Var) -> Var, fn(f64) -> f64, &'static [f64]);

#[test]
fn composites_and_ops_match_std() {
    const ANY: &[f64] = &[-3.5, -1.0, -0.3, 0.0, 1e-9, 0.25, 0.7, 2.0, 10.0];
    const UNIT: &[f64] = &[-0.99, -0.5, -0.1, 0.0, 1e-9, 0.3, 0.75, 0.999];
    const POS: &[f64] = &[1e-9, 0.01, 0.5, 1.0, 2.0, 7.5, 1e6];
    const GE1: &[f64] = &[1.0, 1.0001, 1.5, 3.0, 100.0, 1e8];
    let table: &[Unary] = &[
        ("sqrt", |x| x.sqrt(), f64::sqrt, POS),
        ("exp", |x| x.exp(), f64::exp, ANY),
        ("exp_m1", |x| x.exp_m1(), f64::exp_m1, ANY),
        ("ln", |x| x.ln(), f64::ln, POS),
        ("ln_1p", |x| x.ln_1p(), f64::ln_1p, POS),
        ("sin", |x| x.sin(), f64::sin, ANY),
        ("cos", |x| x.cos(), f64::cos, ANY),
        ("tan", |x| x.tan(), f64::tan, ANY),
        ("tanh", |x| x.tanh(), f64::tanh, ANY),
        ("abs", |x| x.abs(), f64::abs, ANY),
        ("floor", |x| x.floor(), f64::floor, ANY),
        ("ceil", |x| x.ceil(), f64::ceil, ANY),
        ("round", |x| x.round(), f64::round, ANY),
        ("trunc", |x| x.trunc(), f64::trunc, ANY),
        ("fract", |x| x.fract(), f64::fract, ANY),
        ("signum", |x| x.signum(), f64::signum, ANY),
        ("recip", |x| x.recip(), f64::recip, POS),
        ("powi3", |x| x.powi(3), |x| x.powi(3), ANY),
        ("powi-2", |x| x.powi(-2), |x| x.powi(-2), POS),
        ("atan", |x| x.atan(), f64::atan, ANY),
        ("asin", |x| x.asin(), f64::asin, UNIT),
        ("acos", |x| x.acos(), f64::acos, UNIT),
        ("sinh", |x| x.sinh(), f64::sinh, ANY),
        ("cosh", |x| x.cosh(), f64::cosh, ANY),
        ("asinh", |x| x.asinh(), f64::asinh, ANY),
        ("acosh", |x| x.acosh(), f64::acosh, GE1),
        ("atanh", |x| x.atanh(), f64::atanh, UNIT),
        ("exp2", |x| x.exp2(), f64::exp2, ANY),
        ("log2", |x| x.log2(), f64::log2, POS),
        ("log10", |x| x.log10(), f64::log10, POS),
        ("cbrt", |x| x.cbrt(), f64::cbrt, ANY),
        ("to_degrees", |x| x.to_degrees(), f64::to_degrees, ANY),
        ("to_radians", |x| x.to_radians(), f64::to_radians, ANY),
        ("neg", |x| -x, |x| -x, ANY),
        (
            "sigmoid",
            |x| x.sigmoid(),
            |x| 1.0 / (1.0 + (-x).exp()),
            ANY,
        ),
        ("sin_cos.0", |x| x.sin_cos().0, |x| x.sin_cos().0, ANY),
        ("sin_cos.1", |x| x.sin_cos().1, |x| x.sin_cos().1, ANY),
    ];
    for &(name, g, s, points) in table {
        let f = trace_scalar(name, &[points[0]], |x| g(x[0])).unwrap();
        for &x in points {
            let got = eval1(&f, &[x]);
            let want = s(x);
            // Untraced Vars compute the same as the traced function.
            let native = g(Var::constant(x)).value();
            assert_eq!(
                got.to_bits(),
                native.to_bits(),
                "{name}({x}): traced vs untraced"
            );
            // `f64::acosh` computes ln(x + sqrt(x²−1)) and loses digits near 1; the
            // composite uses log1p (see the reference value below), so allow std's error.
            let tol = match name {
                "acosh" => 1e-14,
                "atanh" => 4e-15,
                _ => 1e-15,
            };
            assert!(
                rel_close(got, want, tol),
                "{name}({x}) = {got}, std gives {want}"
            );
        }
    }
    // acosh(1.0001) to 50 digits: 0.0141420177752515454976723840940...; std's
    // 0.014142017775251642 is 7e-15 off, the composite is within an ulp.
    let f = trace_scalar("acosh", &[2.0], |x| x[0].acosh()).unwrap();
    assert!(rel_close(
        eval1(&f, &[1.0001]),
        0.014_142_017_775_251_545,
        2.5e-16
    ));
    // erf at known values.
    let f = trace_scalar("erf", &[0.5], |x| x[0].erf()).unwrap();
    assert!(rel_close(eval1(&f, &[0.5]), 0.520_499_877_813_046_5, 1e-15));
    assert!(rel_close(
        eval1(&f, &[-1.0]),
        -0.842_700_792_949_714_9,
        1e-15
    ));
    // signum of NaN and -0.0, branch-free.
    let f = trace_scalar("signum", &[1.0], |x| x[0].signum()).unwrap();
    assert!(eval1(&f, &[f64::NAN]).is_nan());
    assert_eq!(eval1(&f, &[-0.0]), -1.0);
    assert_eq!(eval1(&f, &[-5.0]), -1.0);
}

type Binary = (&'static str, fn(Var, Var) -> Var, fn(f64, f64) -> f64);

#[test]
fn binary_composites_match_std() {
    let table: &[Binary] = &[
        ("add", |a, b| a + b, |a, b| a + b),
        ("sub", |a, b| a - b, |a, b| a - b),
        ("mul", |a, b| a * b, |a, b| a * b),
        ("div", |a, b| a / b, |a, b| a / b),
        ("rem", |a, b| a % b, |a, b| a % b),
        ("powf", |a, b| a.powf(b), f64::powf),
        ("atan2", |a, b| a.atan2(b), f64::atan2),
        ("hypot", |a, b| a.hypot(b), f64::hypot),
        ("log", |a, b| a.log(b), f64::log),
        ("copysign", |a, b| a.copysign(b), f64::copysign),
        ("mul_add", |a, b| a.mul_add(b, a), |a, b| a.mul_add(b, a)),
        ("max", |a, b| a.max(b), f64::max),
        ("min", |a, b| a.min(b), f64::min),
        (
            "abs_sub",
            |a, b| Float::abs_sub(a, b),
            |a, b| (a - b).max(0.0),
        ),
        ("clamp", |a, b| a.clamp(-b, b), |a, b| a.clamp(-b, b)),
    ];
    let pairs = [
        (7.5, 2.0),
        (-7.5, 2.0),
        (3.0, 0.5),
        (0.3, 1.7),
        (2.5, 10.0),
        (1.25, 3.0),
    ];
    for &(name, g, s) in table {
        let f = trace_scalar(name, &[1.5, 2.0], |x| g(x[0], x[1])).unwrap();
        for (a, b) in pairs {
            let got = eval1(&f, &[a, b]);
            let want = s(a, b);
            assert!(
                rel_close(got, want, 1e-15),
                "{name}({a}, {b}) = {got}, std gives {want}"
            );
        }
    }
    // Operators with f64 on either side.
    let f = trace_scalar("mixed", &[2.0], |x| {
        let mut y = 1.0 + x[0] * 3.0 - 2.0 / x[0] + x[0] % 1.5;
        y += 1.0;
        y *= x[0];
        y -= 0.5;
        y /= 4.0;
        y
    })
    .unwrap();
    for x in [2.0, -0.75, 5.5] {
        let mut y: f64 = 1.0 + x * 3.0 - 2.0 / x + x % 1.5;
        y = ((y + 1.0) * x - 0.5) / 4.0;
        assert!(rel_close(eval1(&f, &[x]), y, 1e-15));
    }
}

#[test]
fn traced_min_max_propagate_nan() {
    let f = trace_scalar("m", &[1.0, 2.0], |x| x[0].max(x[1])).unwrap();
    assert!(eval1(&f, &[f64::NAN, 2.0]).is_nan());
    assert_eq!(f64::NAN.max(2.0), 2.0, "unlike f64::max");
    let f = trace_scalar("m", &[1.0, 2.0], |x| x[0].min(x[1])).unwrap();
    assert!(eval1(&f, &[0.0, -0.0]).is_sign_negative());
}

fn branchy<T: Float>(x: &[T]) -> T {
    if x[0] > x[1] {
        x[0]
    } else {
        x[1]
    }
}

#[test]
fn branches_are_guarded() {
    let f = trace_scalar("branchy", &[3.0, 2.0], branchy).unwrap();
    assert_eq!(eval1(&f, &[3.0, 2.0]), 3.0);
    assert_eq!(eval1(&f, &[10.0, -1.0]), 10.0);
    let e = eval_function_f64(&f, None, &[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(&e, EvalError::GuardFailed { func, .. } if func == "branchy"),
        "{e}"
    );
    assert!(e.to_string().contains("re-trace"));

    // Traced on the false branch: the guard is `eq (gt x0 x1), false`.
    let f = trace_scalar("branchy", &[1.0, 2.0], branchy).unwrap();
    assert_eq!(eval1(&f, &[1.0, 2.0]), 2.0);
    assert_eq!(eval1(&f, &[2.0, 2.0]), 2.0);
    assert!(matches!(
        eval_function_f64(&f, None, &[3.0, 2.0]),
        Err(EvalError::GuardFailed { .. })
    ));
    // NaN takes the false branch of `>`; the guard agrees.
    assert!(eval1(&f, &[f64::NAN, 2.0]) == 2.0);
}

#[test]
fn predicates_and_conversions_are_guarded() {
    // is_nan, is_sign_negative, is_zero, partial_cmp, classify, to_i64.
    type P = fn(Var) -> Var;
    let cases: &[(&str, P, f64, f64, f64)] = &[
        // name, function, example, a point on the same side, a point on the other side
        (
            "is_nan",
            |x| if x.is_nan() { Var::zero() } else { x },
            1.0,
            5.0,
            f64::NAN,
        ),
        (
            "sign",
            |x| if x.is_sign_negative() { -x } else { x },
            -2.0,
            -0.0,
            0.0,
        ),
        (
            "zero",
            |x| if x.is_zero() { x + 1.0 } else { x },
            0.0,
            -0.0,
            1e-300,
        ),
        (
            "finite",
            |x| if x.is_finite() { x } else { Var::zero() },
            1.0,
            -1e300,
            f64::INFINITY,
        ),
        (
            "cmp",
            |x| match x.partial_cmp(&Var::from(1.0)) {
                Some(std::cmp::Ordering::Less) => x,
                _ => -x,
            },
            0.5,
            -3.0,
            1.0,
        ),
        (
            "normal",
            |x| if x.is_normal() { x } else { Var::zero() },
            1.0,
            -7.0,
            1e-310,
        ),
        (
            "to_i64",
            |x| x * (x.to_i64().unwrap_or(0) as f64),
            2.5,
            2.9,
            3.0,
        ),
    ];
    for &(name, g, ex, same, other) in cases {
        let f = trace_scalar(name, &[ex], |x| g(x[0])).unwrap();
        let guards = f
            .insts_in_order()
            .iter()
            .filter(|&&i| f.insts[i].op == Op::Guard)
            .count();
        assert!(guards >= 1, "{name} recorded no guard");
        for x in [ex, same] {
            let got = eval1(&f, &[x]);
            let want = g(Var::constant(x)).value();
            assert!(
                rel_close(got, want, 0.0),
                "{name}({x}) = {got}, want {want}"
            );
        }
        assert!(
            matches!(
                eval_function_f64(&f, None, &[other]),
                Err(EvalError::GuardFailed { .. })
            ),
            "{name}: no guard failure at {other}"
        );
    }
    // `to_f64` pins the exact value.
    let f = trace_scalar("pin", &[2.0], |x| Var::from(x[0].to_f64().unwrap_or(0.0))).unwrap();
    assert_eq!(eval1(&f, &[2.0]), 2.0);
    assert!(eval_function_f64(&f, None, &[2.5]).is_err());
}

#[test]
fn constants_fold_at_trace_time() {
    let f = trace_scalar("fold", &[1.5], |x| x[0] * (Var::from(2.0) + 3.0)).unwrap();
    let ops: Vec<Op> = f
        .insts_in_order()
        .iter()
        .map(|&i| f.insts[i].op.clone())
        .collect();
    assert_eq!(
        ops,
        vec![Op::Const(jitad_ir::Constant::F64(5.0)), Op::Mul, Op::Ret]
    );
    assert_eq!(eval1(&f, &[2.0]), 10.0);
    // Constants are recorded once per value; comparisons between constants record nothing.
    let f = trace_scalar("memo", &[1.5], |x| {
        let two = Var::from(2.0);
        let _ = two > Var::from(1.0);
        x[0] * 2.0 + x[0] * two
    })
    .unwrap();
    let consts = f
        .insts_in_order()
        .iter()
        .filter(|&&i| matches!(f.insts[i].op, Op::Const(_)))
        .count();
    assert_eq!(consts, 1);
    assert_eq!(f.num_insts(), 5);
    // A constant output is returned as a `const`.
    let f = trace("c", &[1.0], |_| vec![Var::from(4.0)]).unwrap();
    assert_eq!(eval_function_f64(&f, None, &[9.0]).unwrap(), vec![4.0]);
}

#[test]
fn multiple_outputs() {
    let f = trace("two", &[1.0, 2.0], |x| vec![x[0] + x[1], x[0] * x[1], x[0]]).unwrap();
    assert_eq!(f.sig.results.len(), 3);
    assert_eq!(
        eval_function_f64(&f, None, &[3.0, 4.0]).unwrap(),
        vec![7.0, 12.0, 3.0]
    );
}

#[test]
fn mixing_traces_is_an_error_not_a_panic() {
    let mut leaked = None;
    let _ = trace_scalar("first", &[1.0], |x| {
        leaked = Some(x[0] * 2.0);
        x[0]
    })
    .unwrap();
    let leaked = leaked.unwrap_or_default();
    // Outside any trace the leaked Var still has its example value.
    assert_eq!((leaked + 1.0).value(), 3.0);
    // Used inside a later trace: a clear error.
    let e = trace_scalar("second", &[1.0], |x| x[0] + leaked).unwrap_err();
    assert!(
        matches!(&e, TraceError::ForeignVar { func } if func == "second"),
        "{e}"
    );
    // Computed from the leaked Var outside a trace, then used: still foreign.
    let stale = leaked.sin() * 3.0;
    let e = trace_scalar("third", &[1.0], |x| x[0] * stale).unwrap_err();
    assert!(matches!(e, TraceError::ForeignVar { .. }));
    // Returned directly, or compared.
    assert!(trace_scalar("fourth", &[1.0], |_| stale).is_err());
    assert!(trace_scalar("fifth", &[1.0], |x| if x[0] > stale { x[0] } else { -x[0] }).is_err());
    // Nested traces are refused; the outer trace still works.
    let mut inner = None;
    let outer = trace_scalar("outer", &[2.0], |x| {
        inner = Some(trace_scalar("inner", &[1.0], |y| y[0]));
        x[0] * x[0]
    })
    .unwrap();
    assert!(matches!(inner, Some(Err(TraceError::Nested { .. }))));
    assert_eq!(eval1(&outer, &[3.0]), 9.0);
    // A panic inside a trace does not leave the context installed.
    let r = std::panic::catch_unwind(|| {
        let _ = trace_scalar("boom", &[1.0], |_| panic!("user code panicked"));
    });
    assert!(r.is_err());
    assert!(trace_scalar("after", &[1.0], |x| x[0]).is_ok());
}
