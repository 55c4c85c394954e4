//! Times trace, AD and each clean-up pass for the extended Rosenbrock at growing n:
//! `cargo run --release --example ad_scaling`.
use jitad::suite::{trace_problem, Rosenbrock};
use std::time::Instant;

fn main() -> Result<(), jitad::Error> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000, 100_000]
    } else {
        sizes
    };
    for n in sizes {
        let t = Instant::now();
        let traced = trace_problem(&Rosenbrock(n))?;
        let trace = t.elapsed();
        let mut m = traced.module().clone();
        let t = Instant::now();
        let g = jitad::passes::grad(&mut m, "rosenbrock", &traced.float_params())?;
        let ad = t.elapsed();
        let t = Instant::now();
        let stats = jitad::passes::optimize_module(&mut m, &jitad::passes::OptOptions::default());
        let opt = t.elapsed();
        let t = Instant::now();
        let c = jitad::codegen::compile_module(&m, &g, &jitad::CompileOptions::default())?;
        let comp = t.elapsed();
        if std::env::var_os("JITAD_VERBOSE").is_some() {
            println!("{:?}", c.stats());
            for (label, opts) in [
                ("default", jitad::CompileOptions::default()),
                (
                    "no schedule",
                    jitad::CompileOptions {
                        schedule: false,
                        ..Default::default()
                    },
                ),
                (
                    "opt none",
                    jitad::CompileOptions {
                        optimize: false,
                        ..Default::default()
                    },
                ),
                (
                    "chunk 250",
                    jitad::CompileOptions {
                        chunk_size: 250,
                        chunk_threshold: 400,
                        ..Default::default()
                    },
                ),
                (
                    "chunk 4000",
                    jitad::CompileOptions {
                        chunk_size: 4000,
                        chunk_threshold: 6000,
                        ..Default::default()
                    },
                ),
            ] {
                let c = jitad::codegen::compile_module(&m, &g, &opts)?;
                let x = jitad::problems::rosenbrock_start(n);
                let mut out = vec![0.0; n + 1];
                let t = Instant::now();
                for _ in 0..200 {
                    c.call_f64(&x, &mut out)?;
                }
                let call = t.elapsed() / 200;
                println!(
                    "  {label}: compile {:?} cranelift {:?}, {} code bytes, call {call:?}",
                    c.stats().total,
                    c.stats().cranelift,
                    c.stats().code_bytes
                );
            }
        }
        println!(
            "n={n}: trace {trace:?}, grad {ad:?}, optimize {opt:?} ({} rounds), compile {comp:?} (cranelift {:?})",
            stats.rounds,
            c.stats().cranelift
        );
    }
    Ok(())
}
