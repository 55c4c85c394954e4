//! Times trace → grad (AD and clean-up) → compile of the extended Rosenbrock at growing
//! n through the facade, as `jitad bench` does, with the compile split into its parts:
//! `cargo run --release --example ad_scaling [-- N...] [--threads=K] [--repeat=R]`.
//! With `JITAD_VERBOSE=1` it prints every stage (the AD transform, each clean-up pass,
//! the compiler's set-up, lowering, Cranelift and finalize); with `JITAD_VERBOSE=2` it
//! also compiles with other options and times a call of each. `--threads=K` compiles on `K` threads (default: the
//! compiler's default); `--chunk=C` splits long functions into chunks of about `C`
//! instructions (default: the compiler's); `--repeat=R` measures each size `R` times.
use jitad::suite::{compile_times_with, trace_problem, Rosenbrock};
use std::time::Instant;

fn main() -> Result<(), jitad::Error> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let flag = |name: &str| {
        std::env::args().find_map(|a| a.strip_prefix(name).and_then(|v| v.parse::<usize>().ok()))
    };
    let mut compile_opts = jitad::CompileOptions::default();
    if let Some(k) = flag("--threads=") {
        compile_opts.threads = k;
    }
    if let Some(k) = flag("--chunk=") {
        compile_opts.chunk_size = k;
        compile_opts.chunk_threshold = compile_opts.chunk_threshold.max(k);
    }
    let repeat = flag("--repeat=").unwrap_or(1);
    let verbose = std::env::var("JITAD_VERBOSE").unwrap_or_default();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000, 100_000]
    } else {
        sizes
    };
    for n in sizes
        .into_iter()
        .flat_map(|n| std::iter::repeat_n(n, repeat))
    {
        let t = compile_times_with(&Rosenbrock(n), &compile_opts)?;
        println!(
            "n={n}: trace {:?}, AD + clean-up {:?}, compile {:?} (Cranelift {:?}), total {:?}",
            t.trace,
            t.ad,
            t.compile,
            t.cranelift,
            t.total()
        );
        if verbose.is_empty() || verbose == "0" {
            continue;
        }
        println!("  {}", t.report().replace('\n', "\n  "));
        if verbose != "2" {
            continue;
        }
        let g = trace_problem(&Rosenbrock(n))?.grad()?;
        let x = jitad::problems::rosenbrock_start(n);
        for (label, opts) in [
            ("default", jitad::CompileOptions::default()),
            (
                "no sharing",
                jitad::CompileOptions {
                    share_chunks: false,
                    ..Default::default()
                },
            ),
            (
                "no schedule",
                jitad::CompileOptions {
                    schedule: false,
                    ..Default::default()
                },
            ),
            (
                "single_pass",
                jitad::CompileOptions {
                    regalloc: jitad::codegen::RegAlloc::SinglePass,
                    ..Default::default()
                },
            ),
            (
                "opt speed",
                jitad::CompileOptions {
                    optimize: true,
                    ..Default::default()
                },
            ),
        ] {
            let c = g.compile_with(&opts)?;
            let mut out = vec![0.0; n + 1];
            let s = Instant::now();
            for _ in 0..200 {
                c.call_f64(&x, &mut out)?;
            }
            let st = c.stats();
            println!(
                "  {label}: {:?} (setup {:?}, lower {:?}, Cranelift {:?}), {} code bytes, call {:?}",
                st.total,
                st.setup,
                st.lower,
                st.cranelift,
                st.code_bytes,
                s.elapsed() / 200
            );
        }
    }
    Ok(())
}
