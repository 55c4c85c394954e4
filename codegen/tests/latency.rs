//! What the compile-latency work must not change: a long straight-line function (the
//! shape of a traced gradient) is scheduled and chunked without touching the caller's
//! IR, reuses recent loads of its parameters and of earlier chunks' values, and gives
//! the interpreter's bits whatever the chunking, the schedule and the thread count, with
//! the same machine code on one thread as on several.

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::{FunctionBuilder, Module, Op, Type};

/// A Rosenbrock-shaped gradient written sweep by sweep: `n` parameters, each read
/// several times by the forward sweep and again by the backward sweep, with two shared
/// constants (so parameters, constants and forward values all cross chunk boundaries,
/// and a scheduled order differs from the written one).
fn sweeps(n: usize) -> Module {
    let mut b = FunctionBuilder::new("g");
    let xs: Vec<_> = (0..n).map(|_| b.param(Type::F64)).collect();
    let one = b.const_f64(1.0);
    let hundred = b.const_f64(100.0);
    let mut sum = b.const_f64(0.0);
    let mut fwd = vec![];
    for i in 0..n - 1 {
        let sq = b.ins1(Op::Mul, &[xs[i], xs[i]]).unwrap();
        let d = b.ins1(Op::Sub, &[xs[i + 1], sq]).unwrap();
        let e = b.ins1(Op::Sub, &[one, xs[i]]).unwrap();
        let t = b.ins1(Op::Mul, &[hundred, d]).unwrap();
        let t = b.ins1(Op::Mul, &[t, d]).unwrap();
        sum = b.ins1(Op::Add, &[sum, t]).unwrap();
        let e2 = b.ins1(Op::Mul, &[e, e]).unwrap();
        sum = b.ins1(Op::Add, &[sum, e2]).unwrap();
        fwd.push((d, e));
    }
    let mut grads = vec![];
    for (i, &(d, e)) in fwd.iter().enumerate().rev() {
        let d2 = b.ins1(Op::Mul, &[hundred, d]).unwrap();
        let d2 = b.ins1(Op::Add, &[d2, d2]).unwrap();
        let gx = b.ins1(Op::Mul, &[d2, xs[i]]).unwrap();
        let gx = b.ins1(Op::Add, &[gx, gx]).unwrap();
        let ge = b.ins1(Op::Add, &[e, e]).unwrap();
        let g = b.ins1(Op::Add, &[gx, ge]).unwrap();
        let g = b.ins1(Op::Neg, &[g]).unwrap();
        let s = b.ins1(Op::Sin, &[xs[i]]).unwrap();
        let g = b.ins1(Op::Fma, &[g, s, d2]).unwrap();
        grads.push(g);
    }
    grads.reverse();
    let mut rets = vec![sum];
    rets.extend(grads);
    b.ret(&rets).unwrap();
    let mut m = Module::new();
    m.insert(b.finish().unwrap());
    m
}

fn run(c: &jitad_codegen::Compiled, x: &[f64]) -> Vec<u64> {
    let mut out = vec![0.0; c.results().len()];
    c.call_f64(x, &mut out).unwrap();
    out.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn long_straight_line_functions_agree_with_the_interpreter_however_compiled() {
    let n = 300;
    let m = sweeps(n);
    jitad_ir::verify_module(&m).unwrap();
    let before = jitad_ir::print_module(&m);
    let inputs: Vec<Vec<f64>> = (0..3)
        .map(|s| {
            (0..n)
                .map(|i| ((i * 7 + s * 13) % 17) as f64 * 0.37 - 2.5)
                .collect()
        })
        .collect();
    let want: Vec<Vec<u64>> = inputs
        .iter()
        .map(|x| {
            let out = jitad_ir::eval_f64(&m, "g", x).unwrap();
            out.iter().map(|v| v.to_bits()).collect()
        })
        .collect();
    for schedule in [true, false] {
        for (size, threshold) in [(50, 100), (333, 400), (1000, 1500), (1, usize::MAX)] {
            let mut listings = vec![];
            for threads in [1, 2, 3] {
                let o = CompileOptions {
                    verify: true,
                    schedule,
                    chunk_size: size,
                    chunk_threshold: threshold,
                    threads,
                    emit_text: true,
                    ..CompileOptions::default()
                };
                let c = compile_module(&m, "g", &o).unwrap();
                if threshold < 3000 {
                    assert!(c.stats().chunks > 1, "{size}: not chunked");
                }
                for (x, want) in inputs.iter().zip(&want) {
                    assert_eq!(&run(&c, x), want, "schedule {schedule}, chunks of {size}");
                }
                listings.push((
                    c.stats().code_bytes,
                    c.asm_text().unwrap_or_default().to_string(),
                    c.clif_text().unwrap_or_default().to_string(),
                ));
            }
            // The same functions, in the same order, with the same code on any number
            // of threads.
            assert!(listings.windows(2).all(|w| w[0] == w[1]), "{size}");
        }
    }
    // The caller's IR is left as written (the JIT schedules its own order).
    assert_eq!(jitad_ir::print_module(&m), before);
}

#[test]
fn parameters_read_together_are_loaded_once() {
    // `x*x + x` and its neighbours read each parameter three times within a few
    // instructions: one load each, not three.
    let mut b = FunctionBuilder::new("h");
    let xs: Vec<_> = (0..8).map(|_| b.param(Type::F64)).collect();
    let mut acc = b.const_f64(0.0);
    for &x in &xs {
        let sq = b.ins1(Op::Mul, &[x, x]).unwrap();
        let t = b.ins1(Op::Add, &[sq, x]).unwrap();
        acc = b.ins1(Op::Add, &[acc, t]).unwrap();
    }
    b.ret(&[acc]).unwrap();
    let mut m = Module::new();
    m.insert(b.finish().unwrap());
    let o = CompileOptions {
        emit_text: true,
        ..CompileOptions::default()
    };
    let c = compile_module(&m, "h", &o).unwrap();
    let clif = c.clif_text().unwrap();
    let loads = clif.matches(" = load.f64").count();
    assert_eq!(loads, 8, "{clif}");
    let x: Vec<f64> = (0..8).map(|i| i as f64 - 3.5).collect();
    let want = jitad_ir::eval_f64(&m, "h", &x).unwrap();
    let mut out = [0.0];
    c.call_f64(&x, &mut out).unwrap();
    assert_eq!(out[0].to_bits(), want[0].to_bits());
}
