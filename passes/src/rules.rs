//! The calculus of every op, in one place.
//!
//! For each op, [`local`] emits its *local partial derivatives* ∂y/∂xᵢ, as values of the
//! derived function, from which both modes follow: the tangent rule
//! `dy = Σᵢ ∂ᵢ·dxᵢ` ([`tangent`]) and the adjoint rule `x̄ᵢ += ȳ·∂ᵢ` ([`adjoint`]). An
//! op's forward and reverse calculus therefore cannot drift apart. A few ops are not
//! "partials" but linear maps of their own: `select` (and `min`/`max`, which are selects
//! on a comparison), `cast` between float types; `call` and `loop` are handled by the
//! transforms, which generate the callee's derivative or a derived loop.
//!
//! Partials are products `±(f₁·…·fₖ)/d` ([`Partial`]), so a quotient rule costs a
//! `div`, not a reciprocal and a `mul`, and a constant factor 1 costs nothing.
//!
//! | op | ∂ (operand order) | notes |
//! |----|-------------------|-------|
//! | `add a, b` | 1, 1 | |
//! | `sub a, b` | 1, −1 | |
//! | `mul a, b` | b, a | |
//! | `div a, b` | 1/b, −y/b | |
//! | `neg a` | −1 | |
//! | `fma a, b, c` | b, a, 1 | |
//! | `sqrt a` | 0.5/y | +inf at 0 (the one-sided limit), NaN below 0 |
//! | `exp a` | y | |
//! | `expm1 a` | y + 1 | |
//! | `log a` | 1/a | +inf at 0 |
//! | `log1p a` | 1/(1 + a) | |
//! | `sin a` / `cos a` | cos a / −sin a | |
//! | `tan a` | 1 + y² (one `fma`) | |
//! | `tanh a` | 1 − y² (one `fma`, exactly rounded) | |
//! | `sigmoid a` | y·(1 − y) | |
//! | `erf a` | (2/√π)·e^(−a²) | |
//! | `abs a` | sign a | **0 at a = ±0** (the symmetric subgradient, as JAX and PyTorch) |
//! | `pow a, b` | b·a^(b−1), y·ln a | ∂/∂a is **0 where b = 0** (a⁰ is constant, even at a = 0); ∂/∂b is **0 where a = 0** (the limit of aᵇ ln a as a → 0⁺); NaN for a < 0 |
//! | `powi a, n` | n·a^(n−1) | none for n = 0; inf at a = 0 for n < 1 |
//! | `atan2 a, b` | b/(a²+b²), −a/(a²+b²) | NaN at (0, 0) |
//! | `copysign a, b` | sign(a)·sign(b) by sign bits, 0 | |
//! | `floor ceil round trunc` | 0 | piecewise constant: no derivative flows, also at jumps |
//! | `min a, b` / `max a, b` | `select(a ≤ b, ·, ·)` / `select(a ≥ b, ·, ·)` | **at ties the whole derivative goes to the first operand `a`**; if either is NaN it goes to `b` |
//! | `select c, a, b` | `select(c, da, db)`; ā += select(c, ȳ, 0), b̄ += select(c, 0, ȳ) | NaN-safe, see below |
//! | `cast a : T` | dy = cast(da) between float types | none to or from `i64`/`bool` |
//! | `const`, comparisons, `guard` | — | no derivative |
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

/// The local derivative of one instruction.
pub(crate) enum Local {
    /// No derivative flows (constants, comparisons, piecewise-constant ops).
    Zero,
    /// `dy = Σ ∂ᵢ·dxᵢ` over these `(operand index, ∂)` pairs.
    Partials(Vec<(usize, Partial)>),
    /// `y = select(cond, a, b)` with `a`, `b` the operands at these indices.
    Select {
        /// The condition (a value of the derived function).
        cond: Value,
        /// Operand index of the value taken when `cond` holds.
        a: usize,
        /// Operand index of the value taken otherwise.
        b: usize,
    },
    /// A conversion between float types: `dy = cast(dx)`.
    Cast,
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

/// Emits the local derivative of `y = op(args)` (values of the derived function). Only
/// partials for operands with `need[i]` are emitted. `y` is the primal result, when
/// the op has one.
pub(crate) fn local(
    em: &mut Emitter,
    op: &Op,
    args: &[Value],
    y: Option<Value>,
    need: &[bool],
) -> Result<Local> {
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
        | Op::Powi(0) => return Ok(Local::Zero),
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
            return Ok(Local::Select {
                cond: get!(a),
                a: 1,
                b: 2,
            })
        }
        Op::Min | Op::Max => {
            let (a, b) = (get!(a), get!(b));
            let cmp = if matches!(op, Op::Min) {
                Op::Le
            } else {
                Op::Ge
            };
            let cond = em.ins1(cmp, &[a, b])?;
            return Ok(Local::Select { cond, a: 0, b: 1 });
        }
        Op::Cast(_) => return Ok(Local::Cast),
        Op::Add => {
            ps.push((0, Partial::one()));
            ps.push((1, Partial::one()));
        }
        Op::Sub => {
            ps.push((0, Partial::one()));
            ps.push((1, Partial::minus_one()));
        }
        Op::Mul => {
            let (a, b) = (get!(a), get!(b));
            ps.push((0, Partial::of(b)));
            ps.push((1, Partial::of(a)));
        }
        Op::Div => {
            let (b, y) = (get!(b), get!(y));
            ps.push((0, Partial::ratio(false, vec![], b)));
            ps.push((1, Partial::ratio(true, vec![y], b)));
        }
        Op::Neg => ps.push((0, Partial::minus_one())),
        Op::Fma => {
            let (a, b) = (get!(a), get!(b));
            ps.push((0, Partial::of(b)));
            ps.push((1, Partial::of(a)));
            ps.push((2, Partial::one()));
        }
        Op::Sqrt => {
            let y = get!(y);
            let half = em.float(em.ty(y), 0.5)?;
            ps.push((0, Partial::ratio(false, vec![half], y)));
        }
        Op::Exp => ps.push((0, Partial::of(get!(y)))),
        Op::Expm1 => {
            let y = get!(y);
            let one = em.float(em.ty(y), 1.0)?;
            ps.push((0, Partial::of(em.ins1(Op::Add, &[y, one])?)));
        }
        Op::Log => ps.push((0, Partial::ratio(false, vec![], get!(a)))),
        Op::Log1p => {
            let a = get!(a);
            let one = em.float(em.ty(a), 1.0)?;
            let d = em.ins1(Op::Add, &[a, one])?;
            ps.push((0, Partial::ratio(false, vec![], d)));
        }
        Op::Sin => ps.push((0, Partial::of(em.ins1(Op::Cos, &[get!(a)])?))),
        Op::Cos => {
            let s = em.ins1(Op::Sin, &[get!(a)])?;
            ps.push((
                0,
                Partial {
                    neg: true,
                    factors: vec![s],
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
                    factors: vec![k, e],
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
                        factors: vec![y, l],
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
                            factors: vec![a, two],
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
                            factors: vec![p, k],
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
            ps.push((0, Partial::ratio(false, vec![b], r)));
            ps.push((1, Partial::ratio(true, vec![a], r)));
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
    Ok(Local::Partials(ps))
}

/// The tangent rule: `dy` from the operands' tangents `dargs` (`None` = zero). `y` is
/// the primal result (for types).
pub(crate) fn tangent(
    em: &mut Emitter,
    local: &Local,
    dargs: &[Option<Lin>],
    y: Value,
) -> Result<Option<Lin>> {
    let darg = |i: usize| dargs.get(i).copied().flatten();
    match local {
        Local::Zero => Ok(None),
        Local::Partials(ps) => {
            let mut acc = None;
            for (i, p) in ps {
                if let Some(d) = darg(*i) {
                    acc = Some(lin::accumulate(em, acc, &lin::term(d, p), false)?);
                }
            }
            Ok(acc)
        }
        Local::Select { cond, a, b } => match (darg(*a), darg(*b)) {
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
                let va = lin::value(em, da, y)?;
                let vb = lin::value(em, db, y)?;
                Ok(Some(Lin::of(em.ins1(Op::Select, &[*cond, va, vb])?)))
            }
        },
        Local::Cast => match darg(0) {
            None => Ok(None),
            Some(d) => {
                let d = lin::unmasked(em, d)?;
                let to = em.ty(y);
                let op = match to.scalar() {
                    Some(s) => Op::Cast(s),
                    None => return Ok(None),
                };
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
    }
}

/// The adjoint rule: the contributions `(operand index, ȳ·∂)` of `ybar` to the operands'
/// adjoints. `args` are the operands in the derived function (for `cast`'s type).
pub(crate) fn adjoint(
    em: &mut Emitter,
    local: &Local,
    ybar: Lin,
    args: &[Value],
) -> Result<Vec<(usize, Term)>> {
    match local {
        Local::Zero => Ok(vec![]),
        Local::Partials(ps) => Ok(ps.iter().map(|(i, p)| (*i, lin::term(ybar, p))).collect()),
        Local::Select { cond, a, b } => {
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
        Local::Cast => {
            let Some(&x) = args.first() else {
                return Ok(vec![]);
            };
            let from = em.ty(x);
            let Some(s) = from.scalar() else {
                return Ok(vec![]);
            };
            let v = if em.ty(ybar.val) == from {
                ybar.val
            } else {
                em.ins1(Op::Cast(s), &[ybar.val])?
            };
            Ok(vec![(
                0,
                lin::term(Lin { val: v, ..ybar }, &Partial::one()),
            )])
        }
    }
}
