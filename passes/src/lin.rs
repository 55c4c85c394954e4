//! Linear quantities (tangents and adjoints) with symbolic zeros, lazy signs and masks.
//!
//! A tangent or adjoint is an `Option<Lin>`: `None` is a structural zero that emits
//! nothing. A [`Lin`] is `±val`, the sign kept lazily so `sub`-heavy code needs no `neg`
//! instructions (the sign is folded into the next `add`/`sub`, or materialised with one
//! `neg` only where the value itself must exist). An adjoint may also carry a [`Mask`]:
//! it is *exactly zero unless* a condition holds. Masks come from `select` (and `min`,
//! `max`), and are applied (`select c, v, 0`) only when the adjoint meets another one
//! or leaves the function, so products computed from it in between, where an untaken
//! branch may hold `inf` or NaN partials, never leak into the gradient (module docs of
//! [`crate::rules`], "NaN-safe select").
//!
//! A contribution `lin · ∂` ([`Term`]) is accumulated with `fma` when it is a product,
//! so `x̄ += ȳ·∂` costs one instruction. Multiplying by a constant 1 is skipped and a
//! constant −1 becomes a sign, at emission time.

use crate::emit::Emitter;
use crate::error::{AdError, Result};
use jitad_ir::op::Axes;
use jitad_ir::shape::Reduction;
use jitad_ir::{Op, Type, Value};
use smallvec::SmallVec;

/// The factors of a partial derivative or a term: rarely more than three, kept inline
/// (the reverse sweep builds a few of these for every instruction it differentiates).
pub(crate) type Factors = SmallVec<[Value; 3]>;

/// The quantity is exactly zero unless `cond == when`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mask {
    /// A `bool` value of the derived function.
    pub(crate) cond: Value,
    /// The polarity under which the quantity may be non-zero.
    pub(crate) when: bool,
}

/// A non-zero tangent or adjoint: `±val`, zero where its mask says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lin {
    /// The magnitude, a float value of the derived function.
    pub(crate) val: Value,
    /// True when the quantity is `-val`.
    pub(crate) neg: bool,
    /// Where it is known to be zero.
    pub(crate) mask: Option<Mask>,
}

impl Lin {
    /// `+v`, unmasked.
    pub(crate) fn of(v: Value) -> Self {
        Lin {
            val: v,
            neg: false,
            mask: None,
        }
    }
}

/// A local partial derivative `±(f₁·…·fₖ)/div` (an empty product is 1).
#[derive(Clone, Debug, Default)]
pub(crate) struct Partial {
    /// Negated.
    pub(crate) neg: bool,
    /// Factors (values of the derived function).
    pub(crate) factors: Factors,
    /// Divisor.
    pub(crate) div: Option<Value>,
}

impl Partial {
    /// ∂ = 1.
    pub(crate) fn one() -> Self {
        Partial::default()
    }
    /// ∂ = −1.
    pub(crate) fn minus_one() -> Self {
        Partial {
            neg: true,
            ..Partial::default()
        }
    }
    /// ∂ = v.
    pub(crate) fn of(v: Value) -> Self {
        Partial {
            factors: Factors::from_slice(&[v]),
            ..Partial::default()
        }
    }
    /// ∂ = ±(factors)/div.
    pub(crate) fn ratio(neg: bool, factors: &[Value], div: Value) -> Self {
        Partial {
            neg,
            factors: Factors::from_slice(factors),
            div: Some(div),
        }
    }
}

/// One contribution `lin · ∂`, not yet emitted.
#[derive(Clone, Debug)]
pub(crate) struct Term {
    neg: bool,
    factors: Factors,
    div: Option<Value>,
    mask: Option<Mask>,
}

/// `lin · ∂`.
pub(crate) fn term(lin: Lin, p: &Partial) -> Term {
    let mut factors = Factors::new();
    factors.push(lin.val);
    factors.extend_from_slice(&p.factors);
    Term {
        neg: lin.neg ^ p.neg,
        factors,
        div: p.div,
        mask: lin.mask,
    }
}

/// Drops factors that are the constant 1 and turns −1 into a sign flip. Returns the
/// remaining factors and whether the sign flipped. `fallback` gets the first factor if
/// all were ±1 (so the product is never empty).
fn simplify_factors(em: &Emitter, factors: &[Value]) -> (Factors, bool, Option<Value>) {
    let mut out = Factors::new();
    let mut flip = false;
    for &f in factors {
        match em.const_f64(f) {
            Some(1.0) => {}
            Some(-1.0) => flip = !flip,
            _ => out.push(f),
        }
    }
    (out, flip, factors.first().copied())
}

/// Emits the magnitude of `t` (its product and quotient); returns it with the sign.
fn emit_term(em: &mut Emitter, t: &Term) -> Result<(Value, bool)> {
    let (factors, flip, first) = simplify_factors(em, &t.factors);
    let neg = t.neg ^ flip;
    let mut acc = match factors.split_first() {
        Some((&f, rest)) => {
            let mut acc = f;
            for &g in rest {
                acc = em.ins1(Op::Mul, &[acc, g])?;
            }
            Some(acc)
        }
        None => None,
    };
    if let Some(d) = t.div {
        let num = match acc {
            Some(a) => a,
            None => {
                let ty = em.ty(d);
                em.float(ty, 1.0)?
            }
        };
        acc = Some(em.ins1(Op::Div, &[num, d])?);
    }
    match (acc, first) {
        (Some(a), _) => Ok((a, neg)),
        (None, Some(f)) => {
            // Every factor was ±1: the product is ±1 of the factors' type, which a
            // factor already holds. Reusing it rather than emitting a new `const`
            // matters on a chain of sums, whose adjoints are all the seed 1 (the
            // traced Rosenbrock gradient emitted 4 dead constants per term).
            match em.const_f64(f) {
                Some(1.0) => Ok((f, neg)),
                Some(-1.0) => Ok((f, !neg)),
                _ => {
                    let ty = em.ty(f);
                    Ok((em.float(ty, 1.0)?, neg))
                }
            }
        }
        (None, None) => Err(crate::error::AdError::Malformed {
            func: em.f.name.clone(),
            reason: "empty derivative term".into(),
        }),
    }
}

/// Materialises `t` as a [`Lin`] (sign and mask stay lazy).
pub(crate) fn lin_of_term(em: &mut Emitter, t: &Term) -> Result<Lin> {
    let (val, neg) = emit_term(em, t)?;
    Ok(Lin {
        val,
        neg,
        mask: t.mask,
    })
}

/// The `bool` value that is true where `m` lets the quantity through.
fn mask_bool(em: &mut Emitter, m: Mask) -> Result<Value> {
    if m.when {
        Ok(m.cond)
    } else {
        let f = em.boolean(false);
        em.ins1(Op::Eq, &[m.cond, f])
    }
}

/// `a ∧ b` (either may be absent, meaning "always").
pub(crate) fn and_mask(em: &mut Emitter, a: Option<Mask>, b: Mask) -> Result<Mask> {
    match a {
        None => Ok(b),
        Some(a) if a == b => Ok(a),
        Some(a) => {
            let ab = mask_bool(em, a)?;
            let bb = mask_bool(em, b)?;
            let f = em.boolean(false);
            Ok(Mask {
                cond: em.ins1(Op::Select, &[ab, bb, f])?,
                when: true,
            })
        }
    }
}

/// `a ∨ b`.
fn or_mask(em: &mut Emitter, a: Mask, b: Mask) -> Result<Mask> {
    if a.cond == b.cond && a.when != b.when {
        // c ∨ ¬c: always.
        let t = em.boolean(true);
        return Ok(Mask {
            cond: t,
            when: true,
        });
    }
    let ab = mask_bool(em, a)?;
    let bb = mask_bool(em, b)?;
    let t = em.boolean(true);
    Ok(Mask {
        cond: em.ins1(Op::Select, &[ab, t, bb])?,
        when: true,
    })
}

/// `select(m, v, 0)`.
fn apply_mask(em: &mut Emitter, v: Value, m: Mask) -> Result<Value> {
    // A scalar zero: `select` broadcasts it (and the mask) to `v`'s shape.
    let ty = em.ty(v);
    let z = em.float(ty, 0.0)?;
    if m.when {
        em.ins1(Op::Select, &[m.cond, v, z])
    } else {
        em.ins1(Op::Select, &[m.cond, z, v])
    }
}

/// `±a ± b` for signs `sa`, `sb`; `new_first` orders the operands of a plain `add`
/// (`b + a`). Returns the magnitude and sign of the sum.
fn signed_sum(
    em: &mut Emitter,
    a: Value,
    sa: bool,
    b: Value,
    sb: bool,
    new_first: bool,
) -> Result<(Value, bool)> {
    if sa == sb {
        let args = if new_first { [b, a] } else { [a, b] };
        Ok((em.ins1(Op::Add, &args)?, sa))
    } else if sa {
        // −a + b
        Ok((em.ins1(Op::Sub, &[b, a])?, false))
    } else {
        // a − b
        Ok((em.ins1(Op::Sub, &[a, b])?, false))
    }
}

/// `acc + t`. `new_first` (adjoints) writes the new contribution first in a plain
/// `add`, so a reverse sweep lists contributions in program order.
pub(crate) fn accumulate(
    em: &mut Emitter,
    acc: Option<Lin>,
    t: &Term,
    new_first: bool,
) -> Result<Lin> {
    let Some(old) = acc else {
        return lin_of_term(em, t);
    };
    if old.mask == t.mask {
        let (factors, flip, _) = simplify_factors(em, &t.factors);
        let tneg = t.neg ^ flip;
        if t.div.is_none() && factors.len() >= 2 && tneg == old.neg {
            // ±(old + f₁·rest) as one fma.
            let mut rest = factors[1];
            for &g in &factors[2..] {
                rest = em.ins1(Op::Mul, &[rest, g])?;
            }
            let val = em.ins1(Op::Fma, &[factors[0], rest, old.val])?;
            return Ok(Lin {
                val,
                neg: old.neg,
                mask: old.mask,
            });
        }
        let (p, pneg) = emit_term(em, t)?;
        let (val, neg) = signed_sum(em, old.val, old.neg, p, pneg, new_first)?;
        return Ok(Lin {
            val,
            neg,
            mask: old.mask,
        });
    }
    // Different masks: apply them, and remember where both are zero.
    let o = match old.mask {
        Some(m) => apply_mask(em, old.val, m)?,
        None => old.val,
    };
    let (p, pneg) = emit_term(em, t)?;
    let p = match t.mask {
        Some(m) => apply_mask(em, p, m)?,
        None => p,
    };
    let (val, neg) = signed_sum(em, o, old.neg, p, pneg, new_first)?;
    let mask = match (old.mask, t.mask) {
        (Some(a), Some(b)) => Some(or_mask(em, a, b)?),
        _ => None,
    };
    Ok(Lin { val, neg, mask })
}

/// `acc + lin` (a contribution with partial 1).
pub(crate) fn accumulate_lin(
    em: &mut Emitter,
    acc: Option<Lin>,
    lin: Lin,
    new_first: bool,
) -> Result<Lin> {
    match acc {
        None => Ok(lin),
        Some(_) => accumulate(em, acc, &term(lin, &Partial::one()), new_first),
    }
}

/// The type `t` has once emitted and its mask applied: its factors', divisor's and
/// mask condition's types broadcast together, as the elementwise `mul`/`div`/`select`
/// that emit it do.
fn term_type(em: &Emitter, t: &Term) -> Result<Type> {
    // The common case, scalar code: every float operand has the first factor's scalar
    // type, which is then the term's (what `elementwise` would say, without
    // collecting the types; on a traced scalar gradient this ran for every adjoint
    // contribution).
    let first = em.ty(t.factors[0]);
    if matches!(first, Type::Scalar(_))
        && t.factors[1..]
            .iter()
            .chain(t.div.as_ref())
            .chain(t.mask.as_ref().map(|m| &m.cond))
            .all(|&v| {
                let ty = em.ty(v);
                ty == first || !ty.is_float()
            })
    {
        return Ok(first);
    }
    let tys: Vec<Type> = t
        .factors
        .iter()
        .chain(t.div.as_ref())
        .chain(t.mask.as_ref().map(|m| &m.cond))
        .map(|&v| em.ty(v))
        .filter(|ty| ty.is_float())
        .chain(std::iter::once(em.ty(t.factors[0])))
        .collect();
    jitad_ir::shape::elementwise("mul", &tys).map_err(|e| AdError::Malformed {
        func: em.f.name.clone(),
        reason: format!("a derivative term does not broadcast: {e}"),
    })
}

/// Broadcasting's transpose, the one place it is emitted: `v` (of a type `target`
/// broadcasts to) summed over the broadcast axes and reshaped to `target`
/// ([`jitad_ir::shape::sum_back`]).
pub(crate) fn sum_back(em: &mut Emitter, v: Value, target: Type) -> Result<Value> {
    let from = em.ty(v);
    if from == target {
        return Ok(v);
    }
    let sb = jitad_ir::shape::sum_back(target, from).map_err(|e| AdError::Malformed {
        func: em.f.name.clone(),
        reason: format!("an adjoint cannot be summed back: {e}"),
    })?;
    let mut out = v;
    if !sb.axes.is_empty() {
        let axes = Axes::new(&sb.axes).ok_or_else(|| AdError::Malformed {
            func: em.f.name.clone(),
            reason: format!("sum-back over axes {:?}", sb.axes),
        })?;
        out = em.ins1(Op::Reduce(Reduction::Sum, axes), &[out])?;
    }
    if let Some(t) = sb.reshape {
        out = em.ins1(Op::Reshape(t), &[out])?;
    }
    Ok(out)
}

/// `acc + t` where `acc` is the adjoint of an operand of type `target` and `t` a
/// contribution that stands for a quantity of type `logical` (the op's result type for
/// an elementwise op or `broadcast`, else the operand's own type).
///
/// Adjoints of tensors are *lazily broadcast*: an adjoint may have any type that
/// broadcasts to the type of the quantity it stands for (a scalar `1/n` for the
/// adjoint of a `mean`'s operand, a `[8,1]` column for a row sum's), and is broadcast
/// only where a value of the exact type must exist ([`value`], [`exact`]). So when the
/// op did not broadcast the operand (`logical` is `target`) this is [`accumulate`];
/// when it did, `t` is emitted, its mask applied (a mask is elementwise in the
/// result's shape), broadcast to `logical` if it is lazily smaller, and summed back
/// to `target` ([`sum_back`]): broadcasting's transpose. The sign stays lazy.
pub(crate) fn accumulate_into(
    em: &mut Emitter,
    acc: Option<Lin>,
    t: &Term,
    target: Type,
    logical: Type,
    new_first: bool,
) -> Result<Lin> {
    let tt = term_type(em, t)?;
    if logical == target && (tt == target || jitad_ir::shape::broadcasts_to(tt, target)) {
        return accumulate(em, acc, t, new_first);
    }
    let l = lin_of_term(em, t)?;
    let l = unmasked(em, l)?;
    let mut v = l.val;
    if em.ty(v) != logical {
        v = em.ins1(Op::Broadcast(logical), &[v])?;
    }
    let val = sum_back(em, v, target)?;
    accumulate_lin(
        em,
        acc,
        Lin {
            val,
            neg: l.neg,
            mask: None,
        },
        new_first,
    )
}

/// The value of a tangent or adjoint, materialised: zero for `None`, its sign and mask
/// applied. `like` gives the type of the zero.
pub(crate) fn value(em: &mut Emitter, lin: Option<Lin>, like: Value) -> Result<Value> {
    let Some(l) = lin else {
        return em.zero_like(like);
    };
    let mut v = l.val;
    if let Some(m) = l.mask {
        v = apply_mask(em, v, m)?;
    }
    if l.neg {
        v = em.ins1(Op::Neg, &[v])?;
    }
    let ty = em.ty(like);
    if em.ty(v) != ty {
        v = em.ins1(Op::Broadcast(ty), &[v])?;
    }
    Ok(v)
}

/// `lin` with its mask applied and broadcast to exactly `ty` (an adjoint is lazily
/// broadcast, see [`accumulate_into`]); the sign stays lazy. For the transposes of
/// ops that move elements (`transpose`, `reshape`, `matmul`, ...).
pub(crate) fn exact(em: &mut Emitter, lin: Lin, ty: Type) -> Result<Lin> {
    let l = unmasked(em, lin)?;
    if em.ty(l.val) == ty {
        return Ok(l);
    }
    Ok(Lin {
        val: em.ins1(Op::Broadcast(ty), &[l.val])?,
        ..l
    })
}

/// The value of `lin` with its mask applied but its sign left lazy.
pub(crate) fn unmasked(em: &mut Emitter, lin: Lin) -> Result<Lin> {
    match lin.mask {
        None => Ok(lin),
        Some(m) => Ok(Lin {
            val: apply_mask(em, lin.val, m)?,
            neg: lin.neg,
            mask: None,
        }),
    }
}
