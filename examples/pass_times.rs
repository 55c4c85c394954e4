//! Times each stage of `Traced::grad` on the Rosenbrock gradient, and each clean-up pass
//! in every round of the plain "all passes until none changes" loop, with whether it
//! changed anything (diagnostic): `cargo run --release --example pass_times [-- N...]`.
//! The pipeline itself re-runs only the passes a change re-armed; `ad_scaling` with
//! `JITAD_VERBOSE=1` shows its own per-pass times.
use jitad::suite::{trace_problem, Rosenbrock};
use std::time::Instant;

fn main() -> Result<(), jitad::Error> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    for n in if sizes.is_empty() {
        vec![1000, 10_000, 20_000]
    } else {
        sizes
    } {
        let t = Instant::now();
        let traced = trace_problem(&Rosenbrock(n))?;
        println!("n={n}: trace {:?}", t.elapsed());
        let t = Instant::now();
        let mut m = traced.module().clone();
        println!("  clone module {:?}", t.elapsed());
        let t = Instant::now();
        let g = jitad::passes::grad(&mut m, "rosenbrock", &traced.float_params())?;
        println!("  grad transform {:?}", t.elapsed());
        let f = m.get_mut(&g).unwrap();
        let t = Instant::now();
        println!("  insts={} ({:?})", f.num_insts(), t.elapsed());
        for round in 1..=4 {
            let mut line = format!("  round {round}:");
            let t = Instant::now();
            let c1 = jitad::passes::constfold::constfold(f);
            line += &format!(" constfold {:?} {c1}", t.elapsed());
            let t = Instant::now();
            let c2 = jitad::passes::simplify::simplify(f, false);
            line += &format!(" simplify {:?} {c2}", t.elapsed());
            let t = Instant::now();
            let c3 = jitad::passes::cse::cse(f);
            line += &format!(" cse {:?} {c3}", t.elapsed());
            let t = Instant::now();
            let c4 = jitad::passes::dce::dce(f);
            line += &format!(" dce {:?} {c4}", t.elapsed());
            println!("{line}");
            if !(c1 || c2 || c3 || c4) {
                break;
            }
        }
        let owned = f.clone();
        let t = Instant::now();
        let c = jitad::passes::pipeline::compact_owned(owned);
        println!("  compact {:?}, insts={}", t.elapsed(), c.num_insts());
        let t = Instant::now();
        let p = jitad::passes::pipeline::pure_functions(&m);
        println!("  pure_functions {:?}", t.elapsed());
        drop(p);
        let t = Instant::now();
        let d = jitad::passes::inline::inline_module(&mut m);
        println!("  inline {:?} {}", t.elapsed(), d.sites);
        let t = Instant::now();
        drop(m);
        println!("  drop {:?}", t.elapsed());
    }
    Ok(())
}
