//! Abstract traces against eager ones: the same programs record the same IR (printed
//! text equal), and what needs a traced value fails with [`TraceError::Abstract`].

use super::*;
use crate::tensor::{Tensor as Buf, TensorData};
use crate::types::Shape;

fn tt(elem: ScalarType, dims: &[usize]) -> Type {
    Type::Tensor(elem, Shape::new(dims).expect("valid dims"))
}

fn f64t(dims: &[usize]) -> Type {
    tt(ScalarType::F64, dims)
}

/// A deterministic example of type `ty` (values in (0.1, 0.9), indices 1).
fn example(ty: Type, seed: usize) -> Val {
    let x = |k: usize| 0.1 + 0.8 * (((k * 7919 + seed * 104_729) % 1000) as f64 / 1000.0);
    match ty {
        Type::Scalar(ScalarType::F64) => Val::F64(x(0)),
        Type::Scalar(ScalarType::F32) => Val::F32(x(0) as f32),
        Type::Scalar(ScalarType::I64) => Val::I64(1),
        Type::Scalar(ScalarType::Bool) => Val::Bool(true),
        Type::Tensor(e, s) => {
            let n = s.num_elements();
            let data = match e {
                ScalarType::F64 => TensorData::F64((0..n).map(x).collect()),
                ScalarType::F32 => TensorData::F32((0..n).map(|k| x(k) as f32).collect()),
                ScalarType::I64 => TensorData::I64((0..n).map(|k| k as i64).collect()),
                ScalarType::Bool => TensorData::Bool((0..n).map(|k| k % 2 == 0).collect()),
            };
            Val::tensor(Buf::new(s, data).expect("valid tensor"))
        }
    }
}

/// Traces `f` eagerly (at examples of `types`) and abstractly, asserts the texts are
/// equal, and returns the abstract trace.
fn same_ir(name: &str, types: &[Type], f: impl Fn(&[Tensor]) -> Vec<Tensor>) -> Function {
    let ex: Vec<Val> = types
        .iter()
        .enumerate()
        .map(|(i, &t)| example(t, i))
        .collect();
    let eager = trace_tensors(name, &ex, &f).expect("eager trace");
    let abs = trace_tensors_abstract(name, types, |a| {
        assert!(a.iter().all(Tensor::is_abstract));
        f(a)
    })
    .expect("abstract trace");
    assert_eq!(eager.to_string(), abs.to_string(), "@{name}");
    crate::verify::verify_function(&abs, None).expect("verifies");
    abs
}

fn mlp(a: &[Tensor]) -> Vec<Tensor> {
    let [w1, b1, w2, b2, w3, b3, x, y] = a else {
        return vec![];
    };
    let a1 = (x.matmul(w1) + b1).tanh();
    let a2 = (a1.matmul(w2) + b2).tanh();
    let e = a2.matmul(w3) + b3 - y;
    vec![(&e * &e).mean(&[0])]
}

#[test]
fn mlp_records_the_same_ir() {
    let (b, d, h) = (16, 4, 8);
    let types = [
        f64t(&[d, h]),
        f64t(&[h]),
        f64t(&[h, h]),
        f64t(&[h]),
        f64t(&[h]),
        Type::F64,
        f64t(&[b, d]),
        f64t(&[b]),
    ];
    let f = same_ir("mlp", &types, mlp);
    assert_eq!(f.num_insts(), 12, "{f}");
}

#[test]
#[allow(clippy::single_range_in_vec_init)]
fn rosenbrock_tensor_form_records_the_same_ir() {
    let n = 50;
    same_ir("rosen", &[f64t(&[n])], |a| {
        let x = &a[0];
        let head = x.slice(&[0..n - 1]);
        let tail = x.slice(&[1..n]);
        let t = &tail - &head * &head;
        let u = 1.0 - &head;
        vec![(100.0 * &t * &t + &u * &u).sum(&[0])]
    });
}

#[test]
fn a_loop_over_tensors_records_the_same_ir() {
    // An RNN: h ← tanh(h·W + x[i]) over the rows of x, with a scalar and an index
    // carried beside the state, and a scan written with `insert`.
    let (t, h) = (5, 3);
    let types = [f64t(&[h, h]), f64t(&[t, h]), Type::F64];
    let f = same_ir("rnn", &types, |a| {
        let (w, xs, s) = (&a[0], &a[1], a[2].to_var());
        let init = (
            Tensor::zeros(&[h]),
            Var::constant(0.0),
            Tensor::zeros(&[t, h]),
        );
        let (hf, acc, hs) = fori_loop(0, t as i64, init, |i, (hh, acc, hs)| {
            let hn = (hh.matmul(w) + xs.at(i)).tanh();
            let acc = acc + hn.sum_all() * s + i.to_var();
            let hs = hs.insert(i, &hn);
            (hn, acc, hs)
        });
        vec![hf.sum(&[0]), Tensor::from(acc), hs.mean(&[0, 1])]
    });
    assert!(f.to_string().contains("loop"), "{f}");
}

#[test]
fn nested_loops_with_a_traced_bound_record_the_same_ir() {
    let types = [f64t(&[4]), Type::Scalar(ScalarType::I64)];
    same_ir("nest", &types, |a| {
        let n = a[1].to_index();
        let out = fori_loop(0, n, a[0].clone(), |_, x| {
            fori_loop(0, 3, x, |j, y| &y * 0.5 + j.to_var())
        });
        vec![out.sum(&[0])]
    });
}

#[test]
fn implicit_broadcasting_records_the_same_ir() {
    let types = [f64t(&[3, 1]), f64t(&[1, 4]), f64t(&[4]), Type::F64];
    same_ir("bc", &types, |a| {
        let s = a[3].to_var();
        let m = &a[0] + &a[1]; // [3,1] + [1,4] → [3,4]
        let m = &m * &a[2] - s; // a row vector, a traced scalar
        let m = 2.0 * m / (s + 1.0); // literals on both sides
        let m = m.maximum(&a[2]).minimum(0.75).relu();
        vec![m
            .exp()
            .log()
            .sqrt()
            .sin()
            .cos()
            .abs()
            .powi(3)
            .sigmoid()
            .sum(&[0, 1])]
    });
}

#[test]
#[allow(clippy::single_range_in_vec_init)]
fn slices_pads_and_shapes_record_the_same_ir() {
    let types = [f64t(&[4, 6]), f64t(&[6])];
    same_ir("sp", &types, |a| {
        let x = &a[0];
        let s = x.slice(&[1..3, 2..6]); // [2,4]
        let p = s.pad(0.0, &[(1, 1), (0, 2)]); // [4,6]
        let q = a[1].slice(&[0..3]).pad(a[1].at(0), &[(2, 1)]); // [6]
        let c = Tensor::concat(&[p.clone(), x.clone(), q.reshape(&[1, 6])], 0); // [9,6]
        let t = c.t().transpose(&[1, 0]).reshape(&[3, 18]);
        let b = a[1].broadcast_to(&[2, 6]);
        vec![t.sum(&[0, 1]), (b * 3.0).sum(&[0, 1]), p.at(2).dot(&q)]
    });
}

#[test]
fn reductions_record_the_same_ir() {
    let types = [f64t(&[3, 4, 5])];
    same_ir("red", &types, |a| {
        let x = &a[0];
        vec![
            x.sum(&[0]).sum(&[0, 1]),
            x.mean(&[1, 2]).sum(&[0]),
            x.max(&[2]).min(&[0, 1]),
            x.logsumexp(&[0, 2]).mean(&[0]),
            Tensor::from(x.sum_all()),
        ]
    });
}

#[test]
fn f32_tensors_record_the_same_ir() {
    let types = [tt(ScalarType::F32, &[2, 3]), tt(ScalarType::F32, &[3])];
    let f = same_ir("f32", &types, |a| {
        let y = (&a[0] * 2.0 + &a[1]).tanh() - 0.5;
        vec![y.sum(&[0, 1]), y.pad(1.0, &[(1, 0), (0, 0)])]
    });
    assert!(f.to_string().contains("f32"), "{f}");
}

#[test]
fn constants_mixing_records_the_same_ir() {
    let types = [f64t(&[3]), Type::F64];
    same_ir("mix", &types, |a| {
        let s = a[1].to_var();
        // Constants fold among themselves (nothing recorded) in both modes.
        let k = Tensor::from_f64(&[3], vec![1.0, 2.0, 4.0]) * 2.0 + 1.0;
        let ones = Tensor::fill(1.0, &[3]);
        let v = Tensor::stack(&[s, Var::constant(2.0), s * s]);
        let c = Var::constant(3.0).exp() + 1.0;
        let y = (&a[0] * &k + &ones) * c + &v;
        let z = y.at(1).to_var() * Float::sqrt(s) + Float::max(s, Var::constant(0.0));
        vec![y.sum(&[0]), Tensor::from(z), Tensor::from(Float::signum(s))]
    });
}

#[test]
fn scalar_traces_record_the_same_ir() {
    let f = |p: &[Var]| {
        let (x, h) = (p[0], p[1]);
        let y = fori_loop(0, 100, (x, Var::constant(0.0)), |i, (x, t)| {
            (x + x * h + (t * 0.5).sin(), t + i.to_var())
        });
        vec![y.0.tanh() * y.1, (x * h).powi(3).exp_m1().atan2(h)]
    };
    let eager = trace("s", &[0.5, 0.01], f).unwrap();
    let abs = trace_abstract("s", 2, f).unwrap();
    assert_eq!(eager.to_string(), abs.to_string());
}

// ---- value-dependent use fails, naming what asked ----

fn abstract_error(f: impl FnOnce(&[Tensor]) -> Vec<Tensor>) -> (TraceError, String) {
    let e = trace_tensors_abstract("g", &[f64t(&[3]), Type::F64], f).expect_err("must fail");
    let msg = e.to_string();
    assert!(matches!(e, TraceError::Abstract { .. }), "{e:?}");
    assert!(msg.contains("@g") && msg.contains("abstract"), "{msg}");
    (e, msg)
}

#[test]
fn comparisons_fail_an_abstract_trace() {
    let (_, msg) = abstract_error(|a| {
        let s = a[1].to_var();
        let y = if s < 0.0 { -s } else { s };
        vec![Tensor::from(y)]
    });
    assert!(msg.contains("`lt`"), "{msg}");
    // The same program traces eagerly (with a guard).
    let f = trace_tensors("g", &[example(f64t(&[3]), 0), Val::F64(0.5)], |a| {
        let s = a[1].to_var();
        vec![Tensor::from(if s < 0.0 { -s } else { s })]
    })
    .unwrap();
    assert!(f.to_string().contains("guard"), "{f}");
}

#[test]
fn predicates_and_conversions_fail_an_abstract_trace() {
    let (_, msg) = abstract_error(|a| {
        let s = a[1].to_var();
        let _ = s.is_nan();
        vec![Tensor::from(s)]
    });
    assert!(msg.contains("`ne`"), "{msg}");
    let (_, msg) = abstract_error(|a| {
        let n = a[0].get(0).to_usize().unwrap_or(0);
        vec![Tensor::from(n as f64)]
    });
    assert!(msg.contains("to_usize"), "{msg}");
    let (_, msg) = abstract_error(|a| {
        let _ = a[1].to_var().is_normal();
        vec![a[0].clone()]
    });
    assert!(msg.contains("classify"), "{msg}");
}

#[test]
fn values_fail_an_abstract_trace() {
    let (_, msg) = abstract_error(|a| {
        let v = a[1].to_var().value();
        assert!(v.is_nan(), "no made-up value");
        vec![a[0].sum(&[0])]
    });
    assert!(msg.contains("Var::value"), "{msg}");
    let (_, msg) = abstract_error(|a| {
        let y = &a[0] * 2.0;
        assert!(y.is_abstract());
        assert!(matches!(y.value(), Val::F64(v) if v.is_nan()));
        vec![y.sum(&[0])]
    });
    assert!(msg.contains("Tensor::value"), "{msg}");
    let (_, msg) = abstract_error(|a| {
        let y = fori_loop(0, 3, a[0].clone(), |i, x| {
            let _ = i.value();
            x * 2.0
        });
        vec![y.sum(&[0])]
    });
    assert!(msg.contains("Index::value"), "{msg}");
}

#[test]
fn try_value_reports_without_failing_the_trace() {
    let f = trace_tensors_abstract("t", &[f64t(&[2]), Type::F64], |a| {
        let s = a[1].to_var();
        assert!(matches!(s.try_value(), Err(TraceError::Abstract { .. })));
        assert!(matches!(a[0].try_value(), Err(TraceError::Abstract { .. })));
        // Constants keep their values in an abstract trace.
        let k = Tensor::from(2.0) * 3.0;
        assert!(!k.is_abstract());
        assert_eq!(k.try_value().cloned(), Ok(Val::F64(6.0)));
        assert_eq!(Var::constant(1.5).try_value(), Ok(1.5));
        vec![&a[0] * s + k]
    })
    .unwrap();
    assert_eq!(f.num_insts(), 4, "{f}");
}

#[test]
fn an_escaped_abstract_var_has_no_value_after_the_trace() {
    let mut escaped = None;
    trace_abstract("e", 1, |p| {
        escaped = Some(p[0] * 2.0);
        vec![p[0]]
    })
    .unwrap();
    let v = escaped.unwrap();
    assert!(v.is_abstract());
    assert!(v.value().is_nan());
    assert!(matches!(v.try_value(), Err(TraceError::Abstract { .. })));
    // Comparisons outside the trace answer as NaN does: false.
    assert_eq!(
        (v < 1.0, v >= 1.0, v.partial_cmp(&1.0)),
        (false, false, None)
    );
}

#[test]
fn shape_and_index_errors_agree_between_modes() {
    let eager = |f: &dyn Fn(&[Tensor]) -> Vec<Tensor>| {
        trace_tensors("h", &[example(f64t(&[3]), 0), Val::F64(0.5)], f).unwrap_err()
    };
    let abs = |f: &dyn Fn(&[Tensor]) -> Vec<Tensor>| {
        trace_tensors_abstract("h", &[f64t(&[3]), Type::F64], f).unwrap_err()
    };
    let shape = |a: &[Tensor]| vec![(&a[0] + Tensor::zeros(&[4])).sum(&[0])];
    assert_eq!(eager(&shape), abs(&shape));
    assert!(matches!(abs(&shape), TraceError::Type { .. }));
    let index = |a: &[Tensor]| vec![a[0].at(3)];
    assert_eq!(eager(&index), abs(&index));
    assert!(abs(&index).to_string().contains("index 3 is outside 0..3"));
    let insert = |a: &[Tensor]| vec![a[0].insert(-1, 1.0)];
    assert_eq!(eager(&insert), abs(&insert));
}
