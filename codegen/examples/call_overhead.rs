//! Nanoseconds per call through the safe handle, for the quickstart value and gradient
//! f(x, y) = (x + y)(x − y), ∇f = (2x, −2y) written as its reverse sweep would be.
//!
//! ```text
//! cargo run -p jitad-codegen --release --example call_overhead
//! ```

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::parse_module;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let src = "func @g(%x: f64, %y: f64) -> (f64, f64, f64) {\n  %a = add %x, %y\n  %b = sub %x, %y\n  %c = mul %a, %b\n  %xb1 = add %b, %a\n  %yb1 = sub %b, %a\n  ret %c, %xb1, %yb1\n}\n";
    let m = parse_module(src).expect("parse");
    let f = compile_module(&m, "g", &CompileOptions::default()).expect("compile");
    let mut out = [0.0; 3];
    f.call_f64(&[3.0, 2.0], &mut out).expect("call");
    assert_eq!(out, [5.0, 6.0, -4.0]);
    let n = 20_000_000u64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut acc = 0.0;
        for k in 0..n {
            let x = [black_box(3.0 + k as f64 * 1e-9), 2.0];
            f.call_f64(&x, &mut out).expect("call");
            acc += out[1];
        }
        let ns = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        println!("quickstart value+gradient, call_f64: {ns:.2} ns/call (acc {acc:.1})");
    }
}
