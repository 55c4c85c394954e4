//! Sound tapes: a tape owns its Revolve tasks and snapshots (an abandoned tape neither
//! corrupts another's gradient nor outlives its call), a `revloop` must describe the
//! loop its tape recorded, every driver failure is a named error that both engines
//! report identically, and a top-level call made from inside a sweep leaves the sweep
//! alone. The IR is written by hand in `tests/ir/tapes/`.

mod common;
use common::*;
use jitad_codegen::CallError;
use jitad_ir::checkpoint::{self, DriverError, Policy, Steps};
use jitad_ir::interp::{EvalError, Interpreter};
use jitad_ir::{interp, parse_module, Module, Val};
use jitad_passes::{grad, optimize_module, OptOptions};
use std::path::{Path, PathBuf};

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir/tapes")
}

fn load(name: &str) -> (String, Module) {
    let src = std::fs::read_to_string(suite().join(name)).unwrap();
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
    verified(&m);
    (src, m)
}

#[test]
fn an_abandoned_tape_does_not_touch_the_consumed_ones_gradient() {
    // s_10 = x·c^10: d/dx = c^10, d/dc = 10·x·c^9 (hand-derived). With c = 0.5 and
    // x = 2 every product is a power of two and the sum of ten equal terms is exact,
    // so the expected values are exact. (Before: x_bar was c^20 in both engines.)
    let (_, m) = load("two_tapes.jir");
    for (x, c) in [(2.0f64, 0.5f64), (1.5, 0.9), (-0.3, 1.1)] {
        // `eval` asserts JIT == interpreter bit for bit.
        let r = eval(&m, "f", &[x, c]);
        let want = [x * c.powi(10), c.powi(10), 10.0 * x * c.powi(9)];
        if (x, c) == (2.0, 0.5) {
            assert_eq!(r, want, "x={x} c={c}");
        }
        for (got, want) in r.iter().zip(want) {
            assert!(close(*got, want, 1e-13), "x={x} c={c}: {r:?} vs {want}");
        }
    }
    // Nothing of the abandoned tape survives its call: a second call gives the same
    // result, and a call-scope finishes with no tape pending (a fresh call numbers
    // its tapes from 1 again, seen in `bad_token_dropped.jir`'s error).
    assert_eq!(eval(&m, "f", &[2.0, 0.5]), eval(&m, "f", &[2.0, 0.5]));
}

/// The first line `; expect: MESSAGE` of a failure case.
fn expectation(src: &str) -> &str {
    src.lines()
        .find_map(|l| l.strip_prefix("; expect: "))
        .expect("a `; expect:` line")
}

#[test]
fn a_revloop_that_does_not_match_its_tape_is_refused_by_both_engines_alike() {
    let cases = [
        "mismatch_start.jir",
        "mismatch_trips.jir",
        "mismatch_policy.jir",
        "mismatch_inits.jir",
        "mismatch_state_count.jir",
        "bad_token_dropped.jir",
        "bad_token_forged.jir",
    ];
    let args = [Val::F64(2.0), Val::F64(0.5)];
    for name in cases {
        let (src, m) = load(name);
        let want = expectation(&src);
        let ie = interp::eval(&m, "f", &args).unwrap_err();
        let EvalError::Checkpoint { error: ierr, .. } = &ie else {
            panic!("{name}: interpreter: not a checkpoint error: {ie}");
        };
        let c = compiled(&m, "f");
        let mut out = vec![Val::F64(0.0); 2];
        let je = c.call(&args, &mut out).unwrap_err();
        let CallError::Checkpoint { error: jerr, .. } = &je else {
            panic!("{name}: JIT: not a checkpoint error: {je}");
        };
        assert_eq!(ierr, jerr, "{name}");
        assert_eq!(ie.to_string(), je.to_string(), "{name}");
        assert_eq!(ie.to_string(), format!("@f: {want}"), "{name}");
        // Each case is the error its name says.
        let kind_ok = match ierr {
            DriverError::StartMismatch { .. } => name == "mismatch_start.jir",
            DriverError::TripCountMismatch { .. } => name == "mismatch_trips.jir",
            DriverError::PolicyMismatch { .. } => name == "mismatch_policy.jir",
            DriverError::InitMismatch { .. } => name == "mismatch_inits.jir",
            DriverError::StateCountMismatch { .. } => name == "mismatch_state_count.jir",
            DriverError::BadToken(_) => name.starts_with("bad_token"),
            DriverError::TooLarge { .. } | DriverError::Panicked => false,
        };
        assert!(kind_ok, "{name}: {ierr:?}");
    }
}

/// A loop as a user might drive it with jitad's checkpointing driver: each iteration
/// is `x ← g(x)` and its backward step `x̄ ← x̄·g′(x)`, where `g` (a loop itself) and
/// its gradient are evaluated by a compiled function — or the interpreter — called
/// from inside the sweep.
struct Calls<'a> {
    m: &'a Module,
    grad: &'a str,
    jit: bool,
    seen: Vec<i64>,
}

impl Calls<'_> {
    /// (g(x), g′(x)) through a top-level call of either engine.
    fn g(&self, x: f64) -> (f64, f64) {
        let args = [Val::F64(x)];
        let r = if self.jit {
            let c = compiled(self.m, self.grad);
            let mut out = vec![Val::F64(0.0); 2];
            c.call(&args, &mut out).unwrap();
            out
        } else {
            Interpreter::new()
                .eval(self.m.get(self.grad).unwrap(), Some(self.m), &args)
                .unwrap()
        };
        (r[0].as_f64().unwrap(), r[1].as_f64().unwrap())
    }
}

impl Steps for Calls<'_> {
    type Error = ();
    fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
        let (y, _) = self.g(f64::from_bits(state[0]));
        state[0] = y.to_bits();
        state[1] += 1;
        Ok(())
    }
    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), ()> {
        // The state must be the one before iteration i (its counter says which).
        assert_eq!(state[1] as i64, i, "state of the wrong iteration");
        self.seen.push(i);
        let (_, dg) = self.g(f64::from_bits(state[0]));
        adj[0] = (f64::from_bits(adj[0]) * dg).to_bits();
        Ok(())
    }
}

#[test]
fn a_call_from_inside_a_sweep_leaves_the_sweep_alone() {
    // g(x) = sin applied 5 times, through a loop: its gradient records a tape and
    // reverses it, so each call from a step opens (and closes) its own level while
    // the outer binomial sweep holds snapshots and Revolve tasks. (Before: each such
    // call reset the thread's arena and task stack under the outer sweep.)
    let src = "func @g(%x: f64) -> f64 {
  %r = loop %i in 0..5 (%a = %x : f64) {
    %b = sin %a
    yield %b
  }
  ret %r
}";
    let mut m = parse_module(src).unwrap();
    let g = grad(&mut m, "g", &[0]).unwrap();
    optimize_module(&mut m, &OptOptions::default());
    jitad_passes::set_policy(&mut m, Policy::Binomial(2));
    // The reference: states and derivatives from calls outside any sweep.
    let outside = Calls {
        m: &m,
        grad: &g,
        jit: true,
        seen: vec![],
    };
    let l = 12u64;
    let mut xs = vec![0.7f64];
    for _ in 0..l {
        xs.push(outside.g(*xs.last().unwrap()).0);
    }
    let mut want = 1.0f64;
    for x in xs[..l as usize].iter().rev() {
        want *= outside.g(*x).1;
    }
    let order: Vec<i64> = (0..l as i64).rev().collect();
    for jit in [true, false] {
        for policy in [Policy::Binomial(3), Policy::Every(4), Policy::StoreAll] {
            let mut steps = Calls {
                m: &m,
                grad: &g,
                jit,
                seen: vec![],
            };
            let mut adj = [1.0f64.to_bits()];
            checkpoint::reverse(policy, 0, l, &[0.7f64.to_bits(), 0], &mut adj, &mut steps)
                .unwrap();
            assert_eq!(steps.seen, order, "jit={jit} {policy}");
            assert_eq!(f64::from_bits(adj[0]), want, "jit={jit} {policy}");
            // Recorded form too: the tape stays pending across the calls made while
            // recording, and the calls cannot see or drop it.
            let mut state = [0.7f64.to_bits(), 0];
            let token = checkpoint::record(policy, 0, l, &mut state, &mut steps).unwrap();
            assert_eq!(f64::from_bits(state[0]), xs[l as usize]);
            steps.seen.clear();
            let mut adj = [1.0f64.to_bits()];
            let spec = checkpoint::LoopSpec {
                policy,
                start: 0,
                trips: l,
                inits: &[0.7f64.to_bits(), 0],
            };
            checkpoint::reverse_recorded(token, spec, &mut adj, &mut steps).unwrap();
            assert_eq!(steps.seen, order, "recorded jit={jit} {policy}");
            assert_eq!(f64::from_bits(adj[0]), want, "recorded jit={jit} {policy}");
        }
    }
}

#[test]
fn call_statistics_count_only_their_own_call() {
    // A compiled call's statistics made from inside a sweep are its own; the sweep's
    // own statistics then include them, as a nested loop's would.
    let (_, m) = load("two_tapes.jir");
    let c = compiled(&m, "f");
    let mut out = vec![Val::F64(0.0); 3];
    let alone = c
        .call_with_stats(&[Val::F64(2.0), Val::F64(0.5)], &mut out)
        .unwrap();
    assert_eq!(alone.sweeps, 1);
    assert_eq!(alone.backward_steps, 10);
    struct Outer<'a>(&'a jitad_codegen::Compiled, Vec<checkpoint::Stats>);
    impl Steps for Outer<'_> {
        type Error = ();
        fn forward(&mut self, _i: i64, _s: &mut [u64]) -> Result<(), ()> {
            Ok(())
        }
        fn backward(&mut self, _i: i64, _s: &[u64], _a: &mut [u64]) -> Result<(), ()> {
            let mut out = vec![Val::F64(0.0); 3];
            let st = self
                .0
                .call_with_stats(&[Val::F64(2.0), Val::F64(0.5)], &mut out)
                .unwrap();
            self.1.push(st);
            Ok(())
        }
    }
    let mut outer = Outer(&c, vec![]);
    checkpoint::take_stats();
    checkpoint::reverse(Policy::StoreAll, 0, 3, &[0], &mut [0], &mut outer).unwrap();
    let total = checkpoint::take_stats();
    // (Peaks are thread-wide: inside the sweep they include its snapshots.)
    for st in &outer.1 {
        let own = checkpoint::Stats {
            peak_tape_bytes: alone.peak_tape_bytes,
            ..*st
        };
        assert_eq!(own, alone);
        assert!(st.peak_tape_bytes >= alone.peak_tape_bytes);
    }
    assert_eq!(total.sweeps, 1 + 3);
    assert_eq!(total.backward_steps, 3 + 3 * 10);
}
