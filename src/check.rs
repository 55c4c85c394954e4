//! `check`: can a function's derivatives be trusted at these points?
//!
//! For a function with float parameters and float results (scalars or tensors), at
//! each point `x` (and a cotangent `ȳ`: 1 for one scalar result, random in [−1, 1] per
//! result element otherwise, the dot-product test), [`check_function`] computes with
//! the reference interpreter
//!
//! - the reverse-mode product `r = Jᵀȳ` (the gradient for one result) from the vjp;
//! - forward mode: `ȳ·(J eᵢ)` from the jvp along each basis direction `eᵢ`;
//! - central finite differences of `φ(x) = ȳ·f(x)` along each `eᵢ` with step
//!   `hᵢ = ε^(1/3)·max(1, |xᵢ|)` (ε the parameter type's epsilon); if that step
//!   misses, also `10hᵢ` and `hᵢ/10`, keeping the best — the error of central
//!   differences depends on the function, and one good step is evidence enough;
//!
//! and compares the two with `r` as the largest entry error relative to the larger
//! gradient's largest entry, floored at `10⁻⁶·|φ(x)|` so gradients that are all
//! round-off compare against the function's scale ([`relative_error`]). Tolerances
//! ([`Tolerances`]): finite differences 10⁻⁴ (f64) / 10⁻² (f32), forward mode 10⁻⁹
//! (f64) / 10⁻⁴ (f32) — forward and reverse compute the same derivative in different
//! association, so only round-off may separate them.
//!
//! It also JIT-compiles the function, its vjp and its jvp and runs them on the same
//! arguments: every result must equal the interpreter's bit for bit (any NaN equals any
//! NaN), and where one engine refuses (a failed guard) the other must too.
//!
//! The coordinates `i` are the elements of the float parameters, in parameter order and
//! row-major within a tensor. Up to [`MAX_COORDINATES`] of them are all checked; beyond
//! that a random sample of that many (drawn from the point's seed, listed in
//! [`PointReport::coordinates`]), since each costs a jvp and a few evaluations.
//!
//! Nothing here panics on user input: a function that cannot be checked (non-float
//! results, no float parameter, an AD transform refusing it) is [`FunctionReport::skipped`]
//! with the reason; a JIT that cannot compile it is reported in
//! [`FunctionReport::notes`]; a point the interpreter refuses (a failed guard, a
//! non-finite value) is [`PointOutcome::NotChecked`] with the reason.

use crate::traced::Traced;
use jitad_codegen::Compiled;
use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{ScalarType, Type, Val};

/// The most coordinates checked at one point (see the [module docs](self)).
pub const MAX_COORDINATES: usize = 24;

/// How far apart the compared derivatives may be (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Finite differences vs reverse mode, relative.
    pub fd: f64,
    /// Forward vs reverse mode, relative.
    pub forward: f64,
}

impl Tolerances {
    /// The tolerances for parameters of type `ty` (`f64`, or the looser `f32` ones).
    pub fn for_type(ty: ScalarType) -> Tolerances {
        match ty {
            ScalarType::F32 => Tolerances {
                fd: 1e-2,
                forward: 1e-4,
            },
            ScalarType::F64 | ScalarType::I64 | ScalarType::Bool => Tolerances {
                fd: 1e-4,
                forward: 1e-9,
            },
        }
    }
}

/// The relative floor of the error scale: `10⁻⁶·|φ(x)|` (see [`relative_error`]).
pub const SCALE_FLOOR: f64 = 1e-6;

/// `max |aᵢ − bᵢ| / max(max |aᵢ|, max |bᵢ|, floor)`. Entries that are both NaN, or the
/// same infinity, agree (error 0); a non-finite entry facing anything else is an error
/// of `+∞`. Slices of different lengths are `+∞` apart.
pub fn relative_error(a: &[f64], b: &[f64], floor: f64) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut scale = floor.abs().max(f64::MIN_POSITIVE);
    let mut diff = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_finite() && y.is_finite() {
            scale = scale.max(x.abs()).max(y.abs());
            diff = diff.max((x - y).abs());
        } else if !(x.is_nan() && y.is_nan() || x == y) {
            return f64::INFINITY;
        }
    }
    diff / scale
}

/// Finite differences, forward and reverse mode compared at one point.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientComparison {
    /// `φ(x) = ȳ·f(x)`.
    pub value: f64,
    /// The reverse-mode product `Jᵀȳ`, one entry per checked coordinate.
    pub reverse: Vec<f64>,
    /// The central finite differences of `φ` (the best step per entry).
    pub fd: Vec<f64>,
    /// Forward mode, `ȳ·(J eᵢ)`.
    pub forward: Vec<f64>,
    /// [`relative_error`] of `fd` against `reverse`.
    pub fd_error: f64,
    /// [`relative_error`] of `forward` against `reverse`.
    pub forward_error: f64,
    /// The tolerances applied.
    pub tol: Tolerances,
}

impl GradientComparison {
    /// Finite differences agree with reverse mode within tolerance.
    pub fn fd_ok(&self) -> bool {
        self.fd_error <= self.tol.fd
    }

    /// Forward mode agrees with reverse mode within tolerance.
    pub fn forward_ok(&self) -> bool {
        self.forward_error <= self.tol.forward
    }
}

/// Compares a reverse-mode product `reverse` and forward-mode products `forward` (one
/// per float parameter) with central differences of `phi` at `x` (the float
/// parameters, of type `ty`). `phi` evaluates `ȳ·f` and returns `None` where it cannot
/// (a failed guard): such a step is not used, and an entry no step could measure
/// compares as NaN against the gradient (an error). This is the comparison
/// [`check_function`] makes, exposed so it can be given any gradient.
pub fn compare_gradient(
    phi: &mut dyn FnMut(&[f64]) -> Option<f64>,
    x: &[f64],
    ty: ScalarType,
    reverse: &[f64],
    forward: &[f64],
) -> Option<GradientComparison> {
    let tol = Tolerances::for_type(ty);
    let value = phi(x)?;
    let floor = SCALE_FLOOR * value.abs();
    let eps = if ty == ScalarType::F32 {
        f64::from(f32::EPSILON)
    } else {
        f64::EPSILON
    };
    let round = |v: f64| {
        if ty == ScalarType::F32 {
            f64::from(v as f32)
        } else {
            v
        }
    };
    let mut fd = vec![f64::NAN; x.len()];
    let mut xs = x.to_vec();
    for i in 0..x.len() {
        let h0 = eps.cbrt() * x[i].abs().max(1.0);
        let mut best = f64::INFINITY;
        for h in [h0, h0 * 10.0, h0 / 10.0] {
            // The step actually taken, after rounding to the parameter type.
            let (xp, xm) = (round(x[i] + h), round(x[i] - h));
            xs[i] = xp;
            let fp = phi(&xs);
            xs[i] = xm;
            let fm = phi(&xs);
            xs[i] = x[i];
            let (Some(fp), Some(fm)) = (fp, fm) else {
                continue;
            };
            let d = (fp - fm) / (xp - xm);
            let want = reverse.get(i).copied().unwrap_or(f64::NAN);
            let err = relative_error(&[d], &[want], floor.max(want.abs()));
            if err < best || fd[i].is_nan() {
                best = err;
                fd[i] = d;
            }
            if err <= tol.fd {
                break;
            }
        }
    }
    Some(GradientComparison {
        value,
        reverse: reverse.to_vec(),
        fd_error: relative_error(&fd, reverse, floor),
        forward_error: relative_error(forward, reverse, floor),
        fd,
        forward: forward.to_vec(),
        tol,
    })
}

/// Whether the JIT gave the interpreter's answers.
#[derive(Clone, Debug, PartialEq)]
pub enum JitAgreement {
    /// Every result equal bit for bit (NaN = NaN), or both engines refused.
    Equal,
    /// The first difference, described.
    Different(String),
    /// The JIT could not compile (a stage of) the function; the reason.
    NotCompiled(String),
}

/// What happened at one point.
#[derive(Clone, Debug, PartialEq)]
pub enum PointOutcome {
    /// Derivatives compared.
    Checked(GradientComparison),
    /// The interpreter could not evaluate the function or its derivatives there; why.
    NotChecked(String),
}

/// One point of a [`FunctionReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct PointReport {
    /// The arguments, one per parameter.
    pub args: Vec<Val>,
    /// The cotangent `ȳ`, one entry per result element (results in order, tensors
    /// row-major).
    pub ybar: Vec<f64>,
    /// The coordinates checked (indices into the float parameters' elements, in order);
    /// the entries of the gradient comparison follow them.
    pub coordinates: Vec<usize>,
    /// The derivative comparison, or why there is none.
    pub outcome: PointOutcome,
    /// JIT against interpreter on the function, its vjp and its jvp.
    pub jit: JitAgreement,
}

impl PointReport {
    /// True unless something disagreed beyond tolerance (a point that could not be
    /// checked, or a JIT that could not compile, is not a disagreement).
    pub fn passed(&self) -> bool {
        let derivatives = match &self.outcome {
            PointOutcome::Checked(c) => c.fd_ok() && c.forward_ok(),
            PointOutcome::NotChecked(_) => true,
        };
        derivatives && !matches!(self.jit, JitAgreement::Different(_))
    }
}

/// Everything [`check_function`] found about one function.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionReport {
    /// The function's name (no `@`).
    pub func: String,
    /// Why the function was not checked at all, if it was not.
    pub skipped: Option<String>,
    /// Remarks that hold for every point (a stage the JIT could not compile).
    pub notes: Vec<String>,
    /// The points, in order.
    pub points: Vec<PointReport>,
}

impl FunctionReport {
    /// True unless a point disagreed.
    pub fn passed(&self) -> bool {
        self.points.iter().all(PointReport::passed)
    }

    fn skip(func: &str, reason: impl Into<String>) -> FunctionReport {
        FunctionReport {
            func: func.to_string(),
            skipped: Some(reason.into()),
            notes: vec![],
            points: vec![],
        }
    }
}

/// Where to check: explicit argument lists and/or random points.
#[derive(Clone, Debug, Default)]
pub struct Points {
    /// Argument lists, one value per parameter.
    pub given: Vec<Vec<Val>>,
    /// How many random points to add: float parameters uniform in
    /// [`RANDOM_RANGE`]; the others from `fixed` (or [`DEFAULT_I64`] / `false`).
    pub random: usize,
    /// Values of non-float parameters at random points (by position; float entries
    /// are ignored).
    pub fixed: Option<Vec<Val>>,
    /// Seed of the random points and cotangents.
    pub seed: u64,
}

/// The interval random float arguments are drawn from: positive (so `sqrt`, `log` and
/// division are defined), away from 0 (where `abs`, `max` and `select` have kinks) and
/// inside (−1, 1) (the domain of `asin`, `acos`, `atanh`).
pub const RANDOM_RANGE: (f64, f64) = (0.1, 0.9);

/// The value of an `i64` parameter at random points when no `fixed` value is given
/// (a small loop trip count).
pub const DEFAULT_I64: i64 = 10;

/// SplitMix64: a small, good, dependency-free generator for reproducible points.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }
}

/// Why a function cannot be checked, if it cannot (by its signature alone).
pub fn unsupported(params: &[Type], results: &[Type]) -> Option<String> {
    if results.is_empty() {
        return Some("no results".into());
    }
    if let Some((i, t)) = results.iter().enumerate().find(|(_, t)| !t.is_float()) {
        return Some(format!("result {i} is {t}, not a float scalar or tensor"));
    }
    if !params.iter().any(|t| t.is_float()) {
        return Some("no float parameters".into());
    }
    None
}

fn float_of(ty: Type, x: f64) -> Val {
    match ty.scalar() {
        Some(ScalarType::F32) => Val::F32(x as f32),
        _ => Val::F64(x),
    }
}

/// A value of the float type `ty` whose elements (row-major) are `f(0), f(1), ...`.
fn float_val(ty: Type, mut f: impl FnMut(usize) -> f64) -> Val {
    match ty {
        Type::Scalar(_) => float_of(ty, f(0)),
        Type::Tensor(e, shape) => {
            let n = shape.num_elements();
            let data = if e == ScalarType::F32 {
                TensorData::F32((0..n).map(|k| f(k) as f32).collect())
            } else {
                TensorData::F64((0..n).map(f).collect())
            };
            match Tensor::new(shape, data) {
                Ok(t) => Val::tensor(t),
                // Unreachable for the types of a verified function (they have layouts).
                Err(_) => Val::F64(f64::NAN),
            }
        }
    }
}

/// The float elements of `v`, in row-major order (none for an integer or bool value).
fn elems(v: &Val) -> Vec<f64> {
    match v {
        Val::Tensor(t) => match t.data() {
            TensorData::F64(d) => d.clone(),
            TensorData::F32(d) => d.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(_) | TensorData::Bool(_) => vec![],
        },
        other => other.as_f64().into_iter().collect(),
    }
}

/// The zero of type `ty` (a tensor of zeros, `false`s).
fn zero_of(ty: Type) -> Val {
    match ty {
        Type::Scalar(s) => zero(s),
        Type::Tensor(e, shape) => {
            let n = shape.num_elements();
            let data = match e {
                ScalarType::F64 => TensorData::F64(vec![0.0; n]),
                ScalarType::F32 => TensorData::F32(vec![0.0; n]),
                ScalarType::I64 => TensorData::I64(vec![0; n]),
                ScalarType::Bool => TensorData::Bool(vec![false; n]),
            };
            Tensor::new(shape, data).map_or(Val::F64(f64::NAN), Val::tensor)
        }
    }
}

fn zero(ty: ScalarType) -> Val {
    match ty {
        ScalarType::F64 => Val::F64(0.0),
        ScalarType::F32 => Val::F32(0.0),
        ScalarType::I64 => Val::I64(0),
        ScalarType::Bool => Val::Bool(false),
    }
}

/// Equal for the purpose of JIT vs interpreter: same bits, or both NaN.
fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::F64(x), Val::F64(y)) => x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan(),
        (Val::F32(x), Val::F32(y)) => x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan(),
        (a, b) => a == b,
    }
}

/// One stage (function, vjp or jvp) in both engines.
struct Stage {
    traced: Traced,
    jit: Result<Compiled, String>,
}

impl Stage {
    fn new(traced: Traced) -> Stage {
        let jit = traced.compile().map_err(|e| e.to_string());
        Stage { traced, jit }
    }

    /// Runs the interpreter, and the JIT if compiled; notes the first disagreement in
    /// `jit` (unless one is noted already).
    fn eval(&self, args: &[Val], jit: &mut JitAgreement) -> Result<Vec<Val>, String> {
        let interp = self.traced.eval(args).map_err(|e| e.to_string());
        if let (Ok(c), JitAgreement::Equal) = (&self.jit, &*jit) {
            let mut out: Vec<Val> = c.results().iter().map(|&t| zero(t)).collect();
            let compiled = c.call(args, &mut out).map(|()| out);
            let name = self.traced.name();
            let diff = match (&interp, &compiled) {
                (Ok(a), Ok(b)) => a
                    .iter()
                    .zip(b)
                    .enumerate()
                    .find(|(_, (x, y))| !same(x, y))
                    .map(|(i, (x, y))| format!("@{name} result {i}: interpreter {x}, JIT {y}")),
                (Err(_), Err(_)) => None,
                (Ok(_), Err(e)) => Some(format!(
                    "@{name}: the JIT refused ({e}), the interpreter did not"
                )),
                (Err(e), Ok(_)) => Some(format!(
                    "@{name}: the interpreter refused ({e}), the JIT did not"
                )),
            };
            if let Some(d) = diff {
                *jit = JitAgreement::Different(d);
            }
        }
        interp
    }
}

/// Every float element of `vals`, in order.
fn floats(vals: &[Val]) -> Vec<f64> {
    vals.iter().flat_map(elems).collect()
}

/// Checks function `name` of `module`'s module at `points` (see the
/// [module docs](self)). Errors only if the module has no such function; everything
/// about the function itself is in the report.
pub fn check_function(
    module: &Traced,
    name: &str,
    points: &Points,
) -> crate::Result<FunctionReport> {
    let primal = module.with_entry(name)?;
    let sig = primal.function().sig.clone();
    if let Some(reason) = unsupported(&sig.params, &sig.results) {
        return Ok(FunctionReport::skip(name, reason));
    }
    let wrt = primal.float_params();
    let ty = if wrt.iter().all(|&i| sig.params[i].elem() == ScalarType::F64) {
        ScalarType::F64
    } else {
        ScalarType::F32
    };
    let (vjp, jvp) = match (primal.vjp(), primal.jvp()) {
        (Ok(v), Ok(j)) => (v, j),
        (Err(e), _) => {
            return Ok(FunctionReport::skip(
                name,
                format!("reverse mode refuses it: {e}"),
            ))
        }
        (_, Err(e)) => {
            return Ok(FunctionReport::skip(
                name,
                format!("forward mode refuses it: {e}"),
            ))
        }
    };
    let stages = [Stage::new(primal), Stage::new(vjp), Stage::new(jvp)];
    let notes = stages
        .iter()
        .filter_map(|s| {
            s.jit
                .as_ref()
                .err()
                .map(|e| format!("the JIT cannot compile @{}: {e}", s.traced.name()))
        })
        .collect();
    let compiled = stages.iter().all(|s| s.jit.is_ok());
    let [primal, vjp, jvp] = &stages;

    let mut rng = Rng(points.seed ^ 0x6a09_e667_f3bc_c908);
    let mut all: Vec<Vec<Val>> = points.given.clone();
    for _ in 0..points.random {
        let args = sig
            .params
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if t.is_float() {
                    return float_val(t, |_| rng.uniform(RANDOM_RANGE.0, RANDOM_RANGE.1));
                }
                let fixed = points
                    .fixed
                    .as_ref()
                    .and_then(|f| f.get(i).cloned())
                    .filter(|v| v.type_of() == t);
                fixed.unwrap_or(match t {
                    Type::Scalar(ScalarType::I64) => Val::I64(DEFAULT_I64),
                    other => zero_of(other),
                })
            })
            .collect();
        all.push(args);
    }

    let mut reports = Vec::new();
    let n_coords: usize = wrt.iter().map(|&p| sig.params[p].num_elements()).sum();
    for args in all {
        let n_out: usize = sig.results.iter().map(|t| t.num_elements()).sum();
        let ybar: Vec<f64> = if sig.results.len() == 1 && sig.results[0].is_float_scalar() {
            vec![1.0]
        } else {
            (0..n_out).map(|_| rng.uniform(-1.0, 1.0)).collect()
        };
        let coordinates = sample(&mut rng, n_coords);
        let mut jit = if compiled {
            JitAgreement::Equal
        } else {
            JitAgreement::NotCompiled("see the notes".into())
        };
        let outcome = check_point(
            &sig.params,
            &sig.results,
            &wrt,
            ty,
            &args,
            &ybar,
            &coordinates,
            [primal, vjp, jvp],
            &mut jit,
        );
        reports.push(PointReport {
            args,
            ybar,
            coordinates,
            outcome,
            jit,
        });
    }
    Ok(FunctionReport {
        func: name.to_string(),
        skipped: None,
        notes,
        points: reports,
    })
}

/// The coordinates to check among `n`: all of them up to [`MAX_COORDINATES`], else a
/// sorted random sample of that many.
fn sample(rng: &mut Rng, n: usize) -> Vec<usize> {
    if n <= MAX_COORDINATES {
        return (0..n).collect();
    }
    // Floyd's algorithm: MAX_COORDINATES distinct indices, each subset equally likely.
    let mut picked = std::collections::BTreeSet::new();
    for j in n - MAX_COORDINATES..n {
        let t = (rng.next_u64() % (j as u64 + 1)) as usize;
        if !picked.insert(t) {
            picked.insert(j);
        }
    }
    picked.into_iter().collect()
}

/// Values of the types `tys` made from consecutive entries of `flat` (zeros past its
/// end).
fn unflatten(tys: &[Type], flat: &[f64]) -> Vec<Val> {
    let mut at = 0;
    tys.iter()
        .map(|&t| {
            let v = float_val(t, |k| flat.get(at + k).copied().unwrap_or(0.0));
            at += t.num_elements();
            v
        })
        .collect()
}

/// `args` with the float parameters at `wrt` set from their flattened elements `x`.
fn with_coords(params: &[Type], wrt: &[usize], args: &[Val], x: &[f64]) -> Vec<Val> {
    let mut a = args.to_vec();
    let mut at = 0;
    for &p in wrt {
        let n = params[p].num_elements();
        a[p] = float_val(params[p], |k| x.get(at + k).copied().unwrap_or(0.0));
        at += n;
    }
    a
}

#[allow(clippy::too_many_arguments)]
fn check_point(
    params: &[Type],
    results: &[Type],
    wrt: &[usize],
    ty: ScalarType,
    args: &[Val],
    ybar: &[f64],
    coordinates: &[usize],
    [primal, vjp, jvp]: [&Stage; 3],
    jit: &mut JitAgreement,
) -> PointOutcome {
    let dot = |y: &[Val]| -> f64 { floats(y).iter().zip(ybar).map(|(a, b)| a * b).sum() };
    let y = match primal.eval(args, jit) {
        Ok(y) => y,
        Err(e) => return PointOutcome::NotChecked(e),
    };
    let value = dot(&y);
    if !value.is_finite() {
        return PointOutcome::NotChecked(format!("the value is {value}"));
    }
    // Reverse: (x..., ȳ...) -> (y..., x̄_wrt...).
    let mut vargs = args.to_vec();
    vargs.extend(unflatten(results, ybar));
    let reverse_all = match vjp.eval(&vargs, jit) {
        Ok(out) => floats(&out[results.len()..]),
        Err(e) => return PointOutcome::NotChecked(format!("reverse mode: {e}")),
    };
    let reverse: Vec<f64> = coordinates
        .iter()
        .map(|&c| reverse_all.get(c).copied().unwrap_or(f64::NAN))
        .collect();
    // Forward along each checked eᵢ: (x..., dx_wrt...) -> (y..., dy...).
    let wrt_tys: Vec<Type> = wrt.iter().map(|&p| params[p]).collect();
    let n_coords: usize = wrt_tys.iter().map(|t| t.num_elements()).sum();
    let mut forward = Vec::with_capacity(coordinates.len());
    for &c in coordinates {
        let mut jargs = args.to_vec();
        let mut e = vec![0.0; n_coords];
        e[c] = 1.0;
        jargs.extend(unflatten(&wrt_tys, &e));
        match jvp.eval(&jargs, jit) {
            Ok(out) => forward.push(dot(&out[results.len()..])),
            Err(e) => return PointOutcome::NotChecked(format!("forward mode: {e}")),
        }
    }
    let all_x: Vec<f64> = wrt.iter().flat_map(|&p| elems(&args[p])).collect();
    let x: Vec<f64> = coordinates.iter().map(|&c| all_x[c]).collect();
    let mut phi = |xs: &[f64]| -> Option<f64> {
        let mut full = all_x.clone();
        for (&c, &v) in coordinates.iter().zip(xs) {
            full[c] = v;
        }
        let a = with_coords(params, wrt, args, &full);
        // The interpreter only: finite differences are the reference.
        primal.traced.eval(&a).ok().map(|y| dot(&y))
    };
    match compare_gradient(&mut phi, &x, ty, &reverse, &forward) {
        Some(c) => PointOutcome::Checked(c),
        None => PointOutcome::NotChecked("the function cannot be evaluated there".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quickstart_phi(x: &[f64]) -> Option<f64> {
        Some((x[0] + x[1]) * (x[0] - x[1]))
    }

    #[test]
    fn the_right_gradient_passes_and_a_wrong_one_fails() {
        let x = [3.0, 2.0];
        // ∇f = (2x, −2y) = (6, −4).
        let ok = compare_gradient(
            &mut quickstart_phi,
            &x,
            ScalarType::F64,
            &[6.0, -4.0],
            &[6.0, -4.0],
        )
        .unwrap();
        assert!(ok.fd_ok() && ok.forward_ok(), "{ok:?}");
        assert!(ok.fd_error < 1e-8, "{ok:?}");
        // A wrong reverse gradient (one entry off by 1%) fails both comparisons.
        let bad = compare_gradient(
            &mut quickstart_phi,
            &x,
            ScalarType::F64,
            &[6.06, -4.0],
            &[6.0, -4.0],
        )
        .unwrap();
        assert!(!bad.fd_ok() && !bad.forward_ok(), "{bad:?}");
        assert!((bad.fd_error - 0.06 / 6.06).abs() < 1e-6, "{bad:?}");
        // A wrong forward mode fails only its comparison.
        let fwd = compare_gradient(
            &mut quickstart_phi,
            &x,
            ScalarType::F64,
            &[6.0, -4.0],
            &[6.0, -4.0 + 1e-6],
        )
        .unwrap();
        assert!(fwd.fd_ok() && !fwd.forward_ok(), "{fwd:?}");
        // A NaN gradient where differences are finite is a disagreement.
        let nan = compare_gradient(
            &mut quickstart_phi,
            &x,
            ScalarType::F64,
            &[f64::NAN, -4.0],
            &[6.0, -4.0],
        )
        .unwrap();
        assert_eq!(nan.fd_error, f64::INFINITY);
        // A function that cannot be evaluated at x gives no comparison.
        assert!(compare_gradient(
            &mut |_: &[f64]| None,
            &x,
            ScalarType::F64,
            &[0.0; 2],
            &[0.0; 2]
        )
        .is_none());
    }

    #[test]
    fn relative_error_scales_and_non_finite_entries() {
        assert_eq!(relative_error(&[1.0, 2.0], &[1.0, 2.5], 0.0), 0.2);
        assert_eq!(relative_error(&[f64::NAN], &[f64::NAN], 0.0), 0.0);
        assert_eq!(relative_error(&[f64::INFINITY], &[f64::INFINITY], 0.0), 0.0);
        assert_eq!(
            relative_error(&[f64::INFINITY], &[f64::NEG_INFINITY], 0.0),
            f64::INFINITY
        );
        assert_eq!(relative_error(&[1.0], &[1.0, 2.0], 0.0), f64::INFINITY);
        // All-round-off gradients compare against the floor.
        assert_eq!(relative_error(&[1e-20], &[0.0], 1e-6), 1e-14);
    }

    #[test]
    fn tensor_functions_are_checked_element_by_element() {
        // d/dv Σ v·w = w, d/dw = v; 8×8 = 64 coordinates per parameter: a sample is
        // checked. A matrix result is checked through a random ȳ.
        let src = "func @f(%v: f64[8,8], %w: f64[8,8]) -> f64 {
          %p = mul %v, %w
          %s = sum %p, axes [0, 1]
          ret %s
        }
        func @g(%v: f64[2,2]) -> f64[2,2] {
          %t = transpose %v, perm [1, 0]
          %e = exp %t
          ret %e
        }";
        let m = Traced::from_jir(src, None).unwrap();
        let pts = Points {
            random: 2,
            seed: 3,
            ..Points::default()
        };
        let f = check_function(&m, "f", &pts).unwrap();
        assert!(f.passed() && f.skipped.is_none(), "{f:?}");
        for p in &f.points {
            assert_eq!(p.coordinates.len(), MAX_COORDINATES);
            assert!(p.coordinates.windows(2).all(|w| w[0] < w[1]));
            let PointOutcome::Checked(c) = &p.outcome else {
                panic!("{p:?}")
            };
            // The reverse entry at coordinate k is the other parameter's element.
            let all: Vec<f64> = p.args.iter().flat_map(elems).collect();
            for (&k, &r) in p.coordinates.iter().zip(&c.reverse) {
                let other = if k < 64 { all[k + 64] } else { all[k - 64] };
                assert_eq!(r, other);
            }
        }
        let g = check_function(&m, "g", &pts).unwrap();
        assert!(g.passed(), "{g:?}");
        assert_eq!(g.points[0].ybar.len(), 4);
        assert_eq!(g.points[0].coordinates, vec![0, 1, 2, 3]);
    }

    #[test]
    fn check_function_reports_agreement_skips_and_guards() {
        let src = "func @f(%x: f64, %n: i64) -> f64 {\n  %y = sin %x\n  ret %y\n}\n\
                   func @g(%x: f64) -> i64 {\n  %n = const 1 : i64\n  ret %n\n}\n\
                   func @h(%x: f64) -> f64 {\n  %z = const 0.5 : f64\n  %c = lt %x, %z\n  guard %c\n  ret %x\n}\n";
        let m = Traced::from_jir(src, None).unwrap();
        let pts = Points {
            random: 4,
            seed: 7,
            ..Points::default()
        };
        let f = check_function(&m, "f", &pts).unwrap();
        assert!(
            f.passed() && f.skipped.is_none() && f.notes.is_empty(),
            "{f:?}"
        );
        assert_eq!(f.points.len(), 4);
        for p in &f.points {
            assert_eq!(p.args[1], Val::I64(DEFAULT_I64));
            let x = p.args[0].as_f64().unwrap();
            assert!((RANDOM_RANGE.0..RANDOM_RANGE.1).contains(&x));
            assert_eq!(p.jit, JitAgreement::Equal);
            let PointOutcome::Checked(c) = &p.outcome else {
                panic!("{p:?}")
            };
            assert_eq!(c.reverse, [x.cos()]);
        }
        let g = check_function(&m, "g", &pts).unwrap();
        assert!(g.skipped.unwrap().contains("result 0 is i64"));
        // @h's guard fails for x ≥ 0.5: not checked there, in both engines alike.
        let h = check_function(
            &m,
            "h",
            &Points {
                given: vec![vec![Val::F64(0.7)], vec![Val::F64(0.2)]],
                ..pts
            },
        )
        .unwrap();
        assert!(h.passed(), "{h:?}");
        assert!(matches!(&h.points[0].outcome, PointOutcome::NotChecked(e) if e.contains("guard")));
        assert!(matches!(h.points[1].outcome, PointOutcome::Checked(_)));
        assert!(h.points.iter().all(|p| p.jit == JitAgreement::Equal));
    }
}
