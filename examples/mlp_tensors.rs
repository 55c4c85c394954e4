//! A full-size MLP as tensor IR: the loss, its gradient's instruction counts, and the
//! time for value + gradient in the interpreter and compiled (bit-identical results).
//!
//! ```text
//! cargo run --release --example mlp_tensors              # batch 256, 64 inputs, 256 hidden
//! cargo run --release --example mlp_tensors -- 32 8 16   # batch, inputs, hidden
//! ```
//!
//! The model is the one `benches/peers/jax_peers.py` times in JAX ("mlp-M"): two tanh
//! layers, a linear output, mean squared error. The setup line times trace + AD +
//! compile step by step, tracing from the argument types alone (an abstract trace: no
//! kernel runs, so it does not grow with the batch) and, for comparison, at the example
//! values (an eager trace); both must record the same IR. The gradient is checked against central
//! finite differences on a few weights before anything is timed. Last, the JIT call is
//! timed interleaved with the hand-written references of `jitad::workloads` (GEMM with
//! vmath's or std's `tanh`, and plain loops), printing the JIT/hand ratios.

use jitad::ir::interp::Val;
use jitad::ir::tensor::Tensor;
use jitad::ir::Interpreter;
use jitad::workloads::{HandTanh, MlpHand, MlpLoops, MlpShape};
use jitad::Traced;
use std::time::{Duration, Instant};

/// A deterministic generator (xorshift) of values in (−1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        2.0 * ((self.0 >> 11) as f64 / (1u64 << 53) as f64) - 1.0
    }
}

fn data(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * rng.next()).collect()
}

/// One setup: the primal trace, the gradient (AD + clean-up), the compiled gradient, and
/// the time of each step.
struct Setup {
    primal: Traced,
    grad: Traced,
    compiled: jitad::Compiled,
    times: [Duration; 3],
}

fn setup(
    trace: impl Fn() -> Result<Traced, jitad::workloads::WorkloadError>,
) -> Result<Setup, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let primal = trace()?;
    let t1 = Instant::now();
    let grad = primal.grad_wrt(&[0, 1, 2, 3, 4, 5])?;
    let t2 = Instant::now();
    let compiled = grad.compile()?;
    let t3 = Instant::now();
    Ok(Setup {
        primal,
        grad,
        compiled,
        times: [t1 - t0, t2 - t1, t3 - t2],
    })
}

/// The setup run `runs` times; the last one, the per-step and total medians, and the
/// first run's total (in ms).
fn timed_setup(
    runs: usize,
    trace: impl Fn() -> Result<Traced, jitad::workloads::WorkloadError>,
) -> Result<(Setup, [f64; 4], f64), Box<dyn std::error::Error>> {
    let mut t: [Vec<f64>; 4] = Default::default();
    let mut last = None;
    for _ in 0..runs {
        let s = setup(&trace)?;
        let ms = s.times.map(|d| d.as_secs_f64() * 1e3);
        for k in 0..3 {
            t[k].push(ms[k]);
        }
        t[3].push(ms.iter().sum());
        last = Some(s);
    }
    let first = t[3].first().copied().unwrap_or(f64::NAN);
    let med = t.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    Ok((last.ok_or("no setup run")?, med, first))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dims: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (batch, d, h) = match dims.as_slice() {
        [] => (256, 64, 256),
        &[b, d, h] => (b, d, h),
        _ => return Err("usage: mlp_tensors [BATCH INPUTS HIDDEN]".into()),
    };
    let shape = MlpShape {
        batch,
        inputs: d,
        hidden: h,
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (sd, sh) = (1.0 / (d as f64).sqrt(), 1.0 / (h as f64).sqrt());
    // w1, b1, w2, b2, w3, b3, x, y.
    let bufs: Vec<Vec<f64>> = vec![
        data(&mut rng, d * h, sd),
        data(&mut rng, h, 0.1),
        data(&mut rng, h * h, sh),
        data(&mut rng, h, 0.1),
        data(&mut rng, h, sh),
        vec![0.1],
        data(&mut rng, batch * d, 1.0),
        data(&mut rng, batch, 1.0),
    ];
    let p: Vec<f64> = bufs[..6].concat();
    let (x, y) = (&bufs[6], &bufs[7]);
    let mut args = shape.args(&p, x, y)?;

    // Setup: trace + AD + compile, from the types (abstract) and, for comparison, at the
    // example values (eager: every op runs its kernel on the batch). Medians of 5.
    // The abstract setup runs first, so its first run is the process's cold one.
    let (s, abs, cold) = timed_setup(5, || shape.trace_abstract())?;
    let (eager, eag, _) = timed_setup(5, || shape.trace(&p, x, y))?;
    if eager.primal.to_jir() != s.primal.to_jir() || eager.grad.to_jir() != s.grad.to_jir() {
        return Err("the abstract and eager traces differ".into());
    }
    println!(
        "MLP batch {batch}, {d} inputs, {h} hidden: {} parameters",
        d * h + h + h * h + h + h + 1
    );
    println!(
        "setup, trace + AD + compile (median of 5): abstract trace {:.1} ms (trace {:.3}, AD + clean-up {:.1}, compile {:.1}; first run, cold: {:.1}); eager trace {:.1} ms (trace {:.1}, AD + clean-up {:.1}, compile {:.1}); same IR",
        abs[3], abs[0], abs[1], abs[2], cold, eag[3], eag[0], eag[1], eag[2]
    );
    let (np, ng) = (s.primal.num_insts(), s.grad.num_insts());
    println!(
        "instructions: primal {np}, value+gradient {ng} ({:.2}x)",
        ng as f64 / np as f64
    );
    let (m, g) = (s.grad.module(), s.grad.name().to_string());
    let c = s.compiled;

    let (pm, primal) = (s.primal.module(), s.primal.function());
    let gf = m.get(&g).ok_or("no gradient")?;
    let mut it = Interpreter::new();
    let mut out = Vec::new();
    it.run(gf, Some(m), &args, &mut out)?;

    // Finite differences on a few entries of w1 and w2 (central, h = 1e-6).
    let mut worst: f64 = 0.0;
    for (p, k) in [(0usize, 0usize), (0, d * h / 2 + 3), (2, 7), (2, h * h - 1)] {
        let base = args[p].as_tensor().ok_or("tensor")?.clone();
        let data = base.as_f64().ok_or("f64")?.to_vec();
        let shape: Vec<usize> = base.shape().dims().iter().map(|&x| x as usize).collect();
        let eval_at = |x: f64,
                       args: &mut Vec<Val>,
                       it: &mut Interpreter|
         -> Result<f64, Box<dyn std::error::Error>> {
            let mut d2 = data.clone();
            d2[k] = x;
            args[p] = Val::tensor(Tensor::f64(&shape, d2)?);
            let mut o = Vec::new();
            it.run(primal, Some(pm), args, &mut o)?;
            Ok(o[0].as_f64().ok_or("scalar loss")?)
        };
        let eps = 1e-6;
        let fp = eval_at(data[k] + eps, &mut args, &mut it)?;
        let fm = eval_at(data[k] - eps, &mut args, &mut it)?;
        args[p] = Val::Tensor(std::sync::Arc::new(base));
        let fd = (fp - fm) / (2.0 * eps);
        let got = out[1 + p]
            .as_tensor()
            .and_then(|t| t.as_f64())
            .ok_or("gradient")?[k];
        worst = worst.max((fd - got).abs() / fd.abs().max(1e-3));
    }
    println!("gradient vs central differences (4 weights): worst relative error {worst:.1e}");
    if worst > 1e-5 {
        return Err("the gradient disagrees with finite differences".into());
    }

    // Time value + gradient (median of runs for about two seconds, at most 200).
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 200 && (start.elapsed().as_secs_f64() < 2.0 || times.len() < 5) {
        let t = Instant::now();
        it.run(gf, Some(m), &args, &mut out)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let t = Instant::now();
    it.run(primal, Some(pm), &args, &mut out)?;
    let tp = t.elapsed().as_secs_f64();
    println!(
        "interpreter: value+gradient {:.3} ms (median of {} runs), primal {:.3} ms (one run)",
        median * 1e3,
        times.len(),
        tp * 1e3
    );

    // Compiled: the same gradient through the JIT, buffers in place.
    let ins: Vec<&[f64]> = bufs.iter().map(Vec::as_slice).collect();
    let mut outs: Vec<Vec<f64>> = c
        .result_types()
        .iter()
        .map(|t| vec![0.0; t.num_elements()])
        .collect();
    let run = |outs: &mut Vec<Vec<f64>>| -> Result<(), jitad::codegen::CallError> {
        let mut o: Vec<&mut [f64]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        c.call_buffers(&ins, &mut o)
    };
    run(&mut outs)?;
    // Bit for bit the interpreter's results.
    for (k, v) in out.iter().enumerate() {
        let want: Vec<f64> = match v {
            Val::F64(x) => vec![*x],
            v => v
                .as_tensor()
                .and_then(|t| t.as_f64())
                .ok_or("f64")?
                .to_vec(),
        };
        if want
            .iter()
            .zip(&outs[k])
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!("JIT result {k} differs from the interpreter's").into());
        }
    }
    let mut jt = Vec::new();
    let start = Instant::now();
    while jt.len() < 500 && (start.elapsed().as_secs_f64() < 2.0 || jt.len() < 5) {
        let t = Instant::now();
        run(&mut outs)?;
        jt.push(t.elapsed().as_secs_f64());
    }
    jt.sort_by(f64::total_cmp);
    let jm = jt[jt.len() / 2];
    println!(
        "JIT: value+gradient {:.3} ms (median of {} runs; {:.2}x the interpreter), workspace {} KiB; bit-identical to the interpreter",
        jm * 1e3,
        jt.len(),
        jm / median,
        c.workspace_bytes() / 1024
    );

    // The hand-written references of `jitad::workloads`, interleaved with the JIT call
    // round by round so that load on a shared machine hits every leg alike.
    let mut g = vec![0.0; shape.num_params()];
    let mut gemm_vmath = MlpHand::with_tanh(shape, HandTanh::Vmath);
    let mut gemm_std = MlpHand::with_tanh(shape, HandTanh::Std);
    let mut loops = MlpLoops::new(shape);
    let want = outs[0][0];
    for (name, f) in [
        ("gemm+vmath", gemm_vmath.value_grad(&p, x, y, &mut g)?),
        ("gemm+std", gemm_std.value_grad(&p, x, y, &mut g)?),
        ("loops", loops.value_grad(&p, x, y, &mut g)?),
    ] {
        if (f - want).abs() > 1e-12 * want.abs() {
            return Err(
                format!("hand-written ({name}) loss {f} differs from the JIT's {want}").into(),
            );
        }
    }
    let mut t = [const { Vec::new() }; 4];
    let start = Instant::now();
    while t[0].len() < 300 && (start.elapsed().as_secs_f64() < 3.0 || t[0].len() < 5) {
        let s = Instant::now();
        run(&mut outs)?;
        t[0].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        gemm_vmath.value_grad(&p, x, y, &mut g)?;
        t[1].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        gemm_std.value_grad(&p, x, y, &mut g)?;
        t[2].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        loops.value_grad(&p, x, y, &mut g)?;
        t[3].push(s.elapsed().as_secs_f64());
    }
    let med: Vec<f64> = t
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!(
        "interleaved (median of {} rounds, GEMM: {}): JIT {:.3} ms; hand-written: GEMM + vmath tanh {:.3} ms (JIT {:.2}x), GEMM + std tanh {:.3} ms ({:.2}x), plain loops + vmath tanh {:.3} ms ({:.2}x)",
        t[0].len(),
        jitad::ir::kernels::gemm_backend(),
        med[0] * 1e3,
        med[1] * 1e3,
        med[0] / med[1],
        med[2] * 1e3,
        med[0] / med[2],
        med[3] * 1e3,
        med[0] / med[3],
    );
    Ok(())
}
