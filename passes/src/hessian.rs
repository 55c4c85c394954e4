//! Second derivatives by composition: forward over reverse.
//!
//! [`hvp`] is `jvp(grad f)`: the tangent of the gradient along `v` is the Hessian-vector
//! product `H·v`, at the cost of a few gradients. [`hessian`] calls it once per unit
//! vector, for small `n`.

use crate::derive::float_params;
use crate::emit::Emitter;
use crate::error::{AdError, Result};
use jitad_ir::{Module, Op, Signature};
use std::collections::HashMap;

fn suffixed(func: &str, kind: &str, wrt: &[usize], all: &[usize]) -> String {
    let mut name = format!("{func}.{kind}");
    if wrt != all {
        name.push_str(".wrt");
        if wrt.is_empty() {
            name.push_str("none");
        }
        let list: Vec<String> = wrt.iter().map(|i| i.to_string()).collect();
        name.push_str(&list.join("_"));
    }
    name
}

/// Generates `@f.hvp(x..., v_wrt...) -> (y, g_wrt..., hv_wrt...)`, the value, gradient
/// and Hessian-vector product `H·v` of a function with one float result, as
/// `jvp(grad(f))`. Returns its name.
pub fn hvp(m: &mut Module, func: &str, wrt: &[usize]) -> Result<String> {
    let all = float_params(
        m.get(func)
            .ok_or_else(|| AdError::UnknownFunction(func.into()))?,
    );
    let g = crate::grad(m, func, wrt)?;
    let gj = crate::jvp(m, &g, wrt)?;
    let name = suffixed(func, "hvp", wrt, &all);
    let n = wrt.len();
    let mut f = m
        .get(&gj)
        .cloned()
        .ok_or_else(|| AdError::UnknownFunction(gj.clone()))?;
    // g.jvp returns (y, g..., dy, dg...): drop dy.
    let ret = f.ret_inst().ok_or_else(|| AdError::Malformed {
        func: gj.clone(),
        reason: "no `ret`".into(),
    })?;
    let args = f.insts[ret].args.clone();
    if args.len() != 2 * (n + 1) {
        return Err(AdError::Malformed {
            func: gj,
            reason: "unexpected result count".into(),
        });
    }
    let keep: Vec<usize> = (0..=n).chain(n + 2..2 * (n + 1)).collect();
    f.insts[ret].args = keep.iter().map(|&k| args[k]).collect();
    f.sig.results = keep.iter().map(|&k| f.sig.results[k]).collect();
    f.name = name.clone();
    m.funcs.retain(|h| h.name != gj);
    m.insert(f);
    Ok(name)
}

/// Generates `@f.hessian(x...) -> (y, g_wrt..., H...)` with the n×n Hessian with
/// respect to `wrt` in row-major order (`H[i][j]` = ∂²f/∂x_wrt\[i\]∂x_wrt\[j\]), by calling
/// `@f.hvp` once per unit vector. Meant for small n. Returns its name.
pub fn hessian(m: &mut Module, func: &str, wrt: &[usize]) -> Result<String> {
    let all = float_params(
        m.get(func)
            .ok_or_else(|| AdError::UnknownFunction(func.into()))?,
    );
    // Unit vectors are per parameter: a tensor parameter would need one per element
    // (use `hvp` for those).
    if let Some(f) = m.get(func) {
        for &i in wrt {
            if let Some(ty @ jitad_ir::Type::Tensor(..)) = f.sig.params.get(i).copied() {
                return Err(AdError::Unsupported {
                    func: func.into(),
                    what: format!(
                        "a full Hessian with respect to parameter {i} of type {ty} (use `hvp`)"
                    ),
                });
            }
        }
    }
    let h = hvp(m, func, wrt)?;
    let name = suffixed(func, "hessian", wrt, &all);
    let src = m
        .get(func)
        .ok_or_else(|| AdError::UnknownFunction(func.into()))?;
    let sigs: HashMap<String, Signature> = m
        .funcs
        .iter()
        .map(|f| (f.name.clone(), f.sig.clone()))
        .collect();
    let mut em = Emitter::new(&name, &sigs);
    let params: Vec<_> = src
        .params()
        .iter()
        .map(|&p| em.param(src.ty(p), src.name_of(p).map(str::to_string)))
        .collect();
    let n = wrt.len();
    let mut head = Vec::new();
    let mut rows = Vec::new();
    for i in 0..n {
        let mut args = params.clone();
        for (j, &k) in wrt.iter().enumerate() {
            let ty = em.ty(params[k]);
            args.push(em.float(ty, if i == j { 1.0 } else { 0.0 })?);
        }
        let res = em.ins(Op::Call(h.clone()), &args)?;
        if i == 0 {
            head = res[..=n].to_vec();
        }
        rows.extend_from_slice(&res[n + 1..]);
    }
    if n == 0 {
        let res = em.ins(Op::Call(h.clone()), &params)?;
        head = res.to_vec();
    }
    let mut vals = head;
    vals.extend(rows);
    let f = em.finish(&vals)?;
    m.insert(f);
    Ok(name)
}
