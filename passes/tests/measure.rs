//! Instruction counts of optimised gradients relative to their primal (the
//! cheap-gradient principle: reverse mode costs a small multiple of the function). Run
//! with `--nocapture` to see the table; the test asserts the ≤ 3× target.

use jitad_ir::trace::{trace_scalar, Var};
use jitad_ir::{interp, Function, Module};
use jitad_passes::{grad, optimize, optimize_module, OptOptions};
use num_traits::Float;

fn rosenbrock<T: Float>(x: &[T]) -> T {
    let hundred = T::from(100.0).unwrap_or_else(T::zero);
    let one = T::one();
    let mut s = T::zero();
    for i in 0..x.len().saturating_sub(1) {
        let t = x[i + 1] - x[i] * x[i];
        let u = one - x[i];
        s = s + hundred * t * t + u * u;
    }
    s
}

const BATCH: usize = 32;
const IN: usize = 8;
const HIDDEN: usize = 16;
const PARAMS: usize = IN * HIDDEN + HIDDEN + HIDDEN * HIDDEN + HIDDEN + HIDDEN + 1;

fn lcg(s: &mut u64) -> f64 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Two tanh hidden layers, linear output, mean squared error over a fixed batch.
fn mlp<T: Float>(p: &[T], x: &[f64], y: &[f64]) -> T {
    let c = |v: f64| T::from(v).unwrap_or_else(T::nan);
    let (w1, rest) = p.split_at(IN * HIDDEN);
    let (b1, rest) = rest.split_at(HIDDEN);
    let (w2, rest) = rest.split_at(HIDDEN * HIDDEN);
    let (b2, rest) = rest.split_at(HIDDEN);
    let (w3, b3) = rest.split_at(HIDDEN);
    let mut loss = T::zero();
    for r in 0..BATCH {
        let xr = &x[r * IN..(r + 1) * IN];
        let h1: Vec<T> = (0..HIDDEN)
            .map(|j| {
                let mut s = b1[j];
                for k in 0..IN {
                    s = s + c(xr[k]) * w1[k * HIDDEN + j];
                }
                s.tanh()
            })
            .collect();
        let h2: Vec<T> = (0..HIDDEN)
            .map(|j| {
                let mut s = b2[j];
                for k in 0..HIDDEN {
                    s = s + h1[k] * w2[k * HIDDEN + j];
                }
                s.tanh()
            })
            .collect();
        let mut out = b3[0];
        for k in 0..HIDDEN {
            out = out + h2[k] * w3[k];
        }
        let e = out - c(y[r]);
        loss = loss + e * e;
    }
    loss / c(BATCH as f64)
}

/// (primal instructions, optimised primal, optimised gradient) for `f`.
fn counts(f: Function, x: &[f64], check: impl Fn(&[f64])) -> (usize, usize, usize) {
    let mut m = Module::new();
    let name = f.name.clone();
    let raw = f.num_insts();
    m.insert(f);
    let g = grad(&mut m, &name, &(0..x.len()).collect::<Vec<_>>()).unwrap();
    optimize_module(&mut m, &OptOptions::default());
    let mut p = m.get(&name).unwrap().clone();
    optimize(&mut p, &OptOptions::default());
    let out = interp::eval_f64(&m, &g, x).unwrap();
    check(&out);
    (raw, p.num_insts(), m.get(&g).unwrap().num_insts())
}

#[test]
fn gradient_cost_relative_to_primal() {
    let mut rows = Vec::new();
    // Quickstart.
    let q = trace_scalar("quickstart", &[3.0, 2.0], |x| (x[0] + x[1]) * (x[0] - x[1])).unwrap();
    rows.push((
        "quickstart",
        counts(q, &[3.0, 2.0], |g| assert_eq!(g, [5.0, 6.0, -4.0])),
    ));
    // Extended Rosenbrock, n = 1000.
    let n = 1000;
    let x0: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let r = trace_scalar("rosenbrock", &x0, |x: &[Var]| rosenbrock(x)).unwrap();
    let want = rosenbrock(&x0);
    rows.push((
        "rosenbrock n=1000",
        counts(r, &x0, |g| {
            assert!((g[0] - want).abs() <= 1e-12 * want.abs());
            // Hand-derived: ∂/∂x_0 = -400 t x_0 - 2(1 - x_0), t = x_1 - x_0².
            let t = x0[1] - x0[0] * x0[0];
            let d0 = -400.0 * t * x0[0] - 2.0 * (1.0 - x0[0]);
            assert!((g[1] - d0).abs() <= 1e-12 * d0.abs());
        }),
    ));
    // MLP loss.
    let mut s = 7u64;
    let xs: Vec<f64> = (0..BATCH * IN).map(|_| lcg(&mut s)).collect();
    let ys: Vec<f64> = xs
        .chunks(IN)
        .map(|r| (r[0] + r[1]).sin() + 0.5 * r[2] * r[3])
        .collect();
    let p0: Vec<f64> = (0..PARAMS).map(|_| 0.3 * lcg(&mut s)).collect();
    let f = trace_scalar("mlp", &p0, |p: &[Var]| mlp(p, &xs, &ys)).unwrap();
    let want = mlp(&p0, &xs, &ys);
    rows.push((
        "mlp 32x8-16-16-1",
        counts(f, &p0, |g| {
            assert!((g[0] - want).abs() <= 1e-12 * want.abs());
        }),
    ));
    println!(
        "{:<20} {:>8} {:>10} {:>9} {:>7}",
        "problem", "primal", "opt primal", "gradient", "ratio"
    );
    for (name, (raw, p, g)) in &rows {
        let ratio = *g as f64 / *p as f64;
        println!("{name:<20} {raw:>8} {p:>10} {g:>9} {ratio:>7.2}");
        assert!(ratio <= 3.0, "{name}: gradient is {ratio:.2}x the primal");
    }
}
