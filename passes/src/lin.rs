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
use crate::error::Result;
use jitad_ir::{Op, Value};

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
    pub(crate) factors: Vec<Value>,
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
            factors: vec![v],
            ..Partial::default()
        }
    }
    /// ∂ = ±(factors)/div.
    pub(crate) fn ratio(neg: bool, factors: Vec<Value>, div: Value) -> Self {
        Partial {
            neg,
            factors,
            div: Some(div),
        }
    }
}

/// One contribution `lin · ∂`, not yet emitted.
#[derive(Clone, Debug)]
pub(crate) struct Term {
    neg: bool,
    factors: Vec<Value>,
    div: Option<Value>,
    mask: Option<Mask>,
}

/// `lin · ∂`.
pub(crate) fn term(lin: Lin, p: &Partial) -> Term {
    let mut factors = Vec::with_capacity(p.factors.len() + 1);
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
fn simplify_factors(em: &Emitter, factors: &[Value]) -> (Vec<Value>, bool, Option<Value>) {
    let mut out = Vec::with_capacity(factors.len());
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
            // Every factor was ±1: the product is 1 of the factors' type.
            let ty = em.ty(f);
            Ok((em.float(ty, 1.0)?, neg))
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
    let z = em.zero_like(v)?;
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
    Ok(v)
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
