//! Every op's tangent and adjoint rule against central finite differences, at several
//! points per op (domain edges included), and forward mode against reverse mode. A test
//! fails if an op of `Op::NAMES` has no row here.

mod common;
use common::*;
use jitad_ir::{Bound, Constant, FunctionBuilder, LoopBounds, Module, Op, ScalarType, Type, Value};
use jitad_passes::{grad, jvp, optimize_module, OptOptions};

type Build = fn(&mut FunctionBuilder, &[Value]) -> Value;

struct Row {
    /// Ops this row exercises (for the completeness check).
    ops: &'static [&'static str],
    arity: usize,
    build: Build,
    points: &'static [&'static [f64]],
    /// Finite-difference tolerance (relative); above 1e-6 the row computes in f32 and
    /// takes a large step.
    tol: f64,
    /// Whether reverse mode applies (not through loops yet).
    reverse: bool,
}

fn un(op: Op) -> impl Fn(&mut FunctionBuilder, &[Value]) -> Value {
    move |b, x| b.ins1(op.clone(), &[x[0]]).unwrap()
}

macro_rules! unary {
    ($name:literal, $op:expr, $pts:expr) => {
        Row {
            ops: &[$name],
            arity: 1,
            build: |b, x| un($op)(b, x),
            points: $pts,
            tol: 1e-6,
            reverse: true,
        }
    };
}
macro_rules! binary {
    ($name:literal, $op:expr, $pts:expr) => {
        Row {
            ops: &[$name],
            arity: 2,
            build: |b, x| b.ins1($op, &[x[0], x[1]]).unwrap(),
            points: $pts,
            tol: 1e-6,
            reverse: true,
        }
    };
}

/// `select(cmp(x, y), x·y, x + y)`: the comparison picks a smooth branch.
fn cmp_row(b: &mut FunctionBuilder, x: &[Value], op: Op) -> Value {
    let c = b.ins1(op, &[x[0], x[1]]).unwrap();
    let p = b.ins1(Op::Mul, &[x[0], x[1]]).unwrap();
    let s = b.ins1(Op::Add, &[x[0], x[1]]).unwrap();
    b.ins1(Op::Select, &[c, p, s]).unwrap()
}

const CMP_PTS: &[&[f64]] = &[&[1.0, 2.0], &[2.5, -1.0], &[-0.5, -0.25]];

fn rows() -> Vec<Row> {
    vec![
        binary!("add", Op::Add, &[&[1.0, 2.0], &[-3.5, 0.25]]),
        binary!("sub", Op::Sub, &[&[1.0, 2.0], &[-3.5, 0.25]]),
        binary!("mul", Op::Mul, &[&[1.5, -2.0], &[0.0, 3.0], &[1e-3, 1e3]]),
        binary!("div", Op::Div, &[&[1.5, 0.7], &[-2.0, 3.0], &[0.3, -1e-2]]),
        unary!("neg", Op::Neg, &[&[1.5], &[-0.25]]),
        Row {
            ops: &["fma"],
            arity: 3,
            build: |b, x| b.ins1(Op::Fma, &[x[0], x[1], x[2]]).unwrap(),
            points: &[&[1.5, -2.0, 0.5], &[0.1, 3.0, -7.0]],
            tol: 1e-6,
            reverse: true,
        },
        unary!("sqrt", Op::Sqrt, &[&[1e-4], &[0.5], &[4.0], &[1e6]]),
        unary!("exp", Op::Exp, &[&[-3.0], &[0.0], &[2.0], &[20.0]]),
        unary!("expm1", Op::Expm1, &[&[-1e-8], &[1e-3], &[2.0]]),
        unary!("log", Op::Log, &[&[1e-4], &[1.0], &[50.0]]),
        unary!("log1p", Op::Log1p, &[&[-0.999], &[-1e-9], &[3.0]]),
        unary!("sin", Op::Sin, &[&[0.3], &[-2.0], &[10.0]]),
        unary!("cos", Op::Cos, &[&[0.3], &[-2.0], &[10.0]]),
        unary!("tan", Op::Tan, &[&[0.3], &[-1.0], &[1.5]]),
        unary!("tanh", Op::Tanh, &[&[0.5], &[-3.0], &[0.0], &[15.0]]),
        unary!("sigmoid", Op::Sigmoid, &[&[-30.0], &[0.0], &[2.0]]),
        unary!("erf", Op::Erf, &[&[-2.0], &[0.0], &[0.5]]),
        unary!("abs", Op::Abs, &[&[-2.0], &[3.0], &[1e-3]]),
        binary!(
            "pow",
            Op::Pow,
            &[
                &[2.0, 3.0],
                &[0.5, -1.5],
                &[3.0, 0.5],
                &[1e-3, 2.2],
                &[2.0, 0.0]
            ]
        ),
        Row {
            ops: &["powi"],
            arity: 1,
            build: |b, x| {
                // Σ powi(x, n) over several n, so one row checks them all.
                let mut acc = b.ins1(Op::Powi(0), &[x[0]]).unwrap();
                for n in [-3, -1, 1, 2, 3, 5] {
                    let p = b.ins1(Op::Powi(n), &[x[0]]).unwrap();
                    acc = b.ins1(Op::Add, &[acc, p]).unwrap();
                }
                acc
            },
            points: &[&[0.7], &[-1.3], &[2.0]],
            tol: 1e-6,
            reverse: true,
        },
        binary!("min", Op::Min, &[&[1.0, 2.0], &[3.0, -1.0]]),
        binary!("max", Op::Max, &[&[1.0, 2.0], &[3.0, -1.0]]),
        binary!(
            "atan2",
            Op::Atan2,
            &[&[1.0, 2.0], &[-1.0, -0.5], &[1e-3, -2.0], &[3.0, 1e-3]]
        ),
        // Piecewise constant: derivative zero away from the jumps. Multiply by x so the
        // function is not constant: d(x·floor x) = floor x.
        Row {
            ops: &["floor", "ceil", "round", "trunc"],
            arity: 1,
            build: |b, x| {
                let mut acc = x[0];
                for op in [Op::Floor, Op::Ceil, Op::Round, Op::Trunc] {
                    let r = b.ins1(op, &[x[0]]).unwrap();
                    let p = b.ins1(Op::Mul, &[r, x[0]]).unwrap();
                    acc = b.ins1(Op::Add, &[acc, p]).unwrap();
                }
                acc
            },
            points: &[&[0.3], &[-1.7], &[2.2]],
            tol: 1e-6,
            reverse: true,
        },
        binary!(
            "copysign",
            Op::Copysign,
            &[&[1.5, -2.0], &[-1.5, 3.0], &[2.0, 1.0]]
        ),
        Row {
            ops: &["lt", "select"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Lt),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        Row {
            ops: &["le"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Le),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        Row {
            ops: &["gt"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Gt),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        Row {
            ops: &["ge"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Ge),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        Row {
            ops: &["eq"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Eq),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        Row {
            ops: &["ne"],
            arity: 2,
            build: |b, x| cmp_row(b, x, Op::Ne),
            points: CMP_PTS,
            tol: 1e-6,
            reverse: true,
        },
        // f64 → f32 → f64 around a linear f32 computation (exact derivative 3), and
        // through i64 (zero derivative): x·cast(cast(x : i64) : f64).
        Row {
            ops: &["cast", "const"],
            arity: 1,
            build: |b, x| {
                let s = b.ins1(Op::Cast(ScalarType::F32), &[x[0]]).unwrap();
                let three = b.constant(Constant::F32(3.0));
                let t = b.ins1(Op::Mul, &[s, three]).unwrap();
                let back = b.ins1(Op::Cast(ScalarType::F64), &[t]).unwrap();
                let i = b.ins1(Op::Cast(ScalarType::I64), &[x[0]]).unwrap();
                let fi = b.ins1(Op::Cast(ScalarType::F64), &[i]).unwrap();
                let p = b.ins1(Op::Mul, &[x[0], fi]).unwrap();
                b.ins1(Op::Add, &[back, p]).unwrap()
            },
            points: &[&[0.5], &[-2.5], &[3.25]],
            tol: 1e-4,
            reverse: true,
        },
        Row {
            ops: &["guard"],
            arity: 1,
            build: |b, x| {
                let z = b.const_f64(0.0);
                let c = b.ins1(Op::Gt, &[x[0], z]).unwrap();
                b.ins(Op::Guard, &[c]).unwrap();
                b.ins1(Op::Mul, &[x[0], x[0]]).unwrap()
            },
            points: &[&[0.5], &[3.0]],
            tol: 1e-6,
            reverse: true,
        },
        // A loop: x ← sin(x)·y, three times (forward mode only).
        Row {
            ops: &["loop", "yield"],
            arity: 2,
            build: |b, x| {
                let y = x[1];
                let bounds = LoopBounds {
                    start: Bound::Imm(0),
                    end: Bound::Imm(3),
                };
                b.build_loop(bounds, &[], &[x[0]], |b, _i, c| {
                    let s = b.ins1(Op::Sin, &[c[0]])?;
                    Ok(vec![b.ins1(Op::Mul, &[s, y])?])
                })
                .unwrap()[0]
            },
            points: &[&[0.5, 1.5], &[-1.0, 0.7]],
            tol: 1e-6,
            reverse: false,
        },
    ]
}

/// The module for a row: `@f(x...) -> f64`; rows using `call` go through `@h`.
fn module(row: &Row) -> Module {
    let mut b = FunctionBuilder::new("f");
    let xs: Vec<Value> = (0..row.arity)
        .map(|i| b.named_param(&format!("x{i}"), Type::F64))
        .collect();
    let y = (row.build)(&mut b, &xs);
    b.ret(&[y]).unwrap();
    let mut m = Module::new();
    m.insert(b.finish().unwrap());
    m
}

fn check_row(row: &Row, m: &mut Module, func: &str) {
    let n = row.arity;
    let wrt: Vec<usize> = (0..n).collect();
    let j = jvp(m, func, &wrt).unwrap();
    let g = if row.reverse {
        Some(grad(m, func, &wrt).unwrap())
    } else {
        None
    };
    verified(m);
    let mut opt = m.clone();
    optimize_module(&mut opt, &OptOptions::default());
    verified(&opt);
    for &x in row.points {
        let f0 = eval(m, func, x)[0];
        let grad_r = g.as_ref().map(|g| eval(m, g, x));
        for i in 0..n {
            let mut u = vec![0.0; n];
            u[i] = 1.0;
            let h = if row.tol > 1e-6 {
                1e-2
            } else {
                1e-6 * x[i].abs().max(1e-3)
            };
            let fd = fd_dir(m, func, x, &u, 0, h);
            let mut args = x.to_vec();
            args.extend_from_slice(&u);
            let fw = eval(m, &j, &args);
            assert_eq!(fw[0].to_bits(), f0.to_bits(), "{:?} value", row.ops);
            assert!(
                close(fw[1], fd, row.tol),
                "{:?} at {x:?}: jvp d/dx{i} = {} but finite differences give {fd}",
                row.ops,
                fw[1]
            );
            let fw_opt = eval(&opt, &j, &args);
            assert_eq!(
                fw_opt[1].to_bits(),
                fw[1].to_bits(),
                "{:?}: optimised jvp differs",
                row.ops
            );
            if let Some(gr) = &grad_r {
                assert!(
                    close(gr[1 + i], fw[1], 1e-12),
                    "{:?} at {x:?}: grad {} vs jvp {}",
                    row.ops,
                    gr[1 + i],
                    fw[1]
                );
                let go = eval(&opt, g.as_ref().unwrap(), x);
                assert_eq!(
                    go[1 + i].to_bits(),
                    gr[1 + i].to_bits(),
                    "{:?}: optimised grad differs",
                    row.ops
                );
            }
        }
    }
}

#[test]
fn every_op_against_finite_differences() {
    for row in rows() {
        let mut m = module(&row);
        check_row(&row, &mut m, "f");
    }
}

/// The same rows with the op inside a callee: `@f(x) = @h(x)`; checks `call`.
#[test]
fn every_op_through_a_call() {
    for row in rows() {
        let mut m = module(&row);
        m.get_mut("f").unwrap().name = "h".into();
        let mut b = FunctionBuilder::new("f");
        b.declare_module(&m);
        let xs: Vec<Value> = (0..row.arity)
            .map(|i| b.named_param(&format!("x{i}"), Type::F64))
            .collect();
        let r = b.call("h", &xs).unwrap();
        b.ret(&r).unwrap();
        m.insert(b.finish().unwrap());
        check_row(&row, &mut m, "f");
    }
}

#[test]
fn every_op_has_a_row() {
    let mut covered: Vec<&str> = rows().iter().flat_map(|r| r.ops.iter().copied()).collect();
    // Every row calls (above) and returns; `revloop`/`tapeloop` are made by reverse mode and are
    // covered by tests/loops.rs (its own derivatives are refused with a clear error).
    covered.extend(["call", "ret", "revloop", "tapeloop"]);
    // Tensor ops have no derivative rules yet (a later step of issue #12): until then
    // tests/tensors.rs checks that AD refuses them by name. Their rows come with the rules.
    covered.extend(
        Op::NAMES
            .iter()
            .filter(|n| Op::from_name(n).is_some_and(|op| op.is_tensor_op())),
    );
    for name in Op::NAMES {
        assert!(
            covered.contains(name),
            "op `{name}` has no derivative test row"
        );
    }
}
