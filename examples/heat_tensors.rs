//! A PDE time-stepper written with tensor ops: the 1-D heat equation, explicit Euler,
//! zero (Dirichlet) boundaries, traced with `fori_loop` as one `loop` carrying a tensor,
//! and its gradient by reverse mode through the loop (store-all and binomial
//! checkpointing), against a hand-written store-all adjoint.
//!
//! ```text
//! u_{t+1} = u_t + r·(u_t[i−1] − 2·u_t[i] + u_t[i+1]),   loss = ½·Σ (u_T − y)²
//! ```
//!
//! The gradient is taken with respect to the initial state `u₀`, the target `y` and the
//! diffusion number `r`. The example checks the three engines against each other (the
//! JIT bit for bit against the interpreter; the hand-written adjoint within rounding)
//! and `∂loss/∂r` against a central difference, then times them.
//!
//! ```text
//! cargo run --release --example heat_tensors                 # n = 10⁴ cells, T = 100 steps
//! cargo run --release --example heat_tensors -- 100000 200   # n, T
//! ```

use jitad::ir::checkpoint::Policy;
use jitad::ir::interp::Val;
use jitad::ir::tensor::Tensor as Buffer;
use jitad::{fori_loop, Tensor, Type};
use std::time::Instant;

/// `u + r·Δu` with zero boundaries: the neighbours are `u` shifted by one cell, with a
/// zero shifted in.
// One range per axis; a vector has one axis.
#[allow(clippy::single_range_in_vec_init)]
fn step(u: &Tensor, r: &Tensor, n: usize) -> Tensor {
    let zero = Tensor::zeros(&[1]);
    let left = Tensor::concat(&[zero.clone(), u.slice(&[0..n - 1])], 0);
    let right = Tensor::concat(&[u.slice(&[1..n]), zero], 0);
    u + r * (left + right - 2.0 * u)
}

/// Calls `f(i, u[i], (Δu)[i])` for every cell (zero boundaries): the two edge cells,
/// then a branch-free interior loop.
#[inline(always)]
fn stencil(u: &[f64], mut f: impl FnMut(usize, f64, f64)) {
    let n = u.len();
    if n == 1 {
        f(0, u[0], -2.0 * u[0]);
        return;
    }
    f(0, u[0], u[1] - 2.0 * u[0]);
    for (j, w) in u.windows(3).enumerate() {
        f(j + 1, w[1], w[0] + w[2] - 2.0 * w[1]);
    }
    f(n - 1, u[n - 1], u[n - 2] - 2.0 * u[n - 1]);
}

/// `Δu` (zero boundaries) into `out`.
fn laplacian(u: &[f64], out: &mut [f64]) {
    stencil(u, |i, _, d| out[i] = d);
}

/// The loss alone, hand-written (for the finite difference).
fn loss_native(u0: &[f64], y: &[f64], r: f64, steps: usize) -> f64 {
    let mut u = u0.to_vec();
    let mut lap = vec![0.0; u.len()];
    for _ in 0..steps {
        laplacian(&u, &mut lap);
        for (a, d) in u.iter_mut().zip(&lap) {
            *a += r * d;
        }
    }
    0.5 * u.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
}

/// The best straightforward hand-written adjoint: a forward loop storing every state,
/// then a backward loop (`Δ` is symmetric, so `λ ← λ + r·Δλ`, and `∂loss/∂r` sums
/// `λ_{t+1}·Δu_t`), each update one branch-free pass over the cells. Buffers are
/// reused across calls.
struct Hand {
    /// `u_0 … u_{T−1}`, then the working state.
    states: Vec<f64>,
    /// The adjoint, and its next value.
    lam: Vec<f64>,
    next: Vec<f64>,
}

impl Hand {
    fn new(n: usize, steps: usize) -> Self {
        Hand {
            states: vec![0.0; n * (steps + 1)],
            lam: vec![0.0; n],
            next: vec![0.0; n],
        }
    }

    /// The forward sweep: `u_0 … u_T` into `states`.
    fn forward(&mut self, u0: &[f64], r: f64) {
        let n = u0.len();
        self.states[..n].copy_from_slice(u0);
        for t in 0..self.states.len() / n - 1 {
            let (done, rest) = self.states.split_at_mut((t + 1) * n);
            let (u, out) = (&done[t * n..], &mut rest[..n]);
            stencil(u, |i, x, d| out[i] = x + r * d);
        }
    }

    /// The loss alone (the primal baseline: no allocation, no stored states).
    fn value(&mut self, u0: &[f64], y: &[f64], r: f64, steps: usize) -> f64 {
        let (u, v) = (&mut self.lam, &mut self.next);
        u.copy_from_slice(u0);
        for _ in 0..steps {
            stencil(u, |i, x, d| v[i] = x + r * d);
            std::mem::swap(u, v);
        }
        0.5 * u.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
    }

    /// The loss; writes `∂/∂u₀` and `∂/∂y`, returns `∂/∂r` too.
    fn value_grad(
        &mut self,
        u0: &[f64],
        y: &[f64],
        r: f64,
        gu: &mut [f64],
        gy: &mut [f64],
    ) -> (f64, f64) {
        let n = u0.len();
        let steps = self.states.len() / n - 1;
        self.forward(u0, r);
        let u = &self.states[steps * n..];
        let mut loss = 0.0;
        for i in 0..n {
            let e = u[i] - y[i];
            loss += e * e;
            self.lam[i] = e; // λ_T
            gy[i] = -e;
        }
        let mut gr = 0.0;
        for t in (0..steps).rev() {
            let s = &self.states[t * n..(t + 1) * n];
            let (lam, next) = (&self.lam, &mut self.next);
            // ∂loss/∂r += λ·Δu_t, then λ ← λ + r·Δλ.
            stencil(s, |i, _, d| gr += lam[i] * d);
            stencil(lam, |i, x, d| next[i] = x + r * d);
            std::mem::swap(&mut self.lam, &mut self.next);
        }
        gu.copy_from_slice(&self.lam);
        (0.5 * loss, gr)
    }
}

fn median(mut f: impl FnMut(), budget: f64) -> (f64, usize) {
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < 5 || (start.elapsed().as_secs_f64() < budget && ts.len() < 300) {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], ts.len())
}

fn f64s(v: &Val) -> Result<Vec<f64>, String> {
    match v {
        Val::F64(x) => Ok(vec![*x]),
        _ => v
            .as_tensor()
            .and_then(|t| t.as_f64())
            .map(<[f64]>::to_vec)
            .ok_or_else(|| format!("not f64: {v:?}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let steps: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    if n < 2 {
        return Err("n must be at least 2".into());
    }
    let r = 0.25;
    let u0: Vec<f64> = (0..n)
        .map(|i| (std::f64::consts::PI * (i as f64 + 0.5) / n as f64).sin())
        .collect();
    let y: Vec<f64> = (0..n).map(|i| 0.5 * (i as f64 / n as f64)).collect();
    let ex = [
        Val::tensor(Buffer::f64(&[n], u0.clone())?),
        Val::tensor(Buffer::f64(&[n], y.clone())?),
        Val::F64(r),
    ];
    let t = Instant::now();
    // Traced from types alone: the trace costs the same whatever n and T (an eager
    // trace would run the T steps once on the example).
    let types: Vec<Type> = ex.iter().map(Val::type_of).collect();
    let traced = jitad::trace_tensors_abstract("heat", &types, |a| {
        let (y, r) = (&a[1], &a[2]);
        let u = fori_loop(0, steps as i64, a[0].clone(), |_, u| step(&u, r, n));
        let e = u - y;
        vec![0.5 * (&e * &e).sum(&[0])]
    })?;
    let grad = traced.grad()?.optimize();
    let build = t.elapsed().as_secs_f64();
    println!(
        "heat equation, n = {n} cells, T = {steps} steps: {} primal / {} gradient instructions \
         (the loop stays one loop); trace+AD+clean-up {:.2} ms",
        traced.num_insts(),
        grad.num_insts(),
        build * 1e3
    );

    // The hand-written adjoint, and the central difference of ∂loss/∂r.
    let mut hand = Hand::new(n, steps);
    let (mut gu, mut gy) = (vec![0.0; n], vec![0.0; n]);
    let (l_hand, gr_hand) = hand.value_grad(&u0, &y, r, &mut gu, &mut gy);
    let e = 1e-6;
    let fd = (loss_native(&u0, &y, r + e, steps) - loss_native(&u0, &y, r - e, steps)) / (2.0 * e);
    println!(
        "  loss {l_hand:.12e}; ∂loss/∂r hand-written {gr_hand:.9e}, central difference {fd:.9e}"
    );

    let close = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
            .fold(0.0, f64::max)
    };
    let th = median(
        || {
            std::hint::black_box(hand.value_grad(&u0, &y, r, &mut gu, &mut gy));
        },
        1.0,
    )
    .0;
    // The primal alone: a compiled `loop` carrying a tensor.
    let primal = traced.optimize();
    let want = primal.eval(&ex)?;
    let tp = median(
        || {
            std::hint::black_box(hand.value(&u0, &y, r, steps));
        },
        0.5,
    )
    .0;
    match primal.compile() {
        Ok(c) => {
            let mut got = vec![Val::F64(0.0)];
            c.call(&ex, &mut got)?;
            if f64s(&got[0])?[0].to_bits() != f64s(&want[0])?[0].to_bits() {
                return Err("primal: the JIT differs from the interpreter".into());
            }
            let mut lo = [0.0];
            let ins: [&[f64]; 3] = [&u0, &y, &[r]];
            let tj = median(
                || {
                    std::hint::black_box(c.call_buffers(&ins, &mut [&mut lo]).ok());
                },
                1.0,
            )
            .0;
            println!(
                "  primal: JIT {:.3} ms ({:.2}x hand-written {:.3} ms)",
                tj * 1e3,
                tj / tp,
                tp * 1e3
            );
        }
        Err(e) => println!("  primal: JIT: {e}"),
    }
    for policy in [Policy::StoreAll, Policy::Binomial(20)] {
        let g = grad.with_checkpoint(policy);
        let (out, stats) = g.eval_with_stats(&ex)?;
        let want: Vec<f64> = [
            f64s(&out[0])?,
            f64s(&out[1])?,
            f64s(&out[2])?,
            f64s(&out[3])?,
        ]
        .concat();
        let hand_all: Vec<f64> = [vec![l_hand], gu.clone(), gy.clone(), vec![gr_hand]].concat();
        let worst = close(&want, &hand_all);
        if worst > 1e-9 {
            return Err(format!(
                "{policy}: interpreter and hand-written adjoint differ by {worst:e}"
            )
            .into());
        }
        let ti = median(
            || {
                std::hint::black_box(g.eval(&ex).ok());
            },
            1.0,
        )
        .0;
        let jit = match g.compile() {
            Ok(c) => {
                let mut got = vec![Val::F64(0.0); 4];
                c.call(&ex, &mut got)?;
                let bits = |v: &[Val]| -> Result<Vec<u64>, String> {
                    Ok(v.iter()
                        .map(f64s)
                        .collect::<Result<Vec<_>, _>>()?
                        .concat()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect())
                };
                if bits(&got)? != bits(&out)? {
                    return Err(format!("{policy}: the JIT differs from the interpreter").into());
                }
                let (mut du, mut dy) = (vec![0.0; n], vec![0.0; n]);
                let (mut lo, mut go) = ([0.0], [0.0]);
                let mut bufs: Vec<&mut [f64]> = vec![&mut lo, &mut du, &mut dy, &mut go];
                let ins: [&[f64]; 3] = [&u0, &y, &[r]];
                c.call_buffers(&ins, &mut bufs)?;
                let tj = median(
                    || {
                        std::hint::black_box(c.call_buffers(&ins, &mut bufs).ok());
                    },
                    1.0,
                )
                .0;
                format!(
                    "JIT {:.3} ms ({:.2}x hand-written, bit-identical to the interpreter)",
                    tj * 1e3,
                    tj / th
                )
            }
            Err(e) => format!("JIT: {e}"),
        };
        println!(
            "  {policy}: {jit}; interpreter {:.3} ms ({:.1}x); hand-written {:.3} ms; {} snapshots, peak tape {} KiB, {} forward steps recomputed",
            ti * 1e3,
            ti / th,
            th * 1e3,
            stats.snapshots,
            stats.peak_tape_bytes / 1024,
            stats.forward_steps,
        );
    }
    Ok(())
}
