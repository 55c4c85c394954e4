//! Measures compile time against function length for reverse-mode-shaped straight-line
//! functions (the worst case for Cranelift's register allocator: a forward sweep whose
//! values are all read again, in reverse order, by a backward sweep; no calls).
//!
//! ```text
//! cargo run -p jitad-codegen --release --example compile_scaling -- [N...] [--chunk S] [--whole]
//! ```
//!
//! Prints, per N: IR instructions, chunks, our lowering time, Cranelift's time, total,
//! µs per instruction, and the time of one call.

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::{FunctionBuilder, Module, Op, Type};
use std::time::Instant;

/// `n` IR instructions: n/2 forward ops, then n/2 backward ops reading the forward
/// values in reverse. Eight inputs; two results.
fn fwdbwd(n: usize) -> Module {
    let mut b = FunctionBuilder::new("f");
    let xs: Vec<_> = (0..8).map(|_| b.param(Type::F64)).collect();
    let half = n / 2;
    let mut fwd = Vec::with_capacity(half);
    let mut v = xs[0];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for k in 0..half {
        let r = next();
        // The other operand: an input or a recent forward value.
        let other = if fwd.is_empty() || r % 3 == 0 {
            xs[(r >> 8) as usize % 8]
        } else {
            fwd[fwd.len() - 1 - ((r >> 8) as usize % fwd.len().min(16))]
        };
        let op = match k % 3 {
            0 => Op::Mul,
            1 => Op::Add,
            _ => Op::Sub,
        };
        v = b.ins1(op, &[v, other]).expect("typed");
        fwd.push(v);
    }
    let mut a = xs[1];
    for (k, &p) in fwd.iter().rev().enumerate() {
        let op = if k % 2 == 0 { Op::Mul } else { Op::Add };
        a = b.ins1(op, &[a, p]).expect("typed");
    }
    b.ret(&[v, a]).expect("ret");
    let mut m = Module::new();
    m.insert(b.finish().expect("finish"));
    m
}

fn main() {
    let mut sizes = vec![];
    let mut opts = CompileOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--chunk" => {
                let s: usize = args.next().and_then(|s| s.parse().ok()).expect("--chunk S");
                opts.chunk_size = s;
                opts.chunk_threshold = s + s / 2;
            }
            "--whole" => opts.chunk_threshold = usize::MAX,
            "--single-pass" => opts.regalloc = jitad_codegen::RegAlloc::SinglePass,
            s => sizes.push(s.parse::<usize>().expect("size")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000, 1_000_000];
    }
    println!(
        "{:>9} {:>7} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "insts",
        "chunks",
        "build s",
        "setup s",
        "cranelift s",
        "lower s",
        "final s",
        "total s",
        "us/inst",
        "call us"
    );
    for n in sizes {
        let tb = Instant::now();
        let m = fwdbwd(n);
        let build = tb.elapsed().as_secs_f64();
        let t = Instant::now();
        let f = compile_module(&m, "f", &opts).expect("compile");
        let total = t.elapsed().as_secs_f64();
        let s = f.stats();
        let x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
        let mut out = [0.0; 2];
        f.call_f64(&x, &mut out).expect("call");
        let reps = (1_000_000 / n).max(1);
        let tc = Instant::now();
        for _ in 0..reps {
            f.call_f64(&x, &mut out).expect("call");
        }
        let call_us = tc.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!(
            "{:>9} {:>7} {:>8.3} {:>8.3} {:>11.3} {:>8.3} {:>8.3} {:>8.3} {:>8.2} {:>10.2}",
            s.ir_insts,
            s.chunks,
            build,
            s.setup.as_secs_f64(),
            s.cranelift.as_secs_f64(),
            s.lower.as_secs_f64(),
            s.finalize.as_secs_f64(),
            total,
            total * 1e6 / s.ir_insts as f64,
            call_us
        );
    }
}
