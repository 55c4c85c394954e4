//! A compilation that fails after some functions were defined frees their machine code
//! (the JIT module is owned from its creation by the handle's owner, whose drop
//! unmaps it). Its own test binary, so no other test's allocations move the process RSS
//! while it measures.

use jitad_codegen::{compile_module, CompileError, CompileOptions, RegAlloc};
use jitad_ir::parse_module;
use std::fmt::Write as _;

/// `n` values all live across one call, then summed: about `8 n` bytes of spill slots.
fn spill_program(n: usize) -> String {
    let mut s =
        String::from("func @id(%a: f64) -> f64 {\n  ret %a\n}\n\nfunc @f(%x: f64) -> f64 {\n");
    for i in 0..n {
        let _ = writeln!(s, "  %c{i} = const {}.5 : f64\n  %v{i} = mul %x, %c{i}", i);
    }
    s.push_str("  %y = call @id(%x)\n  %s0 = add %y, %v0\n");
    for i in 1..n {
        let _ = writeln!(s, "  %s{i} = add %s{}, %v{i}", i - 1);
    }
    let _ = writeln!(s, "  ret %s{}\n}}", n - 1);
    s
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A compilation that fails after some functions were defined frees their code:
/// a thousand such failures keep the RSS flat (one leaked page each would be
/// megabytes).
#[test]
fn failed_compilations_free_their_code() {
    // @id and @small are defined before @f's frame is found too large.
    let src = format!(
        "func @small(%x: f64) -> f64 {{\n  %y = sin %x\n  ret %y\n}}\n\n{}",
        spill_program(40).replace(
            "%y = call @id(%x)",
            "%z = call @small(%x)\n  %y = call @id(%z)"
        )
    );
    let m = parse_module(&src).unwrap();
    let opts = CompileOptions {
        verify: false,
        max_frame_bytes: 128,
        threads: 1,
        chunk_threshold: usize::MAX,
        schedule: false,
        regalloc: RegAlloc::SinglePass,
        ..CompileOptions::default()
    };
    let fail = || match compile_module(&m, "f", &opts) {
        Err(CompileError::FrameTooLarge { func, .. }) => assert_eq!(func, "@f"),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    };
    for _ in 0..200 {
        fail();
    }
    let before = rss_bytes();
    for _ in 0..1000 {
        fail();
    }
    let after = rss_bytes();
    eprintln!("RSS before {before} after {after}");
    assert!(
        after < before + 2 * 1024 * 1024,
        "RSS grew from {before} to {after} bytes over 1000 failed compilations"
    );
}
