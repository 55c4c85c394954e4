//! Times trace → grad (AD and clean-up) → compile of the extended Rosenbrock at growing
//! n through the facade, as `jitad bench` does, with the compile split into its parts:
//! `cargo run --release --example ad_scaling [-- N...]`. With `JITAD_VERBOSE=1` it also
//! compiles with other options and times a call of each.
use jitad::suite::{compile_times, trace_problem, Rosenbrock};
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
        let t = compile_times(&Rosenbrock(n))?;
        println!(
            "n={n}: trace {:?}, AD + clean-up {:?}, compile {:?} (Cranelift {:?}), total {:?}",
            t.trace,
            t.ad,
            t.compile,
            t.cranelift,
            t.total()
        );
        if std::env::var_os("JITAD_VERBOSE").is_none() {
            continue;
        }
        let g = trace_problem(&Rosenbrock(n))?.grad()?;
        let x = jitad::problems::rosenbrock_start(n);
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
