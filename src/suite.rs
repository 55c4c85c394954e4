//! The benchmark suite, shared by `cargo bench` (criterion) and `jitad bench`: every
//! problem with every leg, set up once, each leg computing value and gradient at the
//! same input.
//!
//! Legs (the names `jitad bench --json` prints):
//!
//! | leg | what runs per call |
//! |---|---|
//! | `hand` | hand-written Rust value+gradient ([`crate::problems`]) |
//! | `jit` | the traced, reverse-mode, optimised gradient IR, compiled by Cranelift |
//! | `interp` | the reference interpreter on that same gradient IR |
//! | `tape-replay` | the classic tape recorded once, replayed (ADOL-C style) |
//! | `tape-record` | the classic tape recorded and swept every call (PyTorch style) |
//! | `forward-jit` | the compiled jvp, called once per input (n passes; small n only) |
//!
//! [`Case::gradient`] exposes what each leg computed, so tests check that all legs agree
//! before anyone times them.

use crate::problems::{self, MlpData};
use crate::tape::{Tape, TapeVar};
use crate::{Error, Traced};
use jitad_ir::{Interpreter, Val, Var};
use num_traits::Float;
use std::time::{Duration, Instant};

/// A leg of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Hand-written Rust.
    Hand,
    /// Compiled reverse-mode gradient.
    Jit,
    /// Interpreter on the gradient IR.
    Interp,
    /// Tape recorded once, replayed per call.
    TapeReplay,
    /// Tape recorded and swept per call.
    TapeRecord,
    /// Compiled forward mode, one pass per input.
    ForwardJit,
}

impl Leg {
    /// Every leg, in table order.
    pub const ALL: [Leg; 6] = [
        Leg::Hand,
        Leg::Jit,
        Leg::Interp,
        Leg::TapeReplay,
        Leg::TapeRecord,
        Leg::ForwardJit,
    ];

    /// The leg's name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Leg::Hand => "hand",
            Leg::Jit => "jit",
            Leg::Interp => "interp",
            Leg::TapeReplay => "tape-replay",
            Leg::TapeRecord => "tape-record",
            Leg::ForwardJit => "forward-jit",
        }
    }
}

/// Forward mode is benched only up to this many inputs (it costs n passes).
pub const FORWARD_MAX_N: usize = 100;

/// A benchmark problem: a generic function, a point and a hand-written gradient.
pub trait Problem {
    /// Name in tables and JSON (`quickstart`, `rosenbrock`, `mlp`).
    fn name(&self) -> &'static str;
    /// The input.
    fn point(&self) -> Vec<f64>;
    /// The function, generic so it runs on `f64`, [`Var`] and [`TapeVar`].
    fn eval<T: Float>(&self, x: &[T]) -> T;
    /// Hand-written value and gradient (`&mut self`: it may keep a tape between calls).
    fn hand(&mut self, x: &[f64], g: &mut [f64]) -> f64;
    /// The problem size in tables and JSON (default: the number of inputs).
    fn size(&self) -> usize {
        self.point().len()
    }
    /// Integer arguments the IR takes after the point (default: none).
    fn int_args(&self) -> Vec<i64> {
        vec![]
    }
    /// The IR the compiled and interpreted legs run (default: the function traced at
    /// the point).
    fn ir(&self) -> Result<Traced, Error>
    where
        Self: Sized,
    {
        trace_problem(self)
    }
    /// Legs to leave out (default: none).
    fn skip(&self, _leg: Leg) -> bool {
        false
    }
}

/// f(x, y) = (x + y)(x − y) at (3, 2).
#[derive(Clone, Copy, Debug)]
pub struct Quickstart;

impl Problem for Quickstart {
    fn name(&self) -> &'static str {
        "quickstart"
    }
    fn point(&self) -> Vec<f64> {
        vec![3.0, 2.0]
    }
    fn eval<T: Float>(&self, x: &[T]) -> T {
        problems::quickstart(x)
    }
    fn hand(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
        problems::quickstart_grad(x, g)
    }
}

/// Extended Rosenbrock of `n` variables at its standard start.
#[derive(Clone, Copy, Debug)]
pub struct Rosenbrock(pub usize);

impl Problem for Rosenbrock {
    fn name(&self) -> &'static str {
        "rosenbrock"
    }
    fn point(&self) -> Vec<f64> {
        problems::rosenbrock_start(self.0)
    }
    fn eval<T: Float>(&self, x: &[T]) -> T {
        problems::rosenbrock(x)
    }
    fn hand(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
        problems::rosenbrock_grad(x, g)
    }
}

/// The MLP loss (batch 32, 8 inputs, two tanh layers of 16) on synthetic data.
#[derive(Clone, Debug)]
pub struct Mlp(pub MlpData);

impl Mlp {
    /// The standard instance: data seed 1, parameters seed 2.
    pub fn standard() -> Self {
        Mlp(MlpData::synthetic(1))
    }
}

impl Problem for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }
    fn point(&self) -> Vec<f64> {
        problems::mlp_init(2)
    }
    fn eval<T: Float>(&self, x: &[T]) -> T {
        problems::mlp_loss(x, &self.0)
    }
    fn hand(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
        problems::mlp_grad(x, &self.0, g)
    }
}

/// The Lorenz system integrated with `N` RK4 steps (a `loop` in the IR, reversed with
/// checkpointing), gradient with respect to (σ, ρ, β, x₀, y₀, z₀).
#[derive(Clone, Debug)]
pub struct Lorenz {
    /// Steps.
    pub steps: usize,
    tape: Vec<[f64; 3]>,
}

impl Lorenz {
    /// `steps` RK4 steps of `1/steps`.
    pub fn new(steps: usize) -> Self {
        Lorenz {
            steps,
            tape: Vec::new(),
        }
    }
}

impl Problem for Lorenz {
    fn name(&self) -> &'static str {
        "lorenz"
    }
    fn point(&self) -> Vec<f64> {
        problems::LORENZ_POINT.to_vec()
    }
    fn eval<T: Float>(&self, x: &[T]) -> T {
        problems::lorenz_loss(x, self.steps)
    }
    fn hand(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
        problems::lorenz_grad(x, self.steps, &mut self.tape, g)
    }
    fn size(&self) -> usize {
        self.steps
    }
    fn int_args(&self) -> Vec<i64> {
        vec![self.steps as i64]
    }
    fn ir(&self) -> Result<Traced, Error> {
        Traced::from_jir(problems::LORENZ_JIR, Some("loss"))
    }
    fn skip(&self, leg: Leg) -> bool {
        // The interpreter needs seconds per call beyond 10⁴ steps.
        leg == Leg::Interp && self.steps > 10_000
    }
}

type Runner = Box<dyn FnMut(&[f64], &mut [f64]) -> f64 + Send>;

/// One leg of one problem, ready to call.
pub struct Case {
    /// The problem's name.
    pub problem: &'static str,
    /// Its input count.
    pub n: usize,
    /// The leg.
    pub leg: Leg,
    x: Vec<f64>,
    g: Vec<f64>,
    run: Runner,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Case({} n={} {})", self.problem, self.n, self.leg.name())
    }
}

impl Case {
    /// One value+gradient computation at the problem's point; returns the value and
    /// leaves the gradient in [`Case::gradient`].
    #[inline]
    pub fn run(&mut self) -> f64 {
        (self.run)(&self.x, &mut self.g)
    }

    /// The gradient of the last [`Case::run`].
    pub fn gradient(&self) -> &[f64] {
        &self.g
    }

    /// Median ns per call over `samples` samples, each at least `sample_time` long
    /// (calls per sample are calibrated first).
    pub fn median_ns(&mut self, samples: usize, sample_time: Duration) -> f64 {
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(self.run());
            }
            if t.elapsed() >= sample_time / 4 || iters >= 1 << 30 {
                break;
            }
            iters *= 2;
        }
        let iters = iters * 4;
        let mut ns: Vec<f64> = (0..samples.max(1))
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(self.run());
                }
                t.elapsed().as_secs_f64() * 1e9 / iters as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        ns[ns.len() / 2]
    }
}

/// Traces `p` and returns the traced primal.
pub fn trace_problem<P: Problem>(p: &P) -> Result<Traced, Error> {
    crate::trace_scalar(p.name(), &p.point(), |x: &[Var]| p.eval(x))
}

/// Every leg of `p` (forward mode only when it has at most [`FORWARD_MAX_N`] inputs;
/// legs `p` skips left out), in [`Leg::ALL`] order. Tracing, differentiating and
/// compiling happen here, not in the timed calls.
pub fn cases<P: Problem + Clone + Send + 'static>(p: &P) -> Result<Vec<Case>, Error> {
    let x = p.point();
    let n = x.len();
    let ints: Vec<Val> = p.int_args().into_iter().map(Val::I64).collect();
    let traced = p.ir()?;
    let grad = traced.grad()?;
    let mut out = Vec::new();
    let mut case = |leg: Leg, run: Runner| {
        if !p.skip(leg) {
            out.push(Case {
                problem: p.name(),
                n: p.size(),
                leg,
                x: x.clone(),
                g: vec![0.0; n],
                run,
            })
        }
    };

    let mut hp = p.clone();
    case(Leg::Hand, Box::new(move |x, g| hp.hand(x, g)));

    let jit = grad.compile()?;
    if ints.is_empty() {
        let mut vg = vec![0.0; n + 1];
        case(
            Leg::Jit,
            Box::new(move |x, g| {
                // The lengths are right by construction; an error would leave NaN.
                if jit.call_f64(x, &mut vg).is_err() {
                    return f64::NAN;
                }
                // A plain loop: for two values it inlines, where `copy_from_slice`
                // calls memcpy.
                for (gi, v) in g.iter_mut().zip(&vg[1..]) {
                    *gi = *v;
                }
                vg[0]
            }),
        );
    } else {
        let mut args: Vec<Val> = Vec::with_capacity(n + ints.len());
        let mut res = vec![Val::F64(0.0); n + 1];
        let extra = ints.clone();
        case(
            Leg::Jit,
            Box::new(move |x, g| {
                args.clear();
                args.extend(x.iter().map(|&v| Val::F64(v)));
                args.extend_from_slice(&extra);
                if jit.call(&args, &mut res).is_err() {
                    return f64::NAN;
                }
                for (gi, r) in g.iter_mut().zip(&res[1..]) {
                    *gi = r.as_f64().unwrap_or(f64::NAN);
                }
                res[0].as_f64().unwrap_or(f64::NAN)
            }),
        );
    }

    let mut interp = Interpreter::new();
    let mut args: Vec<Val> = Vec::with_capacity(n + ints.len());
    let mut res: Vec<Val> = Vec::with_capacity(n + 1);
    let ig = grad.clone();
    let extra = ints.clone();
    case(
        Leg::Interp,
        Box::new(move |x, g| {
            args.clear();
            args.extend(x.iter().map(|&v| Val::F64(v)));
            args.extend_from_slice(&extra);
            if interp
                .run(ig.function(), Some(ig.module()), &args, &mut res)
                .is_err()
            {
                return f64::NAN;
            }
            for (gi, r) in g.iter_mut().zip(&res[1..]) {
                *gi = r.as_f64().unwrap_or(f64::NAN);
            }
            res[0].as_f64().unwrap_or(f64::NAN)
        }),
    );

    if !p.skip(Leg::TapeReplay) {
        let mut tape = Tape::new();
        let rp = p.clone();
        tape.record(&x, |v: &[TapeVar]| rp.eval(v))?;
        case(
            Leg::TapeReplay,
            Box::new(move |x, g| tape.replay(x, g).unwrap_or(f64::NAN)),
        );
    }

    let mut tape = Tape::new();
    let rp = p.clone();
    case(
        Leg::TapeRecord,
        Box::new(move |x, g| {
            let v = tape.record(x, |v: &[TapeVar]| rp.eval(v));
            match (v, tape.gradient(g)) {
                (Ok(v), Ok(())) => v,
                _ => f64::NAN,
            }
        }),
    );

    if n <= FORWARD_MAX_N && ints.is_empty() {
        let jvp = traced.jvp()?.compile()?;
        let mut args = vec![0.0; 2 * n];
        let mut yd = [0.0; 2];
        case(
            Leg::ForwardJit,
            Box::new(move |x, g| {
                args[..n].copy_from_slice(x);
                for (i, gi) in g.iter_mut().enumerate().take(n) {
                    args[n..].iter_mut().for_each(|d| *d = 0.0);
                    args[n + i] = 1.0;
                    if jvp.call_f64(&args, &mut yd).is_err() {
                        return f64::NAN;
                    }
                    *gi = yd[1];
                }
                yd[0]
            }),
        );
    } else if n <= FORWARD_MAX_N {
        let jvp = traced.jvp()?.compile()?;
        let mut args = vec![Val::F64(0.0); 2 * n + ints.len()];
        let mut yd = [Val::F64(0.0), Val::F64(0.0)];
        let extra = ints.clone();
        case(
            Leg::ForwardJit,
            Box::new(move |x, g| {
                // (x..., ints..., dx...): the jvp's parameters.
                for (a, &v) in args.iter_mut().zip(x) {
                    *a = Val::F64(v);
                }
                args[n..n + extra.len()].clone_from_slice(&extra);
                let m = n + extra.len();
                for (i, gi) in g.iter_mut().enumerate().take(n) {
                    for (k, a) in args[m..].iter_mut().enumerate() {
                        *a = Val::F64(if k == i { 1.0 } else { 0.0 });
                    }
                    if jvp.call(&args, &mut yd).is_err() {
                        return f64::NAN;
                    }
                    *gi = yd[1].as_f64().unwrap_or(f64::NAN);
                }
                yd[0].as_f64().unwrap_or(f64::NAN)
            }),
        );
    }
    Ok(out)
}

/// The problems of the suite whose names `wanted` accepts: quickstart; Rosenbrock at
/// n = 10, 1000, 10000 (10 and 1000 when `quick`); the MLP.
pub fn all_cases(quick: bool, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<Vec<Case>>, Error> {
    let mut v = Vec::new();
    if wanted(Quickstart.name()) {
        v.push(cases(&Quickstart)?);
    }
    let sizes: &[usize] = if quick {
        &[10, 1000]
    } else {
        &[10, 1000, 10000]
    };
    for &n in sizes {
        if wanted(Rosenbrock(n).name()) {
            v.push(cases(&Rosenbrock(n))?);
        }
    }
    let mlp = Mlp::standard();
    if wanted(mlp.name()) {
        v.push(cases(&mlp)?);
    }
    let steps: &[usize] = if quick { &[1000] } else { &[1000, 100_000] };
    for &n in steps {
        let l = Lorenz::new(n);
        if wanted(l.name()) {
            v.push(cases(&l)?);
        }
    }
    Ok(v)
}

/// Wall-clock times of trace → grad → compile for one problem.
#[derive(Clone, Debug)]
pub struct CompileTimes {
    /// Instructions of the traced primal.
    pub primal_insts: usize,
    /// Instructions of the optimised gradient.
    pub grad_insts: usize,
    /// Tracing.
    pub trace: Duration,
    /// AD and the clean-up pipeline.
    pub ad: Duration,
    /// The parts of `ad`.
    pub derive: crate::DeriveTimes,
    /// JIT compilation, all of it.
    pub compile: Duration,
    /// Cranelift's share of `compile`.
    pub cranelift: Duration,
    /// The compiler's own account of `compile` (set-up, lowering, Cranelift, finalize).
    pub compile_stats: jitad_codegen::CompileStats,
}

impl CompileTimes {
    /// trace + AD + compile.
    pub fn total(&self) -> Duration {
        self.trace + self.ad + self.compile
    }

    /// Every stage on a few lines (what `JITAD_VERBOSE=1` prints).
    pub fn report(&self) -> String {
        let d = &self.derive;
        let p = &d.passes;
        let c = &self.compile_stats;
        format!(
            "trace {:.3?}\n\
             AD + clean-up {:.3?}: copy {:.3?}, transform {:.3?}, prune {:.3?}, \
             clean-up {:.3?} ({} rounds: constfold {:.3?}, simplify {:.3?}, cse {:.3?}, \
             dce {:.3?}, compact {:.3?}, purity+inline {:.3?})\n\
             compile {:.3?}: setup {:.3?}, lower {:.3?}, Cranelift {:.3?}, finalize {:.3?} \
             ({} chunks, {} of them running another's code)\n\
             total {:.3?} ({} primal, {} gradient instructions)",
            self.trace,
            self.ad,
            d.copy,
            d.transform,
            d.prune,
            d.cleanup,
            d.rounds,
            p.constfold,
            p.simplify,
            p.cse,
            p.dce,
            p.compact,
            p.inline,
            self.compile,
            c.setup,
            c.lower,
            c.cranelift,
            c.finalize,
            c.chunks,
            c.shared_chunks,
            self.total(),
            self.primal_insts,
            self.grad_insts,
        )
    }
}

/// Traces, differentiates and compiles `p` once, timing each step.
pub fn compile_times<P: Problem>(p: &P) -> Result<CompileTimes, Error> {
    compile_times_with(p, &jitad_codegen::CompileOptions::default())
}

/// [`compile_times`] compiling with `opts`.
pub fn compile_times_with<P: Problem>(
    p: &P,
    opts: &jitad_codegen::CompileOptions,
) -> Result<CompileTimes, Error> {
    let t0 = Instant::now();
    let traced = trace_problem(p)?;
    let t1 = Instant::now();
    let (grad, derive) = traced.grad_timed()?;
    let t2 = Instant::now();
    let c = grad.compile_with(opts)?;
    let t3 = Instant::now();
    Ok(CompileTimes {
        primal_insts: traced.num_insts(),
        grad_insts: grad.num_insts(),
        trace: t1 - t0,
        ad: t2 - t1,
        derive,
        compile: t3 - t2,
        cranelift: c.stats().cranelift,
        compile_stats: c.stats().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leg computes the same value and gradient as the hand-written code, so the
    /// timings compare like with like.
    #[test]
    fn every_leg_agrees_with_hand_written() {
        for mut group in all_cases(true, &|_| true).unwrap() {
            let mut reference: Option<(f64, Vec<f64>)> = None;
            for case in &mut group {
                let v = case.run();
                let g = case.gradient().to_vec();
                match &reference {
                    None => {
                        assert_eq!(case.leg, Leg::Hand);
                        reference = Some((v, g));
                    }
                    Some((v0, g0)) => {
                        let scale = g0.iter().fold(v0.abs(), |m, x| m.max(x.abs())).max(1.0);
                        assert!((v - v0).abs() <= 1e-12 * scale, "{case:?}: {v} vs {v0}");
                        for (i, (a, b)) in g.iter().zip(g0).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-12 * scale,
                                "{case:?} g[{i}]: {a} vs {b}"
                            );
                        }
                    }
                }
            }
            let legs: Vec<Leg> = group.iter().map(|c| c.leg).collect();
            if group[0].x.len() <= FORWARD_MAX_N {
                assert_eq!(legs, Leg::ALL);
            } else {
                assert_eq!(legs, Leg::ALL[..5]);
            }
        }
    }
}
