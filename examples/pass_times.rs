//! Times each clean-up pass on the raw Rosenbrock gradient (diagnostic).
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
        let traced = trace_problem(&Rosenbrock(n))?;
        let mut m = traced.module().clone();
        let t = Instant::now();
        let g = jitad::passes::grad(&mut m, "rosenbrock", &traced.float_params())?;
        println!("grad transform {:?}", t.elapsed());
        let f = m.get_mut(&g).unwrap();
        let mut line = format!("n={n} insts={}:", f.num_insts());
        let t = Instant::now();
        jitad::passes::constfold::constfold(f);
        line += &format!(" constfold {:?}", t.elapsed());
        let t = Instant::now();
        jitad::passes::simplify::simplify(f, false);
        line += &format!(" simplify {:?}", t.elapsed());
        let t = Instant::now();
        jitad::passes::cse::cse(f);
        line += &format!(" cse {:?}", t.elapsed());
        let t = Instant::now();
        jitad::passes::dce::dce(f);
        line += &format!(" dce {:?}", t.elapsed());
        let t = Instant::now();
        let c = jitad::passes::pipeline::compact(f);
        line += &format!(" compact {:?}", t.elapsed());
        drop(c);
        println!("{line}");
    }
    Ok(())
}
