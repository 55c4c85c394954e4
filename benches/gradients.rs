//! Value+gradient per call for every problem and leg of [`jitad::suite`]: hand-written
//! Rust, the JIT, the interpreter on the same gradient IR, the classic tape (replay and
//! record per call) and forward-mode JIT (small n). Every leg of a group runs on the
//! same input in the same process, so the ratios are like for like. A last group times
//! trace + grad + compile.
//!
//! `cargo bench --bench gradients -- rosenbrock/jit` runs one leg; `jitad bench` prints
//! the same suite as one table.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jitad::suite::{self, Case, Mlp, Quickstart, Rosenbrock};
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

criterion_group!(benches, quickstart, rosenbrock, mlp, compile_time);
criterion_main!(benches);
