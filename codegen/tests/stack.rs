//! Stack safety of compiled code: bounded frames, inline probes, the frame-size limit,
//! the call-time stack check, clean errors for malformed hand-built modules, and code
//! memory freed when a compilation fails part way.

use cranelift_entity::EntityRef;
use jitad_codegen::{compile_module, CallError, CompileError, CompileOptions, RegAlloc};
use jitad_ir::{parse_module, Inst, Module, Val, Value};
use std::fmt::Write as _;

/// `@g(a0..a{n-1}) = a0 + a{n-1}`, and `@main(x)`: a loop of `trips` iterations whose
/// body makes `calls` chained calls of `@g` with `nargs` arguments each (the shape of
/// the 6 MB program in issue #11 at `calls = 12000, nargs = 127`).
fn many_calls_program(calls: usize, nargs: usize, trips: usize) -> String {
    let mut s = String::from("func @g(");
    for i in 0..nargs {
        let _ = write!(s, "{}%a{i}: f64", if i > 0 { ", " } else { "" });
    }
    let _ = writeln!(
        s,
        ") -> f64 {{\n  %s = add %a0, %a{}\n  ret %s\n}}\n",
        nargs - 1
    );
    let _ = writeln!(
        s,
        "func @main(%x: f64) -> f64 {{\n  %r = loop %i in 0..{trips} (%t = %x : f64) {{"
    );
    let mut prev = "%t".to_string();
    for k in 0..calls {
        let _ = write!(s, "    %c{k} = call @g({prev}");
        for _ in 1..nargs {
            s.push_str(", %t");
        }
        s.push_str(")\n");
        prev = format!("%c{k}");
    }
    let _ = writeln!(s, "    yield {prev}\n  }}\n  ret %r\n}}");
    s
}

/// A chain `@f0 → @f1 → … → @f{depth-1}`, each passing 127 arguments on: every frame
/// holds a 1 KiB call area, so the chain needs about `depth` KiB of stack.
fn deep_chain_program(depth: usize) -> String {
    const N: usize = 127;
    let args = |s: &mut String, first: &str| {
        s.push_str(first);
        for i in 1..N {
            let _ = write!(s, ", %a{i}");
        }
    };
    let mut s = String::from("func @entry(%x: f64) -> f64 {\n  %r = call @f0(%x");
    for _ in 1..N {
        s.push_str(", %x");
    }
    s.push_str(")\n  ret %r\n}\n\n");
    for d in 0..depth {
        s.push_str(&format!("func @f{d}(%a0: f64"));
        for i in 1..N {
            let _ = write!(s, ", %a{i}: f64");
        }
        s.push_str(") -> f64 {\n");
        if d + 1 < depth {
            s.push_str("  %b = add %a0, %a1\n");
            let _ = write!(s, "  %r = call @f{}(", d + 1);
            args(&mut s, "%b");
            s.push_str(")\n  ret %r\n}\n\n");
        } else {
            s.push_str("  %r = add %a0, %a126\n  ret %r\n}\n\n");
        }
    }
    s
}

fn quiet() -> CompileOptions {
    CompileOptions {
        verify: false,
        ..CompileOptions::default()
    }
}

/// The program (scaled down in debug builds; `JITAD_STACK_CALLS=12000` runs
/// the full size): a loop body of many 127-argument calls used to get a 1 KiB stack
/// slot per call site (a 12 MB frame: SIGSEGV). Now its frame holds one call area,
/// and JIT and interpreter agree.
#[test]
fn loop_body_with_many_wide_calls_runs() {
    let calls = std::env::var("JITAD_STACK_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 600 } else { 12_000 });
    let m = parse_module(&many_calls_program(calls, 127, 2)).unwrap();
    let f = compile_module(&m, "main", &quiet()).unwrap();
    let frame = f.stats().max_frame_bytes;
    eprintln!(
        "{calls} calls: largest frame {frame} bytes, stack need {} bytes",
        f.stack_bytes()
    );
    assert!(
        frame < 4096,
        "the loop body's frame is {frame} bytes (one 1 KiB call area expected)"
    );
    let mut out = [0.0];
    f.call_f64(&[0.5], &mut out).unwrap();
    let want = jitad_ir::interp::eval_f64(&m, "main", &[0.5]).unwrap();
    assert_eq!(out[0].to_bits(), want[0].to_bits());
    // Each call doubles-ish: c_k = c_{k-1} + t, so after `calls` calls t·(calls + 1).
    assert_eq!(out[0], 0.5 * ((calls + 1) * (calls + 1)) as f64);
}

/// A call whose frames need more stack than a 256 KiB thread has is refused with a
/// clean error there, and runs on a thread with enough stack (its recorded need plus
/// the margin, with a little slack): the recorded need is an upper bound.
#[test]
fn deep_frames_from_a_small_thread_give_a_clean_error() {
    let m = parse_module(&deep_chain_program(300)).unwrap();
    let f = std::sync::Arc::new(compile_module(&m, "entry", &quiet()).unwrap());
    let need = f.stack_bytes();
    assert!(
        need > 300 * 1024,
        "stack need {need} below 300 frames of 1 KiB"
    );
    let reference = jitad_ir::interp::eval_f64(&m, "entry", &[0.5]).unwrap()[0];

    let g = std::sync::Arc::clone(&f);
    let small = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut out = [0.0];
            g.call_f64(&[0.5], &mut out)
        })
        .unwrap()
        .join()
        .unwrap();
    match small {
        Err(CallError::StackTooSmall {
            func,
            need: n,
            available,
        }) => {
            assert_eq!(func, "entry");
            assert!(n > available, "need {n}, available {available}");
        }
        other => panic!("expected StackTooSmall, got {other:?}"),
    }

    // Just enough: need + margin (16 KiB) + slack for the thread's own start-up frames.
    let g = std::sync::Arc::clone(&f);
    let size = usize::try_from(need).unwrap() + 16 * 1024 + 64 * 1024;
    let got = std::thread::Builder::new()
        .stack_size(size)
        .spawn(move || {
            let mut out = [0.0];
            g.call_f64(&[0.5], &mut out).map(|()| out[0])
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(got.to_bits(), reference.to_bits());
}

/// A small function still runs on a 256 KiB thread (the check does not refuse what
/// fits).
#[test]
fn small_frames_run_on_a_small_thread() {
    let m = parse_module(&deep_chain_program(20)).unwrap();
    let f = compile_module(&m, "entry", &quiet()).unwrap();
    assert!(f.stack_bytes() < 64 * 1024, "{}", f.stack_bytes());
    let got = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut out = [0.0];
            f.call_f64(&[0.5], &mut out).map(|()| out[0])
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let want = jitad_ir::interp::eval_f64(&m, "entry", &[0.5]).unwrap()[0];
    assert_eq!(got.to_bits(), want.to_bits());
}

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

/// Options that keep `spill_program` in one function with every value live.
fn one_piece() -> CompileOptions {
    CompileOptions {
        chunk_threshold: usize::MAX,
        schedule: false,
        regalloc: RegAlloc::SinglePass,
        emit_text: true,
        ..quiet()
    }
}

/// A frame of several pages is entered through an inline probe loop (each page
/// touched in order), and the function still computes the right value.
#[test]
fn large_frames_are_probed() {
    let m = parse_module(&spill_program(4000)).unwrap();
    let f = compile_module(&m, "f", &one_piece()).unwrap();
    let frame = f.stats().max_frame_bytes;
    assert!(
        frame > 5 * 4096,
        "frame {frame} too small to need a probe loop"
    );
    let asm = f.asm_text().unwrap();
    assert!(
        asm.contains("stack_probe_loop"),
        "no probe loop in the listing of a {frame}-byte frame"
    );
    let mut out = [0.0];
    f.call_f64(&[0.25], &mut out).unwrap();
    let want = jitad_ir::interp::eval_f64(&m, "f", &[0.25]).unwrap()[0];
    assert_eq!(out[0].to_bits(), want.to_bits());
}

/// A frame over `max_frame_bytes` is a compile error naming the function and sizes.
#[test]
fn frame_limit_is_a_compile_error() {
    let m = parse_module(&spill_program(600)).unwrap();
    let opts = CompileOptions {
        max_frame_bytes: 2048,
        ..one_piece()
    };
    match compile_module(&m, "f", &opts) {
        Err(e @ CompileError::FrameTooLarge { .. }) => {
            let CompileError::FrameTooLarge { func, bytes, limit } = &e else {
                unreachable!()
            };
            assert_eq!(func, "@f");
            assert!(*bytes > 2048 && *limit == 2048, "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("@f") && msg.contains(&bytes.to_string()),
                "{msg}"
            );
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // The default limit accepts it.
    compile_module(&m, "f", &one_piece()).unwrap();
}

/// Malformed hand-built modules are compile errors, not panics (the check runs before
/// scheduling and planning, which index the IR freely).
#[test]
fn malformed_modules_are_compile_errors() {
    let base = parse_module(
        "func @f(%x: f64) -> f64 {\n  %a = add %x, %x\n  %b = mul %a, %x\n  %c = sin %b\n  %d = add %c, %a\n  ret %d\n}\n",
    )
    .unwrap();
    let mut cases: Vec<(&str, Module)> = vec![];
    // An instruction id that does not exist, at the head of the body.
    let mut m = base.clone();
    let body = m.funcs[0].body;
    m.funcs[0].regions[body].insts.insert(0, Inst::new(9999));
    cases.push(("unknown instruction", m));
    // An operand that does not exist.
    let mut m = base.clone();
    let i = m.funcs[0].regions[body].insts[1];
    m.funcs[0].insts[i].args[0] = Value::new(9999);
    cases.push(("unknown value", m));
    // No terminator.
    let mut m = base.clone();
    m.funcs[0].regions[body].insts.pop();
    cases.push(("no terminator", m));
    for (what, m) in cases {
        for schedule in [true, false] {
            let opts = CompileOptions {
                schedule,
                ..quiet()
            };
            let r = std::panic::catch_unwind(|| compile_module(&m, "f", &opts).map(|_| ()));
            match r {
                Ok(Err(CompileError::InvalidIr { func, .. })) => assert_eq!(func, "f", "{what}"),
                Ok(other) => panic!("{what}: expected InvalidIr, got {other:?}"),
                Err(_) => panic!("{what}: compiling panicked (schedule: {schedule})"),
            }
        }
    }
    // The untouched module compiles and runs.
    let f = compile_module(&base, "f", &quiet()).unwrap();
    let mut out = [Val::F64(0.0)];
    f.call(&[Val::F64(1.5)], &mut out).unwrap();
}
