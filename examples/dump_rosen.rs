//! Prints the optimised Rosenbrock gradient IR and its machine code (diagnostic):
//! `cargo run --release --example dump_rosen -- N`.
use jitad::suite::{trace_problem, Rosenbrock};

fn main() -> Result<(), jitad::Error> {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let g = trace_problem(&Rosenbrock(n))?.grad()?;
    print!("{}", g.to_jir());
    let opts = jitad::CompileOptions {
        emit_text: true,
        ..Default::default()
    };
    let c = g.compile_with(&opts)?;
    print!("{}", c.asm_text().unwrap_or_default());
    Ok(())
}
