//! The front end: traced tensors and traced loops, checked against plain Rust loops
//! (values), the unrolled trace and central finite differences (gradients), with every
//! shape error path.

// Index loops mirror the maths of the plain-Rust references; a rank-1 slice is one range.
#![allow(clippy::needless_range_loop, clippy::single_range_in_vec_init)]

use jitad::ir::checkpoint::Policy;
use jitad::ir::tensor::Tensor as Buf;
use jitad::ir::trace::Tensor;
use jitad::ir::TraceError;
use jitad::{fori_loop, Error, Float, Index, Traced, Val, Var};

fn mat(dims: &[usize], data: Vec<f64>) -> Val {
    Val::tensor(Buf::f64(dims, data).unwrap())
}

/// Deterministic pseudo-random numbers in [-1, 1).
fn numbers(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn f64s(v: &Val) -> Vec<f64> {
    match v {
        Val::F64(x) => vec![*x],
        Val::Tensor(t) => t.as_f64().unwrap().to_vec(),
        other => panic!("not f64: {other:?}"),
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * (1.0 + a.abs().max(b.abs()))
}

fn trace_err(r: jitad::Result<Traced>) -> TraceError {
    match r {
        Err(Error::Trace(e)) => e,
        Err(e) => panic!("expected a trace error, got {e}"),
        Ok(t) => panic!("expected a trace error, got\n{t}"),
    }
}

// ---- an MLP forward pass: matmul + bias + tanh + logsumexp ----

const B: usize = 4;
const I: usize = 3;
const H: usize = 5;
const O: usize = 2;

/// Plain Rust: Σ_b logsumexp_o( tanh(x·W1 + b1)·W2 + b2 ).
fn mlp_plain(x: &[f64], w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]) -> f64 {
    let mut total = 0.0;
    for b in 0..B {
        let mut h = [0.0; H];
        for (j, hj) in h.iter_mut().enumerate() {
            let mut s = b1[j];
            for i in 0..I {
                s += x[b * I + i] * w1[i * H + j];
            }
            *hj = s.tanh();
        }
        let mut z = [0.0; O];
        for (o, zo) in z.iter_mut().enumerate() {
            let mut s = b2[o];
            for (j, hj) in h.iter().enumerate() {
                s += hj * w2[j * O + o];
            }
            *zo = s;
        }
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        total += m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    }
    total
}

fn mlp_traced(a: &[Tensor]) -> Tensor {
    let h = (a[0].matmul(&a[1]) + &a[2]).tanh();
    let z = h.matmul(&a[3]) + &a[4];
    z.logsumexp(&[1]).sum(&[0])
}

fn mlp_args() -> (Vec<Vec<f64>>, Vec<Val>) {
    let dims: [&[usize]; 5] = [&[B, I], &[I, H], &[H], &[H, O], &[O]];
    let raw: Vec<Vec<f64>> = dims
        .iter()
        .enumerate()
        .map(|(k, d)| numbers(d.iter().product(), k as u64 + 1))
        .collect();
    let vals = raw
        .iter()
        .zip(dims)
        .map(|(r, d)| mat(d, r.clone()))
        .collect();
    (raw, vals)
}

#[test]
fn mlp_forward_matches_plain_rust() {
    let (raw, args) = mlp_args();
    let f = jitad::trace_tensors("mlp", &args, |a| vec![mlp_traced(a)]).unwrap();
    let want = mlp_plain(&raw[0], &raw[1], &raw[2], &raw[3], &raw[4]);
    let got = f64s(&f.eval(&args).unwrap()[0]);
    assert!(close(got[0], want, 1e-13), "{} vs {want}", got[0]);
    // The trace is O(ops), not O(elements): 2 matmuls, 2 adds, tanh, 2 reductions, ret.
    assert_eq!(f.num_insts(), 8, "{f}");
    // Another input gives the plain Rust value too (nothing was folded from the example).
    let other: Vec<f64> = numbers(B * I, 99);
    let mut args2 = args.clone();
    args2[0] = mat(&[B, I], other.clone());
    let got = f64s(&f.eval(&args2).unwrap()[0]);
    let want = mlp_plain(&other, &raw[1], &raw[2], &raw[3], &raw[4]);
    assert!(close(got[0], want, 1e-13));
}

#[test]
fn example_values_are_the_interpreters_bit_for_bit() {
    let (_, args) = mlp_args();
    let mut eager = None;
    let f = jitad::trace_tensors("mlp", &args, |a| {
        let y = mlp_traced(a);
        eager = Some(y.value().clone());
        vec![y]
    })
    .unwrap();
    assert_eq!(f.eval(&args).unwrap()[0], eager.unwrap());
}

// ---- broadcasting, mixing with Var and f64 ----

#[test]
fn broadcasting_mixes_tensors_vars_and_literals() {
    let m = numbers(6, 7);
    let row = numbers(3, 8);
    let col = numbers(2, 9);
    let s = 0.75;
    let args = [
        mat(&[2, 3], m.clone()),
        mat(&[3], row.clone()),
        mat(&[2, 1], col.clone()),
        Val::F64(s),
    ];
    let f = jitad::trace_tensors("bc", &args, |a| {
        let v: Var = a[3].to_var();
        let t = (&a[0] + &a[1]) * v - 2.0; // [2,3] + [3], × Var, − f64
        let u = 1.0 / (v + &a[2]) + &t; // Var + [2,1] → [2,1], + [2,3]
        let w = (-&u).exp().sqrt().sigmoid().relu() + u.abs().sin() - t.cos();
        vec![t, u, w.maximum(0.25).minimum(v)]
    })
    .unwrap();
    let out = f.eval(&args).unwrap();
    let (t, u, w) = (f64s(&out[0]), f64s(&out[1]), f64s(&out[2]));
    for r in 0..2 {
        for c in 0..3 {
            let k = r * 3 + c;
            let tk = (m[k] + row[c]) * s - 2.0;
            let uk = 1.0 / (s + col[r]) + tk;
            let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
            let wk = sig((-uk).exp().sqrt()).max(0.0) + uk.abs().sin() - tk.cos();
            assert_eq!(t[k], tk);
            assert!(close(u[k], uk, 1e-15));
            assert!(
                close(w[k], wk.max(0.25).min(s), 1e-14),
                "{} vs {}",
                w[k],
                wk
            );
        }
    }
    assert_eq!(out[0].type_of().to_string(), "f64[2,3]");
}

#[test]
fn structural_ops_match_plain_rust() {
    let m: Vec<f64> = (0..12).map(f64::from).collect();
    let args = [mat(&[3, 4], m.clone())];
    let f = jitad::trace_tensors("st", &args, |a| {
        let x = &a[0];
        vec![
            x.t(),                                                             // [4,3]
            x.reshape(&[2, 6]),                                                // [2,6]
            x.slice(&[1..3, 0..2]),                                            // [2,2]
            Tensor::concat(&[x.clone(), x.slice(&[0..1, 0..4])], 0),           // [4,4]
            x.sum(&[0]),                                                       // [4]
            x.mean(&[1]),                                                      // [3]
            x.max(&[0, 1]),                                                    // rank 0
            x.min(&[1]),                                                       // [3]
            x.slice(&[0..1, 0..4]).reshape(&[4]).dot(&x.at(2)),                // rank 0
            x.at(1).broadcast_to(&[2, 4]),                                     // [2,4]
            Tensor::fill(2.0, &[4]) * x.at(0), // constant fill × row
            Tensor::from_f64(&[4], vec![1.0, 2.0, 3.0, 4.0]) + x.at(0), // non-uniform constant
            Tensor::stack(&[x.at(0).get(1), Var::constant(7.0), x.sum_all()]), // [3]
            Tensor::from_f64(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]) * x.slice(&[0..2, 0..2]),
        ]
    })
    .unwrap();
    let out: Vec<Vec<f64>> = f.eval(&args).unwrap().iter().map(f64s).collect();
    assert_eq!(out[0], [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
    assert_eq!(out[1], m);
    assert_eq!(out[2], [4., 5., 8., 9.]);
    assert_eq!(&out[3][..12], &m[..]);
    assert_eq!(&out[3][12..], [0., 1., 2., 3.]);
    assert_eq!(out[4], [12., 15., 18., 21.]);
    assert_eq!(out[5], [1.5, 5.5, 9.5]);
    assert_eq!(out[6], [11.]);
    assert_eq!(out[7], [0., 4., 8.]);
    assert_eq!(out[8], [0. * 8. + 1. * 9. + 2. * 10. + 3. * 11.]);
    assert_eq!(out[9], [4., 5., 6., 7., 4., 5., 6., 7.]);
    assert_eq!(out[10], [0., 2., 4., 6.]);
    assert_eq!(out[11], [1., 3., 5., 7.]);
    assert_eq!(out[12], [1., 7., 66.]);
    assert_eq!(out[13], [0., 2., 12., 20.]);
}

// ---- indexing ----

#[test]
fn indexing_by_constant_and_traced_indices() {
    let v = numbers(5, 3);
    let m: Vec<f64> = (0..6).map(f64::from).collect();
    let args = [mat(&[5], v.clone()), mat(&[2, 3], m), Val::I64(3)];
    let f = jitad::trace_tensors("ix", &args, |a| {
        let i: Index = a[2].to_index();
        let e: Var = a[0].get(i) + a[0].get(0) * 2.0; // traced and constant index
        let row = a[1].at(i - 2); // row 1
        let upd = a[1].insert(0, row.clone() * e); // row 0 ← row 1 · e
        let put = a[0].insert(i, Var::constant(-1.0)); // element i ← −1
        vec![e.into(), row, upd, put, i.to_var().into()]
    })
    .unwrap();
    let out = f.eval(&args).unwrap();
    let e = v[3] + v[0] * 2.0;
    assert_eq!(f64s(&out[0]), [e]);
    assert_eq!(f64s(&out[1]), [3., 4., 5.]);
    assert_eq!(f64s(&out[2]), [3. * e, 4. * e, 5. * e, 3., 4., 5.]);
    let mut put = v.clone();
    put[3] = -1.0;
    assert_eq!(f64s(&out[3]), put);
    assert_eq!(f64s(&out[4]), [3.0]);
    // The index is an argument: another index reads another element ...
    let mut args4 = args.clone();
    args4[2] = Val::I64(2);
    let out = f.eval(&args4).unwrap();
    assert_eq!(f64s(&out[0]), [v[2] + v[0] * 2.0]);
    assert_eq!(f64s(&out[1]), [0., 1., 2.]);
    // ... and one out of range is an evaluation error, not a panic.
    args4[2] = Val::I64(7);
    assert!(matches!(f.eval(&args4), Err(Error::Eval(_))));
}

#[test]
fn index_out_of_range_at_the_example_is_a_trace_error() {
    let args = [mat(&[3], vec![1.0, 2.0, 3.0]), Val::I64(3)];
    let e = trace_err(jitad::trace_tensors("oob", &args, |a| {
        vec![a[0].at(a[1].to_index())]
    }));
    assert!(
        matches!(e, TraceError::Example { op: "extract", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("index 3 is outside 0..3"), "{e}");
}

// ---- shape errors: a TraceError naming both shapes, never a panic ----

#[test]
fn every_shape_error_is_a_trace_error_naming_the_shapes() {
    let args = [
        mat(&[2, 3], numbers(6, 1)),
        mat(&[4], numbers(4, 2)),
        mat(&[3, 2], numbers(6, 3)),
    ];
    type Case = (
        &'static str,
        fn(&[Tensor]) -> Tensor,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        ("add", |a| &a[0] + &a[1], &["f64[2,3]", "f64[4]"]),
        ("mul", |a| &a[1] * &a[0], &["f64[4]", "f64[2,3]"]),
        ("matmul", |a| a[0].matmul(&a[0]), &["f64[2,3]", "f64[2,3]"]),
        ("dot", |a| a[1].dot(&a[0].at(0)), &["f64[4]", "f64[3]"]),
        ("sum axis", |a| a[0].sum(&[2]), &["axis 2", "f64[2,3]"]),
        (
            "sum axis beyond rank 4",
            |a| a[0].sum(&[9]),
            &["axis 9", "f64[2,3]"],
        ),
        (
            "logsumexp twice",
            |a| a[0].logsumexp(&[1, 1]),
            &["axis 1", "f64[2,3]"],
        ),
        (
            "transpose",
            |a| a[0].transpose(&[0, 0]),
            &["[0, 0]", "f64[2,3]"],
        ),
        (
            "reshape",
            |a| a[0].reshape(&[4, 2]),
            &["f64[2,3]", "f64[4,2]"],
        ),
        (
            "broadcast_to",
            |a| a[1].broadcast_to(&[2, 3]),
            &["f64[4]", "f64[2,3]"],
        ),
        ("slice", |a| a[0].slice(&[0..2, 1..5]), &["1:5", "f64[2,3]"]),
        ("slice rank", |a| a[0].slice(&[0..1]), &["f64[2,3]"]),
        (
            "concat",
            |a| Tensor::concat(&[a[0].clone(), a[2].clone()], 0),
            &["f64[2,3]", "f64[3,2]"],
        ),
        (
            "insert",
            |a| a[0].insert(0, a[1].clone()),
            &["f64[4]", "f64[2,3]"],
        ),
        ("extract rank 0", |a| a[0].sum(&[0, 1]).at(0), &["f64"]),
        ("zero dim", |a| a[0].reshape(&[0, 6]), &["[0, 6]"]),
        (
            "from_f64 length",
            |_| Tensor::from_f64(&[2, 2], vec![1.0; 3]),
            &["[2, 2]", "3"],
        ),
        (
            "to_var of a tensor",
            |a| a[0].to_var().into(),
            &["f64[2,3]", "to_var"],
        ),
        (
            "to_index of a float",
            |a| a[0].at(a[1].sum(&[0]).to_index()),
            &["to_index", "f64"],
        ),
        (
            "large constant",
            |a| {
                let big = Tensor::from_f64(&[2000], (0..2000).map(f64::from).collect());
                a[1].broadcast_to(&[500, 4]).reshape(&[2000]) + big
            },
            &["f64[2000]", "argument"],
        ),
        (
            "absurd fill",
            |_| Tensor::fill(1.0, &[1 << 20, 1 << 20]),
            &["[1048576, 1048576]"],
        ),
    ];
    for (what, f, names) in cases {
        let e = trace_err(jitad::trace_tensors("bad", &args, |a| vec![f(a)]));
        let msg = e.to_string();
        for n in names {
            assert!(msg.contains(n), "{what}: `{msg}` does not name {n}");
        }
        assert!(msg.contains("@bad"), "{what}: {msg}");
    }
}

#[test]
fn the_first_error_wins_and_poison_propagates() {
    let args = [mat(&[2, 3], numbers(6, 1)), mat(&[4], numbers(4, 2))];
    let e = trace_err(jitad::trace_tensors("p", &args, |a| {
        let bad = &a[0] + &a[1]; // first error
        let worse = bad.matmul(&a[0]); // would be another; the poison passes through
        assert!(worse.error().is_some());
        vec![a[0].clone()]
    }));
    assert!(e.to_string().contains("`add`"), "{e}");
    // Outside a trace a bad op is a poisoned value, not a panic.
    let a = Tensor::from_f64(&[2], vec![1.0, 2.0]);
    let b = Tensor::from_f64(&[3], vec![1.0, 2.0, 3.0]);
    let c = (&a + &b).exp();
    assert!(matches!(c.check(), Err(TraceError::Type { .. })));
    assert!(c
        .error()
        .unwrap()
        .to_string()
        .contains("f64[2] with f64[3]"));
    assert!(c.sum_all().value().is_nan());
    // And a good op outside a trace is plain eager arithmetic.
    assert_eq!(f64s((&a * 3.0 + 1.0).value()), [4.0, 7.0]);
}

// ---- traced loops ----

fn lorenz<T: Float>(s: [T; 3], p: [T; 3]) -> [T; 3] {
    let [x, y, z] = s;
    let [sigma, rho, beta] = p;
    [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]
}

fn axpy<T: Float>(h: T, k: [T; 3], s: [T; 3]) -> [T; 3] {
    [h * k[0] + s[0], h * k[1] + s[1], h * k[2] + s[2]]
}

/// One classic Runge–Kutta step of size `h`.
fn rk4<T: Float>(s: [T; 3], p: [T; 3], h: T) -> [T; 3] {
    let half = h * T::from(0.5).unwrap();
    let k1 = lorenz(s, p);
    let k2 = lorenz(axpy(half, k1, s), p);
    let k3 = lorenz(axpy(half, k2, s), p);
    let k4 = lorenz(axpy(h, k3, s), p);
    let two = T::from(2.0).unwrap();
    let sixth = h / T::from(6.0).unwrap();
    let mut out = s;
    for c in 0..3 {
        out[c] = s[c] + sixth * (k1[c] + two * k2[c] + two * k3[c] + k4[c]);
    }
    out
}

const LORENZ_X: [f64; 6] = [10.0, 28.0, 8.0 / 3.0, 1.0, 1.0, 1.0];
const DT: f64 = 0.01;

fn lorenz_native(p: &[f64], n: usize) -> f64 {
    let mut s = [p[3], p[4], p[5]];
    for _ in 0..n {
        s = rk4(s, [p[0], p[1], p[2]], DT);
    }
    s[0] + s[1] + s[2]
}

fn lorenz_looped(n: i64) -> Traced {
    jitad::trace_scalar("lorenz", &LORENZ_X, |p| {
        let params = [p[0], p[1], p[2]];
        let s = fori_loop(0, n, [p[3], p[4], p[5]], |_i, s| {
            rk4(s, params, Var::constant(DT))
        });
        s[0] + s[1] + s[2]
    })
    .unwrap()
}

fn lorenz_unrolled(n: usize) -> Traced {
    jitad::trace_scalar("lorenz", &LORENZ_X, |p| {
        let mut s = [p[3], p[4], p[5]];
        for _ in 0..n {
            s = rk4(s, [p[0], p[1], p[2]], Var::constant(DT));
        }
        s[0] + s[1] + s[2]
    })
    .unwrap()
}

#[test]
fn a_traced_time_stepper_is_o_body() {
    let (small, large) = (lorenz_looped(10), lorenz_looped(1000));
    eprintln!(
        "lorenz rk4 instructions: looped N=10: {}, N=1000: {}; unrolled N=10: {}, N=100: {}",
        small.num_insts(),
        large.num_insts(),
        lorenz_unrolled(10).num_insts(),
        lorenz_unrolled(100).num_insts(),
    );
    assert_eq!(small.num_insts(), large.num_insts());
    assert!(small.num_insts() <= 100, "{small}");
    assert!(large.to_jir().contains("loop %"), "{large}");
    // Also after differentiation: the gradient (its entry and the step functions it
    // calls) does not grow with N either.
    let size = |t: &Traced| -> usize { t.reachable().iter().map(|f| f.num_insts()).sum() };
    let (gs, gl) = (small.grad().unwrap(), large.grad().unwrap());
    eprintln!(
        "lorenz rk4 gradient instructions (all functions): N=10: {}, N=1000: {}",
        size(&gs),
        size(&gl)
    );
    assert_eq!(size(&gs), size(&gl));
}

#[test]
fn a_traced_loop_has_the_unrolled_value_and_gradient() {
    for n in [0usize, 1, 7, 50] {
        let looped = lorenz_looped(n as i64);
        let unrolled = lorenz_unrolled(n);
        let want = lorenz_native(&LORENZ_X, n);
        assert_eq!(looped.eval_f64(&LORENZ_X).unwrap(), [want], "n = {n}");
        assert_eq!(unrolled.eval_f64(&LORENZ_X).unwrap(), [want]);
        let gl = looped.grad().unwrap().eval_f64(&LORENZ_X).unwrap();
        let gu = unrolled.grad().unwrap().eval_f64(&LORENZ_X).unwrap();
        assert_eq!(gl[0], want);
        for k in 1..7 {
            assert!(
                close(gl[k], gu[k], 1e-12),
                "n = {n}, ∂{k}: {} vs {}",
                gl[k],
                gu[k]
            );
            // Central differences on the native function.
            let e = 1e-6 * (1.0 + LORENZ_X[k - 1].abs());
            let (mut xp, mut xm) = (LORENZ_X, LORENZ_X);
            xp[k - 1] += e;
            xm[k - 1] -= e;
            let fd = (lorenz_native(&xp, n) - lorenz_native(&xm, n)) / (2.0 * e);
            assert!(
                close(gl[k], fd, 1e-5),
                "n = {n}, ∂{k}: {} vs fd {fd}",
                gl[k]
            );
        }
    }
}

#[test]
fn a_traced_loop_gradient_is_the_same_under_every_checkpoint_policy() {
    let g = lorenz_looped(40).grad().unwrap();
    let base = g.eval_f64(&LORENZ_X).unwrap();
    for policy in [
        Policy::Binomial(3),
        Policy::Binomial(1),
        Policy::Every(7),
        Policy::StoreAll,
    ] {
        let gp = g.with_checkpoint(policy);
        assert_eq!(gp.eval_f64(&LORENZ_X).unwrap(), base, "{policy:?}");
    }
    let (_, stats) = g
        .with_checkpoint(Policy::Binomial(3))
        .eval_with_stats(&LORENZ_X.map(Val::F64))
        .unwrap();
    assert!(stats.forward_steps > 0, "{stats:?}");
    // The JIT agrees with the interpreter, primal and gradient.
    for t in [lorenz_looped(40), g.with_checkpoint(Policy::Binomial(3))] {
        let c = t.compile().unwrap();
        let mut out = vec![0.0; c.results().len()];
        c.call_f64(&LORENZ_X, &mut out).unwrap();
        assert_eq!(out, t.eval_f64(&LORENZ_X).unwrap());
    }
}

#[test]
fn dynamic_bounds_index_use_and_integer_carries() {
    // Σ_{i=lo}^{hi-1} (i · v[i])² with lo, hi arguments, and a step counter.
    let v = numbers(6, 11);
    let args = [mat(&[6], v.clone()), Val::I64(1), Val::I64(5)];
    let f = jitad::trace_tensors("dyn", &args, |a| {
        let (lo, hi) = (a[1].to_index(), a[2].to_index());
        let (acc, count) = fori_loop(
            lo,
            hi,
            (Var::constant(0.0), Index::from(0)),
            |i, (acc, c)| {
                let t = i.to_var() * a[0].get(i);
                (acc + t * t, c + 1)
            },
        );
        vec![acc.into(), Tensor::from(count)]
    })
    .unwrap();
    let plain = |lo: usize, hi: usize| -> f64 {
        (lo..hi)
            .map(|i| (i as f64 * v[i]).powi(2))
            .fold(0.0, |a, b| a + b)
    };
    let out = f.eval(&args).unwrap();
    assert_eq!(out, [Val::F64(plain(1, 5)), Val::I64(4)]);
    let out = f
        .eval(&[args[0].clone(), Val::I64(0), Val::I64(6)])
        .unwrap();
    assert_eq!(out, [Val::F64(plain(0, 6)), Val::I64(6)]);
    // Zero trips: the initial carry.
    let out = f
        .eval(&[args[0].clone(), Val::I64(4), Val::I64(2)])
        .unwrap();
    assert_eq!(out, [Val::F64(0.0), Val::I64(0)]);
}

#[test]
fn loops_carry_tensors_and_nest() {
    // x ← tanh(W·x + b), n outer steps of m inner half-steps, against plain Rust.
    let (n, m) = (4usize, 3usize);
    let w = numbers(9, 21);
    let b = numbers(3, 22);
    let x0 = numbers(3, 23);
    let args = [
        mat(&[3, 3], w.clone()),
        mat(&[3], b.clone()),
        mat(&[3], x0.clone()),
    ];
    let f = jitad::trace_tensors("rnn", &args, |a| {
        // A computed tensor captured by the inner body (its example must stay alive).
        let w = a[0].t().t();
        let x = fori_loop(0, n as i64, a[2].clone(), |_i, x| {
            fori_loop(0, m as i64, x, |_j, x| (w.matmul(&x) + &a[1]).tanh() * 0.5)
        });
        vec![x]
    })
    .unwrap();
    let mut x = x0.clone();
    for _ in 0..n * m {
        let mut y = [0.0; 3];
        for (r, yr) in y.iter_mut().enumerate() {
            let mut s = 0.0;
            for c in 0..3 {
                s += w[r * 3 + c] * x[c];
            }
            *yr = (s + b[r]).tanh() * 0.5;
        }
        x = y.to_vec();
    }
    let got = f64s(&f.eval(&args).unwrap()[0]);
    for k in 0..3 {
        assert!(close(got[k], x[k], 1e-14), "{got:?} vs {x:?}");
    }
    assert_eq!(f.to_jir().matches("loop %").count(), 2, "{f}");
}

#[test]
fn loop_errors_are_trace_errors() {
    // A body value used after the loop.
    let e = trace_err(jitad::trace_scalar("esc", &[1.0], |p| {
        let mut leak = None;
        let s = fori_loop(0, 3, p[0], |_i, x| {
            let y = x * 2.0;
            leak = Some(y);
            y
        });
        s + leak.unwrap()
    }));
    assert!(matches!(e, TraceError::LoopEscape { .. }), "{e}");
    // A carry whose structure changes.
    let e = trace_err(jitad::trace_scalar("shape", &[1.0], |p| {
        let v = fori_loop(0, 3, vec![p[0]], |_i, mut v| {
            v.push(v[0]);
            v
        });
        v[0]
    }));
    assert!(
        matches!(
            e,
            TraceError::CarryStructure {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    // A tensor carry whose shape changes: the yield type error names both types.
    let e = trace_err(jitad::trace_tensors(
        "grow",
        &[mat(&[2], vec![1.0, 2.0])],
        |a| {
            vec![fori_loop(0, 3, a[0].clone(), |_i, x| {
                x.broadcast_to(&[2, 2])
            })]
        },
    ));
    let msg = e.to_string();
    assert!(msg.contains("f64[2,2]") && msg.contains("f64[2]"), "{msg}");
    // A data-dependent branch the first iteration answers one way and a later one the
    // other: the guard fails at the example, so the trace fails rather than record a
    // program that is wrong at its own example.
    let e = trace_err(jitad::trace_scalar("branch", &[1.0], |p| {
        fori_loop(0, 10, p[0], |_i, x| if x < 5.0 { x + 1.0 } else { x * 0.5 })
    }));
    assert!(matches!(e, TraceError::LoopExample { .. }), "{e}");
    assert!(e.to_string().contains("guard"), "{e}");
    // A branch every iteration takes the same way is fine, and guarded.
    let t = jitad::trace_scalar("same", &[1.0], |p| {
        fori_loop(0, 10, p[0], |_i, x| if x < 100.0 { x + 1.0 } else { x })
    })
    .unwrap();
    assert_eq!(t.eval_f64(&[1.0]).unwrap(), [11.0]);
    assert!(t.eval_f64(&[95.0]).is_err());
    // A shape error inside the body.
    let e = trace_err(jitad::trace_tensors(
        "inner",
        &[mat(&[2], vec![1.0, 2.0])],
        |a| vec![fori_loop(0, 3, a[0].clone(), |_i, x| x.matmul(&x))],
    ));
    assert!(
        e.to_string().contains("`dot`") || e.to_string().contains("`matmul`"),
        "{e}"
    );
}

#[test]
fn outside_a_trace_fori_loop_is_a_plain_loop() {
    let (a, b) = fori_loop(0, 5, (Var::constant(0.0), Index::from(1)), |i, (a, b)| {
        (a + i.to_var(), b * 2)
    });
    assert_eq!((a.value(), b.value()), (10.0, 32));
    assert!(!a.is_traced() && !b.is_traced());
    let x = fori_loop(0, 4, Var::constant(1.0), |_, x| x * 3.0);
    assert_eq!(x.value(), 81.0);
}

#[test]
fn f32_tensors_mix_with_literals_and_the_trace_holds_no_dead_buffers() {
    let x = Val::tensor(
        Buf::new(
            jitad::ir::Shape::new(&[3]).unwrap(),
            jitad::ir::tensor::TensorData::F32(vec![1.0, 2.0, 3.0]),
        )
        .unwrap(),
    );
    let f = jitad::trace_tensors("f32", std::slice::from_ref(&x), |a| {
        let y = (&a[0] * 2.0 + 0.5).tanh();
        // Only `y` holds its buffer: the trace keeps op results weakly.
        if let Val::Tensor(b) = y.value() {
            assert_eq!(std::sync::Arc::strong_count(b), 1);
        }
        vec![y.sum(&[0])]
    })
    .unwrap();
    let want: f32 = [1.0f32, 2.0, 3.0]
        .iter()
        .map(|v| (v * 2.0 + 0.5).tanh())
        .fold(-0.0, |a, b| a + b);
    let got = f.eval(&[x]).unwrap();
    assert!(
        matches!(got[0], Val::F32(v) if (v - want).abs() <= 1e-6),
        "{got:?}"
    );
    // An f64 Var does not mix with f32 (no implicit promotion): a trace error.
    let x32 = Val::F32(1.0);
    let e = trace_err(jitad::trace_tensors("mix", &[x32, Val::F64(1.0)], |a| {
        vec![&a[0] + a[1].to_var()]
    }));
    assert!(
        e.to_string().contains("f32") && e.to_string().contains("f64"),
        "{e}"
    );
}

/// The README's "Tensors and traced loops" example, verbatim.
#[test]
fn readme_example() -> jitad::Result<()> {
    use jitad::ir::tensor::Tensor as Buf;
    use jitad::{fori_loop, Val};

    // tanh(x·W + b), then logsumexp over the outputs, summed over the batch.
    let x = Val::tensor(Buf::f64(&[2, 3], vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).unwrap());
    let w = Val::tensor(Buf::f64(&[3, 2], vec![1.0, -1.0, 0.5, 0.5, -0.5, 1.0]).unwrap());
    let b = Val::tensor(Buf::f64(&[2], vec![0.0, 0.1]).unwrap());
    let mlp = jitad::trace_tensors("mlp", &[x.clone(), w.clone(), b.clone()], |a| {
        let h = (a[0].matmul(&a[1]) + &a[2]).tanh();
        vec![h.logsumexp(&[1]).sum(&[0])]
    })?;
    let y = mlp.eval(&[x.clone(), w.clone(), b.clone()])?; // the interpreter
    let c = mlp.compile()?; // fused loops and GEMM (`call_buffers`: one slice per parameter)
    let mut z = [Val::F64(0.0)];
    c.call(&[x, w, b], &mut z)?;
    assert_eq!(z[0], y[0]); // bit for bit

    // 1000 explicit Euler steps of dx/dt = −k·x, recorded as one loop: 7 instructions.
    let decay = jitad::trace_scalar("decay", &[1.0, 0.5], |p| {
        let k = p[1];
        fori_loop(0, 1000, p[0], |_i, x| x - 0.001 * k * x)
    })?;
    let g = decay.grad()?.eval_f64(&[1.0, 0.5])?; // x_N, ∂x_N/∂x_0, ∂x_N/∂k

    // Checks (not in the README).
    let (x, w, b) = (
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [1.0, -1.0, 0.5, 0.5, -0.5, 1.0],
        [0.0, 0.1],
    );
    let mut want = 0.0;
    for r in 0..2 {
        let h: Vec<f64> = (0..2)
            .map(|c| (0..3).map(|k| x[r * 3 + k] * w[k * 2 + c]).sum::<f64>() + b[c])
            .map(f64::tanh)
            .collect();
        let m = h[0].max(h[1]);
        want += m + ((h[0] - m).exp() + (h[1] - m).exp()).ln();
    }
    assert!(close(f64s(&y[0])[0], want, 1e-14));
    assert_eq!(decay.num_insts(), 7, "{decay}");
    let (mut xn, q) = (1.0f64, 1.0 - 0.001 * 0.5);
    for _ in 0..1000 {
        xn = xn - 0.001 * 0.5 * xn;
    }
    assert_eq!(g[0], xn);
    assert!(close(g[1], q.powi(1000), 1e-12));
    assert!(close(g[2], -1000.0 * 0.001 * q.powi(999), 1e-12), "{g:?}");
    Ok(())
}

/// One classic RK4 step of `lorenz.jir`'s `@rk4`, operation for operation (fused
/// multiply-adds where it has `fma`).
fn rk4_fma<T: Float>(s: [T; 3], p: [T; 3], h: T) -> [T; 3] {
    let c = |v: f64| T::from(v).unwrap();
    let (half, two, sixth) = (c(0.5), c(2.0), c(0.16666666666666666));
    let hh = h * half;
    let k1 = lorenz(s, p);
    let k2 = lorenz([0, 1, 2].map(|i| hh.mul_add(k1[i], s[i])), p);
    let k3 = lorenz([0, 1, 2].map(|i| hh.mul_add(k2[i], s[i])), p);
    let k4 = lorenz([0, 1, 2].map(|i| h.mul_add(k3[i], s[i])), p);
    let hs = h * sixth;
    [0, 1, 2].map(|i| {
        let t = two.mul_add(k3[i], two.mul_add(k2[i], k1[i])) + k4[i];
        hs.mul_add(t, s[i])
    })
}

#[test]
fn the_lorenz_problem_in_rust_matches_lorenz_jir() {
    use jitad::problems::{lorenz_grad, lorenz_value, LORENZ_JIR, LORENZ_POINT};
    // @loss(σ, ρ, β, x₀, y₀, z₀, n: i64): n RK4 steps of 1/n, the step count an argument.
    let mut example: Vec<Val> = LORENZ_POINT.iter().map(|&v| Val::F64(v)).collect();
    example.push(Val::I64(10));
    let traced = jitad::trace_tensors("loss", &example, |a| {
        let p: Vec<Var> = a[..6].iter().map(Tensor::to_var).collect();
        let n = a[6].to_index();
        let h = Var::constant(1.0) / n.to_var();
        let s = fori_loop(0, n, [p[3], p[4], p[5]], |_i, s| {
            rk4_fma(s, [p[0], p[1], p[2]], h)
        });
        vec![(s[0] + s[1] + s[2]).into()]
    })
    .unwrap();
    let jir = Traced::from_jir(LORENZ_JIR, Some("loss")).unwrap();
    let (g, gj) = (traced.grad().unwrap(), jir.grad().unwrap());
    eprintln!(
        "lorenz: traced with fori_loop {} instructions (gradient {}); lorenz.jir's @loss {}",
        traced.num_insts(),
        g.num_insts(),
        jir.num_insts()
    );
    let mut tape = Vec::new();
    for n in [1usize, 10, 100] {
        let mut args = example.clone();
        args[6] = Val::I64(n as i64);
        let want = lorenz_value(&LORENZ_POINT, n);
        assert_eq!(traced.eval(&args).unwrap(), [Val::F64(want)], "n = {n}");
        assert_eq!(jir.eval(&args).unwrap(), [Val::F64(want)]);
        let mut hand = [0.0; 6];
        assert_eq!(lorenz_grad(&LORENZ_POINT, n, &mut tape, &mut hand), want);
        let (got, other) = (g.eval(&args).unwrap(), gj.eval(&args).unwrap());
        assert_eq!(got[0], Val::F64(want));
        for k in 0..6 {
            let (a, b) = (f64s(&got[k + 1])[0], f64s(&other[k + 1])[0]);
            assert!(
                close(a, hand[k], 1e-12),
                "n = {n}, ∂{k}: {a} vs hand {}",
                hand[k]
            );
            assert!(close(a, b, 1e-14), "n = {n}, ∂{k}: {a} vs lorenz.jir {b}");
        }
    }
}

// ---- gradients of traced tensor programs (tensor AD) ----

/// Replaces element `k` of tensor argument `a` by `v`.
fn with_element(args: &[Val], a: usize, k: usize, v: f64) -> Vec<Val> {
    let mut out = args.to_vec();
    let t = args[a].as_tensor().unwrap();
    let mut data = t.as_f64().unwrap().to_vec();
    data[k] = v;
    let dims: Vec<usize> = t.shape().dims().iter().map(|&d| d as usize).collect();
    out[a] = mat(&dims, data);
    out
}

/// Checks `f.grad()` against central differences in every element of every tensor
/// argument in `wrt`.
fn check_grad_fd(f: &Traced, args: &[Val], wrt: &[usize], rel: f64) {
    let g = f.grad_wrt(wrt).unwrap();
    let out = g.eval(args).unwrap();
    assert_eq!(
        out[0],
        f.eval(args).unwrap()[0],
        "the gradient's value is the primal's"
    );
    let value = |a: &[Val]| f64s(&f.eval(a).unwrap()[0])[0];
    let perturb = |a: usize, k: usize, v: f64| match &args[a] {
        Val::F64(_) => {
            let mut out = args.to_vec();
            out[a] = Val::F64(v);
            out
        }
        _ => with_element(args, a, k, v),
    };
    for (slot, &a) in wrt.iter().enumerate() {
        let x = f64s(&args[a]);
        let grad = f64s(&out[slot + 1]);
        assert_eq!(grad.len(), x.len());
        for k in 0..x.len() {
            let e = 1e-6 * (1.0 + x[k].abs());
            let fd =
                (value(&perturb(a, k, x[k] + e)) - value(&perturb(a, k, x[k] - e))) / (2.0 * e);
            assert!(
                close(grad[k], fd, rel),
                "∂/∂x{a}[{k}]: {} vs fd {fd}",
                grad[k]
            );
        }
    }
}

#[test]
fn mlp_loss_gradient_matches_finite_differences() {
    let (_, args) = mlp_args();
    let f = jitad::trace_tensors("mlp", &args, |a| vec![mlp_traced(a)]).unwrap();
    check_grad_fd(&f, &args, &[0, 1, 2, 3, 4], 1e-7);
    let g = f.grad().unwrap();
    eprintln!(
        "mlp loss: primal {} instructions, gradient {}",
        f.num_insts(),
        g.num_insts()
    );
    assert!(g.num_insts() <= 3 * f.num_insts() + 8, "{g}");
}

#[test]
fn gradient_through_broadcasting_indexing_and_reductions() {
    let args = [
        mat(&[3, 4], numbers(12, 31)),
        mat(&[4], numbers(4, 32)),
        Val::F64(0.3),
        Val::I64(1),
    ];
    let f = jitad::trace_tensors("mix", &args, |a| {
        let s = a[2].to_var();
        let i = a[3].to_index();
        let y = (&a[0] * s + &a[1]).sigmoid(); // [3,4] × Var + [4]
        let r = y.at(i).dot(&a[1]) * s; // a row at a traced index
        let m = y.max(&[1]).sum(&[0]) + y.mean(&[0, 1]);
        let c = Tensor::concat(&[y.slice(&[0..2, 1..3]), y.t().slice(&[0..2, 0..2])], 0);
        let e = y.at(0).get(2) * y.at(2).get(i);
        let z = y.insert(i, a[1].exp()); // row i replaced
        vec![r + m + c.logsumexp(&[0, 1]) + e + z.tanh().sum(&[0, 1])]
    })
    .unwrap();
    check_grad_fd(&f, &args, &[0, 1, 2], 1e-6);
}

#[test]
fn gradient_through_a_loop_carrying_a_tensor() {
    // x ← tanh(W·x + b)·s for 6 steps; loss Σ x. Reverse mode reverses the loop.
    let args = [
        mat(&[3, 3], numbers(9, 41)),
        mat(&[3], numbers(3, 42)),
        mat(&[3], numbers(3, 43)),
        Val::F64(0.9),
    ];
    let f = jitad::trace_tensors("rnn", &args, |a| {
        let s = a[3].to_var();
        let x = fori_loop(0, 6, a[2].clone(), |_i, x| {
            (a[0].matmul(&x) + &a[1]).tanh() * s
        });
        vec![x.sum(&[0])]
    })
    .unwrap();
    check_grad_fd(&f, &args, &[0, 1, 2, 3], 1e-6);
    let g = f.grad().unwrap();
    let base = g.eval(&args).unwrap();
    for policy in [Policy::Binomial(2), Policy::StoreAll, Policy::Every(4)] {
        assert_eq!(
            g.with_checkpoint(policy).eval(&args).unwrap(),
            base,
            "{policy:?}"
        );
    }
}
