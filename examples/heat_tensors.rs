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
use jitad::workloads::{heat_inputs, heat_loss, HeatHand};
use std::time::Instant;

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
    let (u0, y, r) = heat_inputs(n);
    let ex = [
        Val::tensor(Buffer::f64(&[n], u0.clone())?),
        Val::tensor(Buffer::f64(&[n], y.clone())?),
        Val::F64(r),
    ];
    // Traced from types alone: the trace costs the same whatever n and T (an eager
    // trace would run the T steps once on the example).
    let t = Instant::now();
    let traced = heat_loss(n, steps)?;
    let grad = traced.grad()?;
    let build = t.elapsed().as_secs_f64();
    println!(
        "heat equation, n = {n} cells, T = {steps} steps: {} primal / {} gradient instructions \
         (the loop stays one loop); trace+AD+clean-up {:.2} ms",
        traced.num_insts(),
        grad.num_insts(),
        build * 1e3
    );

    // The hand-written adjoint, and the central difference of ∂loss/∂r.
    let mut hand = HeatHand::new(n, steps);
    let mut gh = vec![0.0; 2 * n + 1];
    let l_hand = hand.value_grad(&u0, &y, r, &mut gh)?;
    // A wide step: the loss sums n squares, so its rounding (not the step's
    // truncation) limits a narrow difference at large n.
    let e = 1e-4;
    let fd = (hand.value(&u0, &y, r + e)? - hand.value(&u0, &y, r - e)?) / (2.0 * e);
    println!(
        "  loss {l_hand:.12e}; ∂loss/∂r hand-written {:.9e}, central difference {fd:.9e}",
        gh[2 * n]
    );
    let th = median(
        || {
            std::hint::black_box(hand.value_grad(&u0, &y, r, &mut gh).ok());
        },
        1.0,
    )
    .0;

    // The primal alone: a compiled `loop` carrying a tensor.
    let primal = traced.optimize();
    let want = primal.eval(&ex)?;
    let tp = median(
        || {
            std::hint::black_box(hand.value(&u0, &y, r).ok());
        },
        0.5,
    )
    .0;
    let ins: [&[f64]; 3] = [&u0, &y, &[r]];
    match primal.compile() {
        Ok(c) => {
            let mut lo = [0.0];
            c.call_buffers(&ins, &mut [&mut lo])?;
            if lo[0].to_bits() != f64s(&want[0])?[0].to_bits() {
                return Err("primal: the JIT differs from the interpreter".into());
            }
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

    let close = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
            .fold(0.0, f64::max)
    };
    for policy in [Policy::StoreAll, Policy::Binomial(20)] {
        let g = grad.with_checkpoint(policy);
        let (out, stats) = g.eval_with_stats(&ex)?;
        let interp: Vec<f64> = out
            .iter()
            .map(f64s)
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        let hand_all: Vec<f64> = [&[l_hand][..], &gh].concat();
        let worst = close(&interp, &hand_all);
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
                let (mut lo, mut du, mut dy, mut dr) = ([0.0], vec![0.0; n], vec![0.0; n], [0.0]);
                let mut bufs: [&mut [f64]; 4] = [&mut lo, &mut du, &mut dy, &mut dr];
                c.call_buffers(&ins, &mut bufs)?;
                let got: Vec<f64> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                if got
                    .iter()
                    .zip(&interp)
                    .any(|(a, b)| a.to_bits() != b.to_bits())
                {
                    return Err(format!("{policy}: the JIT differs from the interpreter").into());
                }
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
            "  {policy}: {jit}; interpreter {:.3} ms ({:.1}x); hand-written {:.3} ms; \
             {} snapshots, peak tape {} KiB, {} forward steps recomputed",
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
