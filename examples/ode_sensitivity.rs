//! ODE sensitivity: the Lorenz system f(s) = (σ(y−x), x(ρ−z)−y, xy−βz) from
//! s₀ = (1, 1, 1) with (σ, ρ, β) = (10, 28, 8/3), integrated with classic RK4 over
//! N steps of dt = 1/N; loss = x_N + y_N + z_N; gradient with respect to
//! (σ, ρ, β, x₀, y₀, z₀) by reverse mode through the integration loop, under each
//! checkpointing policy. Prints, per N and policy: the gradient's time and its ratio to
//! the compiled primal, the peak snapshot memory, the process's peak RSS, and the
//! driver's statistics; and checks every policy's gradient against store-all and the
//! hand-written adjoint (and times the hand-written binomial:20 adjoint beside them).
//!
//! `cargo run --release --example ode_sensitivity [-- N...]` (default N = 10³, 10⁵, 10⁶;
//! `recompute` runs only for N ≤ 10⁴, being O(N²)).

use jitad::ir::checkpoint::Policy;
use jitad::problems::{lorenz_grad, lorenz_grad_binomial, BinomialTape, LORENZ_JIR, LORENZ_POINT};
use jitad::{Traced, Val};
use std::time::Instant;

/// Peak resident set size of this process so far, in bytes (Linux; 0 elsewhere).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Median wall time of `reps` runs of `f`, in seconds.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let primal = Traced::from_jir(LORENZ_JIR, Some("loss"))?;
    let t = Instant::now();
    let grad = primal.grad()?;
    let ad_time = t.elapsed();
    println!(
        "The Lorenz loss as IR (a loop of RK4 steps); its gradient by reverse mode ({:.1} ms of AD):",
        ad_time.as_secs_f64() * 1e3
    );
    for f in grad.reachable() {
        println!("  @{:<24} {:>4} instructions", f.name, f.num_insts());
    }
    println!();
    // The primal through the same clean-up (inliner included) as the gradient, so the
    // ratios compare like with like.
    let primal_c = primal.optimize().compile()?;
    let policies = [
        Policy::StoreAll,
        Policy::Binomial(10),
        Policy::Binomial(20),
        Policy::Binomial(40),
        Policy::Every(1000),
        Policy::Recompute,
    ];
    let compiled: Vec<(Policy, jitad::Compiled)> = policies
        .iter()
        .map(|&p| Ok((p, grad.with_checkpoint(p).compile()?)))
        .collect::<Result<_, jitad::Error>>()?;

    for &n in &sizes {
        let mut args: Vec<Val> = LORENZ_POINT.iter().map(|&v| Val::F64(v)).collect();
        args.push(Val::I64(n as i64));
        let reps = if n <= 10_000 { 21 } else { 5 };
        let mut y = [Val::F64(0.0)];
        let t_primal = median_secs(reps, || {
            primal_c.call(&args, &mut y).expect("primal call");
        });
        let mut tape = Vec::new();
        let mut g_hand = [0.0; 6];
        let t_hand = median_secs(reps, || {
            lorenz_grad(&LORENZ_POINT, n, &mut tape, &mut g_hand);
        });
        drop(tape);
        let (mut revolve, mut g_bin) = (BinomialTape::default(), [0.0; 6]);
        let t_bin = median_secs(reps, || {
            lorenz_grad_binomial(&LORENZ_POINT, n, 20, &mut revolve, &mut g_bin);
        });
        if g_bin != g_hand {
            return Err(
                format!("N={n}: hand-written binomial {g_bin:?} vs store-all {g_hand:?}").into(),
            );
        }
        println!(
            "N = {n}: loss {:.12}, compiled primal {:.3} ms, hand-written store-all adjoint {:.3} ms ({:.2}x the primal), hand-written binomial:20 {:.3} ms ({:.2}x)",
            y[0].as_f64().unwrap_or(f64::NAN),
            t_primal * 1e3,
            t_hand * 1e3,
            t_hand / t_primal,
            t_bin * 1e3,
            t_bin / t_primal
        );
        println!(
            "  {:<14} {:>10} {:>8} {:>12} {:>12} {:>10} {:>14}",
            "policy", "time ms", "x primal", "peak tape", "peak RSS", "snapshots", "fwd steps"
        );
        let mut reference: Option<Vec<f64>> = None;
        for (p, c) in &compiled {
            if *p == Policy::Recompute && n > 10_000 {
                continue;
            }
            let mut out = vec![Val::F64(0.0); 7];
            let stats = c.call_with_stats(&args, &mut out)?;
            let t = median_secs(if *p == Policy::Recompute { 3 } else { reps }, || {
                c.call(&args, &mut out).expect("gradient call");
            });
            let g: Vec<f64> = out.iter().filter_map(|v| v.as_f64()).collect();
            println!(
                "  {:<14} {:>10.3} {:>8.2} {:>10.1} K {:>10.1} M {:>10} {:>14}",
                p.to_string(),
                t * 1e3,
                t / t_primal,
                stats.peak_tape_bytes as f64 / 1024.0,
                peak_rss() as f64 / (1 << 20) as f64,
                stats.snapshots,
                stats.forward_steps
            );
            match &reference {
                None => {
                    // Store-all against the hand-written adjoint.
                    for (a, b) in g[1..].iter().zip(&g_hand) {
                        if (a - b).abs() > 1e-9 * b.abs().max(1.0) {
                            return Err(format!("N={n}: gradient {a} vs hand-written {b}").into());
                        }
                    }
                    reference = Some(g);
                }
                Some(r) => {
                    if r.iter().zip(&g).any(|(a, b)| a.to_bits() != b.to_bits()) {
                        return Err(format!("N={n} {p}: gradient differs from store-all").into());
                    }
                }
            }
        }
        if let Some(r) = &reference {
            println!(
                "  gradient (σ, ρ, β, x₀, y₀, z₀) = ({:.6}, {:.6}, {:.6}, {:.6}, {:.6}, {:.6}); every policy bit-identical\n",
                r[1], r[2], r[3], r[4], r[5], r[6]
            );
        }
    }
    Ok(())
}
