//! Helpers the clean-up passes share: value substitution applied in program order.

use cranelift_entity::SecondaryMap;
use jitad_ir::{Constant, Function, Inst, Op, Value, ValueDef};

/// Replaces values by other values. A pass walks instructions in program order, calls
/// [`Subst::rewrite_args`] on each before looking at it, and records replacements
/// with [`Subst::replace`]; since definitions come before uses in program order, every
/// use is rewritten by the end of the walk.
#[derive(Default)]
pub(crate) struct Subst {
    map: SecondaryMap<Value, Option<Value>>,
}

impl Subst {
    /// The value `v` stands for now.
    pub(crate) fn resolve(&self, mut v: Value) -> Value {
        // Chains are short (each replacement points at an already resolved value), but
        // bound the walk anyway.
        for _ in 0..64 {
            match self.map[v] {
                Some(w) if w != v => v = w,
                _ => break,
            }
        }
        v
    }

    /// From now on, `v` is `w`. `v`'s name moves to `w` if `w` has none (so a derived
    /// value keeps a readable name when it turns out to equal an unnamed one).
    pub(crate) fn replace(&mut self, f: &mut Function, v: Value, w: Value) {
        let w = self.resolve(w);
        if v == w {
            return;
        }
        self.map[v] = Some(w);
        // Only a result takes the name: a parameter's name is its interface.
        let is_result = |d: &jitad_ir::ValueData| !matches!(d.def, ValueDef::Param(..));
        if let Some(n) = f.names.get(&v) {
            if !f.names.contains_key(&w) && f.values.get(w).is_some_and(is_result) {
                let n = n.clone();
                f.names.insert(w, n);
            }
        }
    }

    /// Rewrites `inst`'s operands through the substitution; true if any changed.
    pub(crate) fn rewrite_args(&self, f: &mut Function, inst: Inst) -> bool {
        let mut changed = false;
        let n = f.insts[inst].args.len();
        for k in 0..n {
            let a = f.insts[inst].args[k];
            let r = self.resolve(a);
            if r != a {
                f.insts[inst].args[k] = r;
                changed = true;
            }
        }
        changed
    }
}

/// The instruction defining `v`, if it is an instruction result.
pub(crate) fn def_inst(f: &Function, v: Value) -> Option<Inst> {
    match f.values.get(v)?.def {
        ValueDef::Result(i, _) => Some(i),
        ValueDef::Param(..) => None,
    }
}

/// The op defining `v` and its operands, if `v` is an instruction result.
pub(crate) fn def_op(f: &Function, v: Value) -> Option<(&Op, &[Value])> {
    let d = f.insts.get(def_inst(f, v)?)?;
    Some((&d.op, d.args.as_slice()))
}

/// The constant `v` holds, if it is defined by `const`.
pub(crate) fn const_of(f: &Function, v: Value) -> Option<Constant> {
    crate::emit::const_of(f, v)
}

/// The float constant `v` holds, or every element of `v` holds (a uniform tensor:
/// `fill`, `broadcast` of a constant). Rewrites that replace a value by an operand check
/// the types agree, so a uniform tensor never stands in for a scalar.
pub(crate) fn float_of(f: &Function, v: Value) -> Option<f64> {
    crate::constfold::uniform_of(f, v).and_then(Constant::as_f64)
}

/// True when `v` is the float constant with exactly these bits (so `-0.0 != 0.0`).
pub(crate) fn is_float_bits(f: &Function, v: Value, want: f64) -> bool {
    float_of(f, v).is_some_and(|c| c.to_bits() == want.to_bits())
}
