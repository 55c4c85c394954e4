//! The printer: functions and modules in the `.jir` text format.
//!
//! The syntax is the one fixed in DESIGN.md ("The IR"); [`crate::parse`] reads it back,
//! and print → parse → print is the identity. Guarantees:
//!
//! - every value prints under a label that is unique in its function and a valid
//!   identifier: its name ([`Function::value_label`], `vN` when unnamed), with characters
//!   outside `[A-Za-z0-9_.]` (and dots that would start, end or double up) replaced by
//!   `_`; when two values would print alike (passes may copy names), the later one in
//!   program order gets the first free suffix `.1`, `.2`, ..., so the output always
//!   parses back;
//! - two-space indentation per nesting level, one blank line between functions, and
//!   every function ends with a newline;
//! - the printer walks loops with an explicit stack, so arbitrarily deep nesting cannot
//!   overflow the stack, and it never panics, even on IR the verifier would reject
//!   (dangling ids print as `%?vN` and missing operands as `%?`, which do not parse).

use crate::function::{Function, Inst, Module, Region, Value};
use crate::op::{Bound, Format, LoopBounds};
use cranelift_entity::SecondaryMap;
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

/// Prints one function, ending with a newline.
pub fn print_function(f: &Function) -> String {
    let mut out = String::new();
    write_function(&mut out, f);
    out
}

/// Prints a module: its functions in order, separated by one blank line. The text ends
/// with a newline (an empty module prints as the empty string).
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    for (i, f) in m.funcs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_function(&mut out, f);
    }
    out
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_function(self))
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_module(self))
    }
}

/// Makes `name` a valid identifier of the text format: characters outside
/// `[A-Za-z0-9_.]` become `_`, as do dots at either end or next to another dot (the
/// lexer ends an identifier at `..`, the range operator). An empty name becomes `_`.
pub fn sanitize_ident(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, &c) in chars.iter().enumerate() {
        let ok = match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' => true,
            '.' => i > 0 && i + 1 < chars.len() && chars[i - 1] != '.' && chars[i + 1] != '.',
            _ => false,
        };
        out.push(if ok { c } else { '_' });
    }
    out
}

/// Every value defined in `f`, in textual order: the parameters, then for each
/// instruction in program order its results, then its regions' parameters.
fn values_in_text_order(f: &Function) -> Vec<Value> {
    let mut out: Vec<Value> = f.params().to_vec();
    for inst in f.insts_in_order() {
        let Some(data) = f.insts.get(inst) else {
            continue;
        };
        out.extend_from_slice(&data.results);
        for &r in &data.regions {
            if let Some(rd) = f.regions.get(r) {
                out.extend_from_slice(&rd.params);
            }
        }
    }
    out
}

/// The unique printed label (without `%`) of every value `f` defines, as described in
/// the module docs. Values defined nowhere in the body are absent.
pub fn value_labels(f: &Function) -> SecondaryMap<Value, String> {
    let order = values_in_text_order(f);
    let base = |v: Value| -> String {
        match f.values.get(v) {
            Some(_) => sanitize_ident(&f.value_label(v)),
            None => sanitize_ident(&v.to_string()),
        }
    };
    let bases: Vec<String> = order.iter().map(|&v| base(v)).collect();
    let reserved: HashSet<&str> = bases.iter().map(String::as_str).collect();
    let mut used: HashSet<String> = HashSet::with_capacity(order.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let mut labels: SecondaryMap<Value, String> = SecondaryMap::with_capacity(order.len());
    for (&v, b) in order.iter().zip(&bases) {
        if !labels[v].is_empty() {
            continue; // a value listed twice (malformed IR): keep its first label
        }
        let label = if used.contains(b) {
            let n = next_suffix.entry(b.clone()).or_insert(1);
            loop {
                let cand = format!("{b}.{n}");
                *n += 1;
                if !reserved.contains(cand.as_str()) && !used.contains(&cand) {
                    break cand;
                }
            }
        } else {
            b.clone()
        };
        used.insert(label.clone());
        labels[v] = label;
    }
    labels
}

/// Writes `%label` of a value (the printer's unique labels, or the verifier's).
pub(crate) type ValueWriter<'a> = dyn Fn(&mut String, Value) + 'a;

fn vals(out: &mut String, val: &ValueWriter<'_>, vs: &[Value]) {
    for (i, &v) in vs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        val(out, v);
    }
}

/// The next operand, or the placeholder `%?` on malformed IR.
fn next_val(out: &mut String, val: &ValueWriter<'_>, args: &mut std::slice::Iter<'_, Value>) {
    match args.next() {
        Some(&v) => val(out, v),
        None => out.push_str("%?"),
    }
}

/// Writes a loop's `start..end`, taking dynamic bounds from `args`.
fn range(
    out: &mut String,
    val: &ValueWriter<'_>,
    b: LoopBounds,
    args: &mut std::slice::Iter<'_, Value>,
) {
    for (k, bound) in [b.start, b.end].into_iter().enumerate() {
        if k == 1 {
            out.push_str("..");
        }
        match bound {
            Bound::Imm(n) => {
                let _ = write!(out, "{n}");
            }
            Bound::Dyn => next_val(out, val, args),
        }
    }
}

/// Writes `(%a, %b) word (%c) ...`: consecutive groups of `args` of the given sizes (the
/// last group takes the rest), each group after its word.
fn groups(
    out: &mut String,
    val: &ValueWriter<'_>,
    args: std::slice::Iter<'_, Value>,
    sizes: &[(&str, usize)],
) {
    let rest: &[Value] = args.as_slice();
    let mut at = 0;
    for (k, &(word, n)) in sizes.iter().enumerate() {
        let end = if k + 1 == sizes.len() {
            rest.len()
        } else {
            (at + n).min(rest.len())
        };
        if !word.is_empty() {
            out.push_str(word);
            out.push(' ');
        }
        out.push('(');
        vals(out, val, &rest[at..end]);
        out.push(')');
        if k + 1 < sizes.len() {
            out.push(' ');
        }
        at = end;
    }
}

/// Writes one instruction of `f` in the text format, without indentation and newline,
/// naming values with `val`: results, op name, then the operand syntax of the op's
/// [`Format`]. For a loop the line ends with `{` and the result says which body follows.
/// Shared by the printer and the verifier's renderer; never panics, whatever the ids.
pub(crate) fn write_inst(
    out: &mut String,
    f: &Function,
    inst: Inst,
    val: &ValueWriter<'_>,
) -> Line {
    let Some(d) = f.insts.get(inst) else {
        let _ = write!(out, "?{inst}");
        return Line::Plain;
    };
    if !d.results.is_empty() {
        vals(out, val, &d.results);
        out.push_str(" = ");
    }
    out.push_str(d.op.name());
    let mut args = d.args.iter();
    match d.op.format() {
        Format::Literal(c, ty) => {
            let _ = write!(out, " {c} : {ty}");
        }
        Format::Unary | Format::Binary | Format::Ternary | Format::Variadic => {
            if !d.args.is_empty() {
                out.push(' ');
                vals(out, val, &d.args);
            }
        }
        Format::WithImm(n) => {
            out.push(' ');
            vals(out, val, &d.args);
            let _ = write!(out, ", {n}");
        }
        Format::WithType(t) => {
            out.push(' ');
            vals(out, val, &d.args);
            let _ = write!(out, " : {t}");
        }
        Format::WithAxes(axes) => {
            out.push(' ');
            vals(out, val, &d.args);
            let _ = write!(out, ", axes {axes}");
        }
        Format::WithPerm(perm) => {
            out.push(' ');
            vals(out, val, &d.args);
            let _ = write!(out, ", perm {perm}");
        }
        Format::WithRanges(ranges) => {
            out.push(' ');
            vals(out, val, &d.args);
            out.push_str(" [");
            for (k, r) in ranges.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{r}");
            }
            out.push(']');
        }
        Format::WithAxis(axis) => {
            out.push(' ');
            vals(out, val, &d.args);
            let _ = write!(out, ", axis {axis}");
        }
        Format::Indexed => {
            out.push(' ');
            next_val(out, val, &mut args);
            out.push_str(" [");
            vals(out, val, args.as_slice());
            out.push(']');
        }
        Format::IndexedInsert => {
            out.push(' ');
            next_val(out, val, &mut args);
            out.push_str(" into ");
            next_val(out, val, &mut args);
            out.push_str(" [");
            vals(out, val, args.as_slice());
            out.push(']');
        }
        Format::Iota(axis, ty) => {
            let _ = write!(out, " axis {axis} : {ty}");
        }
        Format::Call(callee) => {
            let _ = write!(out, " @{}(", sanitize_ident(callee));
            vals(out, val, &d.args);
            out.push(')');
        }
        Format::TapeLoop(r) => {
            out.push(' ');
            range(out, val, r.bounds, &mut args);
            let _ = write!(
                out,
                " checkpoint {} fwd @{} ",
                r.policy,
                sanitize_ident(&r.fwd)
            );
            groups(out, val, args, &[("", r.state as usize), ("caps", 0)]);
        }
        Format::RevLoop(r) => {
            out.push(' ');
            range(out, val, r.bounds, &mut args);
            let _ = write!(
                out,
                " checkpoint {} fwd @{} bwd @{} ",
                r.policy,
                sanitize_ident(&r.fwd),
                sanitize_ident(&r.bwd)
            );
            if r.tape {
                out.push_str("tape ");
                next_val(out, val, &mut args);
                out.push(' ');
            }
            let sizes = [
                ("", r.state as usize),
                ("caps", r.caps as usize),
                ("seed", 0),
            ];
            groups(out, val, args, &sizes);
        }
        Format::Loop(b) => {
            let region = d.regions.first().copied();
            let params: &[Value] = region
                .and_then(|r| f.regions.get(r))
                .map_or(&[], |rd| rd.params.as_slice());
            out.push(' ');
            match params.first() {
                Some(&i) => val(out, i),
                None => out.push_str("%?"),
            }
            out.push_str(" in ");
            range(out, val, b, &mut args);
            out.push_str(" (");
            // By the inits, so a malformed loop still shows its operands.
            for (k, &init) in args.enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let p = params.get(k + 1).copied();
                match p {
                    Some(p) => val(out, p),
                    None => out.push_str("%?"),
                }
                out.push_str(" = ");
                val(out, init);
                let ty = p.or(Some(init)).and_then(|v| f.values.get(v));
                let _ = write!(out, " : {}", ty.map_or("?".into(), |d| d.ty.to_string()));
            }
            out.push_str(") {");
            return Line::Open(region);
        }
    }
    Line::Plain
}

/// What the printer does after an instruction line.
pub(crate) enum Line {
    /// Nothing more.
    Plain,
    /// Print this loop body (none for a malformed loop), then a closing brace.
    Open(Option<Region>),
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_function(out: &mut String, f: &Function) {
    let labels = value_labels(f);
    let val = |out: &mut String, v: Value| {
        let l = labels.get(v).map_or("", String::as_str);
        if l.is_empty() {
            let _ = write!(out, "%?{v}");
        } else {
            out.push('%');
            out.push_str(l);
        }
    };
    let _ = write!(out, "func @{}(", sanitize_ident(&f.name));
    for (i, &v) in f.params().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        val(out, v);
        let ty = f.values.get(v).map_or("?".into(), |d| d.ty.to_string());
        let _ = write!(out, ": {ty}");
    }
    out.push_str(") -> ");
    match f.sig.results.as_slice() {
        [t] => {
            let _ = write!(out, "{t}");
        }
        ts => {
            out.push('(');
            for (i, t) in ts.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{t}");
            }
            out.push(')');
        }
    }
    out.push_str(" {\n");
    // An explicit stack of (region, next position): loops nest without recursion.
    let mut stack: Vec<(Option<Region>, usize)> = vec![(Some(f.body), 0)];
    while let Some(top) = stack.last_mut() {
        let insts: &[Inst] = top
            .0
            .and_then(|r| f.regions.get(r))
            .map_or(&[], |rd| rd.insts.as_slice());
        if let Some(&inst) = insts.get(top.1) {
            top.1 += 1;
            let depth = stack.len();
            indent(out, depth);
            let line = write_inst(out, f, inst, &val);
            out.push('\n');
            if let Line::Open(region) = line {
                stack.push((region, 0));
            }
        } else {
            stack.pop();
            indent(out, stack.len());
            out.push_str("}\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_identifiers() {
        assert_eq!(sanitize_ident("x"), "x");
        assert_eq!(sanitize_ident("f.jvp"), "f.jvp");
        assert_eq!(sanitize_ident("a b"), "a_b");
        assert_eq!(sanitize_ident(".a..b."), "_a__b_");
        assert_eq!(sanitize_ident(""), "_");
    }
}
