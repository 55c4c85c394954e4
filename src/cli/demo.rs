//! `jitad demo`: the quickstart example f(x, y) = (x + y)(x − y), end to end.
//!
//! Fails (non-zero exit) if the compiled gradient disagrees with central finite
//! differences or with the interpreter, so running the demo is itself a check.

use anyhow::{bail, Result};
use jitad::problems::quickstart;
use jitad::Val;
use std::hint::black_box;
use std::time::Instant;

/// Runs the demo.
pub fn run() -> Result<()> {
    let at = [3.0, 2.0];
    let traced = jitad::trace_scalar("f", &at, quickstart)?;
    println!("The quickstart example f(x, y) = (x + y)(x - y), traced at (3, 2):\n");
    print!("{}", traced.to_jir());

    let jvp = traced.jvp()?;
    println!("\nForward mode (tangent IR): (x, y, dx, dy) -> (f, df)\n");
    print!("{}", jvp.to_jir());

    let grad = traced.grad()?;
    println!("\nReverse mode (adjoint IR, optimised): (x, y) -> (f, df/dx, df/dy)\n");
    print!("{}", grad.to_jir());

    // Compile value and gradient.
    let f_jit = traced.compile()?;
    let g_jit = grad.compile()?;
    let mut value = [0.0];
    f_jit.call_f64(&at, &mut value)?;
    let mut vg = [0.0; 3];
    g_jit.call_f64(&at, &mut vg)?;
    println!("\nCompiled with Cranelift, called at (3, 2):");
    println!("  f(3, 2)              = {}", value[0]);
    println!("  gradient             = ({}, {})", vg[1], vg[2]);

    // Check against central finite differences of the native function.
    let h = 1e-6;
    let mut fd = [0.0; 2];
    for (i, d) in fd.iter_mut().enumerate() {
        let (mut p, mut m) = (at, at);
        p[i] += h;
        m[i] -= h;
        *d = (quickstart(&p) - quickstart(&m)) / (2.0 * h);
    }
    let err = (0..2)
        .map(|i| (vg[i + 1] - fd[i]).abs() / fd[i].abs().max(1.0))
        .fold(0.0, f64::max);
    println!(
        "  finite differences   = ({:.9}, {:.9}), largest relative difference {err:.1e}",
        fd[0], fd[1]
    );
    if value[0] != quickstart(&at) || vg[0] != value[0] || err > 1e-7 {
        bail!("the compiled value or gradient is wrong (see above)");
    }

    // The interpreter on the same gradient IR must agree bit for bit.
    let args = [Val::F64(at[0]), Val::F64(at[1])];
    let interp: Vec<f64> = grad
        .eval(&args)?
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    if interp != vg {
        bail!("interpreter {interp:?} and JIT {vg:?} disagree");
    }
    println!(
        "  interpreter          = ({}, {}, {}), identical",
        interp[0], interp[1], interp[2]
    );

    // Speed: the compiled gradient against the interpreter on the same IR.
    let jit_ns = time_per_call(2_000_000, || {
        g_jit.call_f64(black_box(&at), &mut vg).map(|()| vg[0])
    })?;
    let mut interpreter = jitad::ir::Interpreter::new();
    let mut out = Vec::with_capacity(3);
    let f = grad.function();
    let module = grad.module();
    let interp_ns = time_per_call(200_000, || {
        interpreter
            .run(f, Some(module), black_box(&args), &mut out)
            .map(|()| out.len() as f64)
    })?;
    println!("\nSpeed of the gradient (median of 5 runs, ns per call):");
    println!("  compiled (JIT)       {jit_ns:8.1} ns");
    println!("  interpreter          {interp_ns:8.1} ns");
    println!(
        "  the compiled gradient is {:.0}x faster than the interpreter on the same IR",
        interp_ns / jit_ns
    );
    println!("\n(`jitad bench` compares against hand-written Rust and the classic tape.)");
    Ok(())
}

/// Median over 5 runs of `calls` calls, in ns per call.
fn time_per_call<E: std::error::Error + Send + Sync + 'static>(
    calls: u32,
    mut f: impl FnMut() -> Result<f64, E>,
) -> Result<f64> {
    let mut runs = Vec::with_capacity(5);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..calls {
            black_box(f()?);
        }
        runs.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(calls));
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[2])
}
