//! Value+gradient per call for every problem and leg of [`jitad::suite`]: hand-written
//! Rust, the JIT, the interpreter on the same gradient IR, the classic tape (replay and
//! record per call) and forward-mode JIT (small n). Every leg of a group runs on the
//! same input in the same process, so the ratios are like for like. A last group times
//! trace + grad + compile.
//!
//! The tensor workloads of [`jitad::workloads`] have their own groups, legs `hand`
//! (hand-written Rust: GEMM + loops for the MLP, one fused loop for Rosenbrock), `jit`
//! (the compiled gradient through `call_buffers`) and `interp`: `mlp-M` (batch 256, 64
//! inputs, two tanh layers of 256, MSE; n = the parameter count), `mlp-small` (batch
//! 32, 8 inputs, 16 hidden; hand-written in plain loops, `workloads::MlpLoops`) and
//! `rosenbrock-tensor` (array ops) at n = 10³, 10⁵, 10⁶. Their legs are checked to
//! agree (JIT = interpreter bit for bit, hand-written within 1e-12) before timing.
//!
//! `heat` times the 1-D heat equation stepped by a `fori_loop` carrying a tensor (n =
//! 10⁴ cells, T = 100 steps, store-all; `workloads::heat_loss`), hand-written
//! store-all adjoint against the JIT and the interpreter.
//!
//! `lorenz-loop` times the Lorenz RK4 loop (`tests/ir/loops/lorenz.jir`) at N = 10⁵ and
//! 10⁶ steps: the primal (`hand` = [`jitad::problems::lorenz_value`], `jit` = the
//! cleaned-up IR compiled) and value+gradient (`hand` = the store-all adjoint
//! [`jitad::problems::lorenz_grad`], `hand-binomial-20` the hand-written Revolve
//! adjoint [`jitad::problems::lorenz_grad_binomial`] with 20 snapshots, `jit-store-all`
//! and `jit-binomial-20` the compiled reverse-mode gradient under those checkpointing
//! policies), checked to agree first.
//!
//! `cargo bench --bench gradients -- rosenbrock/jit` runs one leg; `jitad bench` prints
//! the same suite as one table.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jitad::ir::checkpoint::Policy;
use jitad::problems::{
    lorenz_grad, lorenz_grad_binomial, lorenz_value, BinomialTape, LORENZ_JIR, LORENZ_POINT,
};
use jitad::suite::{self, Case, Leg, Mlp, Quickstart, Rosenbrock};
use jitad::workloads::{self, MlpShape, TensorCase};
use jitad::{Traced, Val};
use std::hint::black_box;
use std::time::Duration;

fn group(c: &mut Criterion, name: &str, cases: Vec<Case>) {
    let mut g = c.benchmark_group(name);
    if cases.first().is_some_and(|c| c.n >= 1000) {
        g.measurement_time(Duration::from_secs(3));
    }
    for mut case in cases {
        let id = BenchmarkId::new(case.leg.name(), case.n);
        g.bench_function(id, |b| b.iter(|| black_box(case.run())));
    }
    g.finish();
}

fn quickstart(c: &mut Criterion) {
    group(c, "quickstart", suite::cases(&Quickstart).expect("setup"));
    // The handle alone, without the suite's closure and gradient copy: what a caller
    // with its own buffers pays per call.
    let g = suite::trace_problem(&Quickstart)
        .and_then(|t| t.grad())
        .and_then(|g| g.compile())
        .expect("compile");
    let x = [3.0, 2.0];
    let mut out = [0.0; 3];
    c.bench_function("quickstart/jit-handle", |b| {
        b.iter(|| g.call_f64(black_box(&x), &mut out).expect("call"))
    });
}

fn rosenbrock(c: &mut Criterion) {
    for n in [10usize, 1000, 10000] {
        group(
            c,
            "rosenbrock",
            suite::cases(&Rosenbrock(n)).expect("setup"),
        );
    }
}

fn mlp(c: &mut Criterion) {
    group(c, "mlp", suite::cases(&Mlp::standard()).expect("setup"));
}

fn lorenz_loop(c: &mut Criterion) {
    let primal = Traced::from_jir(LORENZ_JIR, Some("loss")).expect("parse");
    // The primal through the same clean-up (and inliner) as the gradient.
    let jit_primal = primal.optimize().compile().expect("compile");
    let grad = primal.grad().expect("grad");
    let store_all = grad
        .with_checkpoint(Policy::StoreAll)
        .compile()
        .expect("compile");
    let binomial = grad
        .with_checkpoint(Policy::Binomial(20))
        .compile()
        .expect("compile");
    let mut g = c.benchmark_group("lorenz-loop");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [100_000usize, 1_000_000] {
        let mut args: Vec<Val> = LORENZ_POINT.iter().map(|&v| Val::F64(v)).collect();
        args.push(Val::I64(n as i64));
        let (mut y, mut out) = (vec![Val::F64(0.0)], vec![Val::F64(0.0); 7]);
        let (mut tape, mut gh) = (Vec::new(), [0.0; 6]);
        let (mut revolve, mut gb) = (BinomialTape::default(), [0.0; 6]);
        // The legs agree before they are timed: the primal bit for bit, the gradient
        // within rounding (the hand-written adjoint orders its sums differently).
        jit_primal.call(&args, &mut y).expect("primal");
        let v = lorenz_value(&LORENZ_POINT, n);
        assert_eq!(y[0].as_f64().map(f64::to_bits), Some(v.to_bits()));
        lorenz_grad(&LORENZ_POINT, n, &mut tape, &mut gh);
        lorenz_grad_binomial(&LORENZ_POINT, n, 20, &mut revolve, &mut gb);
        assert_eq!(
            gb, gh,
            "the hand-written binomial adjoint is the store-all one"
        );
        for c in [&store_all, &binomial] {
            c.call(&args, &mut out).expect("gradient");
            for (a, b) in out[1..].iter().filter_map(Val::as_f64).zip(gh) {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
        g.bench_function(BenchmarkId::new("primal/hand", n), |b| {
            b.iter(|| lorenz_value(black_box(&LORENZ_POINT), n))
        });
        g.bench_function(BenchmarkId::new("primal/jit", n), |b| {
            b.iter(|| jit_primal.call(black_box(&args), &mut y).expect("call"))
        });
        g.bench_function(BenchmarkId::new("grad/hand", n), |b| {
            b.iter(|| lorenz_grad(black_box(&LORENZ_POINT), n, &mut tape, &mut gh))
        });
        g.bench_function(BenchmarkId::new("grad/hand-binomial-20", n), |b| {
            b.iter(|| {
                let p = black_box(&LORENZ_POINT);
                lorenz_grad_binomial(p, n, 20, &mut revolve, &mut gb)
            })
        });
        g.bench_function(BenchmarkId::new("grad/jit-store-all", n), |b| {
            b.iter(|| store_all.call(black_box(&args), &mut out).expect("call"))
        });
        g.bench_function(BenchmarkId::new("grad/jit-binomial-20", n), |b| {
            b.iter(|| binomial.call(black_box(&args), &mut out).expect("call"))
        });
    }
    g.finish();
}

fn compile_time(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in [1000usize, 10_000] {
        g.bench_function(BenchmarkId::new("rosenbrock", n), |b| {
            b.iter(|| suite::compile_times(&Rosenbrock(n)).expect("compile"))
        });
    }
    g.finish();
}

/// A tensor workload's legs as one group; the slow ones (milliseconds per call) get
/// fewer samples and a short warm-up, so the whole bench stays within minutes.
fn tensor_group(c: &mut Criterion, name: &str, mut cases: Vec<TensorCase>, slow: bool) {
    if let Err(e) = workloads::check_agreement(&mut cases, 1e-12) {
        panic!("{name}: the legs disagree: {e}");
    }
    let mut g = c.benchmark_group(name);
    if slow {
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }
    for mut case in cases {
        // The interpreter is 10-100x slower: fewer samples, same statistics.
        if slow && case.leg == Leg::Interp {
            g.measurement_time(Duration::from_secs(2));
        }
        let id = BenchmarkId::new(case.leg.name(), case.n);
        g.bench_function(id, |b| b.iter(|| black_box(case.run())));
    }
    g.finish();
}

fn mlp_m(c: &mut Criterion) {
    let cases = workloads::mlp_cases("mlp-M", MlpShape::M).expect("setup");
    tensor_group(c, "mlp-M", cases, true);
}

/// The small MLP (batch 32, 8 inputs, 16 hidden) against [`workloads::MlpLoops`], the
/// plain-loop hand-written gradient (target: JIT ≤ 1.2× hand-written).
fn mlp_small(c: &mut Criterion) {
    let cases = workloads::mlp_small_cases("mlp-small", MlpShape::SMALL).expect("setup");
    tensor_group(c, "mlp-small", cases, false);
}

fn rosenbrock_tensor(c: &mut Criterion) {
    for n in [1000usize, 100_000, 1_000_000] {
        let cases = workloads::rosenbrock_cases(n).expect("setup");
        tensor_group(c, "rosenbrock-tensor", cases, n >= 100_000);
    }
}

/// The heat equation through a loop carrying a tensor (n = 10⁴ cells, T = 100 steps),
/// value+gradient under store-all: [`workloads::HeatHand`] against the compiled
/// gradient and the interpreter.
fn heat(c: &mut Criterion) {
    let cases = workloads::heat_cases(10_000, 100, Policy::StoreAll).expect("setup");
    tensor_group(c, "heat", cases, true);
}

criterion_group!(
    benches,
    quickstart,
    rosenbrock,
    mlp,
    lorenz_loop,
    compile_time,
    mlp_m,
    mlp_small,
    rosenbrock_tensor,
    heat
);
criterion_main!(benches);
