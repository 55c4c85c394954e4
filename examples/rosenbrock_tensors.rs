//! Extended Rosenbrock written with tensor ops: trace, gradient, and JIT and interpreter
//! times against the hand-written gradient (`jitad::problems::rosenbrock_grad`), at sizes
//! where the scalar trace takes seconds to build.
//!
//! ```text
//! cargo run --release --example rosenbrock_tensors           # n = 1e3, 1e5, 1e6
//! cargo run --release --example rosenbrock_tensors -- 100000 # one size
//! ```

use jitad::ir::interp::Val;
use jitad::ir::tensor::Tensor as Buffer;
use jitad::ir::trace::tensor::Tensor;
use jitad::problems::{rosenbrock_grad, rosenbrock_grad_fused, rosenbrock_start};
use std::time::Instant;

/// Σ 100·(x[1:] − x[:-1]²)² + (1 − x[:-1])², as array ops.
// One range per axis; a vector has one axis.
#[allow(clippy::single_range_in_vec_init)]
fn loss(x: &Tensor, n: usize) -> Tensor {
    let head = x.slice(&[0..n - 1]);
    let tail = x.slice(&[1..n]);
    let t = &tail - &head * &head;
    let u = 1.0 - &head;
    let s = 100.0 * &t * &t + &u * &u;
    s.sum(&[0])
}

fn median(mut f: impl FnMut(), budget: f64) -> (f64, usize) {
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < 5 || (start.elapsed().as_secs_f64() < budget && ts.len() < 500) {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], ts.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(a) => vec![a.parse()?],
        None => vec![1_000, 100_000, 1_000_000],
    };
    for n in sizes {
        if n < 2 {
            return Err("n must be at least 2".into());
        }
        let x0 = rosenbrock_start(n);
        let example = Val::tensor(Buffer::f64(&[n], x0.clone())?);
        let t = Instant::now();
        let traced = jitad::trace_tensors("rosen", std::slice::from_ref(&example), |a| {
            vec![loss(&a[0], n)]
        })?;
        let grad = traced.grad()?.optimize();
        let build = t.elapsed().as_secs_f64();
        let out = grad.eval(std::slice::from_ref(&example))?;
        let g = out[1]
            .as_tensor()
            .and_then(|t| t.as_f64())
            .ok_or("gradient")?;
        let mut want = vec![0.0; n];
        let f_want = rosenbrock_grad(&x0, &mut want);
        let worst = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0, f64::max);
        let value = out[0].as_f64().ok_or("value")?;
        if worst > 1e-12 || (value - f_want).abs() > 1e-9 * f_want.abs() {
            return Err(
                format!("n = {n}: gradient off by {worst:e} (value {value} vs {f_want})").into(),
            );
        }
        let (ti, runs) = median(
            || {
                std::hint::black_box(grad.eval(std::slice::from_ref(&example)).ok());
            },
            2.0,
        );
        // The baseline: the best straightforward hand-written gradient, one fused pass.
        let (th, _) = median(
            || {
                std::hint::black_box(
                    rosenbrock_grad_fused(std::hint::black_box(&x0), &mut want).ok(),
                );
            },
            1.0,
        );
        // Compiled: bit-identical to the interpreter, then timed.
        let t = Instant::now();
        let c = grad.compile()?;
        let compile = t.elapsed().as_secs_f64();
        let mut jout = vec![0.0; n + 1];
        c.call_f64(&x0, &mut jout)?;
        if jout[0].to_bits() != value.to_bits()
            || jout[1..]
                .iter()
                .zip(g)
                .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!("n = {n}: the JIT differs from the interpreter").into());
        }
        let (tj, _) = median(
            || {
                std::hint::black_box(c.call_f64(std::hint::black_box(&x0), &mut jout).ok());
            },
            1.0,
        );
        println!(
            "n = {n:>7}: {} primal / {} gradient instructions; trace+AD+clean-up {:.2} ms, compile {:.2} ms\n  \
             value+gradient: JIT {:.3} ms ({:.2}x hand-written), interpreter {:.3} ms ({:.1}x; median of {runs}), hand-written {:.3} ms",
            traced.num_insts(),
            grad.num_insts(),
            build * 1e3,
            compile * 1e3,
            tj * 1e3,
            tj / th,
            ti * 1e3,
            ti / th,
            th * 1e3,
        );
    }
    Ok(())
}
