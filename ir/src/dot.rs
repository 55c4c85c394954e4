//! Graphviz pictures of a function's computational graph (`jitad dump --emit dot`).
//!
//! Inputs are boxes at the top, each instruction an ellipse labelled with its op, outputs
//! a box at the bottom; an edge runs from each operand to its user. A loop is a cluster
//! holding its body. Derived values are styled apart so the sweeps can be seen: adjoints
//! (named `…_bar` by the reverse-mode pass) in red, tangents (named `d…` after a primal
//! value of the function, by the forward-mode pass) in blue, primal values in black.

use crate::function::{Function, Inst, Region, Value, ValueDef};
use crate::op::{Format, Op};
use std::collections::HashSet;
use std::fmt::Write;

/// What part of a derivative computation a value belongs to, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An ordinary value.
    Primal,
    /// A tangent (forward mode).
    Tangent,
    /// An adjoint (reverse mode).
    Adjoint,
}

impl Role {
    fn style(self) -> &'static str {
        match self {
            Role::Primal => "color=black",
            Role::Tangent => "color=\"#1f5fbf\", fontcolor=\"#1f5fbf\"",
            Role::Adjoint => "color=\"#c0392b\", fontcolor=\"#c0392b\"",
        }
    }
}

/// Classifies values by the naming conventions of the AD passes.
struct Roles<'a> {
    f: &'a Function,
    names: HashSet<&'a str>,
}

impl<'a> Roles<'a> {
    fn new(f: &'a Function) -> Self {
        let names = f.names.values().map(String::as_str).collect();
        Roles { f, names }
    }

    fn of(&self, v: Value) -> Role {
        let Some(name) = self.f.name_of(v) else {
            return Role::Primal;
        };
        let base = name.split('.').next().unwrap_or(name);
        if base.ends_with("_bar") {
            Role::Adjoint
        } else if base.len() > 1 && base.starts_with('d') && self.names.contains(&base[1..]) {
            Role::Tangent
        } else {
            Role::Primal
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn node_id(v: Value, f: &Function) -> String {
    match f.values[v].def {
        ValueDef::Param(..) => format!("p{}", v.as_u32()),
        ValueDef::Result(inst, _) => format!("i{}", inst.as_u32()),
    }
}

/// The DOT text of `f`'s graph.
pub fn function_to_dot(f: &Function) -> String {
    let roles = Roles::new(f);
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", esc(&f.name));
    out.push_str("  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n");
    out.push_str("  edge [color=\"#555555\", arrowsize=0.6];\n");
    let _ = writeln!(out, "  label=\"@{}\"; labelloc=t;", esc(&f.name));
    for &p in f.params() {
        let _ = writeln!(
            out,
            "  p{} [shape=box, label=\"%{}: {}\", {}];",
            p.as_u32(),
            esc(&f.value_label(p)),
            f.ty(p),
            roles.of(p).style()
        );
    }
    region(f, &roles, f.body, 1, &mut out);
    out.push_str("}\n");
    out
}

fn region(f: &Function, roles: &Roles, r: Region, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for &inst in &f.regions[r].insts {
        instruction(f, roles, inst, depth, &pad, out);
    }
}

fn instruction(f: &Function, roles: &Roles, inst: Inst, depth: usize, pad: &str, out: &mut String) {
    let data = &f.insts[inst];
    let id = format!("i{}", inst.as_u32());
    match &data.op {
        Op::Ret | Op::Yield => {
            let what = if matches!(data.op, Op::Ret) {
                "ret"
            } else {
                "yield"
            };
            let _ = writeln!(
                out,
                "{pad}{id} [shape=box, style=rounded, label=\"{what}\"];"
            );
        }
        Op::Loop(_) => {
            let labels: Vec<String> = data
                .results
                .iter()
                .map(|&v| format!("%{}", f.value_label(v)))
                .collect();
            let _ = writeln!(
                out,
                "{pad}{id} [shape=box, label=\"{} = loop\"];",
                esc(&labels.join(", "))
            );
            for &body in &data.regions {
                let _ = writeln!(out, "{pad}subgraph cluster_{} {{", body.as_u32());
                let _ = writeln!(out, "{pad}  label=\"loop body\"; style=dashed;");
                for &p in &f.regions[body].params {
                    let _ = writeln!(
                        out,
                        "{pad}  p{} [shape=box, label=\"%{}\", {}];",
                        p.as_u32(),
                        esc(&f.value_label(p)),
                        roles.of(p).style()
                    );
                }
                region(f, roles, body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
        }
        op => {
            let result = data.results.first().copied();
            let role = result.map_or(Role::Primal, |v| roles.of(v));
            let name = data
                .results
                .iter()
                .map(|&v| format!("%{}", f.value_label(v)))
                .collect::<Vec<_>>()
                .join(", ");
            // The op and its payload, by format (operands are the graph's edges).
            let opn = op.name();
            let label = match op.format() {
                Format::Literal(c, t) if t.scalar().is_some() => format!("{name} = {c}"),
                Format::Literal(c, t) => format!("{name} = {opn} {c} : {t}"),
                Format::WithAxes(a) => format!("{name} = {opn} axes {a}"),
                Format::WithPerm(p) => format!("{name} = {opn} perm {p}"),
                Format::WithAxis(a) => format!("{name} = {opn} axis {a}"),
                Format::Iota(a, t) => format!("{name} = {opn} axis {a} : {t}"),
                Format::WithRanges(r) => format!(
                    "{name} = {opn} [{}]",
                    r.iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Format::WithImm(n) => format!("{name} = {opn} {n}"),
                Format::WithType(t) => format!("{name} = {opn} : {t}"),
                Format::Call(callee) => format!("{name} = {opn} @{callee}"),
                Format::RevLoop(r) => format!("{name} = {opn} @{} ({})", r.bwd, r.policy),
                Format::TapeLoop(r) => format!("{name} = {opn} @{} ({})", r.fwd, r.policy),
                Format::Unary
                | Format::Binary
                | Format::Ternary
                | Format::Variadic
                | Format::Indexed
                | Format::IndexedInsert
                | Format::Loop(_) => {
                    if name.is_empty() {
                        opn.to_string()
                    } else {
                        format!("{name} = {opn}")
                    }
                }
            };
            let _ = writeln!(
                out,
                "{pad}{id} [label=\"{}\", {}];",
                esc(&label),
                role.style()
            );
        }
    }
    for &a in &data.args {
        if (a.as_u32() as usize) < f.values.len() {
            let _ = writeln!(out, "{pad}{} -> {id};", node_id(a, f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::FunctionBuilder;
    use crate::types::Type;

    #[test]
    fn quickstart_graph_has_every_node_and_edge() {
        let mut b = FunctionBuilder::new("f");
        let x = b.named_param("x", Type::F64);
        let y = b.named_param("y", Type::F64);
        let a = b.ins1(Op::Add, &[x, y]).unwrap();
        let s = b.ins1(Op::Sub, &[x, y]).unwrap();
        let c = b.ins1(Op::Mul, &[a, s]).unwrap();
        b.set_name(c, "c_bar");
        b.ret(&[c]).unwrap();
        let f = b.finish().unwrap();
        let dot = function_to_dot(&f);
        assert!(dot.starts_with("digraph \"f\" {"));
        assert_eq!(dot.matches(" -> ").count(), 7, "{dot}");
        assert!(dot.contains("label=\"%x: f64\""));
        assert!(dot.contains("%c_bar = mul\", color=\"#c0392b\""), "{dot}");
    }
}
