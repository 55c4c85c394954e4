//! Compiling and dropping 10,000 functions keeps memory bounded: the last handle's drop
//! unmaps the machine code. Its own test binary, so no other test's allocations move
//! the process RSS while it measures.

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::parse_module;

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn compile_and_drop_many_keeps_memory_bounded() {
    let m = parse_module(
        "func @f(%x: f64, %y: f64) -> f64 {\n  %a = add %x, %y\n  %b = sin %a\n  %c = mul %a, %b\n  ret %c\n}\n",
    )
    .unwrap();
    let o = CompileOptions {
        verify: false,
        ..CompileOptions::default()
    };
    let mut out = [0.0];
    // Warm up allocator arenas, then measure.
    for _ in 0..200 {
        let f = compile_module(&m, "f", &o).unwrap();
        f.call_f64(&[1.0, 2.0], &mut out).unwrap();
    }
    let before = rss_bytes();
    for _ in 0..10_000 {
        let f = compile_module(&m, "f", &o).unwrap();
        f.call_f64(&[1.0, 2.0], &mut out).unwrap();
    }
    let after = rss_bytes();
    eprintln!("RSS before {before} after {after}");
    // Leaking one page of code per module would be 40 MB; allow a quarter of that.
    assert!(
        after < before + 10 * 1024 * 1024,
        "RSS grew from {before} to {after} bytes"
    );
}
