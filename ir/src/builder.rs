//! A type-checked way to build functions, loops and calls.
//!
//! Every instruction goes through [`Op::result_types`], so a builder can only produce
//! well-typed instructions; structural rules (terminators, scoping) hold by
//! construction. The verifier still checks everything, since text and passes can
//! produce IR without a builder.

use crate::function::{Function, Inst, Module, Region, Value, ValueList};
use crate::op::{Constant, LoopBounds, Op, Signature, TypeError};
use crate::types::Type;
use smallvec::SmallVec;
use std::collections::HashMap;

/// Why the builder refused an instruction.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BuildError {
    /// The operand types do not fit the op.
    #[error("in @{func}: {source}")]
    Type {
        /// Function being built.
        func: String,
        /// What was wrong.
        #[source]
        source: TypeError,
    },
    /// A loop body yielded values that do not match the carried values.
    #[error("in @{func}: loop body yields ({got}) but carries ({expected})")]
    YieldMismatch {
        /// Function being built.
        func: String,
        /// Carried types.
        expected: String,
        /// Yielded types.
        got: String,
    },
    /// An instruction was added after `ret`, or `ret` was given twice.
    #[error("in @{func}: instruction after `ret`")]
    AfterRet {
        /// Function being built.
        func: String,
    },
    /// `end_loop` was called with no loop open.
    #[error("in @{func}: no open loop to end")]
    NoOpenLoop {
        /// Function being built.
        func: String,
    },
    /// `finish` was called before `ret`.
    #[error("in @{func}: function has no `ret`")]
    NoRet {
        /// Function being built.
        func: String,
    },
}

fn type_list(ts: &[Type]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds one function. Instructions go to the innermost open region (the body, or the
/// body of the loop being built).
#[derive(Debug)]
pub struct FunctionBuilder {
    func: Function,
    callees: HashMap<String, Signature>,
    stack: Vec<Region>,
    open: Vec<OpenLoop>,
    done: bool,
}

/// A loop opened by [`FunctionBuilder::begin_loop`], not yet closed.
#[derive(Debug)]
struct OpenLoop {
    op: Op,
    args: Vec<Value>,
    carried_tys: Vec<Type>,
    region: Region,
}

impl FunctionBuilder {
    /// Starts a function with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        let func = Function::new(name, Signature::default());
        let body = func.body;
        FunctionBuilder {
            func,
            callees: HashMap::new(),
            stack: vec![body],
            open: Vec::new(),
            done: false,
        }
    }

    /// Makes every function of `module` callable (by its current signature).
    pub fn declare_module(&mut self, module: &Module) {
        for f in &module.funcs {
            self.declare(f.name.clone(), f.sig.clone());
        }
    }

    /// Makes `name` callable with signature `sig`.
    pub fn declare(&mut self, name: impl Into<String>, sig: Signature) {
        self.callees.insert(name.into(), sig);
    }

    /// Adds a parameter.
    pub fn param(&mut self, ty: Type) -> Value {
        self.func.add_param(ty)
    }

    /// Adds a named parameter.
    pub fn named_param(&mut self, name: &str, ty: Type) -> Value {
        let v = self.func.add_param(ty);
        self.func.set_name(v, name);
        v
    }

    /// Names a value (printed as `%name`).
    pub fn set_name(&mut self, v: Value, name: &str) {
        self.func.set_name(v, name);
    }

    /// The type of a value.
    pub fn ty(&self, v: Value) -> Type {
        self.func.ty(v)
    }

    /// The function built so far.
    pub fn func(&self) -> &Function {
        &self.func
    }

    fn current(&self) -> Region {
        *self
            .stack
            .last()
            .expect("builder region stack is never empty")
    }

    fn type_err(&self, source: TypeError) -> BuildError {
        BuildError::Type {
            func: self.func.name.clone(),
            source,
        }
    }

    /// Appends `op` applied to `args`; returns its results.
    pub fn ins(&mut self, op: Op, args: &[Value]) -> Result<ValueList, BuildError> {
        Ok(self.ins_inst(op, args)?.1)
    }

    fn ins_inst(&mut self, op: Op, args: &[Value]) -> Result<(Inst, ValueList), BuildError> {
        if self.done {
            return Err(BuildError::AfterRet {
                func: self.func.name.clone(),
            });
        }
        if matches!(op, Op::Loop(_) | Op::Yield | Op::Ret) {
            // These carry structure; they have their own methods.
            return Err(self.type_err(TypeError::Operand {
                op: op.name(),
                index: 0,
                got: Type::BOOL,
                expected: format!("use FunctionBuilder::{}", op.name()),
            }));
        }
        let tys: SmallVec<[Type; 4]> = args.iter().map(|&a| self.func.ty(a)).collect();
        let callees = &self.callees;
        let results = op
            .result_types(&tys, |name| callees.get(name))
            .map_err(|e| self.type_err(e))?;
        let region = self.current();
        let inst = self.func.append_inst(region, op, args, &results, None);
        Ok((inst, self.func.insts[inst].results.clone()))
    }

    /// Appends a single-result op; returns the result.
    pub fn ins1(&mut self, op: Op, args: &[Value]) -> Result<Value, BuildError> {
        let (inst, results) = self.ins_inst(op, args)?;
        match results.as_slice() {
            [v] => Ok(*v),
            _ => {
                let op = self.func.insts[inst].op.name();
                Err(self.type_err(TypeError::Arity {
                    op,
                    expected: 1,
                    got: results.len(),
                }))
            }
        }
    }

    /// Appends `const c`.
    pub fn constant(&mut self, c: Constant) -> Value {
        let region = self.current();
        let ty = Type::Scalar(c.ty());
        let inst = self
            .func
            .append_inst(region, Op::Const(c), vec![], &[ty], None);
        self.func.result(inst)
    }

    /// Appends an `f64` constant.
    pub fn const_f64(&mut self, v: f64) -> Value {
        self.constant(Constant::F64(v))
    }

    /// Appends `call @name(args)`.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>, BuildError> {
        Ok(self.ins(Op::Call(name.to_string()), args)?.to_vec())
    }

    /// Builds `loop %i in bounds (carried = inits) { body }`. `dyn_bounds` are the `i64`
    /// operands for the dynamic ends of `bounds`, start first. `body` receives the
    /// builder (appending to the loop body), the index and the carried values, and
    /// returns the next carried values. Returns the loop's results.
    pub fn build_loop(
        &mut self,
        bounds: LoopBounds,
        dyn_bounds: &[Value],
        inits: &[Value],
        body: impl FnOnce(&mut Self, Value, &[Value]) -> Result<Vec<Value>, BuildError>,
    ) -> Result<Vec<Value>, BuildError> {
        let (index, carried) = self.begin_loop(bounds, dyn_bounds, inits)?;
        match body(self, index, &carried) {
            Ok(next) => self.end_loop(&next),
            Err(e) => {
                self.cancel_loop();
                Err(e)
            }
        }
    }

    /// Opens `loop %i in bounds (carried = inits) { ... }` for callers that cannot
    /// pass the body as a closure (the tracer): later instructions go to the loop body
    /// until [`Self::end_loop`]. Returns the index and the carried values (the body's
    /// parameters).
    pub fn begin_loop(
        &mut self,
        bounds: LoopBounds,
        dyn_bounds: &[Value],
        inits: &[Value],
    ) -> Result<(Value, Vec<Value>), BuildError> {
        if self.done {
            return Err(BuildError::AfterRet {
                func: self.func.name.clone(),
            });
        }
        let mut args = dyn_bounds.to_vec();
        args.extend_from_slice(inits);
        let tys: Vec<Type> = args.iter().map(|&a| self.func.ty(a)).collect();
        let op = Op::Loop(Box::new(bounds));
        let carried_tys = op
            .result_types(&tys, |_| None)
            .map_err(|e| self.type_err(e))?;
        if dyn_bounds.len() != bounds.num_dyn() {
            return Err(self.type_err(TypeError::Arity {
                op: "loop",
                expected: bounds.num_dyn(),
                got: dyn_bounds.len(),
            }));
        }
        let region = self.func.new_region();
        let index = self.func.add_region_param(region, Type::I64);
        let carried: Vec<Value> = carried_tys
            .iter()
            .map(|&t| self.func.add_region_param(region, t))
            .collect();
        self.stack.push(region);
        self.open.push(OpenLoop {
            op,
            args,
            carried_tys: carried_tys.to_vec(),
            region,
        });
        Ok((index, carried))
    }

    /// Closes the innermost loop opened by [`Self::begin_loop`] with `yield next` and
    /// appends the loop to the enclosing region; returns the loop's results. Fails (and
    /// leaves the loop open) when `next` does not match the carried types.
    pub fn end_loop(&mut self, next: &[Value]) -> Result<Vec<Value>, BuildError> {
        let Some(open) = self.open.last() else {
            return Err(BuildError::NoOpenLoop {
                func: self.func.name.clone(),
            });
        };
        let next_tys: Vec<Type> = next.iter().map(|&v| self.func.ty(v)).collect();
        if next_tys != open.carried_tys {
            return Err(BuildError::YieldMismatch {
                func: self.func.name.clone(),
                expected: type_list(&open.carried_tys),
                got: type_list(&next_tys),
            });
        }
        let Some(open) = self.open.pop() else {
            return Err(BuildError::NoOpenLoop {
                func: self.func.name.clone(),
            });
        };
        self.stack.pop();
        self.func
            .append_inst(open.region, Op::Yield, next, &[], None);
        let outer = self.current();
        let inst = self.func.append_inst(
            outer,
            open.op,
            open.args,
            &open.carried_tys,
            Some(open.region),
        );
        Ok(self.func.insts[inst].results.to_vec())
    }

    /// Abandons the innermost loop opened by [`Self::begin_loop`] (its body region is
    /// left unattached and never printed); later instructions go to the enclosing
    /// region again.
    pub fn cancel_loop(&mut self) {
        if self.open.pop().is_some() {
            self.stack.pop();
        }
    }

    /// Ends the function with `ret vals`, fixing its result types.
    pub fn ret(&mut self, vals: &[Value]) -> Result<(), BuildError> {
        if self.done || self.stack.len() != 1 {
            return Err(BuildError::AfterRet {
                func: self.func.name.clone(),
            });
        }
        self.func.sig.results = vals.iter().map(|&v| self.func.ty(v)).collect();
        let body = self.func.body;
        self.func.append_inst(body, Op::Ret, vals, &[], None);
        self.done = true;
        Ok(())
    }

    /// The finished function. Fails if `ret` was never called.
    pub fn finish(self) -> Result<Function, BuildError> {
        if !self.done {
            return Err(BuildError::NoRet {
                func: self.func.name,
            });
        }
        Ok(self.func)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Bound;

    #[test]
    fn builds_quickstart() {
        let mut b = FunctionBuilder::new("f");
        let x = b.named_param("x", Type::F64);
        let y = b.named_param("y", Type::F64);
        let a = b.ins1(Op::Add, &[x, y]).unwrap();
        let s = b.ins1(Op::Sub, &[x, y]).unwrap();
        let c = b.ins1(Op::Mul, &[a, s]).unwrap();
        b.ret(&[c]).unwrap();
        let f = b.finish().unwrap();
        assert_eq!(f.sig.params, vec![Type::F64, Type::F64]);
        assert_eq!(f.sig.results, vec![Type::F64]);
        assert_eq!(f.num_insts(), 4);
    }

    #[test]
    fn rejects_ill_typed_ops() {
        let mut b = FunctionBuilder::new("f");
        let x = b.param(Type::F64);
        let n = b.param(Type::I64);
        assert!(matches!(
            b.ins1(Op::Add, &[x, n]),
            Err(BuildError::Type { .. })
        ));
        assert!(b.ins1(Op::Sqrt, &[n]).is_err());
        assert!(b.call("nope", &[x]).is_err());
        assert!(matches!(b.finish(), Err(BuildError::NoRet { .. })));
    }

    #[test]
    fn builds_nested_loops() {
        let mut b = FunctionBuilder::new("g");
        let x = b.param(Type::F64);
        let bounds = LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Imm(3),
        };
        let r = b
            .build_loop(bounds, &[], &[x], |b, _i, c| {
                let inner = b.build_loop(bounds, &[], &[c[0]], |b, _j, d| {
                    Ok(vec![b.ins1(Op::Add, &[d[0], d[0]])?])
                })?;
                Ok(inner)
            })
            .unwrap();
        b.ret(&r).unwrap();
        let f = b.finish().unwrap();
        assert_eq!(f.num_insts(), 6);
        // A body yielding the wrong type is refused.
        let mut b = FunctionBuilder::new("h");
        let x = b.param(Type::F64);
        let n = b.param(Type::I64);
        let e = b.build_loop(bounds, &[], &[x], |_, _, _| Ok(vec![n]));
        assert!(matches!(e, Err(BuildError::YieldMismatch { .. })));
    }

    #[test]
    fn begin_and_end_loop_in_two_steps() {
        let bounds = LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Imm(3),
        };
        let mut b = FunctionBuilder::new("f");
        let x = b.param(Type::F64);
        let n = b.param(Type::I64);
        assert!(matches!(
            b.end_loop(&[x]),
            Err(BuildError::NoOpenLoop { .. })
        ));
        let (_i, c) = b.begin_loop(bounds, &[], &[x]).unwrap();
        let y = b.ins1(Op::Mul, &[c[0], c[0]]).unwrap();
        // A wrong yield leaves the loop open; a right one closes it.
        assert!(matches!(
            b.end_loop(&[n]),
            Err(BuildError::YieldMismatch { .. })
        ));
        let r = b.end_loop(&[y]).unwrap();
        // An abandoned loop leaves no trace in the body.
        let (_i, c) = b.begin_loop(bounds, &[], &[r[0]]).unwrap();
        b.ins1(Op::Neg, &[c[0]]).unwrap();
        b.cancel_loop();
        b.ret(&r).unwrap();
        let f = b.finish().unwrap();
        crate::verify::verify_function(&f, None).unwrap();
        assert_eq!(f.num_insts(), 4); // loop, mul, yield, ret
    }
}
