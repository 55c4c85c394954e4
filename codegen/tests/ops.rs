//! Every scalar op, JIT against the interpreter (which evaluates through
//! `jitad_ir::math` and std), bit for bit, at ordinary points and at NaN, ±0, ±inf,
//! halfway cases and saturation edges; plus hand-checked IEEE edge cases.

use jitad_codegen::{compile_functions, CompileOptions, Compiled};
use jitad_ir::{eval, FunctionBuilder, Module, Op, ScalarType, Type, Val};

fn f64_samples() -> Vec<f64> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        0.49999999999999994,
        -0.49999999999999994,
        3.7,
        -3.7,
        0.1,
        1e300,
        -1e300,
        1e-310,
        -1e-310,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_1234),
        4503599627370495.5,
        -4503599627370495.5,
        9.3e18,
        -9.3e18,
        9.223372036854775e18,
        100.0,
        -710.0,
        710.0,
    ]
}

fn f32_samples() -> Vec<f32> {
    let mut v: Vec<f32> = f64_samples().into_iter().map(|x| x as f32).collect();
    v.extend([8388607.5f32, -8388607.5, 3.4e38, f32::MIN_POSITIVE / 4.0]);
    v
}

fn samples(t: ScalarType) -> Vec<Val> {
    match t {
        ScalarType::F64 => f64_samples().into_iter().map(Val::F64).collect(),
        ScalarType::F32 => f32_samples().into_iter().map(Val::F32).collect(),
        ScalarType::I64 => [0, 1, -1, 7, -7, 12345, i64::MAX, i64::MIN, i64::MIN + 1]
            .into_iter()
            .map(Val::I64)
            .collect(),
        ScalarType::Bool => vec![Val::Bool(false), Val::Bool(true)],
    }
}

/// Bitwise equality (so NaN payloads and the sign of zero count).
fn same(a: Val, b: Val) -> bool {
    match (a, b) {
        (Val::F64(x), Val::F64(y)) => x.to_bits() == y.to_bits(),
        (Val::F32(x), Val::F32(y)) => x.to_bits() == y.to_bits(),
        (x, y) => x == y,
    }
}

struct Case {
    name: String,
    op: Op,
    tys: Vec<ScalarType>,
}

fn cases() -> Vec<Case> {
    use ScalarType::*;
    let mut out = vec![];
    let mut add = |op: Op, tys: Vec<ScalarType>| {
        let name = format!(
            "{}_{}_{}",
            op.name(),
            out.len(),
            tys.iter().map(|t| t.name()).collect::<Vec<_>>().join("_")
        );
        out.push(Case { name, op, tys });
    };
    for t in [F64, F32] {
        for op in [
            Op::Neg,
            Op::Sqrt,
            Op::Exp,
            Op::Expm1,
            Op::Log,
            Op::Log1p,
            Op::Sin,
            Op::Cos,
            Op::Tan,
            Op::Tanh,
            Op::Sigmoid,
            Op::Erf,
            Op::Abs,
            Op::Floor,
            Op::Ceil,
            Op::Round,
            Op::Trunc,
        ] {
            add(op, vec![t]);
        }
        for n in [-8, -3, -1, 0, 1, 2, 3, 5, 7, 16, i32::MAX, i32::MIN] {
            add(Op::Powi(n), vec![t]);
        }
        for op in [
            Op::Add,
            Op::Sub,
            Op::Mul,
            Op::Div,
            Op::Pow,
            Op::Min,
            Op::Max,
            Op::Atan2,
            Op::Copysign,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::Eq,
            Op::Ne,
        ] {
            add(op, vec![t, t]);
        }
        add(Op::Fma, vec![t, t, t]);
    }
    for op in [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Min,
        Op::Max,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Eq,
        Op::Ne,
    ] {
        add(op, vec![I64, I64]);
    }
    add(Op::Neg, vec![I64]);
    add(Op::Abs, vec![I64]);
    add(Op::Eq, vec![Bool, Bool]);
    add(Op::Ne, vec![Bool, Bool]);
    for t in ScalarType::ALL {
        add(Op::Select, vec![Bool, t, t]);
        for to in ScalarType::ALL {
            add(Op::Cast(to), vec![t]);
        }
    }
    out
}

fn build(cases: &[Case]) -> Module {
    let mut m = Module::new();
    for c in cases {
        let mut b = FunctionBuilder::new(c.name.clone());
        let ps: Vec<_> = c.tys.iter().map(|&t| b.param(Type::Scalar(t))).collect();
        let r = b.ins1(c.op.clone(), &ps).unwrap();
        b.ret(&[r]).unwrap();
        m.insert(b.finish().unwrap());
    }
    m
}

/// Every combination of samples for `tys` (the ternary ones thinned out).
fn points(tys: &[ScalarType]) -> Vec<Vec<Val>> {
    let mut pts: Vec<Vec<Val>> = vec![vec![]];
    for (k, &t) in tys.iter().enumerate() {
        let mut s = samples(t);
        if tys.len() == 3 && k > 0 && s.len() > 10 {
            s = s.into_iter().step_by(3).collect();
        }
        pts = pts
            .into_iter()
            .flat_map(|p| {
                s.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(v.clone());
                    q
                })
            })
            .collect();
    }
    pts
}

fn compile_all(m: &Module, cases: &[Case]) -> Vec<Compiled> {
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    let opts = CompileOptions {
        verify: true,
        ..CompileOptions::default()
    };
    compile_functions(m, &names, &opts).unwrap()
}

#[test]
fn every_op_matches_the_interpreter_bitwise() {
    let cases = cases();
    let m = build(&cases);
    let compiled = compile_all(&m, &cases);
    let mut checked = 0;
    for (c, f) in cases.iter().zip(&compiled) {
        for args in points(&c.tys) {
            let want = eval(&m, &c.name, &args).unwrap();
            let mut got = [Val::Bool(false)];
            f.call(&args, &mut got).unwrap();
            assert!(
                same(got[0].clone(), want[0].clone()),
                "{} {:?}: jit {:?} interp {:?}",
                c.name,
                args,
                got[0],
                want[0]
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000, "{checked}");
}

fn unary_f64(op: Op, x: f64) -> f64 {
    let cases = vec![Case {
        name: "u".into(),
        op,
        tys: vec![ScalarType::F64],
    }];
    let m = build(&cases);
    let f = &compile_all(&m, &cases)[0];
    let mut out = [0.0];
    f.call_f64(&[x], &mut out).unwrap();
    out[0]
}

fn binary_f64(op: Op, x: f64, y: f64) -> f64 {
    let cases = vec![Case {
        name: "b".into(),
        op,
        tys: vec![ScalarType::F64, ScalarType::F64],
    }];
    let m = build(&cases);
    let f = &compile_all(&m, &cases)[0];
    let mut out = [0.0];
    f.call_f64(&[x, y], &mut out).unwrap();
    out[0]
}

#[test]
fn min_max_are_ieee_2019_minimum_maximum() {
    // -0 < +0 in either order, NaN propagates (the canonical NaN), like math::min/max.
    assert!(binary_f64(Op::Min, 0.0, -0.0).is_sign_negative());
    assert!(binary_f64(Op::Min, -0.0, 0.0).is_sign_negative());
    assert!(binary_f64(Op::Max, -0.0, 0.0).is_sign_positive());
    assert!(binary_f64(Op::Max, 0.0, -0.0).is_sign_positive());
    assert_eq!(
        binary_f64(Op::Min, f64::NAN, 1.0).to_bits(),
        f64::NAN.to_bits()
    );
    assert_eq!(
        binary_f64(Op::Max, 1.0, -f64::NAN).to_bits(),
        f64::NAN.to_bits()
    );
    assert_eq!(binary_f64(Op::Min, -2.0, 3.0), -2.0);
    assert_eq!(binary_f64(Op::Max, -2.0, 3.0), 3.0);
}

#[test]
fn copysign_by_a_nan_is_the_canonical_nan() {
    // A NaN's sign bit is not pinned (fuzz regression engines_..._8284: JIT and
    // interpreter made NaNs of opposite sign, and `copysign 0.5, NaN` turned that into
    // ±0.5), so copysign by any NaN gives the canonical NaN, like math::copysign.
    for b in [f64::NAN, -f64::NAN, f64::from_bits(0xfff8_0000_0000_1234)] {
        assert_eq!(
            binary_f64(Op::Copysign, 0.5, b).to_bits(),
            f64::NAN.to_bits()
        );
    }
    assert_eq!(binary_f64(Op::Copysign, 0.5, -0.0), -0.5);
    assert_eq!(binary_f64(Op::Copysign, -0.5, 0.0), 0.5);
    assert_eq!(binary_f64(Op::Copysign, -2.0, f64::NEG_INFINITY), -2.0);
}

#[test]
fn round_is_half_away_from_zero_and_exact() {
    for (x, r) in [
        (0.5, 1.0),
        (-0.5, -1.0),
        (2.5, 3.0),
        (-2.5, -3.0),
        (0.49999999999999994, 0.0),
        (4503599627370495.5, 4503599627370496.0),
        (1e300, 1e300),
    ] {
        assert_eq!(unary_f64(Op::Round, x), r, "round({x})");
    }
    assert!(unary_f64(Op::Round, -0.3).is_sign_negative());
    assert!(unary_f64(Op::Round, f64::NAN).is_nan());
    assert_eq!(unary_f64(Op::Round, f64::NEG_INFINITY), f64::NEG_INFINITY);
}

#[test]
fn casts_follow_rust_as() {
    let cases: Vec<Case> = [ScalarType::I64, ScalarType::Bool]
        .into_iter()
        .map(|to| Case {
            name: format!("c_{to}"),
            op: Op::Cast(to),
            tys: vec![ScalarType::F64],
        })
        .collect();
    let m = build(&cases);
    let fs = compile_all(&m, &cases);
    let mut out = [Val::I64(0)];
    for x in [f64::NAN, 1e300, -1e300, -3.9, 3.9, -0.0] {
        fs[0].call(&[Val::F64(x)], &mut out).unwrap();
        assert_eq!(out[0], Val::I64(x as i64), "{x} as i64");
        fs[1].call(&[Val::F64(x)], &mut out).unwrap();
        assert_eq!(out[0], Val::Bool(x != 0.0), "{x} as bool");
    }
}

#[test]
fn sqrt_and_fma_are_instructions_in_the_listing() {
    let mut b = FunctionBuilder::new("f");
    let x = b.param(Type::F64);
    let y = b.param(Type::F64);
    let s = b.ins1(Op::Sqrt, &[x]).unwrap();
    let r = b.ins1(Op::Fma, &[s, y, x]).unwrap();
    b.ret(&[r]).unwrap();
    let mut m = Module::new();
    m.insert(b.finish().unwrap());
    let opts = CompileOptions {
        emit_text: true,
        ..CompileOptions::default()
    };
    let f = jitad_codegen::compile_module(&m, "f", &opts).unwrap();
    let clif = f.clif_text().unwrap();
    assert!(clif.contains("sqrt") && clif.contains("fma"), "{clif}");
    assert!(!clif.contains("call"), "{clif}");
    let asm = f.asm_text().unwrap();
    assert!(asm.contains("sqrt"), "{asm}");
    let mut out = [0.0];
    f.call_f64(&[4.0, 3.0], &mut out).unwrap();
    assert_eq!(out[0], 2.0f64.mul_add(3.0, 4.0));
}
