//! The emitter: appends type-checked instructions to a function under construction.
//!
//! It plays the role of `jitad_ir::FunctionBuilder` for the transforms, with two extras
//! they need: loops are opened and closed explicitly (the transforms walk regions with
//! their own state, which a closure-based loop builder cannot borrow alongside the
//! builder), and constants can be recognised (`const_f64`) so rules skip multiplying by
//! one. Every instruction is typed by [`Op::result_types`], the same check the builder
//! and the verifier use, so emitted IR is well typed or the emitter returns an error.

use crate::error::{AdError, Result};
use jitad_ir::{
    Constant, Function, Inst, LoopBounds, Op, Region, ScalarType, Signature, Type, Value, ValueDef,
    ValueList,
};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Appends instructions to the innermost open region of a new function.
pub(crate) struct Emitter<'s> {
    /// The function being built.
    pub(crate) f: Function,
    stack: Vec<(Region, Option<PendingLoop>)>,
    sigs: &'s HashMap<String, Signature>,
    /// The first constant of each value emitted into the function's body. A constant
    /// the transform itself asks for at top level (a seed, a rule's 1 or ½) reuses
    /// it rather than duplicating the primal's: the clean-up's CSE would merge the two,
    /// and that merge alone made it run simplification a second time.
    body_consts: HashMap<Constant, Value>,
}

/// A loop whose body is being emitted.
struct PendingLoop {
    bounds: LoopBounds,
    args: Vec<Value>,
    carried: Vec<Type>,
}

impl<'s> Emitter<'s> {
    /// Starts an empty function; `sigs` resolves calls.
    pub(crate) fn new(name: &str, sigs: &'s HashMap<String, Signature>) -> Self {
        let f = Function::new(name, Signature::default());
        let body = f.body;
        Emitter {
            f,
            stack: vec![(body, None)],
            sigs,
            body_consts: HashMap::new(),
        }
    }

    /// Room for a transform of `src` before the tables grow: it copies `src` whole and
    /// emits about as much again (tangents or adjoints), and growing the tables by
    /// doubling copied every entry once or twice and touched twice the pages. Only a
    /// hint: when the memory cannot be had, the tables grow as they go.
    pub(crate) fn reserve_for(&mut self, src: &Function) {
        let insts = src.insts.len().saturating_mul(2);
        let _ = self.f.insts.try_reserve(insts);
        let _ = self
            .f
            .values
            .try_reserve(src.values.len().saturating_mul(2));
        let body = self.f.body;
        let _ = self.f.regions[body].insts.try_reserve(insts);
    }

    fn type_err(&self, source: jitad_ir::TypeError) -> AdError {
        AdError::Type {
            func: self.f.name.clone(),
            source,
        }
    }

    fn current(&self) -> Region {
        self.stack.last().map_or(self.f.body, |s| s.0)
    }

    /// Adds a function parameter, named if `name` is given.
    pub(crate) fn param(&mut self, ty: Type, name: Option<String>) -> Value {
        let v = self.f.add_param(ty);
        if let Some(n) = name {
            self.f.set_name(v, n);
        }
        v
    }

    /// The type of `v`.
    pub(crate) fn ty(&self, v: Value) -> Type {
        self.f.ty(v)
    }

    /// Appends `op(args)`; returns its results.
    pub(crate) fn ins(&mut self, op: Op, args: &[Value]) -> Result<ValueList> {
        if matches!(op, Op::Loop(_) | Op::Yield | Op::Ret) {
            return Err(AdError::Malformed {
                func: self.f.name.clone(),
                reason: format!("`{}` emitted as a plain instruction", op.name()),
            });
        }
        let tys: SmallVec<[Type; 4]> = args.iter().map(|&a| self.f.ty(a)).collect();
        let sigs = self.sigs;
        let results = op
            .result_types(&tys, |n| sigs.get(n))
            .map_err(|e| self.type_err(e))?;
        let region = self.current();
        let inst = self.f.append_inst(region, op, args, &results, None);
        Ok(self.f.insts[inst].results.clone())
    }

    /// Appends a single-result op; returns its result.
    pub(crate) fn ins1(&mut self, op: Op, args: &[Value]) -> Result<Value> {
        let name = op.name();
        let r = self.ins(op, args)?;
        match r.as_slice() {
            [v] => Ok(*v),
            _ => Err(self.type_err(jitad_ir::TypeError::Arity {
                op: name,
                expected: 1,
                got: r.len(),
            })),
        }
    }

    /// The constant `c`: at top level, one already emitted there if any, else a new
    /// `const c`.
    pub(crate) fn constant(&mut self, c: Constant) -> Value {
        if self.current() == self.f.body {
            // Not a named one (a copy of `%bias = const 0.0`): a seed or a zero would
            // print under the primal's name.
            if let Some(&v) = self.body_consts.get(&c) {
                if !self.f.names.contains_key(&v) {
                    return v;
                }
            }
        }
        self.copy_constant(c)
    }

    /// Appends `const c` (a copy of a primal constant: one instruction for one, so the
    /// copy keeps its names).
    pub(crate) fn copy_constant(&mut self, c: Constant) -> Value {
        let region = self.current();
        let inst = self
            .f
            .append_inst(region, Op::Const(c), vec![], &[Type::Scalar(c.ty())], None);
        let v = self.f.insts[inst].results[0];
        if region == self.f.body {
            self.body_consts.entry(c).or_insert(v);
        }
        v
    }

    /// A float constant of the element type of the (float) type `ty`: a scalar, which
    /// broadcasts against a tensor of type `ty` in every elementwise op. Where a value
    /// of exactly type `ty` is needed, use [`Emitter::zero_of`].
    pub(crate) fn float(&mut self, ty: Type, v: f64) -> Result<Value> {
        match Constant::float(ty.elem(), v) {
            Some(c) => Ok(self.constant(c)),
            None => Err(AdError::Malformed {
                func: self.f.name.clone(),
                reason: format!("a derivative of type {ty} was requested"),
            }),
        }
    }

    /// The zero of the (float) type `ty` itself: a constant for a scalar, a `fill` for
    /// a tensor (where a value must have the exact type: an output, a loop slot, a
    /// call argument).
    pub(crate) fn zero_of(&mut self, ty: Type) -> Result<Value> {
        match ty {
            Type::Scalar(_) => self.float(ty, 0.0),
            Type::Tensor(s, _) => match Constant::float(s, 0.0) {
                Some(c) => self.ins1(Op::Fill(c, Box::new(ty)), &[]),
                None => Err(AdError::Malformed {
                    func: self.f.name.clone(),
                    reason: format!("a derivative of type {ty} was requested"),
                }),
            },
        }
    }

    /// The zero of `v`'s (float) type, of exactly that type.
    pub(crate) fn zero_like(&mut self, v: Value) -> Result<Value> {
        let ty = self.ty(v);
        self.zero_of(ty)
    }

    /// A `bool` constant.
    pub(crate) fn boolean(&mut self, b: bool) -> Value {
        self.constant(Constant::Bool(b))
    }

    /// The constant `v` holds, if it is the result of a `const`.
    pub(crate) fn const_of(&self, v: Value) -> Option<Constant> {
        const_of(&self.f, v)
    }

    /// The float value of `v` if it is a float constant.
    pub(crate) fn const_f64(&self, v: Value) -> Option<f64> {
        self.const_of(v).and_then(Constant::as_f64)
    }

    /// Names `v` (without `%`) unless it already has a name.
    pub(crate) fn name_if_unnamed(&mut self, v: Value, name: impl Into<String>) {
        if self.f.values.get(v).is_some() && !self.f.names.contains_key(&v) {
            self.f.set_name(v, name);
        }
    }

    /// Opens a loop: creates its body region with the index and carried parameters and
    /// makes it current. Returns `(index, carried params)`.
    pub(crate) fn begin_loop(
        &mut self,
        bounds: LoopBounds,
        dyn_bounds: &[Value],
        inits: &[Value],
    ) -> Result<(Value, Vec<Value>)> {
        let mut args = dyn_bounds.to_vec();
        args.extend_from_slice(inits);
        let tys: Vec<Type> = args.iter().map(|&a| self.f.ty(a)).collect();
        let carried = Op::Loop(Box::new(bounds))
            .result_types(&tys, |_| None)
            .map_err(|e| self.type_err(e))?;
        if dyn_bounds.len() != bounds.num_dyn() {
            return Err(self.type_err(jitad_ir::TypeError::Arity {
                op: "loop",
                expected: bounds.num_dyn(),
                got: dyn_bounds.len(),
            }));
        }
        let region = self.f.new_region();
        let index = self.f.add_region_param(region, Type::I64);
        let params = carried
            .iter()
            .map(|&t| self.f.add_region_param(region, t))
            .collect();
        self.stack.push((
            region,
            Some(PendingLoop {
                bounds,
                args,
                carried: carried.to_vec(),
            }),
        ));
        Ok((index, params))
    }

    /// Closes the innermost loop with `yield next`; returns the loop's results.
    pub(crate) fn end_loop(&mut self, next: &[Value]) -> Result<Vec<Value>> {
        let Some((region, Some(pending))) = self.stack.pop() else {
            return Err(AdError::Malformed {
                func: self.f.name.clone(),
                reason: "end of a loop that was never begun".into(),
            });
        };
        let next_tys: Vec<Type> = next.iter().map(|&v| self.f.ty(v)).collect();
        if next_tys != pending.carried {
            return Err(AdError::Malformed {
                func: self.f.name.clone(),
                reason: "a derived loop body yields the wrong types".into(),
            });
        }
        self.f.append_inst(region, Op::Yield, next, &[], None);
        let outer = self.current();
        let inst: Inst = self.f.append_inst(
            outer,
            Op::Loop(Box::new(pending.bounds)),
            pending.args,
            &pending.carried,
            Some(region),
        );
        Ok(self.f.insts[inst].results.to_vec())
    }

    /// Ends the function with `ret vals`, fixing its result types; returns the function.
    pub(crate) fn finish(mut self, vals: &[Value]) -> Result<Function> {
        if self.stack.len() != 1 {
            return Err(AdError::Malformed {
                func: self.f.name.clone(),
                reason: "a derived loop was left open".into(),
            });
        }
        self.f.sig.results = vals.iter().map(|&v| self.f.ty(v)).collect();
        let body = self.f.body;
        self.f.append_inst(body, Op::Ret, vals, &[], None);
        Ok(self.f)
    }
}

/// The constant `v` holds in `f`, if it is the result of a `const`.
pub(crate) fn const_of(f: &Function, v: Value) -> Option<Constant> {
    match f.values.get(v)?.def {
        ValueDef::Result(inst, 0) => match f.insts.get(inst)?.op {
            Op::Const(c) => Some(c),
            _ => None,
        },
        _ => None,
    }
}

/// True for `f64` and `f32` scalars and tensors: the values that carry derivatives.
pub(crate) fn is_float(ty: Type) -> bool {
    ty.is_float()
}

/// The float scalar type of `ty`, if any.
#[allow(dead_code)]
pub(crate) fn float_scalar(ty: Type) -> Option<ScalarType> {
    ty.scalar().filter(|s| s.is_float())
}
