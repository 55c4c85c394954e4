//! Extended Rosenbrock value + gradient, written in IR the way a reverse-mode pass emits
//! it (a forward sweep, then the adjoint sweep reading forward values in reverse),
//! compiled, and timed against hand-written Rust.
//!
//! ```text
//! cargo run -p jitad-codegen --release --example rosenbrock -- [n]
//! ```

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::{FunctionBuilder, Module, Op, Type, Value};
use std::hint::black_box;
use std::time::Instant;

fn ins(b: &mut FunctionBuilder, op: Op, a: &[Value]) -> Value {
    b.ins1(op, a).expect("typed")
}

/// f(x) = Σ_{i<n-1} 100(x_{i+1} − x_i²)² + (1 − x_i)², returning (f, ∇f).
fn rosenbrock_grad_ir(n: usize) -> Module {
    let mut b = FunctionBuilder::new("rosen.grad");
    let x: Vec<Value> = (0..n).map(|_| b.param(Type::F64)).collect();
    let hundred = b.const_f64(100.0);
    let one = b.const_f64(1.0);
    let two = b.const_f64(2.0);
    let mut acc = b.const_f64(0.0);
    let mut d = vec![];
    let mut u = vec![];
    for i in 0..n - 1 {
        let s = ins(&mut b, Op::Mul, &[x[i], x[i]]);
        let di = ins(&mut b, Op::Sub, &[x[i + 1], s]);
        let d2 = ins(&mut b, Op::Mul, &[di, di]);
        let t = ins(&mut b, Op::Mul, &[hundred, d2]);
        let ui = ins(&mut b, Op::Sub, &[one, x[i]]);
        let u2 = ins(&mut b, Op::Mul, &[ui, ui]);
        let term = ins(&mut b, Op::Add, &[t, u2]);
        acc = ins(&mut b, Op::Add, &[acc, term]);
        d.push(di);
        u.push(ui);
    }
    // Adjoint sweep: x_bar[i] accumulates; processed in reverse.
    let mut xbar: Vec<Option<Value>> = vec![None; n];
    let add_to = |b: &mut FunctionBuilder, slot: &mut Option<Value>, v: Value| {
        *slot = Some(match *slot {
            None => v,
            Some(p) => ins(b, Op::Add, &[p, v]),
        });
    };
    for i in (0..n - 1).rev() {
        // t_bar = 1, d2_bar = 100, d_bar = 2 d d2_bar, u2_bar = 1, u_bar = 2u.
        let dd = ins(&mut b, Op::Mul, &[d[i], hundred]);
        let d_bar = ins(&mut b, Op::Mul, &[two, dd]);
        add_to(&mut b, &mut xbar[i + 1], d_bar);
        let s_bar = ins(&mut b, Op::Neg, &[d_bar]);
        let xs = ins(&mut b, Op::Mul, &[x[i], s_bar]);
        let xs2 = ins(&mut b, Op::Mul, &[two, xs]);
        add_to(&mut b, &mut xbar[i], xs2);
        let u_bar = ins(&mut b, Op::Mul, &[two, u[i]]);
        let nu = ins(&mut b, Op::Neg, &[u_bar]);
        add_to(&mut b, &mut xbar[i], nu);
    }
    let zero = b.const_f64(0.0);
    let mut rets = vec![acc];
    rets.extend(xbar.into_iter().map(|v| v.unwrap_or(zero)));
    b.ret(&rets).expect("ret");
    let mut m = Module::new();
    m.insert(b.finish().expect("finish"));
    m
}

fn rosenbrock_grad_rust(x: &[f64], out: &mut [f64]) {
    let (f_out, g) = out.split_at_mut(1);
    let g = &mut g[..x.len()];
    let mut f = 0.0;
    let mut carry = 0.0; // the gradient contribution to x[i] from term i-1
    for (i, w) in x.windows(2).enumerate() {
        let (xi, xn) = (w[0], w[1]);
        let d = xn - xi * xi;
        let u = 1.0 - xi;
        f += 100.0 * d * d + u * u;
        g[i] = carry - 400.0 * d * xi - 2.0 * u;
        carry = 200.0 * d;
    }
    if let Some(last) = g.last_mut() {
        *last = carry;
    }
    f_out[0] = f;
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let tb = Instant::now();
    let m = rosenbrock_grad_ir(n);
    let build = tb.elapsed();
    let tc = Instant::now();
    let show = std::env::args().any(|a| a == "--asm");
    let opts = CompileOptions {
        emit_text: show,
        ..CompileOptions::default()
    };
    let g = compile_module(&m, "rosen.grad", &opts).expect("compile");
    if show {
        println!(
            "{}\n{}",
            g.clif_text().unwrap_or(""),
            g.asm_text().unwrap_or("")
        );
    }
    let compile = tc.elapsed();
    let s = g.stats();
    println!(
        "n = {n}: {} IR insts, build {:.3} s, compile {:.3} s (Cranelift {:.3} s, {} chunks, {} code bytes)",
        s.ir_insts,
        build.as_secs_f64(),
        compile.as_secs_f64(),
        s.cranelift.as_secs_f64(),
        s.chunks,
        s.code_bytes
    );
    let x: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let mut out = vec![0.0; n + 1];
    let mut want = vec![0.0; n + 1];
    g.call_f64(&x, &mut out).expect("call");
    rosenbrock_grad_rust(&x, &mut want);
    let err = out
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(err < 1e-12, "max rel err {err}");
    let reps = (2_000_000 / n).max(1);
    let jit = time(reps, || g.call_f64(black_box(&x), &mut out).expect("call"));
    let rust = time(reps, || rosenbrock_grad_rust(black_box(&x), &mut want));
    let interp_reps = (20_000 / n).max(1);
    let interp = time(interp_reps, || {
        black_box(jitad_ir::eval_f64(&m, "rosen.grad", black_box(&x)).expect("eval"));
    });
    println!(
        "value+gradient per call: JIT {:.2} us, hand-written Rust {:.2} us (JIT/Rust {:.2}x), interpreter {:.1} us (interp/JIT {:.0}x)",
        jit * 1e6,
        rust * 1e6,
        jit / rust,
        interp * 1e6,
        interp / jit
    );
}
