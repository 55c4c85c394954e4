//! Value+gradient per call, every leg on the same input in the same run, so each ratio
//! comes from one process: hand-written Rust, the classic tape (replay and record per
//! call), and — as they land — the JIT and the interpreter on the same gradient IR.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use jitad::problems::{self, MlpData};
use jitad::tape::Tape;

fn quickstart(c: &mut Criterion) {
    let mut g = c.benchmark_group("quickstart");
    let x = [3.0, 2.0];
    let mut dx = [0.0; 2];
    g.bench_function("hand", |b| {
        b.iter(|| problems::quickstart_grad(black_box(&x), &mut dx))
    });
    let mut tape = Tape::new();
    tape.record(&x, problems::quickstart).expect("record");
    g.bench_function("tape-replay", |b| {
        b.iter(|| tape.replay(black_box(&x), &mut dx).expect("replay"))
    });
    g.bench_function("tape-record", |b| {
        b.iter(|| {
            let v = tape.record(black_box(&x), problems::quickstart);
            tape.gradient(&mut dx).expect("gradient");
            v
        })
    });
    g.finish();
}

fn rosenbrock(c: &mut Criterion) {
    let mut g = c.benchmark_group("rosenbrock");
    for n in [10usize, 1000, 10000] {
        let x = problems::rosenbrock_start(n);
        let mut dx = vec![0.0; n];
        g.bench_with_input(BenchmarkId::new("hand", n), &x, |b, x| {
            b.iter(|| problems::rosenbrock_grad(black_box(x), &mut dx))
        });
        let mut tape = Tape::new();
        tape.record(&x, problems::rosenbrock).expect("record");
        g.bench_with_input(BenchmarkId::new("tape-replay", n), &x, |b, x| {
            b.iter(|| tape.replay(black_box(x), &mut dx).expect("replay"))
        });
        g.bench_with_input(BenchmarkId::new("tape-record", n), &x, |b, x| {
            b.iter(|| {
                let v = tape.record(black_box(x), problems::rosenbrock);
                tape.gradient(&mut dx).expect("gradient");
                v
            })
        });
    }
    g.finish();
}

fn mlp(c: &mut Criterion) {
    let mut g = c.benchmark_group("mlp");
    let data = MlpData::synthetic(1);
    let p = problems::mlp_init(2);
    let mut dp = vec![0.0; p.len()];
    g.bench_function("hand", |b| {
        b.iter(|| problems::mlp_grad(black_box(&p), &data, &mut dp))
    });
    let mut tape = Tape::new();
    tape.record(&p, |v| problems::mlp_loss(v, &data))
        .expect("record");
    g.bench_function("tape-replay", |b| {
        b.iter(|| tape.replay(black_box(&p), &mut dp).expect("replay"))
    });
    g.bench_function("tape-record", |b| {
        b.iter(|| {
            let v = tape.record(black_box(&p), |v| problems::mlp_loss(v, &data));
            tape.gradient(&mut dp).expect("gradient");
            v
        })
    });
    g.finish();
}

criterion_group!(benches, quickstart, rosenbrock, mlp);
criterion_main!(benches);
