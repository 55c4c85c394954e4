//! A loss with a branch per element ([`jitad::problems::huber`]), traced as scalars:
//! each `if` records a guard (the branch taken), so nearly every chunk of the gradient
//! holds guards. Times trace → grad and the compile, and a call, with and without chunk
//! sharing ([`jitad::CompileOptions::share_chunks`]):
//! `cargo run --release --example traced_branches [-- N] [--mixed]`.
//! By default every element takes the quadratic branch; `--mixed` spreads the elements
//! over both branches in a pseudo-random pattern, so chunks repeat less.
use jitad::problems::huber;
use std::time::Instant;

fn main() -> Result<(), jitad::Error> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mixed = std::env::args().any(|a| a == "--mixed");
    let x: Vec<f64> = (0..n)
        .map(|i| {
            if mixed {
                ((i * 7919) % 1000) as f64 / 250.0 - 2.0
            } else {
                0.1 + (i % 7) as f64 * 0.01
            }
        })
        .collect();
    let t = Instant::now();
    let g = jitad::trace_scalar("huber", &x, huber)?.grad()?;
    println!(
        "n={n}{}: trace + grad {:?}, {} gradient instructions",
        if mixed { " (mixed branches)" } else { "" },
        t.elapsed(),
        g.num_insts()
    );
    let want = g.eval_f64(&x)?;
    for share in [true, false] {
        let t = Instant::now();
        let c = g.compile_with(&jitad::CompileOptions {
            share_chunks: share,
            ..Default::default()
        })?;
        let compile = t.elapsed();
        let mut out = vec![0.0; n + 1];
        c.call_f64(&x, &mut out)?;
        assert!(
            out.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "the compiled gradient differs from the interpreter's"
        );
        let calls = 100;
        let t = Instant::now();
        for _ in 0..calls {
            c.call_f64(&x, &mut out)?;
        }
        let st = c.stats();
        println!(
            "  sharing {}: compile {compile:?}, {} chunks, {} running another's code, {} code bytes, call {:?}",
            if share { "on " } else { "off" },
            st.chunks,
            st.shared_chunks,
            st.code_bytes,
            t.elapsed() / calls
        );
    }
    Ok(())
}
