//! Traced branches at scale: the Huber loss ([`jitad::problems::huber`]) traced as scalars records a guard per
//! element (the branch each element took), so nearly every chunk of its gradient holds
//! guards. Such chunks share machine code ([`jitad::CompileOptions::share_chunks`]), and
//! compute what the interpreter computes; when an input takes the other branch, the
//! compiled code names the same guard the interpreter names.

use jitad::problems::huber;
use jitad::{CompileOptions, Traced};

fn opts(share: bool) -> CompileOptions {
    CompileOptions {
        chunk_size: 120,
        chunk_threshold: 120,
        share_chunks: share,
        ..CompileOptions::default()
    }
}

/// The position of the failing guard among `f`'s guards (program order), from an
/// interpreter error.
fn guard_position(g: &Traced, e: &jitad::Error) -> Option<usize> {
    let jitad::Error::Eval(e) = e else {
        return None;
    };
    let jitad_ir::EvalError::GuardFailed { inst, .. } = **e else {
        return None;
    };
    let f = g.function();
    f.regions[f.body]
        .insts
        .iter()
        .filter(|&&i| f.insts[i].op == jitad_ir::Op::Guard)
        .position(|&i| i == inst)
}

#[test]
fn traced_branches_share_code_and_fail_at_the_interpreters_guard() {
    let n = 1500;
    // Runs of elements on one side, then the other: the branches repeat in blocks.
    let x: Vec<f64> = (0..n)
        .map(|i| {
            if (i / 400) % 2 == 0 {
                0.2 + 0.001 * (i % 7) as f64
            } else {
                3.0 + 0.01 * (i % 5) as f64
            }
        })
        .collect();
    let g = jitad::trace_scalar("huber", &x, huber)
        .unwrap()
        .grad()
        .unwrap();
    let want = g.eval_f64(&x).unwrap();
    // The traced ops are the native ones: the same value, bit for bit.
    assert_eq!(want[0].to_bits(), huber(&x).to_bits());
    let shared = g.compile_with(&opts(true)).unwrap();
    let own = g.compile_with(&opts(false)).unwrap();
    let st = shared.stats();
    assert!(st.chunks > 50, "{} chunks", st.chunks);
    assert!(
        st.shared_chunks * 3 > st.chunks,
        "{} of {} chunks shared",
        st.shared_chunks,
        st.chunks
    );
    assert!(
        st.code_bytes * 3 < own.stats().code_bytes * 2,
        "{} vs {} code bytes",
        st.code_bytes,
        own.stats().code_bytes
    );
    for c in [&shared, &own] {
        let mut out = vec![0.0; want.len()];
        c.call_f64(&x, &mut out).unwrap();
        for (k, (a, b)) in out.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "result {k}: {a} vs {b}");
        }
    }
    // Element `i` moved across its branch: the guard of element `i` fails, in the
    // interpreter and in both compiles.
    for i in [0, 1, 399, 400, 777, 1201, n - 1] {
        let mut y = x.clone();
        y[i] = if x[i] < 1.5 { 3.0 } else { 0.3 };
        let e = g.eval_f64(&y).unwrap_err();
        let want = guard_position(&g, &e).unwrap_or_else(|| panic!("element {i}: {e}"));
        for c in [&shared, &own] {
            let mut out = vec![0.0; x.len() + 1];
            match c.call_f64(&y, &mut out) {
                Err(jitad::codegen::CallError::GuardFailed { guard, .. }) => {
                    assert_eq!(guard, want, "element {i}")
                }
                other => panic!("element {i}: {other:?}"),
            }
        }
    }
}
