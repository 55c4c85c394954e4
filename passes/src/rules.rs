//! The calculus of every op, in one place, as one of two kinds of rule.
//!
//! `rule` gives each instruction its derivative rule (`Rule`):
//!
//! - **Pointwise** rules are the op's *local partial derivatives* ∂y/∂xᵢ, as values of
//!   the derived function, from which both modes follow: the tangent
//!   `dy = Σᵢ ∂ᵢ·dxᵢ` (`pointwise_tangent`) and the adjoint contributions
//!   `x̄ᵢ += ȳ·∂ᵢ` (`pointwise_adjoint`). An op's forward and reverse calculus
//!   therefore cannot drift apart. Partials are products `±(f₁·…·fₖ)/d` (`Partial`),
//!   so a quotient rule costs a `div`, not a reciprocal and a `mul`, and a constant
//!   factor 1 costs nothing.
//! - **Linear** rules (`Linear`, JAX's linear/transpose: `deflinear2`, `defbilinear`
//!   and `primitive_transposes` in `jax/_src/interpreters/ad.py`) are for ops that are
//!   linear in their differentiable operands: the tangent is *the op applied to the
//!   tangents* (`linear_tangent`), the adjoint is the op's named *transpose*
//!   (`transpose`). A bilinear op (`mul`; `matmul` later) is linear in each operand
//!   with the other held fixed. Zeros are symbolic in both directions: a missing tangent
//!   drops its term, and a zero cotangent emits nothing (the transforms never call a
//!   rule for a structurally zero adjoint).
//!
//! `call` and `loop` have no rule: the transforms generate the callee's derivative or a
//! derived loop.
//!
//! # Pointwise rules
//!
//! | op | ∂ (operand order) | notes |
//! |----|-------------------|-------|
//! | `div a, b` | 1/b, −y/b | |
//! | `fma a, b, c` | b, a, 1 | |
//! | `sqrt a` | 0.5/y | |
//! | `exp a` | y | |
//! | `expm1 a` | y + 1 | |
//! | `log a` | 1/a | |
//! | `log1p a` | 1/(1 + a) | |
//! | `sin a` / `cos a` | cos a / −sin a | |
//! | `tan a` | 1 + y² (one `fma`) | |
//! | `tanh a` | 1 − y² (one `fma`, exactly rounded) | |
//! | `sigmoid a` | y·(1 − y) | |
//! | `erf a` | (2/√π)·e^(−a²) | |
//! | `abs a` | sign a, 0 at ±0 | |
//! | `pow a, b` | b·a^(b−1) (0 where b = 0), y·ln a (ln a read as 0 where a = 0) | |
//! | `powi a, n` | n·a^(n−1) | none for n = 0 |
//! | `atan2 a, b` | b/(a²+b²), −a/(a²+b²) | |
//! | `copysign a, b` | sign(a)·sign(b) by sign bits, 0 | |
//! | `floor ceil round trunc` | none | piecewise constant |
//! | `const`, comparisons, `guard` | none | |
//!
//! # Linear rules
//!
//! | op | kind | tangent (the op on tangents) | transpose |
//! |----|------|------------------------------|-----------|
//! | `add a, b`, `sub a, b`, `neg a` | `Linear::Sum` `±a ± b` | `±da ± db`, signs kept lazily | fan-out: ā = ±ȳ, b̄ = ±ȳ |
//! | `mul a, b` | `Linear::Bilinear` | `da·b + a·db` (an `fma` when both flow) | ā = ȳ·b, b̄ = ȳ·a |
//! | `select c, a, b` | `Linear::Select` in the branches | `select(c, da, db)` | ā = ȳ masked to c, b̄ = ȳ masked to ¬c (NaN-safe, below) |
//! | `min a, b` / `max a, b` | `Linear::Select` on `le a, b` / `ge a, b` | as `select` | as `select` |
//! | `cast a : T` between float types | `Linear::Convert` | `cast(da)` | `cast(ȳ)` back to a's type |
//!
//! With tensors (DESIGN.md, "Tensors") the linear kind takes the structural ops, each
//! with its named transpose: `broadcast` ↔ `sum`, `transpose` ↔ the inverse permutation,
//! `reshape` ↔ `reshape` back, `slice` ↔ `pad`, `extract` ↔ `insert` into zeros, `concat`
//! ↔ `slice`s, and `matmul` bilinear (ā = ȳ·bᵀ, b̄ = aᵀ·ȳ). Broadcasting's *sum-back* (a
//! contribution of the result's shape summed over the broadcast axes to its operand's
//! shape, JAX's `_unbroadcast`) will live in one helper in `lin.rs`, applied where a
//! contribution meets its operand's adjoint (`lin::accumulate`, which both rule kinds'
//! contributions go through), so no rule handles broadcasting itself; forward mode
//! needs no sum-back, since the elementwise op applied to the tangents broadcasts them.
//!
//! # Edge conventions
//!
//! What jitad's derivative is at the points where the maths has none, next to JAX's
//! (`jax/_src/lax/lax.py`, `jax/_src/numpy/*.py` and `jax/_src/nn/functions.py` at
//! jax-ml/jax `cec06d1`, Aug 2026) and PyTorch's (`tools/autograd/derivatives.yaml` and
//! `FunctionsManual.cpp`). Read from the sources except where marked *(memory)*. The
//! jitad column is what `passes/tests/ad.rs` (`conventions_at_non_differentiable_points`,
//! `double_where_gives_zero_not_nan`) checks.
//!
//! | where | jitad | JAX | PyTorch |
//! |-------|-------|-----|---------|
//! | `abs` at ±0 | **0** (`select(a == 0, 0, copysign(1, a))`) | **1** (`select(x >= 0, g, -g)`, also at −0) | **0** (`grad * self.sgn()`) |
//! | `min`/`max` at a tie | **all to the first operand** (`select(a ≤ b, ·, ·)` / `select(a ≥ b, ·, ·)`) | **½ to each** (`_balanced_eq`) | **½ to each** (`maximum`/`minimum`: `where(self == other, grad / 2, grad)`) |
//! | `min`/`max` with a NaN operand | all to the second operand | 0 to both (`_balanced_eq`: `x == NaN` is false) | all to both (neither mask fires) |
//! | relu as `max(x, 0)` at 0 | 1 (the tie rule) | `jax.nn.relu`: 0 (custom jvp `select(x > 0, g, 0)`); `jnp.maximum(x, 0)`: ½ | `relu`: 0 (`threshold_backward(grad, result, 0)`); `maximum(x, 0)`: ½ |
//! | relu as `select(x > 0, x, 0)` at 0 | 0 (the condition is false) | 0 | 0 (`where`) |
//! | `sqrt` at +0 / −0 | +inf / −inf (0.5/y, y = ±0) | the same (`g · 0.5/ans`) | the same (`grad / (2 * result)`) |
//! | `select`/`where`, untaken branch | 0, **also when its partials are inf or NaN** (deferred masks, below) | 0·inf = NaN can leak (`select(which, ct, zeros)` then the branch's rule) | the same leak (`where(condition, grad, 0)`) |
//! | `floor ceil round trunc` | 0 everywhere, also at the jumps | 0 (`defjvp_zero`; `jnp.trunc` is a `where` of `ceil`/`floor`) | 0 (`zeros_like(grad)`) |
//! | `pow a, b`, ∂/∂a where b = 0 | 0 (also at a = 0) | 0 for integer b; **NaN at a = 0 for float b** (`y·x^(y−1)`, no guard) | 0 (`where(exponent == 0.0, 0, …)`) |
//! | `pow a, b`, ∂/∂b at a = 0 | 0 for b > 0; **NaN for b < 0** (y = inf times ln a read as 0) | the same (`ans · log(_replace_zero(x))`) | 0 for b ≥ 0, −inf for b < 0 (`where((self == 0) & (exponent >= 0), 0, result * self.log())`) |
//! | `powi a, n` at a = 0 | n·0^(n−1): 0 for n ≥ 2, 1 for n = 1, ±inf for n < 0 (sign of n·0^(n−1)); none for n = 0 | the same (`integer_pow` jvp) | the same (`pow_backward` with a scalar exponent) |
//! | `atan2` at (0, 0) | NaN (0/0) | NaN (`g · y/(x²+y²)`) | NaN *(memory: `atan2_backward`, `grad · other · recip` with `recip` = inf)* |
//! | `copysign a, b`, ∂/∂a at a = ±0 | ±sign(b) by sign bits (+0 → sign b, −0 → −sign b) | ±1 by the sign of b, also at −0 (`where(signbit(x2), -abs(x1), abs(x1))`, abs′(0) = 1) | 0 (`copysign_tensor_self_backward`: `result / self`, masked to 0 where `self == 0`) |
//! | `log` at 0 | +inf (1/a) | the same | the same |
//! | `cast` | float ↔ float passes the derivative; none to or from `i64`/`bool` | the same (`convert_element_type`; integer results get `float0` zeros) | the same (integer tensors carry no gradient) |
//!
//! In short: at `abs`′(0) jitad sides with PyTorch (0) against JAX (1); at min/max ties
//! both split ½–½ where jitad gives everything to the first operand (so `max(x, y)` and
//! `max(y, x)` differ at a tie); at `pow`'s ∂/∂a where b = 0, jitad and PyTorch give 0
//! where JAX gives NaN at a = 0 for a float b; at `copysign` near 0 jitad and JAX give
//! ±1, PyTorch 0; and only jitad keeps NaN out of `select`'s untaken branch. One pair is
//! inconsistent within jitad:
//! `copysign(x, 1.0)` is `abs(x)`, yet its derivative at ±0 is ±1 where `abs`'s is 0.
//!
//! # NaN-safe select
//!
//! The gradient of `select(x > 0, sqrt(x), 0)` at x = −1 must be 0. Naively the adjoint
//! of the untaken branch is `select(c, ȳ, 0) = 0`, and then sqrt's adjoint rule computes
//! `0 · 0.5/sqrt(−1) = 0 · NaN = NaN`: the "double-where" trap. Forward mode has no trap
//! (`select(c, da, db)` discards the untaken tangent). In reverse mode jitad uses
//! *deferred masks* (see `lin.rs`): the adjoint of a select branch is kept as "ȳ, but zero
//! unless c", every contribution computed from it inherits the mask, and the mask is
//! applied (`select c, ·, 0`) only where it meets another contribution or leaves the
//! function — so the product with the untaken branch's partials (`inf`, NaN) is
//! discarded by a `select` instead of being multiplied by zero. Two contributions under
//! different masks are each masked and summed, and the sum keeps the disjunction of the
//! masks, so everything upstream stays protected. This is Enzyme's "strong zero"
//! (0 · ∞ = 0 for a zero adjoint) restricted to the adjoints that are zero *because of*
//! a select, which is where the trap lives; the price is one `select` per place where a
//! masked adjoint merges, nothing at all for select-free code. It does not turn a NaN
//! that occurs on the taken path into a number: a gradient at a point where the
//! function's own value is NaN stays NaN.

use crate::emit::Emitter;
use crate::error::{AdError, Result};
use crate::lin::{self, and_mask, Lin, Mask, Partial, Term};
use jitad_ir::{Op, Value};

mod tensor;

/// The derivative rule of one instruction: one of the two kinds (module docs).
pub(crate) enum Rule {
    /// No derivative flows (constants, comparisons, piecewise-constant ops).
    Zero,
    /// Pointwise: `dy = Σ ∂ᵢ·dxᵢ` over these `(operand index, ∂)` pairs.
    Pointwise(Vec<(usize, Partial)>),
    /// Linear in the operands that carry derivatives: the tangent is the op on the
    /// tangents, the adjoint its transpose.
    Linear(Linear),
}

/// A linear (or bilinear) op, as its tangent and transpose see it.
pub(crate) enum Linear {
    /// `y = Σ ±xᵢ` over these `(operand index, negated)` pairs (`add`, `sub`, `neg`).
    /// Transpose: fan-out, `x̄ᵢ = ±ȳ`.
    Sum(Vec<(usize, bool)>),
    /// `y = a·b`, linear in each operand with the other fixed: `(operand index, the
    /// other factor)` pairs. Tangent `da·b + a·db`; transpose `ā = ȳ·b`, `b̄ = ȳ·a`.
    Bilinear(Vec<(usize, Value)>),
    /// `y = select(cond, a, b)`, linear in the branches `a`, `b` (operand indices).
    /// Transpose: `ȳ` masked to each branch.
    Select {
        /// The condition (a value of the derived function).
        cond: Value,
        /// Operand index of the value taken when `cond` holds.
        a: usize,
        /// Operand index of the value taken otherwise.
        b: usize,
    },
    /// A conversion between float types: `dy = cast(dx)`; transpose: `cast(ȳ)` back.
    Convert,
    /// A tensor op (`tensor`'s table).
    Tensor(tensor::TensorLinear),
}

/// Whether a derivative flows from operand `index` of `op` to its results (at
/// non-structural ops; `call` is treated as flowing through every float operand).
pub(crate) fn flows(op: &Op, index: usize) -> bool {
    match op {
        Op::Const(_)
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::Eq
        | Op::Ne
        | Op::Guard
        | Op::Floor
        | Op::Ceil
        | Op::Round
        | Op::Trunc
        | Op::Yield
        | Op::Ret => false,
        Op::Powi(n) => *n != 0,
        Op::Copysign => index == 0,
        Op::Select => index != 0,
        // Tensor ops: what will flow once their rules exist (the `i64` index of
        // `extract`/`insert` never carries a derivative; `fill`/`iota` have no operand).
        Op::Fill(..) | Op::Iota(..) => false,
        Op::Extract => index == 0,
        Op::Insert => index != 2,
        Op::Broadcast(_)
        | Op::Reduce(..)
        | Op::Matmul
        | Op::Dot
        | Op::Transpose(_)
        | Op::Reshape(_)
        | Op::Slice(_)
        | Op::Pad(_)
        | Op::Concat(_) => true,
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Neg
        | Op::Fma
        | Op::Sqrt
        | Op::Exp
        | Op::Expm1
        | Op::Log
        | Op::Log1p
        | Op::Sin
        | Op::Cos
        | Op::Tan
        | Op::Tanh
        | Op::Sigmoid
        | Op::Erf
        | Op::Abs
        | Op::Pow
        | Op::Min
        | Op::Max
        | Op::Atan2
        | Op::Cast(_)
        | Op::Call(_)
        | Op::Loop(_)
        | Op::RevLoop(_)
        | Op::TapeLoop(_) => true,
    }
}

/// The derivative rule of `y = op(args)` (values of the derived function), emitting what
/// it needs (a pointwise rule's partials, a comparison for `min`/`max`). Only terms for
/// operands with `need[i]` are kept. `y` is the primal result, when the op has one.
pub(crate) fn rule(
    em: &mut Emitter,
    op: &Op,
    args: &[Value],
    y: Option<Value>,
    need: &[bool],
) -> Result<Rule> {
    let malformed = |em: &Emitter| AdError::Malformed {
        func: em.f.name.clone(),
        reason: format!(
            "`{}` has the wrong number of operands or results",
            op.name()
        ),
    };
    let arg = |i: usize| args.get(i).copied();
    let needs = |i: usize| need.get(i).copied().unwrap_or(false);
    let (a, b) = (arg(0), arg(1));
    // The operands and result an op's rule reads; a malformed instruction gets an error.
    macro_rules! get {
        ($v:expr) => {
            match $v {
                Some(v) => v,
                None => return Err(malformed(em)),
            }
        };
    }
    // `y = Σ ±xᵢ` over the needed operands.
    let sum = |signs: &[(usize, bool)]| {
        let kept = signs.iter().copied().filter(|(i, _)| needs(*i)).collect();
        Rule::Linear(Linear::Sum(kept))
    };
    let mut ps: Vec<(usize, Partial)> = Vec::with_capacity(2);
    match op {
        Op::Const(_)
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::Eq
        | Op::Ne
        | Op::Floor
        | Op::Ceil
        | Op::Round
        | Op::Trunc
        | Op::Powi(0) => return Ok(Rule::Zero),
        Op::Fill(..)
        | Op::Iota(..)
        | Op::Broadcast(_)
        | Op::Reduce(..)
        | Op::Matmul
        | Op::Dot
        | Op::Transpose(_)
        | Op::Reshape(_)
        | Op::Slice(_)
        | Op::Pad(_)
        | Op::Concat(_)
        | Op::Extract
        | Op::Insert => return tensor::rule(em, op, args, y, need),
        Op::Guard
        | Op::Call(_)
        | Op::Loop(_)
        | Op::RevLoop(_)
        | Op::TapeLoop(_)
        | Op::Yield
        | Op::Ret => {
            return Err(AdError::Malformed {
                func: em.f.name.clone(),
                reason: format!("`{}` has no local rule", op.name()),
            })
        }
        Op::Select => {
            return Ok(Rule::Linear(Linear::Select {
                cond: get!(a),
                a: 1,
                b: 2,
            }))
        }
        Op::Min | Op::Max => {
            let (a, b) = (get!(a), get!(b));
            let cmp = if matches!(op, Op::Min) {
                Op::Le
            } else {
                Op::Ge
            };
            let cond = em.ins1(cmp, &[a, b])?;
            return Ok(Rule::Linear(Linear::Select { cond, a: 0, b: 1 }));
        }
        Op::Cast(_) => return Ok(Rule::Linear(Linear::Convert)),
        Op::Add => return Ok(sum(&[(0, false), (1, false)])),
        Op::Sub => return Ok(sum(&[(0, false), (1, true)])),
        Op::Neg => return Ok(sum(&[(0, true)])),
        Op::Mul => {
            let (a, b) = (get!(a), get!(b));
            let kept = [(0, b), (1, a)]
                .into_iter()
                .filter(|(i, _)| needs(*i))
                .collect();
            return Ok(Rule::Linear(Linear::Bilinear(kept)));
        }
        Op::Div => {
            let (b, y) = (get!(b), get!(y));
            ps.push((0, Partial::ratio(false, &[], b)));
            ps.push((1, Partial::ratio(true, &[y], b)));
        }
        Op::Fma => {
            let (a, b) = (get!(a), get!(b));
            ps.push((0, Partial::of(b)));
            ps.push((1, Partial::of(a)));
            ps.push((2, Partial::one()));
        }
        Op::Sqrt => {
            let y = get!(y);
            let half = em.float(em.ty(y), 0.5)?;
            ps.push((0, Partial::ratio(false, &[half], y)));
        }
        Op::Exp => ps.push((0, Partial::of(get!(y)))),
        Op::Expm1 => {
            let y = get!(y);
            let one = em.float(em.ty(y), 1.0)?;
            ps.push((0, Partial::of(em.ins1(Op::Add, &[y, one])?)));
        }
        Op::Log => ps.push((0, Partial::ratio(false, &[], get!(a)))),
        Op::Log1p => {
            let a = get!(a);
            let one = em.float(em.ty(a), 1.0)?;
            let d = em.ins1(Op::Add, &[a, one])?;
            ps.push((0, Partial::ratio(false, &[], d)));
        }
        Op::Sin => ps.push((0, Partial::of(em.ins1(Op::Cos, &[get!(a)])?))),
        Op::Cos => {
            let s = em.ins1(Op::Sin, &[get!(a)])?;
            ps.push((
                0,
                Partial {
                    neg: true,
                    factors: smallvec::smallvec![s],
                    div: None,
                },
            ));
        }
        Op::Tan => {
            let y = get!(y);
            let one = em.float(em.ty(y), 1.0)?;
            ps.push((0, Partial::of(em.ins1(Op::Fma, &[y, y, one])?)));
        }
        Op::Tanh => {
            let y = get!(y);
            let one = em.float(em.ty(y), 1.0)?;
            let ny = em.ins1(Op::Neg, &[y])?;
            ps.push((0, Partial::of(em.ins1(Op::Fma, &[ny, y, one])?)));
        }
        Op::Sigmoid => {
            let y = get!(y);
            let one = em.float(em.ty(y), 1.0)?;
            let c = em.ins1(Op::Sub, &[one, y])?;
            ps.push((0, Partial::of(em.ins1(Op::Mul, &[y, c])?)));
        }
        Op::Erf => {
            let a = get!(a);
            let k = em.float(em.ty(a), std::f64::consts::FRAC_2_SQRT_PI)?;
            let sq = em.ins1(Op::Mul, &[a, a])?;
            let nsq = em.ins1(Op::Neg, &[sq])?;
            let e = em.ins1(Op::Exp, &[nsq])?;
            ps.push((
                0,
                Partial {
                    neg: false,
                    factors: smallvec::smallvec![k, e],
                    div: None,
                },
            ));
        }
        Op::Abs => {
            let a = get!(a);
            let zero = em.float(em.ty(a), 0.0)?;
            let one = em.float(em.ty(a), 1.0)?;
            let is0 = em.ins1(Op::Eq, &[a, zero])?;
            let s = em.ins1(Op::Copysign, &[one, a])?;
            ps.push((0, Partial::of(em.ins1(Op::Select, &[is0, zero, s])?)));
        }
        Op::Pow => {
            let (a, b, y) = (get!(a), get!(b), get!(y));
            let ty = em.ty(a);
            if needs(0) {
                let zero = em.float(ty, 0.0)?;
                let one = em.float(ty, 1.0)?;
                let bm1 = em.ins1(Op::Sub, &[b, one])?;
                let p = em.ins1(Op::Pow, &[a, bm1])?;
                let d = em.ins1(Op::Mul, &[b, p])?;
                let b0 = em.ins1(Op::Eq, &[b, zero])?;
                ps.push((0, Partial::of(em.ins1(Op::Select, &[b0, zero, d])?)));
            }
            if needs(1) {
                let zero = em.float(ty, 0.0)?;
                let l = em.ins1(Op::Log, &[a])?;
                let a0 = em.ins1(Op::Eq, &[a, zero])?;
                let l = em.ins1(Op::Select, &[a0, zero, l])?;
                ps.push((
                    1,
                    Partial {
                        neg: false,
                        factors: smallvec::smallvec![y, l],
                        div: None,
                    },
                ));
            }
        }
        Op::Powi(n) => {
            let a = get!(a);
            let ty = em.ty(a);
            match *n {
                1 => ps.push((0, Partial::one())),
                2 => {
                    let two = em.float(ty, 2.0)?;
                    ps.push((
                        0,
                        Partial {
                            neg: false,
                            factors: smallvec::smallvec![a, two],
                            div: None,
                        },
                    ));
                }
                n => {
                    let k = em.float(ty, f64::from(n))?;
                    let p = em.ins1(Op::Powi(n.saturating_sub(1)), &[a])?;
                    ps.push((
                        0,
                        Partial {
                            neg: false,
                            factors: smallvec::smallvec![p, k],
                            div: None,
                        },
                    ));
                }
            }
        }
        Op::Atan2 => {
            let (a, b) = (get!(a), get!(b));
            let bb = em.ins1(Op::Mul, &[b, b])?;
            let r = em.ins1(Op::Fma, &[a, a, bb])?;
            ps.push((0, Partial::ratio(false, &[b], r)));
            ps.push((1, Partial::ratio(true, &[a], r)));
        }
        Op::Copysign => {
            let (a, b) = (get!(a), get!(b));
            let one = em.float(em.ty(a), 1.0)?;
            let sa = em.ins1(Op::Copysign, &[one, a])?;
            let sb = em.ins1(Op::Copysign, &[one, b])?;
            ps.push((0, Partial::of(em.ins1(Op::Mul, &[sa, sb])?)));
        }
    }
    ps.retain(|(i, _)| needs(*i));
    Ok(Rule::Pointwise(ps))
}

/// A pointwise tangent: `dy = Σ ∂ᵢ·dxᵢ` from the operands' tangents `dargs` (`None` =
/// zero, which drops its term).
pub(crate) fn pointwise_tangent(
    em: &mut Emitter,
    ps: &[(usize, Partial)],
    dargs: &[Option<Lin>],
) -> Result<Option<Lin>> {
    let mut acc = None;
    for (i, p) in ps {
        if let Some(d) = dargs.get(*i).copied().flatten() {
            acc = Some(lin::accumulate(em, acc, &lin::term(d, p), false)?);
        }
    }
    Ok(acc)
}

/// Pointwise adjoint contributions: `(operand index, ȳ·∂ᵢ)`.
pub(crate) fn pointwise_adjoint(ps: &[(usize, Partial)], ybar: Lin) -> Vec<(usize, Term)> {
    ps.iter().map(|(i, p)| (*i, lin::term(ybar, p))).collect()
}

/// A linear op's tangent: the op applied to the operands' tangents `dargs` (`None` =
/// zero: a sum drops the term, a bilinear op drops the side, a select materialises a
/// zero only when the other branch has a tangent). `y` is the primal result (for types).
pub(crate) fn linear_tangent(
    em: &mut Emitter,
    l: &Linear,
    dargs: &[Option<Lin>],
    args: &[Value],
    y: Value,
) -> Result<Option<Lin>> {
    let darg = |i: usize| dargs.get(i).copied().flatten();
    match l {
        Linear::Sum(signs) => {
            let mut acc = None;
            for &(i, neg) in signs {
                if let Some(d) = darg(i) {
                    let p = if neg {
                        Partial::minus_one()
                    } else {
                        Partial::one()
                    };
                    acc = Some(lin::accumulate(em, acc, &lin::term(d, &p), false)?);
                }
            }
            Ok(acc)
        }
        Linear::Bilinear(sides) => {
            let mut acc = None;
            for &(i, other) in sides {
                if let Some(d) = darg(i) {
                    let t = lin::term(d, &Partial::of(other));
                    acc = Some(lin::accumulate(em, acc, &t, false)?);
                }
            }
            Ok(acc)
        }
        Linear::Select { cond, a, b } => match (darg(*a), darg(*b)) {
            (None, None) => Ok(None),
            (Some(da), Some(db)) if da.neg == db.neg && da.mask.is_none() && db.mask.is_none() => {
                let v = em.ins1(Op::Select, &[*cond, da.val, db.val])?;
                Ok(Some(Lin {
                    val: v,
                    neg: da.neg,
                    mask: None,
                }))
            }
            (da, db) => {
                // A missing side is a scalar zero, which `select` broadcasts.
                let side = |em: &mut Emitter, d: Option<Lin>| match d {
                    Some(_) => lin::value(em, d, y),
                    None => {
                        let ty = em.ty(y);
                        em.float(ty, 0.0)
                    }
                };
                let va = side(em, da)?;
                let vb = side(em, db)?;
                Ok(Some(Lin::of(em.ins1(Op::Select, &[*cond, va, vb])?)))
            }
        },
        Linear::Convert => match darg(0) {
            None => Ok(None),
            Some(d) => {
                let d = lin::unmasked(em, d)?;
                let to = em.ty(y);
                let op = Op::Cast(to.elem());
                let v = if em.ty(d.val) == to {
                    d.val
                } else {
                    em.ins1(op, &[d.val])?
                };
                Ok(Some(Lin {
                    val: v,
                    neg: d.neg,
                    mask: None,
                }))
            }
        },
        Linear::Tensor(t) => tensor::tangent(em, t, dargs, args),
    }
}

/// A linear op's transpose: the contributions `(operand index, term)` of the (non-zero)
/// cotangent `ybar` to the operands' adjoints. `args` are the operands in the derived
/// function (for `cast`'s type), `y` the result (for its type: `ybar` may be lazily
/// broadcast, see `lin::accumulate_into`).
pub(crate) fn transpose(
    em: &mut Emitter,
    l: &Linear,
    ybar: Lin,
    args: &[Value],
    y: Value,
) -> Result<Vec<(usize, Term)>> {
    match l {
        Linear::Sum(signs) => Ok(signs
            .iter()
            .map(|&(i, neg)| {
                let p = if neg {
                    Partial::minus_one()
                } else {
                    Partial::one()
                };
                (i, lin::term(ybar, &p))
            })
            .collect()),
        Linear::Bilinear(sides) => Ok(sides
            .iter()
            .map(|&(i, other)| (i, lin::term(ybar, &Partial::of(other))))
            .collect()),
        Linear::Select { cond, a, b } => {
            let ma = and_mask(
                em,
                ybar.mask,
                Mask {
                    cond: *cond,
                    when: true,
                },
            )?;
            let mb = and_mask(
                em,
                ybar.mask,
                Mask {
                    cond: *cond,
                    when: false,
                },
            )?;
            let la = Lin {
                mask: Some(ma),
                ..ybar
            };
            let lb = Lin {
                mask: Some(mb),
                ..ybar
            };
            Ok(vec![
                (*a, lin::term(la, &Partial::one())),
                (*b, lin::term(lb, &Partial::one())),
            ])
        }
        Linear::Convert => {
            let Some(&x) = args.first() else {
                return Ok(vec![]);
            };
            let from = em.ty(x);
            let v = if em.ty(ybar.val).elem() == from.elem() {
                ybar.val
            } else {
                em.ins1(Op::Cast(from.elem()), &[ybar.val])?
            };
            Ok(vec![(
                0,
                lin::term(Lin { val: v, ..ybar }, &Partial::one()),
            )])
        }
        Linear::Tensor(t) => tensor::transpose(em, t, ybar, args, y),
    }
}
