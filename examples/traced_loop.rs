//! A Rust time-stepper traced with `fori_loop`: the Lorenz system integrated with RK4,
//! written once as generic Rust, recorded as one `loop` region (O(body) IR whatever the
//! step count), differentiated by reverse mode through the loop with binomial
//! checkpointing, and checked against central finite differences.
//!
//! `cargo run --release --example traced_loop [-- N]` (default N = 10⁴).

use jitad::ir::checkpoint::Policy;
use jitad::{fori_loop, Float, Val, Var};

fn lorenz<T: Float>([x, y, z]: [T; 3], [sigma, rho, beta]: [T; 3]) -> [T; 3] {
    [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]
}

/// One classic RK4 step of size `h`.
fn rk4<T: Float>(s: [T; 3], p: [T; 3], h: T) -> [T; 3] {
    let c = |v: f64| T::from(v).unwrap_or_else(T::nan);
    let step = |k: [T; 3], a: T| [0, 1, 2].map(|i| s[i] + a * k[i]);
    let k1 = lorenz(s, p);
    let k2 = lorenz(step(k1, h * c(0.5)), p);
    let k3 = lorenz(step(k2, h * c(0.5)), p);
    let k4 = lorenz(step(k3, h), p);
    [0, 1, 2].map(|i| s[i] + h / c(6.0) * (k1[i] + c(2.0) * (k2[i] + k3[i]) + k4[i]))
}

/// x_N + y_N + z_N after `n` steps of `1/n` from `p = (σ, ρ, β, x₀, y₀, z₀)`.
fn native(p: &[f64], n: usize) -> f64 {
    let mut s = [p[3], p[4], p[5]];
    for _ in 0..n {
        s = rk4(s, [p[0], p[1], p[2]], 1.0 / n as f64);
    }
    s[0] + s[1] + s[2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 10_000,
    };
    let p0 = [10.0, 28.0, 8.0 / 3.0, 1.0, 1.0, 1.0];
    let traced = jitad::trace_scalar("lorenz", &p0, |p| {
        let params = [p[0], p[1], p[2]];
        let h = Var::constant(1.0 / n as f64);
        let s = fori_loop(0, n as i64, [p[3], p[4], p[5]], |_i, s| rk4(s, params, h));
        s[0] + s[1] + s[2]
    })?;
    println!(
        "N = {n}: the traced loss has {} instructions (a loop of one RK4 body):",
        traced.num_insts()
    );
    println!("{}", traced.to_jir());
    let grad = traced.grad()?.with_checkpoint(Policy::Binomial(16));
    let args: Vec<Val> = p0.iter().map(|&v| Val::F64(v)).collect();
    let (out, stats) = grad.eval_with_stats(&args)?;
    println!(
        "value and gradient (binomial checkpointing, 16 snapshots: {} snapshots taken, \
         {} forward steps recomputed, peak tape {} bytes):",
        stats.snapshots, stats.forward_steps, stats.peak_tape_bytes
    );
    let names = ["σ", "ρ", "β", "x₀", "y₀", "z₀"];
    println!("  loss = {}", out[0]);
    for (k, name) in names.iter().enumerate() {
        let e = 1e-6 * (1.0 + p0[k].abs());
        let (mut hi, mut lo) = (p0, p0);
        hi[k] += e;
        lo[k] -= e;
        let fd = (native(&hi, n) - native(&lo, n)) / (2.0 * e);
        let g = out[k + 1].as_f64().unwrap_or(f64::NAN);
        println!("  ∂loss/∂{name} = {g:.9e} (central difference {fd:.9e})");
    }
    Ok(())
}
