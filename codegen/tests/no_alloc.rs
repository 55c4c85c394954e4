//! Calls allocate nothing in steady state: a counting global allocator (this test
//! binary's own) sees zero allocations across many calls of `call_f64` and `call`, for
//! a small function (no workspace) and a chunked one (pooled workspace).

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::{parse_module, Val};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations made by this thread. Per thread, so the test harness's own threads
    /// (its "has been running for over 60 seconds" notice allocates) are not counted;
    /// compiled calls and their loop drivers run on the calling thread. A `const`
    /// `Cell` has no destructor, so touching it never allocates.
    static THREAD_ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// This thread's allocations so far.
fn allocs() -> usize {
    THREAD_ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests take turns (the count is per thread, but compilation is not measured).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SRC: &str = r#"
func @f(%x: f64, %y: f64) -> (f64, f64, f64) {
  %a = add %x, %y
  %b = sub %x, %y
  %c = mul %a, %b
  %s = sin %c
  %t = mul %s, %x
  %u = exp %t
  %v = add %u, %b
  %w = mul %v, %a
  ret %c, %w, %v
}
"#;

#[test]
fn steady_state_calls_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = parse_module(SRC).unwrap();
    let plain = compile_module(&m, "f", &CompileOptions::default()).unwrap();
    let chunked = compile_module(
        &m,
        "f",
        &CompileOptions {
            chunk_size: 2,
            chunk_threshold: 1,
            ..CompileOptions::default()
        },
    )
    .unwrap();
    assert_eq!(plain.workspace_bytes(), 0);
    assert!(chunked.workspace_bytes() > 0);
    let mut out = [0.0; 3];
    let mut vout = [const { Val::F64(0.0) }; 3];
    let vargs = [Val::F64(0.3), Val::F64(0.2)];
    // Warm up: the pools get their buffers.
    for f in [&plain, &chunked] {
        f.call_f64(&[0.3, 0.2], &mut out).unwrap();
        f.call(&vargs, &mut vout).unwrap();
    }
    let before = allocs();
    let mut acc = 0.0;
    for k in 0..10_000 {
        let x = [0.3 + 1e-5 * k as f64, 0.2];
        for f in [&plain, &chunked] {
            f.call_f64(&x, &mut out).unwrap();
            acc += out[1];
            f.call(&vargs, &mut vout).unwrap();
        }
    }
    let after = allocs();
    assert!(acc.is_finite());
    assert_eq!(
        after - before,
        0,
        "{} allocations in 40,000 calls",
        after - before
    );
}

/// Reverse sweeps through loops (`revloop`) keep their snapshots in a per-thread arena
/// that is sized by the first call for a given trip count and then reused: steady-state
/// calls allocate nothing, under every policy (nested loops included).
#[test]
fn loop_gradients_allocate_nothing_in_steady_state() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use jitad_ir::checkpoint::Policy;
    // This crate cannot depend on jitad-passes: the gradients are derived IR as text.
    let mut m = parse_module(include_str!("../../tests/ir/revloop.jir")).unwrap();
    let mut nm = parse_module(include_str!("nested_loop_grad.jir")).unwrap();
    let g = "f.grad";
    for p in [
        Policy::StoreAll,
        Policy::Binomial(3),
        Policy::Every(7),
        Policy::Recompute,
        Policy::Auto(1 << 10),
    ] {
        for f in m.funcs.iter_mut().chain(nm.funcs.iter_mut()) {
            for d in f.insts.values_mut() {
                // A revloop must keep its tape's policy (checked by the driver).
                match &mut d.op {
                    jitad_ir::Op::RevLoop(r) => r.policy = p,
                    jitad_ir::Op::TapeLoop(r) => r.policy = p,
                    _ => {}
                }
            }
        }
        let c = compile_module(&m, "f.grad", &CompileOptions::default()).unwrap();
        let cn = compile_module(&nm, g, &CompileOptions::default()).unwrap();
        let args = [Val::F64(0.7), Val::F64(0.9), Val::I64(2000)];
        let mut out = [const { Val::F64(0.0) }; 3];
        let mut nout = [const { Val::F64(0.0) }; 2];
        c.call(&args, &mut out).unwrap();
        cn.call(&[Val::F64(0.4)], &mut nout).unwrap();
        let before = allocs();
        for _ in 0..50 {
            c.call(&args, &mut out).unwrap();
            cn.call(&[Val::F64(0.4)], &mut nout).unwrap();
        }
        let after = allocs();
        assert_eq!(after - before, 0, "{p}: {} allocations", after - before);
    }
}

/// Compiled tensor code: fused loops, reductions (`logsumexp`'s scratch included),
/// pads, slices, concatenation and row updates run in the handle's pooled workspace,
/// so steady-state calls through `call_buffers` and the flat `call_f64` allocate
/// nothing. So do products: `private-gemm-x86` packs into a thread-local buffer made on
/// the thread's first product (the warm-up call here). Only where `kernels::gemm`
/// falls back to `matrixmultiply` (no AVX2+FMA) does each product allocate its packing
/// buffer, at most once, counted so a new allocation anywhere else fails the test.
#[test]
fn tensor_calls_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let src = r#"
func @t(%a: f64[16,8], %v: f64[8], %s: f64) -> (f64, f64[16,8], f64[18,8], f64[8]) {
  %x = add %a, %v
  %y = mul %x, %s
  %z = tanh %y
  %l = logsumexp %z, axes [1]
  %m = sum %l, axes [0]
  %sl = slice %z [0:16:2, 0:8]
  %c = concat %sl, %sl, axis 0
  %zero = const 0.0 : f64
  %p = pad %c, %zero [1:1, 0:0]
  %i = const 3 : i64
  %u = insert %v into %a [%i]
  %r = sum %u, axes [0]
  ret %m, %z, %p, %r
}
func @mm(%a: f64[16,8], %b: f64[8,4]) -> (f64[16,4], f64[8,4]) {
  %p = matmul %a, %b
  %at = transpose %a, perm [1, 0]
  %g = matmul %at, %p
  ret %p, %g
}
"#;
    let m = parse_module(src).unwrap();
    let t = compile_module(&m, "t", &CompileOptions::default()).unwrap();
    let mm = compile_module(&m, "mm", &CompileOptions::default()).unwrap();
    let a: Vec<f64> = (0..128).map(|k| (k as f64 * 0.37).sin()).collect();
    let v: Vec<f64> = (0..8).map(|k| k as f64 * 0.1).collect();
    let b: Vec<f64> = (0..32).map(|k| (k as f64).cos()).collect();
    let (mut o1, mut o2, mut o3, mut o4) =
        (vec![0.0; 1], vec![0.0; 128], vec![0.0; 144], vec![0.0; 8]);
    let (mut p1, mut p2) = (vec![0.0; 64], vec![0.0; 32]);
    let flat_in: Vec<f64> = [&a[..], &v, &[0.5]].concat();
    let mut flat_out = vec![0.0; 1 + 128 + 144 + 8];
    let mut run = |k: usize| {
        let s = [0.5 + 1e-6 * k as f64];
        t.call_buffers(&[&a, &v, &s], &mut [&mut o1, &mut o2, &mut o3, &mut o4])
            .unwrap();
        t.call_f64(&flat_in, &mut flat_out).unwrap();
    };
    run(0);
    mm.call_buffers(&[&a, &b], &mut [&mut p1, &mut p2]).unwrap();
    let before = allocs();
    for k in 0..2_000 {
        run(k);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "{} allocations in 4,000 tensor calls",
        after - before
    );
    let before = allocs();
    for _ in 0..1_000 {
        mm.call_buffers(&[&a, &b], &mut [&mut p1, &mut p2]).unwrap();
    }
    let after = allocs();
    let allowed = if jitad_ir::kernels::gemm_backend() == "matrixmultiply" {
        2_000
    } else {
        0
    };
    assert!(
        after - before <= allowed,
        "{} allocations in 1,000 calls of two products ({})",
        after - before,
        jitad_ir::kernels::gemm_backend()
    );
}

/// Gradients of loops carrying tensors: the drivers flatten the states into buffers
/// of a per-thread pool and the checkpoint driver's larger-than-32-slot scratch states
/// come from a pool too, so after the first call (per policy) nothing is allocated —
/// under every policy, with a 47-slot state (a 40-cell tensor, a scalar, and a
/// 6-element `f32` tensor the driver converts to and from its 8-byte slots) and a
/// tensor capture. (`call_buffers`: the typed `call` allocates its result tensors.)
#[test]
fn tensor_loop_gradients_allocate_nothing_in_steady_state() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use jitad_ir::checkpoint::Policy;
    let mut m = parse_module(include_str!("tensor_loop_grad.jir")).unwrap();
    let u: Vec<f64> = (0..40).map(|k| (k as f64 * 0.37).sin()).collect();
    let kk: Vec<f64> = (0..38).map(|k| 0.1 + 0.01 * k as f64).collect();
    let (mut y, mut ub, mut kb, mut ab) = (vec![0.0; 1], vec![0.0; 40], vec![0.0; 38], vec![0.0]);
    for p in [
        Policy::StoreAll,
        Policy::Binomial(3),
        Policy::Every(7),
        Policy::Recompute,
        Policy::Auto(1 << 10),
    ] {
        for f in m.funcs.iter_mut() {
            for d in f.insts.values_mut() {
                match &mut d.op {
                    jitad_ir::Op::RevLoop(r) => r.policy = p,
                    jitad_ir::Op::TapeLoop(r) => r.policy = p,
                    _ => {}
                }
            }
        }
        let c = compile_module(&m, "f.grad", &CompileOptions::default()).unwrap();
        let run = |a: f64, y: &mut [f64], ub: &mut [f64], kb: &mut [f64], ab: &mut [f64]| {
            c.call_buffers(&[&u, &kk, &[a]], &mut [y, ub, kb, ab])
                .unwrap();
        };
        run(0.5, &mut y, &mut ub, &mut kb, &mut ab);
        let first = (y[0], ub.clone(), ab[0]);
        let before = allocs();
        for k in 0..20 {
            run(0.5 + 1e-3 * f64::from(k), &mut y, &mut ub, &mut kb, &mut ab);
        }
        let after = allocs();
        assert_eq!(after - before, 0, "{p}: {} allocations", after - before);
        run(0.5, &mut y, &mut ub, &mut kb, &mut ab);
        assert_eq!((y[0], ub.clone(), ab[0]), first, "{p}: another result");
        assert!(ub.iter().all(|x| x.is_finite()) && ub.iter().any(|&x| x != 0.0));
    }
}

/// Tensors through loops and calls: a stencil time-stepper (a loop carrying a tensor,
/// its outlined body calling a tensor function with a captured tensor) runs its
/// iterations in the pooled workspace (two alternating loop buffers), so steady-state
/// calls allocate nothing, whatever the trip count.
#[test]
fn tensor_loops_and_calls_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let src = r#"
func @heat(%u0: f64[64], %w: f64[62], %sf: f64, %k: f64) -> (f64[64], f64) {
  %steps = cast %sf : i64
  %z = const 0.0 : f64
  %r, %e = loop %t in 0..%steps (%u = %u0 : f64[64], %acc = %z : f64) {
    %l = slice %u [0:62]
    %c = slice %u [1:63]
    %h = slice %u [2:64]
    %s = add %l, %h
    %two = const 2.0 : f64
    %c2 = mul %c, %two
    %d = sub %s, %c2
    %kd = mul %d, %k
    %n0 = add %c, %kd
    %n = call @damp(%n0, %w)
    %zero = const 0.0 : f64
    %p = pad %n, %zero [1:1]
    %q = sum %p, axes [0]
    %acc2 = add %acc, %q
    yield %p, %acc2
  }
  ret %r, %e
}
func @damp(%x: f64[62], %w: f64[62]) -> f64[62] {
  %y = mul %x, %w
  ret %y
}
"#;
    let m = parse_module(src).unwrap();
    let c = compile_module(&m, "heat", &CompileOptions::default()).unwrap();
    assert!(c.workspace_bytes() >= 2 * 64 * 8, "two loop buffers");
    let u: Vec<f64> = (0..64).map(|k| (k as f64 * 0.2).sin()).collect();
    let w: Vec<f64> = (0..62).map(|k| 1.0 - 1e-3 * k as f64).collect();
    let (mut o1, mut o2) = (vec![0.0; 64], vec![0.0; 1]);
    let mut run = |steps: usize| {
        c.call_buffers(&[&u, &w, &[steps as f64], &[0.25]], &mut [&mut o1, &mut o2])
            .unwrap();
    };
    run(7);
    let before = allocs();
    for k in 0..500 {
        run(k % 9);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "{} allocations in 500 calls of a tensor loop",
        after - before
    );
    assert!(o2[0].is_finite());
}
