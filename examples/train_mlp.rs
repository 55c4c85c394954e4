//! Trains the full-size MLP (MLP-M: batch 256, 64 inputs, two tanh layers of 256, a
//! linear output, mean squared error) with minibatch SGD on a synthetic regression
//! task: 8,192 samples labelled by a fixed random "teacher" network plus noise.
//!
//! The loss is traced once with tensor ops — from the argument types alone (an abstract
//! trace, which runs no kernel, so setup does not grow with the batch) — its gradient
//! derived and JIT-compiled once;
//! the minibatch (`x`, `y`) is a *parameter* of the compiled gradient, not a constant
//! of the trace, so one compiled function serves every batch. Before training, the
//! compiled gradient is checked bit for bit against the interpreter and within rounding
//! against the hand-written reference ([`jitad::workloads::MlpHand`]) on the first
//! batch. Each epoch shuffles the samples; the loss over the whole data set must fall
//! (the example fails otherwise).
//!
//! ```text
//! cargo run --release --example train_mlp            # 8 epochs
//! cargo run --release --example train_mlp -- 20      # epochs
//! ```
//!
//! The small MLP against the classic tape is `examples/train_mlp_scalar.rs`.

use jitad::ir::interp::Val;
use jitad::workloads::{MlpHand, MlpShape, Rng};
use jitad::Compiled;
use std::time::Instant;

const SAMPLES: usize = 8192;
const LEARNING_RATE: f64 = 0.05;
const TEACHER_UNITS: usize = 16;
const NOISE: f64 = 0.05;

/// Inputs uniform in [−1, 1)⁶⁴ and targets `Σ_k v_k·tanh(u_k·x) + noise` from a fixed
/// random teacher.
fn dataset(shape: MlpShape) -> (Vec<f64>, Vec<f64>) {
    let d = shape.inputs;
    let mut rng = Rng::new(11);
    let scale = 2.0 / (d as f64).sqrt();
    let u: Vec<f64> = (0..TEACHER_UNITS * d)
        .map(|_| scale * rng.uniform())
        .collect();
    let v: Vec<f64> = (0..TEACHER_UNITS).map(|_| rng.uniform()).collect();
    let x: Vec<f64> = (0..SAMPLES * d).map(|_| rng.uniform()).collect();
    let y = x
        .chunks_exact(d)
        .map(|row| {
            let f: f64 = u
                .chunks_exact(d)
                .zip(&v)
                .map(|(uk, vk)| vk * uk.iter().zip(row).map(|(a, b)| a * b).sum::<f64>().tanh())
                .sum();
            f + NOISE * rng.uniform()
        })
        .collect();
    (x, y)
}

/// The compiled gradient with its argument and result buffers: `p` flat (w1, b1, w2,
/// b2, w3, b3), the minibatch, and (loss, gradient) out.
struct Trainer {
    c: Compiled,
    lens: [usize; 6],
}

impl Trainer {
    /// Loss at `p` on the batch `(x, y)`; the gradient written to `g` (flat, like `p`).
    fn step(&self, p: &[f64], x: &[f64], y: &[f64], g: &mut [f64]) -> Result<f64, String> {
        let mut args: [&[f64]; 8] = [&[]; 8];
        let mut rest = p;
        for (a, &len) in args.iter_mut().zip(&self.lens) {
            let (head, tail) = rest.split_at(len);
            *a = head;
            rest = tail;
        }
        args[6] = x;
        args[7] = y;
        let mut loss = [0.0];
        let mut out: [&mut [f64]; 7] = Default::default();
        out[0] = &mut loss;
        let mut rest = g;
        for (o, &len) in out[1..].iter_mut().zip(&self.lens) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            *o = head;
            rest = tail;
        }
        self.c
            .call_buffers(&args, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(loss[0])
    }

    /// Mean loss over the whole data set (equal-size batches in order).
    fn full_loss(
        &self,
        p: &[f64],
        shape: MlpShape,
        x: &[f64],
        y: &[f64],
        g: &mut [f64],
    ) -> Result<f64, String> {
        let (b, d) = (shape.batch, shape.inputs);
        let batches = y.len() / b;
        let mut sum = 0.0;
        for k in 0..batches {
            sum += self.step(p, &x[k * b * d..(k + 1) * b * d], &y[k * b..(k + 1) * b], g)?;
        }
        Ok(sum / batches as f64)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(8);
    let shape = MlpShape::M;
    let (b, d) = (shape.batch, shape.inputs);
    let (x, y) = dataset(shape);
    let mut p = shape.init(2);
    let np = p.len();
    println!(
        "MLP batch {b}, {d} inputs, two tanh layers of {}: {np} parameters; {SAMPLES} samples, {} steps per epoch",
        shape.hidden,
        SAMPLES / b
    );

    // Trace from the types, differentiate, compile: once.
    let (x0, y0) = (&x[..b * d], &y[..b]);
    let t0 = Instant::now();
    let traced = shape.trace_abstract()?;
    let t1 = Instant::now();
    let grad = traced.grad_wrt(&[0, 1, 2, 3, 4, 5])?;
    let t2 = Instant::now();
    let c = grad.compile()?;
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    println!(
        "trace + AD + compile: {:.1} ms (trace {:.1}, AD + clean-up {:.1}, compile {:.1}); {} primal / {} gradient instructions, workspace {} KiB",
        ms(t0, t3),
        ms(t0, t1),
        ms(t1, t2),
        ms(t2, t3),
        traced.num_insts(),
        grad.num_insts(),
        c.workspace_bytes() / 1024
    );
    let trainer = Trainer {
        c,
        lens: shape.param_lens(),
    };

    // Once: the compiled gradient is the interpreter's, bit for bit, and the
    // hand-written one's within rounding.
    let mut g = vec![0.0; np];
    let loss = trainer.step(&p, x0, y0, &mut g)?;
    let want = grad.eval(&shape.args(&p, x0, y0)?)?;
    let flat: Vec<f64> = want
        .iter()
        .flat_map(|v| match v {
            Val::F64(s) => vec![*s],
            v => v
                .as_tensor()
                .and_then(|t| t.as_f64())
                .map_or(vec![f64::NAN], <[f64]>::to_vec),
        })
        .collect();
    let jit: Vec<f64> = std::iter::once(loss).chain(g.iter().copied()).collect();
    if flat.len() != jit.len()
        || flat
            .iter()
            .zip(&jit)
            .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err("the compiled gradient differs from the interpreter's".into());
    }
    let mut hand_g = vec![0.0; np];
    let hand_loss = MlpHand::new(shape).value_grad(&p, x0, y0, &mut hand_g)?;
    let scale = g.iter().fold(loss.abs(), |m, v| m.max(v.abs()));
    let worst = hand_g
        .iter()
        .zip(&g)
        .map(|(a, b)| (a - b).abs())
        .fold((hand_loss - loss).abs(), f64::max)
        / scale;
    println!(
        "first batch: compiled gradient = interpreter's (bits); hand-written within {worst:.1e} of the largest entry"
    );
    if worst > 1e-12 {
        return Err("the hand-written gradient disagrees with jitad's".into());
    }

    // Minibatch SGD over shuffled samples.
    let first = trainer.full_loss(&p, shape, &x, &y, &mut g)?;
    println!("epoch  0: loss over the data set {first:.6}");
    let mut order: Vec<usize> = (0..SAMPLES).collect();
    let mut rng = Rng::new(3);
    let (mut xb, mut yb) = (vec![0.0; b * d], vec![0.0; b]);
    let mut steps = 0usize;
    let mut train_secs = 0.0;
    let mut last = first;
    for epoch in 1..=epochs {
        for i in (1..SAMPLES).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let t = Instant::now();
        let mut epoch_sum = 0.0;
        for batch in order.chunks_exact(b) {
            for (r, &s) in batch.iter().enumerate() {
                xb[r * d..(r + 1) * d].copy_from_slice(&x[s * d..(s + 1) * d]);
                yb[r] = y[s];
            }
            epoch_sum += trainer.step(&p, &xb, &yb, &mut g)?;
            for (w, gi) in p.iter_mut().zip(&g) {
                *w -= LEARNING_RATE * gi;
            }
            steps += 1;
        }
        train_secs += t.elapsed().as_secs_f64();
        last = trainer.full_loss(&p, shape, &x, &y, &mut g)?;
        println!(
            "epoch {epoch:2}: loss over the data set {last:.6} (mean minibatch loss during the epoch {:.6})",
            epoch_sum / (SAMPLES / b) as f64
        );
    }
    println!(
        "{steps} SGD steps in {:.2} s: {:.0} steps/s ({:.2} ms per value+gradient+update, {:.0} samples/s)",
        train_secs,
        steps as f64 / train_secs,
        train_secs / steps.max(1) as f64 * 1e3,
        (steps * b) as f64 / train_secs
    );
    // NaN counts as not falling.
    if epochs > 0 && (last >= 0.5 * first || last.is_nan()) {
        return Err(format!("the loss did not fall enough: {first} -> {last}").into());
    }
    println!("loss {first:.6} -> {last:.6} ({:.1}x lower)", first / last);
    Ok(())
}
