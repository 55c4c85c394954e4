//! jitad's fuzzer, on stable Rust: no nightly, no `cargo-fuzz`, no sanitizer runtime.
//!
//! A *case* is one `.jir` text, made deterministically from a run seed and a case
//! number ([`case::make_case`]): about half are well-typed programs from
//! [`jitad_ir::testgen`] (random options), half are byte- and line-level mutations of
//! the golden files under `tests/ir/` (or of generated programs). [`check::check_text`]
//! drives one case through every stage and returns the first [`check::Failure`]:
//!
//! parse → print/parse round trip → verify → for one or two entry functions:
//! interpreter and JIT on random arguments (bit for bit, NaN = NaN, and both engines
//! must accept or reject alike) → `jvp`, `vjp`, `grad`, `hvp` with every float
//! parameter and with a random (sometimes invalid) `wrt` list → the derived module
//! verifies → interpreter and JIT on it → `optimize_module` → verifies → same results
//! bit for bit → the dot-product test ⟨J·u, w⟩ = ⟨u, Jᵀ·w⟩ between `jvp` and `vjp`
//! (up to the rounding its paths' magnitudes allow, [`magnitude`]) →
//! `vjp` under another checkpointing policy gives the same results bit for bit.
//!
//! Each stage runs under `catch_unwind`, so a panic is a failure naming its stage.
//! Nothing runs unbounded: [`cost::estimate`] bounds the instructions an evaluation
//! executes (trip counts through an interval analysis of `i64` values, calls, and the
//! quadratic worst case of a reverse sweep) and evaluations above
//! [`check::EVAL_BUDGET`] are skipped (parse, verify, AD and compilation still run).
//! Signals and hangs are the driver's business (`src/main.rs`): it runs cases in a
//! worker process, restarts it when it dies or stops making progress, and writes the
//! offending case as a regression file.

pub mod case;
pub mod check;
pub mod cost;
pub mod magnitude;
pub mod rng;
