//! `jitad demo`: the quickstart example f(x, y) = (x + y)(x − y), end to end.

use anyhow::Result;
use num_traits::Float;

/// The quickstart example, generic so it runs natively and traces.
fn f<T: Float>(x: &[T]) -> T {
    (x[0] + x[1]) * (x[0] - x[1])
}

/// Runs the demo.
pub fn run() -> Result<()> {
    let at = [3.0, 2.0];
    let func = jitad_ir::trace::trace_scalar("f", &at, f)?;
    println!("The quickstart example f(x, y) = (x + y)(x - y), traced at (3, 2):\n");
    print!("{}", jitad_ir::print::print_function(&func));
    let mut module = jitad_ir::Module::new();
    module.insert(func);
    jitad_ir::verify::verify_module(&module)?;
    let interp = jitad_ir::interp::eval_f64(&module, "f", &at)?;
    println!("\ninterpreted f(3, 2) = {}", interp[0]);
    println!("native      f(3, 2) = {}", f(&at));
    Ok(())
}
