//! An explicit heat-equation stepper as one `loop` carrying the grid (a tensor):
//! `u ← u + k·(u[:-2] − 2·u[1:-1] + u[2:])` on the interior, fixed zero boundary, for
//! `steps` steps. The JIT compiles the loop (the grid carried in two alternating
//! workspace buffers, the step fused into one loop nest); the interpreter runs one
//! kernel per op and step. Prints both times and checks that the results agree bit for
//! bit.
//!
//! ```text
//! cargo run --release --example heat_loop                 # n = 10⁴, 100 steps
//! cargo run --release --example heat_loop -- 100000 1000  # n, steps
//! ```

use jitad::codegen::{compile_module, CompileOptions};
use jitad::ir::interp::{eval, Val};
use jitad::ir::parse_module;
use jitad::ir::tensor::{Tensor, TensorData};
use std::sync::Arc;
use std::time::Instant;

fn program(n: usize) -> String {
    format!(
        r#"
func @heat(%u0: f64[{n}], %steps: i64, %k: f64) -> f64[{n}] {{
  %r = loop %t in 0..%steps (%u = %u0 : f64[{n}]) {{
    %l = slice %u [0:{a}]
    %c = slice %u [1:{b}]
    %h = slice %u [2:{n}]
    %s = add %l, %h
    %two = const 2.0 : f64
    %c2 = mul %c, %two
    %d = sub %s, %c2
    %kd = mul %d, %k
    %next = add %c, %kd
    %zero = const 0.0 : f64
    %p = pad %next, %zero [1:1]
    yield %p
  }}
  ret %r
}}
"#,
        a = n - 2,
        b = n - 1
    )
}

/// Median wall time of `reps` runs, in seconds.
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(10_000).max(3);
    let steps = args.get(1).copied().unwrap_or(100);
    let m = parse_module(&program(n))?;
    let t0 = Instant::now();
    let c = compile_module(&m, "heat", &CompileOptions::default())?;
    let compile = t0.elapsed().as_secs_f64();
    let u0: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 / (n - 1) as f64;
            (std::f64::consts::PI * x).sin()
        })
        .collect();
    let args = [
        Val::Tensor(Arc::new(Tensor::f64(&[n], u0)?)),
        Val::I64(steps as i64),
        Val::F64(0.25),
    ];
    let mut jit = vec![Val::F64(0.0)];
    c.call(&args, &mut jit)?;
    let interp = eval(&m, "heat", &args)?;
    let same = match (&jit[0], &interp[0]) {
        (Val::Tensor(a), Val::Tensor(b)) => match (a.data(), b.data()) {
            (TensorData::F64(p), TensorData::F64(q)) => {
                p.len() == q.len() && p.iter().zip(q).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        },
        _ => false,
    };
    let reps = 11;
    let t_jit = median(reps, || {
        c.call(&args, &mut jit).expect("JIT call");
    });
    let t_interp = median(reps, || {
        eval(&m, "heat", &args).expect("interpreter");
    });
    println!(
        "heat equation, n = {n}, {steps} steps: JIT {:.3} ms, interpreter {:.3} ms \
         ({:.1}x); compile {:.1} ms; workspace {} bytes; bit-identical: {same}",
        t_jit * 1e3,
        t_interp * 1e3,
        t_interp / t_jit,
        compile * 1e3,
        c.workspace_bytes()
    );
    if !same {
        return Err("JIT and interpreter differ".into());
    }
    Ok(())
}
