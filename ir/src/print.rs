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
//!   (dangling ids print as `%?vN`, which does not parse).

use crate::function::{Function, Inst, Module, Region, Value};
use crate::op::{Bound, LoopBounds, Op};
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

struct Printer<'a> {
    f: &'a Function,
    labels: SecondaryMap<Value, String>,
}

impl Printer<'_> {
    fn val(&self, out: &mut String, v: Value) {
        let l = &self.labels[v];
        if l.is_empty() {
            let _ = write!(out, "%?{v}");
        } else {
            out.push('%');
            out.push_str(l);
        }
    }

    fn vals(&self, out: &mut String, vs: &[Value]) {
        for (i, &v) in vs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.val(out, v);
        }
    }

    /// Writes a loop's `start..end`, taking dynamic bounds from `args`.
    fn range(&self, out: &mut String, b: LoopBounds, args: &mut std::slice::Iter<'_, Value>) {
        for (k, bound) in [b.start, b.end].into_iter().enumerate() {
            if k == 1 {
                out.push_str("..");
            }
            match bound {
                Bound::Imm(n) => {
                    let _ = write!(out, "{n}");
                }
                Bound::Dyn => match args.next() {
                    Some(&v) => self.val(out, v),
                    None => out.push_str("%?bound"),
                },
            }
        }
    }

    fn ty(&self, v: Value) -> String {
        match self.f.values.get(v) {
            Some(d) => d.ty.to_string(),
            None => "?".into(),
        }
    }

    /// Writes one instruction line (without indentation and newline). For a loop the
    /// line ends with `{` and the result says which body to print next.
    fn inst(&self, out: &mut String, inst: Inst) -> Line {
        let Some(d) = self.f.insts.get(inst) else {
            let _ = write!(out, "?{inst}");
            return Line::Plain;
        };
        if !d.results.is_empty() {
            self.vals(out, &d.results);
            out.push_str(" = ");
        }
        out.push_str(d.op.name());
        match &d.op {
            Op::Const(c) => {
                let _ = write!(out, " {c} : {}", c.ty());
            }
            Op::Powi(n) => {
                out.push(' ');
                self.vals(out, &d.args);
                let _ = write!(out, ", {n}");
            }
            Op::Cast(t) => {
                out.push(' ');
                self.vals(out, &d.args);
                let _ = write!(out, " : {t}");
            }
            Op::Call(callee) => {
                let _ = write!(out, " @{}(", sanitize_ident(callee));
                self.vals(out, &d.args);
                out.push(')');
            }
            Op::RevLoop(r) => {
                out.push(' ');
                let mut args = d.args.iter();
                self.range(out, r.bounds, &mut args);
                let _ = write!(
                    out,
                    " checkpoint {} fwd @{} bwd @{} ",
                    r.policy,
                    sanitize_ident(&r.fwd),
                    sanitize_ident(&r.bwd)
                );
                if r.tape {
                    out.push_str("tape ");
                    match args.next() {
                        Some(&t) => self.val(out, t),
                        None => out.push_str("%?tape"),
                    }
                    out.push(' ');
                }
                out.push('(');
                let rest: Vec<Value> = args.copied().collect();
                let ns = (r.state as usize).min(rest.len());
                let nc = (r.caps as usize).min(rest.len() - ns);
                self.vals(out, &rest[..ns]);
                out.push_str(") caps (");
                self.vals(out, &rest[ns..ns + nc]);
                out.push_str(") seed (");
                self.vals(out, &rest[ns + nc..]);
                out.push(')');
            }
            Op::TapeLoop(r) => {
                out.push(' ');
                let mut args = d.args.iter();
                self.range(out, r.bounds, &mut args);
                let _ = write!(
                    out,
                    " checkpoint {} fwd @{} (",
                    r.policy,
                    sanitize_ident(&r.fwd)
                );
                let rest: Vec<Value> = args.copied().collect();
                let ns = (r.state as usize).min(rest.len());
                self.vals(out, &rest[..ns]);
                out.push_str(") caps (");
                self.vals(out, &rest[ns..]);
                out.push(')');
            }
            Op::Loop(b) => {
                let region = d.regions.first().copied();
                let params: &[Value] = region
                    .and_then(|r| self.f.regions.get(r))
                    .map_or(&[], |rd| rd.params.as_slice());
                out.push(' ');
                match params.first() {
                    Some(&i) => self.val(out, i),
                    None => out.push_str("%?index"),
                }
                out.push_str(" in ");
                let mut args = d.args.iter();
                self.range(out, *b, &mut args);
                out.push_str(" (");
                let inits: Vec<Value> = args.copied().collect();
                let carried = params.get(1..).unwrap_or(&[]);
                for (k, (&p, &init)) in carried.iter().zip(&inits).enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    self.val(out, p);
                    out.push_str(" = ");
                    self.val(out, init);
                    let _ = write!(out, " : {}", self.ty(p));
                }
                out.push_str(") {");
                return Line::Open(region);
            }
            _ => {
                if !d.args.is_empty() {
                    out.push(' ');
                    self.vals(out, &d.args);
                }
            }
        }
        Line::Plain
    }
}

/// What the printer does after an instruction line.
enum Line {
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
    let p = Printer {
        f,
        labels: value_labels(f),
    };
    let _ = write!(out, "func @{}(", sanitize_ident(&f.name));
    for (i, &v) in f.params().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        p.val(out, v);
        let _ = write!(out, ": {}", p.ty(v));
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
            let line = p.inst(out, inst);
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
