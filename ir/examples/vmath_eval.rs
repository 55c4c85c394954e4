//! Prints `f(x)` for inputs read from stdin, for accuracy checks against an outside
//! reference (`ir/examples/vmath_accuracy.py` compares with `mpmath`, correctly rounded).
//!
//! `cargo run --release -p jitad-ir --example vmath_eval -- FN < inputs`, where `FN` is
//! one of `exp log tanh sigmoid` (the `vmath` kernels) or `libm-exp libm-log libm-tanh
//! libm-sigmoid` (the scalar ops' libm functions), and each input line is the hex bit
//! pattern of an f64; each output line is the hex bit pattern of the result.

use jitad_ir::math::f64m;
use jitad_ir::vmath;
use std::io::{BufRead, Write};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let f: fn(f64) -> f64 = match name.as_str() {
        "exp" => vmath::exp1,
        "log" => vmath::log1,
        "tanh" => vmath::tanh1,
        "sigmoid" => vmath::sigmoid1,
        "libm-exp" => |x| f64m::exp(x),
        "libm-log" => |x| f64m::log(x),
        "libm-tanh" => |x| f64m::tanh(x),
        "libm-sigmoid" => |x| f64m::sigmoid(x),
        _ => {
            eprintln!("usage: vmath_eval exp|log|tanh|sigmoid|libm-exp|libm-log|libm-tanh|libm-sigmoid < hex-bits");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(bits) = u64::from_str_radix(line.trim(), 16) else {
            eprintln!("not a hex bit pattern: {line}");
            std::process::exit(2);
        };
        let y = f(f64::from_bits(bits));
        if writeln!(out, "{:016x}", y.to_bits()).is_err() {
            std::process::exit(1);
        }
    }
}
