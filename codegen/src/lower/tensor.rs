//! Lowering of functions that compute on tensors: the steps of their fused schedule
//! ([`crate::fusion`]) — scalar instructions as usual, each fusion group as one loop
//! nest, the other tensor ops as calls into [`crate::tensor_rt`].
//!
//! A tensor value is a pointer here: `get` of a tensor gives the address of its home
//! (a parameter buffer, the caller's result buffer, or a workspace region). Inside a
//! group's loop the same IR values stand for one element each, so the members are
//! lowered by the scalar code of [`Lower::lower_inst`] unchanged — the reason JIT and
//! interpreter agree bit for bit on elementwise math.
//!
//! The loop nest runs over the group's shape after dropping unit axes and merging
//! adjacent axes every operand walks contiguously (a `[256,256]` group with a bias
//! broadcast along rows is two loops, one without broadcasting is one). Each operand's
//! byte offset is accumulated per level, so the innermost body does one add per operand
//! and element.
//!
//! A `pad` is read through a bounds check per element (its operand's element, or the
//! pad value outside it). A one-dimensional group that reads pads is peeled: the
//! edges run the checked scalar body, the interior — where every pad reads its
//! operand — runs two elements at a time with each pad a shifted load, or its
//! recomputed cone ([`crate::fusion::TensorPlan::cones`]) evaluated from shifted
//! loads.

use super::{Flow, Lower};
use crate::error::CompileError;
use crate::fusion::{dims, elem_bytes, is_view, Home, Step};
use crate::tensor_rt::TensorCall;
use cranelift_codegen::ir::{
    self as cl, condcodes::IntCC, types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
};
use jitad_ir::kernels::broadcast_strides;
use jitad_ir::types::MAX_RANK;
use jitad_ir::{Constant, Inst, Op, ScalarType, Type, Value};
use std::collections::HashMap;

/// An operand a fused loop reads from memory.
struct Input {
    /// Address of element 0 of the walk.
    base: cl::Value,
    /// Element type.
    elem: ScalarType,
    /// Stride in elements along each axis of the group's shape.
    strides: [usize; MAX_RANK],
}

fn row_major(d: &[usize]) -> [usize; MAX_RANK] {
    let mut s = [0; MAX_RANK];
    let mut acc = 1usize;
    for i in (0..d.len()).rev() {
        s[i] = acc;
        acc = acc.saturating_mul(d[i]);
    }
    s
}

/// A `pad` a group reads.
struct PadView {
    result: Value,
    /// Where the operand's elements come from.
    source: PadSource,
    /// Low padding per axis.
    lo: Vec<usize>,
    /// The operand's dimensions (none 0).
    xd: Vec<usize>,
    /// The pad value (hoisted).
    value: cl::Value,
}

/// The operand of a `pad`: a buffer, or its cone recomputed at the operand's index.
enum PadSource {
    /// Loaded from the operand's buffer (element 0 here).
    Memory { base: cl::Value, elem: ScalarType },
    /// Recomputed ([`crate::fusion::TensorPlan::cones`]).
    Cone(ConeEval),
}

/// A cone of members recomputed per element at an index of their own shape.
struct ConeEval {
    /// The value the pad reads.
    root: Value,
    /// Values loaded per element: (value, address of its element 0, element type,
    /// strides in elements over the cone's axes).
    loads: Vec<(Value, cl::Value, ScalarType, [usize; MAX_RANK])>,
    /// Loop-invariant bindings: fills, broadcast scalars, scalar operands.
    fixed: Vec<(Value, cl::Value)>,
    /// Members computed per element, in program order.
    compute: Vec<Inst>,
}

/// A reduction a group accumulates.
struct Acc {
    /// The member reduced.
    src: Value,
    /// The reduction's result.
    result: Value,
    /// The accumulator of a full reduction (scalar result).
    var: Option<cranelift_frontend::Variable>,
    /// Else: the input entry walking the result tensor.
    input: usize,
    /// `mean`: divide by `count` afterwards.
    mean: bool,
    count: usize,
    elem: ScalarType,
}

impl Lower<'_, '_> {
    /// Opens a counted loop: a pointer-sized counter variable starting at 0, the loop's
    /// head block (now current) and the counter's value in it.
    fn loop_head(&mut self) -> (cranelift_frontend::Variable, cl::Block, cl::Value) {
        self.loop_head_at(0)
    }

    /// [`Self::loop_head`] with the counter starting at `start`.
    fn loop_head_at(&mut self, start: i64) -> (cranelift_frontend::Variable, cl::Block, cl::Value) {
        let ptr = self.cx.ptr;
        let iv = self.b.declare_var(ptr);
        let z = self.b.ins().iconst(ptr, start);
        self.b.def_var(iv, z);
        let head = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let i = self.b.use_var(iv);
        (iv, head, i)
    }

    /// `base[0..n] = x` (a one-level loop; `n ≥ 1`).
    fn fill_loop(
        &mut self,
        base: cl::Value,
        x: cl::Value,
        elem: ScalarType,
        n: usize,
    ) -> Result<(), CompileError> {
        self.map_loop(base, elem, n, |_, _| x)
    }

    /// `base[i] = g(base[i])` for `i < n` (`n ≥ 1`).
    fn map_loop(
        &mut self,
        base: cl::Value,
        elem: ScalarType,
        n: usize,
        g: impl Fn(&mut Self, cl::Value) -> cl::Value,
    ) -> Result<(), CompileError> {
        let t = crate::abi::cl_ty(elem);
        let bytes = self.imm(
            (n as u64).saturating_mul(elem_bytes(elem) as u64),
            "a buffer",
        )?;
        let step = elem_bytes(elem) as i64;
        let (iv, head, i) = self.loop_head();
        let p = self.b.ins().iadd(base, i);
        let x = self.b.ins().load(t, super::trusted(), p, 0);
        let y = g(self, x);
        self.b.ins().store(super::trusted(), y, p, 0);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(iv, next);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, bytes);
        let exit = self.b.create_block();
        self.b.ins().brif(more, head, &[], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// A constant's value.
    fn constant(&mut self, c: Constant) -> cl::Value {
        match c {
            Constant::F64(v) => self.b.ins().f64const(v),
            Constant::F32(v) => self.b.ins().f32const(v),
            Constant::I64(v) => self.b.ins().iconst(types::I64, v),
            Constant::Bool(v) => self.b.ins().iconst(types::I8, i64::from(v)),
        }
    }

    pub(super) fn is_tensor(&self, v: Value) -> bool {
        self.f
            .values
            .get(v)
            .is_some_and(|d| matches!(d.ty, Type::Tensor(..)))
    }

    fn ty(&self, v: Value) -> Type {
        self.f.values[v].ty
    }

    /// The address of tensor `v`'s data.
    pub(super) fn tensor_addr(&mut self, v: Value) -> Result<cl::Value, CompileError> {
        let plan = self.plan;
        let home = plan
            .tensors
            .as_ref()
            .and_then(|t| t.home.get(&v))
            .copied()
            .ok_or_else(|| self.err(format!("tensor {v} has no buffer")))?;
        let ptr = self.cx.ptr;
        Ok(match home {
            Home::Param(i) => {
                let off = self.off(i as usize, 0)?;
                let a = self.args_ptr;
                self.b.ins().load(ptr, super::trusted(), a, off)
            }
            Home::Result(i) => {
                let off = self.off(i as usize, 0)?;
                let r = self.res_ptr;
                self.b.ins().load(ptr, super::trusted(), r, off)
            }
            Home::Workspace(o) => {
                let k = self.imm(plan.tensor_base.saturating_add(o), "a tensor's offset")?;
                let ws = self.ws_ptr;
                self.b.ins().iadd_imm_s(ws, k)
            }
        })
    }

    /// Writes tensor `v` to result `i`: nothing when it was computed there.
    pub(super) fn ret_tensor(&mut self, v: Value, i: usize) -> Result<(), CompileError> {
        let home = self
            .plan
            .tensors
            .as_ref()
            .and_then(|t| t.home.get(&v))
            .copied();
        if home == Some(Home::Result(i as u32)) {
            return Ok(());
        }
        let t = self.ty(v);
        let bytes = (t.num_elements() as u64).saturating_mul(elem_bytes(t.elem()) as u64);
        let bytes = self.imm(bytes, "a returned tensor")?;
        let src = self.tensor_addr(v)?;
        let off = self.off(i, 0)?;
        let r = self.res_ptr;
        let ptr = self.cx.ptr;
        let dst = self.b.ins().load(ptr, super::trusted(), r, off);
        let n = self.b.ins().iconst(types::I64, bytes);
        let fr = self.func_ref(self.cx.tensor_copy_id);
        self.b.ins().call(fr, &[dst, src, n]);
        Ok(())
    }

    /// Lowers the whole (never chunked) body of a function holding tensors.
    pub(super) fn lower_tensor_function(mut self) -> Result<(), CompileError> {
        let plan = self.plan;
        let Some(tp) = plan.tensors.as_ref() else {
            return Err(self.err("no tensor plan"));
        };
        let mut returned = false;
        for step in &tp.steps {
            match *step {
                Step::Group(g) => self.lower_group(g)?,
                Step::Inst(inst) => match self.lower_inst(inst)? {
                    Flow::Next => {}
                    Flow::Returned => {
                        returned = true;
                        break;
                    }
                    Flow::Yield(_) => {
                        return Err(self.err(format!("`yield` at top level ({inst})")))
                    }
                },
            }
        }
        if !returned {
            let z = self.b.ins().iconst(types::I32, 0);
            self.b.ins().return_(&[z]);
        }
        self.finish()
    }

    /// The stack area for a runtime op's pointers (`n + 1` words) and spilled scalar
    /// operands (`n + 1` words), sized for the function's largest.
    fn tensor_area(&mut self) -> cl::StackSlot {
        if let Some(s) = self.tarea {
            return s;
        }
        let n = self
            .plan
            .tensors
            .as_ref()
            .map_or(0, |t| t.max_operands)
            .max(3);
        let bytes = u32::try_from(16 * (n + 1)).unwrap_or(u32::MAX);
        let s = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            bytes,
            4,
        ));
        self.tarea = Some(s);
        s
    }

    /// A runtime tensor op: its operands' and result's addresses in the pointer area,
    /// then a call to [`crate::tensor_rt::jitad_tensor_op`].
    pub(super) fn lower_tensor_op(&mut self, inst: Inst) -> Result<(), CompileError> {
        let f = self.f;
        let plan = self.plan;
        let tp = plan
            .tensors
            .as_ref()
            .ok_or_else(|| self.err("a tensor op without a tensor plan"))?;
        let d = &f.insts[inst];
        let [r] = d.results[..] else {
            return Err(self.err(format!("{inst}: a tensor op has one result")));
        };
        let n = d.args.len();
        if n > tp.max_operands {
            return Err(self.err(format!("{inst}: more operands than planned")));
        }
        let trans = [0u8, 1].map(|k| tp.transposed.contains_key(&(inst, k)));
        let arg_tys: Vec<Type> = d.args.iter().map(|&a| self.ty(a)).collect();
        let call = TensorCall::new(&d.op, arg_tys, self.ty(r), trans)
            .ok_or_else(|| self.err(format!("{inst}: `{}` has operands it does not take", d.op)))?;
        let call = Box::new(call);
        let call_addr = &*call as *const TensorCall as i64;
        self.cx.tensor_calls.push(call);
        let area = self.tensor_area();
        let ptr = self.cx.ptr;
        let spill = |k: usize| (8 * (n + 1 + k)) as i32;
        for (k, &a) in d.args.iter().enumerate() {
            let a = tp.transposed.get(&(inst, k as u8)).copied().unwrap_or(a);
            let p = if self.is_tensor(a) {
                self.tensor_addr(a)?
            } else {
                let x = self.get(a)?;
                self.b.ins().stack_store(ptr, x, area, spill(k));
                self.b.ins().stack_addr(ptr, area, spill(k))
            };
            self.b.ins().stack_store(ptr, p, area, (8 * k) as i32);
        }
        let out = if self.is_tensor(r) {
            self.tensor_addr(r)?
        } else {
            self.b.ins().stack_addr(ptr, area, spill(n))
        };
        self.b.ins().stack_store(ptr, out, area, (8 * n) as i32);
        let k = self.imm(
            plan.tensor_base.saturating_add(tp.scratch),
            "the scratch area",
        )?;
        let ws = self.ws_ptr;
        let scratch = self.b.ins().iadd_imm_s(ws, k);
        let c = self.b.ins().iconst(ptr, call_addr);
        let ptrs = self.b.ins().stack_addr(ptr, area, 0);
        let fr = self.func_ref(self.cx.tensor_op_id);
        let st = self.b.ins().call(fr, &[c, ptrs, scratch]);
        let st = self.b.inst_results(st)[0];
        self.check_status(st);
        if !self.is_tensor(r) {
            let t = self.scalar(r)?;
            let x = self
                .b
                .ins()
                .stack_load(ptr, crate::abi::cl_ty(t), area, spill(n));
            self.define(inst, &[x])?;
        }
        Ok(())
    }

    /// One fusion group: a loop nest over its shape computing every member per element.
    fn lower_group(&mut self, g: usize) -> Result<(), CompileError> {
        let f = self.f;
        let plan = self.plan;
        let tp = plan
            .tensors
            .as_ref()
            .ok_or_else(|| self.err("a group without a tensor plan"))?;
        let grp = &tp.groups[g];
        let Some(&first) = grp.members.first() else {
            return Ok(());
        };
        let shape = dims(self.ty(f.insts[first].results[0]));
        if shape.contains(&0) {
            return Ok(()); // no element to compute
        }
        let rank = shape.len();
        let members: std::collections::HashSet<Value> = grp
            .members
            .iter()
            .flat_map(|&m| f.insts[m].results.iter().copied())
            .collect();
        // Values bound for the loop only (removed afterwards).
        let mut bound: Vec<Value> = vec![];
        let mut inputs: Vec<Input> = vec![];
        // (value, strides) → input, so one operand read the same way is loaded once.
        let mut input_of: HashMap<(Value, usize, [usize; MAX_RANK]), usize> = HashMap::new();
        // Per element: values loaded from input k.
        let mut loads: Vec<(Value, usize)> = vec![];
        let mut pads: Vec<PadView> = vec![];
        let mut add_input = |l: &mut Self,
                             inputs: &mut Vec<Input>,
                             v: Value,
                             offset: usize,
                             strides: [usize; MAX_RANK]|
         -> Result<usize, CompileError> {
            if let Some(&k) = input_of.get(&(v, offset, strides)) {
                return Ok(k);
            }
            let mut base = l.tensor_addr(v)?;
            let elem = l.scalar(v)?;
            let bytes = offset.saturating_mul(elem_bytes(elem));
            if bytes > 0 {
                let k = l.imm(bytes as u64, "a view's offset")?;
                base = l.b.ins().iadd_imm_s(base, k);
            }
            inputs.push(Input {
                base,
                elem,
                strides,
            });
            input_of.insert((v, offset, strides), inputs.len() - 1);
            Ok(inputs.len() - 1)
        };
        for &m in &grp.members {
            let d = &f.insts[m];
            let r = d.results[0];
            match &d.op {
                Op::Fill(c, _) => {
                    let x = self.constant(*c);
                    self.vals.insert(r, x);
                    bound.push(r);
                }
                Op::Broadcast(_) | Op::Reshape(_) if !self.is_tensor(d.args[0]) => {
                    // A scalar broadcast or reshaped: loaded once, before the loop.
                    let x = self.get(d.args[0])?;
                    self.vals.insert(r, x);
                    bound.push(r);
                }
                Op::Pad(widths) => {
                    let (x, v) = (d.args[0], d.args[1]);
                    let value = self.get(v)?;
                    let xd = dims(self.ty(x));
                    if xd.contains(&0) {
                        // Nothing of the operand shows: the value everywhere.
                        self.vals.insert(r, value);
                        bound.push(r);
                        continue;
                    }
                    let source = match tp.cones.get(&m) {
                        Some(c) => PadSource::Cone(self.cone_setup(c, x, &xd)?),
                        None => PadSource::Memory {
                            base: self.tensor_addr(x)?,
                            elem: self.scalar(x)?,
                        },
                    };
                    pads.push(PadView {
                        result: r,
                        source,
                        lo: widths.iter().map(|w| w.start as usize).collect(),
                        xd,
                        value,
                    });
                }
                op if is_view(op) => {
                    let a = d.args[0];
                    let (offset, strides) = self.view_walk(m, &shape)?;
                    let k = add_input(self, &mut inputs, a, offset, strides)?;
                    loads.push((r, k));
                }
                _ => {
                    for &a in &d.args {
                        if members.contains(&a) || self.vals.contains_key(&a) {
                            continue;
                        }
                        if self.is_tensor(a) {
                            let s =
                                broadcast_strides(&dims(self.ty(a)), &shape).ok_or_else(|| {
                                    self.err(format!("{m}: operand {a} does not broadcast"))
                                })?;
                            let k = add_input(self, &mut inputs, a, 0, s)?;
                            loads.push((a, k));
                            // Bound per element inside the loop; mark so it is not
                            // hoisted as a scalar.
                            self.vals.insert(a, inputs[k].base);
                            bound.push(a);
                        } else {
                            // A scalar operand: loaded once, before the loop.
                            let x = self.get(a)?;
                            self.vals.insert(a, x);
                            bound.push(a);
                        }
                    }
                }
            }
        }
        // Outputs: contiguous over the shape.
        let mut outs: Vec<(Value, usize)> = vec![];
        for &v in &grp.outputs {
            let base = self.tensor_addr(v)?;
            let elem = self.scalar(v)?;
            inputs.push(Input {
                base,
                elem,
                strides: row_major(&shape),
            });
            outs.push((v, inputs.len() - 1));
        }
        // Reductions: a scalar accumulator (a variable) or the result tensor, filled
        // with the identity and walked with stride 0 on the reduced axes.
        let mut accs: Vec<Acc> = vec![];
        for &ri in &grp.reductions {
            let d = &f.insts[ri];
            let (Op::Reduce(red, axes), [src], [r]) = (&d.op, &d.args[..], &d.results[..]) else {
                return Err(self.err(format!("{ri}: not a fused reduction")));
            };
            let elem = self.scalar(*r)?;
            let ct = crate::abi::cl_ty(elem);
            let ident = match elem {
                ScalarType::F64 => self.b.ins().f64const(-0.0),
                ScalarType::F32 => self.b.ins().f32const(-0.0),
                _ => self.b.ins().iconst(types::I64, 0),
            };
            let count = self.ty(*src).num_elements() / self.ty(*r).num_elements().max(1);
            let mean = *red == jitad_ir::shape::Reduction::Mean;
            if self.is_tensor(*r) {
                let base = self.tensor_addr(*r)?;
                let nr = self.ty(*r).num_elements();
                self.fill_loop(base, ident, elem, nr)?;
                let axes = axes.to_vec();
                let kept: Vec<usize> = (0..rank)
                    .filter(|j| !axes.contains(j))
                    .map(|j| shape[j])
                    .collect();
                let ks = row_major(&kept);
                let mut strides = [0; MAX_RANK];
                let mut q = 0;
                for (j, st) in strides.iter_mut().enumerate().take(rank) {
                    if !axes.contains(&j) {
                        *st = ks[q];
                        q += 1;
                    }
                }
                inputs.push(Input {
                    base,
                    elem,
                    strides,
                });
                accs.push(Acc {
                    src: *src,
                    result: *r,
                    var: None,
                    input: inputs.len() - 1,
                    mean,
                    count,
                    elem,
                });
            } else {
                let var = self.b.declare_var(ct);
                self.b.def_var(var, ident);
                accs.push(Acc {
                    src: *src,
                    result: *r,
                    var: Some(var),
                    input: usize::MAX,
                    mean,
                    count,
                    elem,
                });
            }
        }
        // Collapse the walk: drop unit axes, merge axes every operand walks contiguously.
        let mut cd: Vec<usize> = vec![];
        let mut cs: Vec<Vec<usize>> = vec![vec![]; inputs.len()];
        // A `pad` needs the index on every axis: no collapsing then.
        let keep_axes = !pads.is_empty();
        for (j, &extent) in shape.iter().enumerate() {
            if extent == 1 && !keep_axes {
                continue;
            }
            let mergeable = !cd.is_empty()
                && !keep_axes
                && inputs.iter().enumerate().all(|(k, inp)| {
                    let prev = *cs[k].last().unwrap_or(&0);
                    prev == inp.strides[j].saturating_mul(extent)
                });
            if mergeable {
                let last = cd.len() - 1;
                cd[last] = cd[last].saturating_mul(extent);
                for (k, inp) in inputs.iter().enumerate() {
                    let l = cs[k].len() - 1;
                    cs[k][l] = inp.strides[j];
                }
            } else {
                cd.push(extent);
                for (k, inp) in inputs.iter().enumerate() {
                    cs[k].push(inp.strides[j]);
                }
            }
        }
        if cd.is_empty() {
            cd.push(1);
            for s in &mut cs {
                s.push(0);
            }
        }
        // f64x2 for the innermost axis when every member has a lane-wise form and every
        // operand walks it contiguously or not at all: two elements per iteration, the
        // odd last one by the scalar body. Lane-wise IEEE ops give each element the
        // bits of the scalar code; a full `sum` adds lane 0, then lane 1 (the order).
        let inner = cd.last().copied().unwrap_or(1);
        let vec_mode = inner >= 2
            && pads.is_empty()
            && inputs.iter().enumerate().all(|(k, inp)| {
                inp.elem == ScalarType::F64 && cs[k].last().is_some_and(|&s| s <= 1)
            })
            && accs
                .iter()
                .all(|a| a.var.is_some() && a.elem == ScalarType::F64)
            && grp.members.iter().all(|&m| self.has_lane_form(m));
        if let Some((a, e)) = self.peel_range(&shape, &inputs, &cs, &pads, &accs, grp)? {
            // A 1-D group reading pads: the edges by the scalar body (bounds selected),
            // the interior, where every pad reads its operand, two elements at a time
            // with each pad a shifted load (or its cone computed from shifted loads).
            let n = shape[0];
            self.scalar_range(
                0, a, n, &inputs, &cs, &loads, &pads, grp, &mut bound, &members, &outs, &accs,
            )?;
            let mut vin: Vec<Input> = inputs
                .iter()
                .map(|i| Input {
                    base: i.base,
                    elem: i.elem,
                    strides: i.strides,
                })
                .collect();
            let mut vcs = cs.clone();
            let mut vloads = loads.clone();
            let mut vcones = vec![];
            for p in &pads {
                let lo = p.lo[0] as i64;
                match &p.source {
                    PadSource::Memory { base, elem } => {
                        let b = self.b.ins().iadd_imm_s(*base, -lo * 8);
                        vin.push(Input {
                            base: b,
                            elem: *elem,
                            strides: row_major(&p.xd),
                        });
                        vcs.push(vec![1]);
                        vloads.push((p.result, vin.len() - 1));
                    }
                    PadSource::Cone(ev) => {
                        let first = vin.len();
                        for (_, base, elem, st) in &ev.loads {
                            let b = self.b.ins().iadd_imm_s(*base, -lo * (st[0] as i64) * 8);
                            vin.push(Input {
                                base: b,
                                elem: *elem,
                                strides: *st,
                            });
                            vcs.push(vec![st[0]]);
                        }
                        vcones.push((p.result, ev, first));
                    }
                }
            }
            let ptr = self.cx.ptr;
            let zero = self.b.ins().iconst(ptr, 0);
            let outer = vec![zero; vin.len()];
            self.vector_loop(
                &vin, &vcs, &outer, 0, a, e, &vloads, &vcones, grp, &outs, &accs,
            )?;
            self.scalar_range(
                e, n, n, &inputs, &cs, &loads, &pads, grp, &mut bound, &members, &outs, &accs,
            )?;
            return self.finish_group(grp, bound, &accs, &inputs);
        }
        // The nest: level l walks axis l; each input's byte offset accumulates.
        let ptr = self.cx.ptr;
        let mut ivars = vec![];
        let mut heads = vec![];
        let zero = self.b.ins().iconst(ptr, 0);
        let mut offs: Vec<cl::Value> = vec![zero; inputs.len()];
        let mut emit_scalar = true;
        for (l, &extent) in cd.iter().enumerate() {
            if vec_mode && l + 1 == cd.len() {
                let outer = offs.clone();
                self.vector_loop(
                    &inputs,
                    &cs,
                    &outer,
                    l,
                    0,
                    extent & !1,
                    &loads,
                    &[],
                    grp,
                    &outs,
                    &accs,
                )?;
                if extent % 2 == 0 {
                    emit_scalar = false;
                } else {
                    // The last element: the scalar body at index extent − 1.
                    for (k, inp) in inputs.iter().enumerate() {
                        let step = cs[k][l].saturating_mul(elem_bytes(inp.elem));
                        let b = self.imm(((extent - 1) * step) as u64, "an offset")?;
                        offs[k] = self.b.ins().iadd_imm_s(outer[k], b);
                    }
                }
                break;
            }
            let (iv, head, i) = self.loop_head();
            // One product per distinct stride (no e-graph at opt level `none`).
            let mut scaled: HashMap<i64, cl::Value> = HashMap::new();
            for (k, inp) in inputs.iter().enumerate() {
                let step = cs[k][l].saturating_mul(elem_bytes(inp.elem));
                if step == 0 {
                    continue;
                }
                let step = self.imm(step as u64, "a stride")?;
                let x = match scaled.get(&step) {
                    Some(&x) => x,
                    None => {
                        let x = if step == 1 {
                            i
                        } else {
                            self.b.ins().imul_imm_s(i, step)
                        };
                        scaled.insert(step, x);
                        x
                    }
                };
                offs[k] = if l == 0 {
                    x
                } else {
                    self.b.ins().iadd(offs[k], x)
                };
            }
            ivars.push((iv, extent));
            heads.push(head);
        }
        if emit_scalar {
            self.scalar_body(
                &inputs, &offs, &loads, &pads, &ivars, rank, grp, &mut bound, &members, &outs,
                &accs,
            )?;
        }
        // Back edges, innermost first.
        for (l, &(iv, extent)) in ivars.iter().enumerate().rev() {
            let i = self.b.use_var(iv);
            let next = self.b.ins().iadd_imm_s(i, 1);
            self.b.def_var(iv, next);
            let ext = self.imm(extent as u64, "a loop extent")?;
            let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, ext);
            let exit = self.b.create_block();
            self.b.ins().brif(more, heads[l], &[], exit, &[]);
            self.b.switch_to_block(exit);
        }
        self.finish_group(grp, bound, &accs, &inputs)
    }

    /// How view `m` (not `pad`) walks its tensor operand over `shape`, its result's
    /// dimensions: the element offset of the first element and the stride per axis.
    fn view_walk(
        &self,
        m: Inst,
        shape: &[usize],
    ) -> Result<(usize, [usize; MAX_RANK]), CompileError> {
        let d = &self.f.insts[m];
        let ad = dims(self.ty(d.args[0]));
        let own = row_major(&ad);
        Ok(match &d.op {
            Op::Broadcast(_) => (
                0,
                broadcast_strides(&ad, shape)
                    .ok_or_else(|| self.err(format!("{m}: bad broadcast")))?,
            ),
            // Row-major order is kept: element i of the result is element i.
            Op::Reshape(_) => (0, row_major(shape)),
            Op::Slice(ranges) => {
                let mut s = [0; MAX_RANK];
                let mut off = 0usize;
                for (j, rg) in ranges.iter().enumerate() {
                    s[j] = own[j].saturating_mul(rg.step as usize);
                    off = off.saturating_add(own[j].saturating_mul(rg.start as usize));
                }
                (off, s)
            }
            Op::Transpose(perm) => {
                let mut s = [0; MAX_RANK];
                for (j, p) in perm.to_vec().into_iter().enumerate() {
                    s[j] = own[p];
                }
                (0, s)
            }
            _ => return Err(self.err(format!("{m}: not a view"))),
        })
    }

    /// Prepares the recomputation of `cone` (members of the shape `xd`, the last one
    /// computing `root`): loop-invariant bindings and the addresses of what it loads,
    /// emitted before the loop.
    fn cone_setup(
        &mut self,
        cone: &[Inst],
        root: Value,
        xd: &[usize],
    ) -> Result<ConeEval, CompileError> {
        let f = self.f;
        let inside: std::collections::HashSet<Value> = cone
            .iter()
            .flat_map(|&m| f.insts[m].results.iter().copied())
            .collect();
        let mut seen: std::collections::HashSet<Value> = std::collections::HashSet::new();
        let mut ev = ConeEval {
            root,
            loads: vec![],
            fixed: vec![],
            compute: vec![],
        };
        for &m in cone {
            let d = &f.insts[m];
            let r = d.results[0];
            match &d.op {
                Op::Fill(c, _) => {
                    let x = self.constant(*c);
                    ev.fixed.push((r, x));
                }
                Op::Broadcast(_) | Op::Reshape(_) if !self.is_tensor(d.args[0]) => {
                    let x = self.get(d.args[0])?;
                    ev.fixed.push((r, x));
                }
                op if is_view(op) => {
                    let a = d.args[0];
                    let (offset, strides) = self.view_walk(m, xd)?;
                    let elem = self.scalar(a)?;
                    let mut base = self.tensor_addr(a)?;
                    let bytes = offset.saturating_mul(elem_bytes(elem));
                    if bytes > 0 {
                        let k = self.imm(bytes as u64, "a view's offset")?;
                        base = self.b.ins().iadd_imm_s(base, k);
                    }
                    ev.loads.push((r, base, elem, strides));
                }
                _ => {
                    for &a in &d.args {
                        if inside.contains(&a) || !seen.insert(a) {
                            continue;
                        }
                        if self.is_tensor(a) {
                            let strides =
                                broadcast_strides(&dims(self.ty(a)), xd).ok_or_else(|| {
                                    self.err(format!("{m}: operand {a} does not broadcast"))
                                })?;
                            let base = self.tensor_addr(a)?;
                            ev.loads.push((a, base, self.scalar(a)?, strides));
                        } else {
                            let x = self.get(a)?;
                            ev.fixed.push((a, x));
                        }
                    }
                    ev.compute.push(m);
                }
            }
        }
        Ok(ev)
    }

    /// The cone's root at the operand index `idx` (in range): binds its loads and
    /// invariants, lowers its members, and restores the bindings it replaced (the
    /// group itself may bind the same values at its own index).
    fn cone_eval(&mut self, ev: &ConeEval, idx: &[cl::Value]) -> Result<cl::Value, CompileError> {
        let f = self.f;
        let ptr = self.cx.ptr;
        let mut saved: Vec<(Value, Option<cl::Value>)> = vec![];
        for &(v, x) in &ev.fixed {
            saved.push((v, self.vals.insert(v, x)));
        }
        for (v, base, elem, strides) in &ev.loads {
            let mut off: Option<cl::Value> = None;
            for (j, &i) in idx.iter().enumerate() {
                let step = strides[j].saturating_mul(elem_bytes(*elem));
                if step == 0 {
                    continue;
                }
                let step = self.imm(step as u64, "a stride")?;
                let t = self.b.ins().imul_imm_s(i, step);
                off = Some(match off {
                    None => t,
                    Some(o) => self.b.ins().iadd(o, t),
                });
            }
            let off = match off {
                Some(o) => o,
                None => self.b.ins().iconst(ptr, 0),
            };
            let a = self.b.ins().iadd(*base, off);
            let x = self
                .b
                .ins()
                .load(crate::abi::cl_ty(*elem), super::trusted(), a, 0);
            saved.push((*v, self.vals.insert(*v, x)));
        }
        for &m in &ev.compute {
            for &r in &f.insts[m].results {
                saved.push((r, self.vals.get(&r).copied()));
            }
            match self.lower_inst(m)? {
                Flow::Next => {}
                _ => return Err(self.err(format!("{m}: control flow in a fused loop"))),
            }
        }
        let y = self.get(ev.root);
        // Restore in reverse, so a value bound twice gets its first old binding back.
        for (v, old) in saved.into_iter().rev() {
            match old {
                Some(x) => self.vals.insert(v, x),
                None => self.vals.remove(&v),
            };
        }
        y
    }

    /// One element of a group's loop: loads, pads, members, stores, accumulations.
    #[allow(clippy::too_many_arguments)]
    fn scalar_body(
        &mut self,
        inputs: &[Input],
        offs: &[cl::Value],
        loads: &[(Value, usize)],
        pads: &[PadView],
        ivars: &[(cranelift_frontend::Variable, usize)],
        rank: usize,
        grp: &crate::fusion::Group,
        bound: &mut Vec<Value>,
        members: &std::collections::HashSet<Value>,
        outs: &[(Value, usize)],
        accs: &[Acc],
    ) -> Result<(), CompileError> {
        let f = self.f;
        let ptr = self.cx.ptr;
        // Loads, members, stores.
        let mut addr = vec![];
        for (k, inp) in inputs.iter().enumerate() {
            addr.push(self.b.ins().iadd(inp.base, offs[k]));
        }
        for &(v, k) in loads {
            let t = crate::abi::cl_ty(inputs[k].elem);
            let x = self.b.ins().load(t, super::trusted(), addr[k], 0);
            self.vals.insert(v, x);
            // External inputs are in `bound` already; a view's result is new.
            if !members.contains(&v) {
                continue;
            }
            bound.push(v);
        }
        // Pads: the operand's element where the index falls inside it (an address
        // clamped to element 0 elsewhere, so no load strays), else the value.
        if !pads.is_empty() {
            let idx: Vec<cl::Value> = ivars.iter().map(|&(iv, _)| self.b.use_var(iv)).collect();
            for p in pads {
                let mut inside: Option<cl::Value> = None;
                let mut safe = vec![];
                for (j, &ij) in idx.iter().enumerate().take(rank) {
                    let lo = self.imm(p.lo[j] as u64, "a pad width")?;
                    let rel = self.b.ins().iadd_imm_s(ij, -lo);
                    let ext = self.imm(p.xd[j] as u64, "a pad extent")?;
                    let ok = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, rel, ext);
                    let zero = self.b.ins().iconst(ptr, 0);
                    safe.push(self.b.ins().select(ok, rel, zero));
                    inside = Some(match inside {
                        None => ok,
                        Some(a) => self.b.ins().band(a, ok),
                    });
                }
                let x = match &p.source {
                    PadSource::Memory { base, elem } => {
                        let own = row_major(&p.xd);
                        let mut off = self.b.ins().iconst(ptr, 0);
                        for (j, &sj) in safe.iter().enumerate() {
                            let step = self.imm((own[j] * elem_bytes(*elem)) as u64, "a stride")?;
                            let term = self.b.ins().imul_imm_s(sj, step);
                            off = self.b.ins().iadd(off, term);
                        }
                        let a = self.b.ins().iadd(*base, off);
                        let t = crate::abi::cl_ty(*elem);
                        self.b.ins().load(t, super::trusted(), a, 0)
                    }
                    // Computed at a clamped index outside the operand too (pure, in
                    // bounds), then not selected.
                    PadSource::Cone(ev) => self.cone_eval(ev, &safe)?,
                };
                let y = match inside {
                    Some(c) => self.b.ins().select(c, x, p.value),
                    None => x,
                };
                self.vals.insert(p.result, y);
                bound.push(p.result);
            }
        }
        for &m in &grp.members {
            let d = &f.insts[m];
            if matches!(d.op, Op::Fill(..)) || is_view(&d.op) {
                continue;
            }
            match self.lower_inst(m)? {
                Flow::Next => {}
                _ => return Err(self.err(format!("{m}: control flow in a fused loop"))),
            }
        }
        for &(v, k) in outs {
            let x = self.get(v)?;
            self.b.ins().store(super::trusted(), x, addr[k], 0);
        }
        // Accumulate in the operand's row-major order, the kernel's order.
        for a in accs {
            let x = self.get(a.src)?;
            let fl = a.elem.is_float();
            match a.var {
                Some(var) => {
                    let acc = self.b.use_var(var);
                    let s = if fl {
                        self.b.ins().fadd(acc, x)
                    } else {
                        self.b.ins().iadd(acc, x)
                    };
                    self.b.def_var(var, s);
                }
                None => {
                    let t = crate::abi::cl_ty(a.elem);
                    let p = addr[a.input];
                    let acc = self.b.ins().load(t, super::trusted(), p, 0);
                    let s = if fl {
                        self.b.ins().fadd(acc, x)
                    } else {
                        self.b.ins().iadd(acc, x)
                    };
                    self.b.ins().store(super::trusted(), s, p, 0);
                }
            }
        }
        Ok(())
    }

    /// True when member `m` computes f64 and has a lane-wise f64x2 form with the
    /// scalar lowering's bits (`neg`/`abs` flip/clear the sign bit either way; `fma` is
    /// one rounding either way, and needs the CPU's FMA for vectors).
    fn has_lane_form(&self, m: Inst) -> bool {
        let d = &self.f.insts[m];
        let f64_result = d
            .results
            .first()
            .is_some_and(|&r| self.ty(r).elem() == ScalarType::F64);
        let scalar_ops = d
            .args
            .iter()
            .all(|&a| self.is_tensor(a) || self.ty(a) == Type::F64);
        f64_result
            && scalar_ops
            && match d.op {
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Sqrt | Op::Neg | Op::Abs => true,
                Op::Fma => self.cx.has_fma,
                Op::Fill(..)
                | Op::Broadcast(_)
                | Op::Reshape(_)
                | Op::Slice(_)
                | Op::Transpose(_) => true,
                _ => false,
            }
    }

    /// The innermost level of a group's nest two elements at a time (`extent ≥ 2`;
    /// runs `extent / 2` iterations, leaving an odd last element to the scalar body).
    #[allow(clippy::too_many_arguments)]
    fn vector_loop(
        &mut self,
        inputs: &[Input],
        cs: &[Vec<usize>],
        outer: &[cl::Value],
        l: usize,
        start: usize,
        end: usize,
        loads: &[(Value, usize)],
        cones: &[(Value, &ConeEval, usize)],
        grp: &crate::fusion::Group,
        outs: &[(Value, usize)],
        accs: &[Acc],
    ) -> Result<(), CompileError> {
        let f = self.f;
        let v2 = types::F64X2;
        // Loads may be unaligned (slices, odd offsets): not `aligned`.
        let mem = MemFlagsData::new().with_notrap();
        let start = self.imm(start as u64, "a loop start")?;
        let (iv, head, i) = self.loop_head_at(start);
        let i8 = self.b.ins().imul_imm_s(i, 8);
        let mut addr = vec![];
        for (k, inp) in inputs.iter().enumerate() {
            let off = if cs[k][l] == 0 {
                outer[k]
            } else if l == 0 {
                i8
            } else {
                self.b.ins().iadd(outer[k], i8)
            };
            addr.push(self.b.ins().iadd(inp.base, off));
        }
        let mut vv: HashMap<Value, cl::Value> = HashMap::new();
        for &(v, k) in loads {
            let x = self.lane_load(addr[k], cs[k][l] == 0);
            vv.insert(v, x);
        }
        // Recomputing pads: their cone from its own (shifted) loads, in a map of its
        // own (cones share values at different shifts).
        for &(result, ev, first) in cones {
            let mut cv: HashMap<Value, cl::Value> = HashMap::new();
            for &(v, x) in &ev.fixed {
                let y = self.b.ins().splat(v2, x);
                cv.insert(v, y);
            }
            for (j, &(v, ..)) in ev.loads.iter().enumerate() {
                let k = first + j;
                let x = self.lane_load(addr[k], cs[k][l] == 0);
                cv.insert(v, x);
            }
            for &m in &ev.compute {
                let out = self.lane_op(m, &mut cv)?;
                cv.insert(f.insts[m].results[0], out);
            }
            let y = *cv
                .get(&ev.root)
                .ok_or_else(|| self.err("a cone without its root"))?;
            vv.insert(result, y);
        }
        for &m in &grp.members {
            let r = f.insts[m].results[0];
            if vv.contains_key(&r) {
                continue; // a view, loaded above
            }
            let out = self.lane_op(m, &mut vv)?;
            vv.insert(r, out);
        }
        for &(v, k) in outs {
            let x = vv[&v];
            self.b.ins().store(mem, x, addr[k], 0);
        }
        for a in accs {
            let (Some(var), Some(&x)) = (a.var, vv.get(&a.src)) else {
                return Err(self.err("a vector accumulation without its operand"));
            };
            let l0 = self.b.ins().extractlane(x, 0);
            let l1 = self.b.ins().extractlane(x, 1);
            let acc = self.b.use_var(var);
            let s = self.b.ins().fadd(acc, l0);
            let s = self.b.ins().fadd(s, l1);
            self.b.def_var(var, s);
        }
        let next = self.b.ins().iadd_imm_s(i, 2);
        self.b.def_var(iv, next);
        let last = self.imm(end as u64 - 1, "a loop extent")?;
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, last);
        let exit = self.b.create_block();
        self.b.ins().brif(more, head, &[], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// Two f64 lanes from `addr` (maybe unaligned), or one element splat when the
    /// operand does not move along the axis (`splat`).
    fn lane_load(&mut self, addr: cl::Value, splat: bool) -> cl::Value {
        let mem = MemFlagsData::new().with_notrap();
        if splat {
            let s = self.b.ins().load(types::F64, mem, addr, 0);
            self.b.ins().splat(types::F64X2, s)
        } else {
            self.b.ins().load(types::F64X2, mem, addr, 0)
        }
    }

    /// Member `m`'s lane-wise f64x2 form over the operands in `vv` (a scalar operand
    /// is splat and remembered there).
    fn lane_op(
        &mut self,
        m: Inst,
        vv: &mut HashMap<Value, cl::Value>,
    ) -> Result<cl::Value, CompileError> {
        let d = &self.f.insts[m];
        let v2 = types::F64X2;
        let mut a = vec![];
        for &x in &d.args {
            let y = match vv.get(&x) {
                Some(&y) => y,
                None => {
                    // A scalar operand (hoisted) or a scalar splat member.
                    let s = self.get(x)?;
                    let y = self.b.ins().splat(v2, s);
                    vv.insert(x, y);
                    y
                }
            };
            a.push(y);
        }
        Ok({
            let out = match (&d.op, &a[..]) {
                (Op::Add, &[x, y]) => self.b.ins().fadd(x, y),
                (Op::Sub, &[x, y]) => self.b.ins().fsub(x, y),
                (Op::Mul, &[x, y]) => self.b.ins().fmul(x, y),
                (Op::Div, &[x, y]) => self.b.ins().fdiv(x, y),
                (Op::Fma, &[x, y, z]) => self.b.ins().fma(x, y, z),
                (Op::Sqrt, &[x]) => self.b.ins().sqrt(x),
                (Op::Neg, &[x]) => self.b.ins().fneg(x),
                (Op::Abs, &[x]) => self.b.ins().fabs(x),
                (Op::Fill(Constant::F64(c), _), &[]) => {
                    let s = self.b.ins().f64const(*c);
                    self.b.ins().splat(v2, s)
                }
                (Op::Broadcast(_) | Op::Reshape(_), &[x]) => x, // a scalar splat
                _ => return Err(self.err(format!("{m}: no lane-wise form"))),
            };
            out
        })
    }

    /// The interior `[a, e)` of a 1-D group that reads pads, when it is worth two
    /// elements at a time: `e − a` even and ≥ 2, every pad inside its operand there, and
    /// everything lane-wise (as for the unpadded vector loop; cones included).
    fn peel_range(
        &self,
        shape: &[usize],
        inputs: &[Input],
        cs: &[Vec<usize>],
        pads: &[PadView],
        accs: &[Acc],
        grp: &crate::fusion::Group,
    ) -> Result<Option<(usize, usize)>, CompileError> {
        if pads.is_empty() || shape.len() != 1 {
            return Ok(None);
        }
        let n = shape[0];
        let mut a = 0usize;
        let mut b = n;
        for p in pads {
            let (lo, xd) = (p.lo[0], p.xd[0]);
            a = a.max(lo);
            b = b.min(lo.saturating_add(xd));
            let lanes = match &p.source {
                PadSource::Memory { elem, .. } => *elem == ScalarType::F64,
                PadSource::Cone(ev) => {
                    ev.loads
                        .iter()
                        .all(|(_, _, e, st)| *e == ScalarType::F64 && st[0] <= 1)
                        && ev.compute.iter().all(|&m| self.has_lane_form(m))
                        && ev
                            .fixed
                            .iter()
                            .all(|&(v, _)| self.ty(v).elem() == ScalarType::F64)
                }
            };
            if !lanes {
                return Ok(None);
            }
        }
        let ok = b >= a.saturating_add(2)
            && inputs.iter().enumerate().all(|(k, inp)| {
                inp.elem == ScalarType::F64 && cs[k].last().is_some_and(|&s| s <= 1)
            })
            && accs
                .iter()
                .all(|a| a.var.is_some() && a.elem == ScalarType::F64)
            && grp
                .members
                .iter()
                .all(|&m| matches!(self.f.insts[m].op, Op::Pad(_)) || self.has_lane_form(m));
        Ok(ok.then(|| (a, a + ((b - a) & !1))))
    }

    /// The scalar body over `[start, end)` of a 1-D group of `n` elements (nothing when
    /// the range is empty).
    #[allow(clippy::too_many_arguments)]
    fn scalar_range(
        &mut self,
        start: usize,
        end: usize,
        n: usize,
        inputs: &[Input],
        cs: &[Vec<usize>],
        loads: &[(Value, usize)],
        pads: &[PadView],
        grp: &crate::fusion::Group,
        bound: &mut Vec<Value>,
        members: &std::collections::HashSet<Value>,
        outs: &[(Value, usize)],
        accs: &[Acc],
    ) -> Result<(), CompileError> {
        if start >= end {
            return Ok(());
        }
        let s0 = self.imm(start as u64, "a loop start")?;
        let (iv, head, i) = self.loop_head_at(s0);
        let mut offs = vec![];
        for (k, inp) in inputs.iter().enumerate() {
            let step = self.imm(
                cs[k][0].saturating_mul(elem_bytes(inp.elem)) as u64,
                "a stride",
            )?;
            offs.push(self.b.ins().imul_imm_s(i, step));
        }
        self.scalar_body(
            inputs,
            &offs,
            loads,
            pads,
            &[(iv, n)],
            1,
            grp,
            bound,
            members,
            outs,
            accs,
        )?;
        let i = self.b.use_var(iv);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(iv, next);
        let end = self.imm(end as u64, "a loop extent")?;
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, end);
        let exit = self.b.create_block();
        self.b.ins().brif(more, head, &[], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// After a group's loop: its values go out of scope; reductions finish.
    fn finish_group(
        &mut self,
        grp: &crate::fusion::Group,
        bound: Vec<Value>,
        accs: &[Acc],
        inputs: &[Input],
    ) -> Result<(), CompileError> {
        let f = self.f;
        for v in bound {
            self.vals.remove(&v);
        }
        for &m in &grp.members {
            for r in &f.insts[m].results {
                self.vals.remove(r);
            }
        }
        // Finish the reductions (after the loop, so they dominate later code).
        for a in accs {
            let n = |l: &mut Self| match a.elem {
                ScalarType::F32 => l.b.ins().f32const(a.count as f32),
                _ => l.b.ins().f64const(a.count as f64),
            };
            match a.var {
                Some(var) => {
                    let mut x = self.b.use_var(var);
                    if a.mean {
                        let k = n(self);
                        x = self.b.ins().fdiv(x, k);
                    }
                    self.vals.insert(a.result, x);
                }
                None if a.mean => {
                    let base = inputs[a.input].base;
                    let k = n(self);
                    let nr = self.ty(a.result).num_elements();
                    self.map_loop(base, a.elem, nr, |l, x| l.b.ins().fdiv(x, k))?;
                }
                None => {}
            }
        }
        Ok(())
    }
}
