//! Trains the small MLP (batch 32, 8 inputs, two tanh layers of 16, MSE) on a synthetic
//! regression task with plain SGD: the loss is traced once, its gradient derived and
//! JIT-compiled once, and the compiled gradient is called every step. The same
//! training is then driven by the classic tape (replayed, and recorded every step), so
//! the steps per second can be compared. Both runs start from the same weights and must
//! follow the same trajectory (the example checks the final losses agree).
//!
//! `cargo run --release --example train_mlp_scalar [-- STEPS]` (the full-size MLP on tensors is
//! `train_mlp`)

use jitad::problems::{mlp_init, mlp_loss, MlpData};
use jitad::tape::Tape;
use std::time::Instant;

const LEARNING_RATE: f64 = 0.1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5000);
    let data = MlpData::synthetic(1);
    let p0 = mlp_init(2);

    // Trace once, differentiate once, compile once.
    let t = Instant::now();
    let traced = jitad::trace_scalar("mlp_loss", &p0, |p| mlp_loss(p, &data))?;
    let grad = traced.grad()?;
    let compiled = grad.compile()?;
    println!(
        "trace + grad + compile: {:.1} ms ({} primal instructions, {} in the gradient)",
        t.elapsed().as_secs_f64() * 1e3,
        traced.num_insts(),
        grad.num_insts()
    );

    // SGD with the compiled gradient: out = (loss, gradient...).
    let mut p = p0.clone();
    let mut out = vec![0.0; p.len() + 1];
    let t = Instant::now();
    for step in 0..steps {
        compiled.call_f64(&p, &mut out)?;
        if step % (steps / 10).max(1) == 0 {
            println!("  jit   step {step:6}  loss {:.6}", out[0]);
        }
        for (w, g) in p.iter_mut().zip(&out[1..]) {
            *w -= LEARNING_RATE * g;
        }
    }
    let jit_secs = t.elapsed().as_secs_f64();
    let jit_final = mlp_loss(&p, &data);
    println!(
        "jit: final loss {jit_final:.6}, {:.0} steps/s",
        steps as f64 / jit_secs
    );

    // The same training on the classic tape, recorded once and replayed per step.
    let mut p = p0.clone();
    let mut g = vec![0.0; p.len()];
    let mut tape = Tape::new();
    tape.record(&p, |v| mlp_loss(v, &data))?;
    let t = Instant::now();
    for _ in 0..steps {
        tape.replay(&p, &mut g)?;
        for (w, gi) in p.iter_mut().zip(&g) {
            *w -= LEARNING_RATE * gi;
        }
    }
    let replay_secs = t.elapsed().as_secs_f64();
    let replay_final = mlp_loss(&p, &data);
    println!(
        "tape (replay): final loss {replay_final:.6}, {:.0} steps/s",
        steps as f64 / replay_secs
    );

    // And recorded on every step, PyTorch style.
    let mut p = p0;
    let t = Instant::now();
    for _ in 0..steps {
        tape.record(&p, |v| mlp_loss(v, &data))?;
        tape.gradient(&mut g)?;
        for (w, gi) in p.iter_mut().zip(&g) {
            *w -= LEARNING_RATE * gi;
        }
    }
    let record_secs = t.elapsed().as_secs_f64();
    let record_final = mlp_loss(&p, &data);
    println!(
        "tape (record every step): final loss {record_final:.6}, {:.0} steps/s",
        steps as f64 / record_secs
    );
    println!(
        "compiled gradient: {:.1}x the steps/s of tape replay, {:.1}x of record-per-step",
        replay_secs / jit_secs,
        record_secs / jit_secs
    );

    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-300);
    if rel(jit_final, replay_final) > 1e-9 || rel(jit_final, record_final) > 1e-9 {
        return Err("the three trainings diverged".into());
    }
    Ok(())
}
