//! `jitad check`: derivatives against finite differences and forward mode, JIT against
//! the interpreter, for every float function of a file (see [`jitad::check`]).

use anyhow::{bail, Context, Result};
use jitad::check::{
    self, FunctionReport, JitAgreement, PointOutcome, Points, Tolerances, DEFAULT_I64, RANDOM_RANGE,
};
use jitad::json::{f64_to_json, val_to_json};
use jitad_ir::{ScalarType, Val};
use std::path::PathBuf;

/// Options of `jitad check`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The .jir file.
    file: PathBuf,
    /// Check only this function (default: every function with float parameters and
    /// float results).
    #[arg(long)]
    func: Option<String>,
    /// Check at this point: comma-separated arguments, one per parameter, as for `run`.
    /// With `--points`, it also gives the i64 and bool parameters of the random points.
    #[arg(long, allow_hyphen_values = true)]
    args: Option<String>,
    /// Check at N random points (default 3 without `--args`, 0 with it).
    #[arg(long, value_name = "N")]
    points: Option<usize>,
    /// Seed of the random points.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON (non-finite numbers as "inf", "-inf", "nan").
    #[arg(long)]
    json: bool,
}

const AFTER_HELP: &str = "\
For each function with float parameters and float results, at each point:
  FD vs reverse       largest error of central finite differences against the reverse-mode
                      gradient (the vjp), relative to the largest gradient entry (floored at
                      1e-6·|f|); must be ≤ 1e-4 (f64) or 1e-2 (f32)
  forward vs reverse  the same for forward mode (the jvp along each parameter);
                      must be ≤ 1e-9 (f64) or 1e-4 (f32)
  JIT vs interp       the function, its vjp and its jvp compiled and interpreted: results
                      equal bit for bit (NaN = NaN), and both engines refuse the same points
Functions with several results, or a tensor result, are checked on ȳ·f for a random ȳ in
[-1, 1] per result element. The coordinates are the elements of the float parameters
(tensors row-major); beyond 24 of them a random sample of 24 is checked per point.
Random points draw float parameters uniformly from [0.1, 0.9]; i64 parameters are 10 and
bool parameters false unless --args gives them. A point where the function cannot be
evaluated (a failed guard, a non-finite value) is reported, not counted as a failure.
Exit status: 0 if nothing disagreed, 1 otherwise (or on bad input).";

/// Runs the check; an error if anything disagreed.
pub fn run(a: &Args) -> Result<()> {
    let traced = super::load(&a.file, a.func.as_deref())?;
    let module = traced.module();
    let names: Vec<String> = match &a.func {
        Some(_) => vec![traced.name().to_string()],
        None => module.funcs.iter().map(|f| f.name.clone()).collect(),
    };
    let random = a.points.unwrap_or(if a.args.is_some() { 0 } else { 3 });
    let mut reports = Vec::new();
    let mut fitted = false;
    let mut misfit = None;
    for name in &names {
        let Some(f) = module.get(name) else { continue };
        let mut points = Points {
            random,
            seed: a.seed,
            ..Points::default()
        };
        if let Some(text) = &a.args {
            match super::parse_args(text, &f.sig.params) {
                Ok(vals) => {
                    fitted = true;
                    points.given = vec![vals.clone()];
                    points.fixed = Some(vals);
                }
                Err(e) if a.func.is_some() => {
                    return Err(e.context(format!("bad --args for @{name}")));
                }
                Err(e) if check::unsupported(&f.sig.params, &f.sig.results).is_none() => {
                    reports.push(FunctionReport {
                        func: name.clone(),
                        skipped: Some(format!("--args do not fit: {e:#}")),
                        notes: vec![],
                        points: vec![],
                    });
                    misfit.get_or_insert_with(|| e.context(format!("bad --args for @{name}")));
                    continue;
                }
                Err(_) => {}
            }
        }
        reports.push(
            check::check_function(&traced, name, &points)
                .with_context(|| format!("checking @{name}"))?,
        );
    }
    if let (false, Some(e)) = (fitted, misfit) {
        return Err(e.context("--args fit no function of the file"));
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if a.json {
        println!("{}", to_json(&reports));
    } else {
        print_table(&a.file, &reports, random, a.seed);
    }
    if failed > 0 {
        bail!(
            "{failed} function(s) disagree: the derivatives or engines above marked FAIL \
             (beyond the tolerances of `jitad check --help`)"
        );
    }
    Ok(())
}

/// Short form of a value for the table.
fn short(v: &Val) -> String {
    if let Val::Tensor(t) = v {
        // The type and the first elements: the table stays one line per point.
        let first: Vec<String> = match t.data() {
            jitad_ir::tensor::TensorData::F64(d) => {
                d.iter().take(2).map(|&x| short(&Val::F64(x))).collect()
            }
            jitad_ir::tensor::TensorData::F32(d) => {
                d.iter().take(2).map(|&x| short(&Val::F32(x))).collect()
            }
            jitad_ir::tensor::TensorData::I64(d) => d.iter().take(2).map(i64::to_string).collect(),
            jitad_ir::tensor::TensorData::Bool(d) => {
                d.iter().take(2).map(bool::to_string).collect()
            }
        };
        let more = if t.data().len() > 2 { ", …" } else { "" };
        return format!("{} [{}{more}]", t.ty(), first.join(", "));
    }
    match v.as_f64() {
        Some(x) if x.is_finite() && x != 0.0 && !(1e-3..1e5).contains(&x.abs()) => {
            format!("{x:.3e}")
        }
        Some(x) if x.is_finite() => {
            let s = format!("{x:.4}");
            let s = s.trim_end_matches('0');
            s.trim_end_matches('.').to_string()
        }
        _ => v.to_string(),
    }
}

fn err(e: f64) -> String {
    if e == 0.0 {
        "0".into()
    } else {
        format!("{e:.1e}")
    }
}

fn print_table(file: &std::path::Path, reports: &[FunctionReport], random: usize, seed: u64) {
    let f64tol = Tolerances::for_type(ScalarType::F64);
    println!(
        "check {}: {} function(s); random points: {random} (seed {seed}, floats uniform in \
         [{}, {}], i64 parameters from --args or {DEFAULT_I64})",
        file.display(),
        reports.len(),
        RANDOM_RANGE.0,
        RANDOM_RANGE.1,
    );
    println!(
        "tolerances (f64): FD vs reverse ≤ {:.0e}, forward vs reverse ≤ {:.0e}; JIT vs interp \
         bit for bit; value: f(x), or ȳ·f(x) for several results (see --help)\n",
        f64tol.fd, f64tol.forward
    );
    println!("| function | point | value | FD vs reverse | forward vs reverse | JIT vs interp | result |");
    println!("|---|---|---:|---:|---:|---|---|");
    let mut reproduce = Vec::new();
    let mut notes = Vec::new();
    for r in reports {
        if let Some(why) = &r.skipped {
            println!("| @{} | — | — | — | — | — | skipped: {why} |", r.func);
            continue;
        }
        for n in &r.notes {
            notes.push(format!("@{}: {n}", r.func));
        }
        for p in &r.points {
            let point = format!(
                "({})",
                p.args.iter().map(short).collect::<Vec<_>>().join(", ")
            );
            let jit = match &p.jit {
                JitAgreement::Equal => "equal".to_string(),
                JitAgreement::Different(_) => "DIFFERENT".to_string(),
                JitAgreement::NotCompiled(_) => "not compiled".to_string(),
            };
            let (value, fd, fwd, mut result) = match &p.outcome {
                PointOutcome::Checked(c) => (
                    short(&Val::F64(c.value)),
                    format!("{}{}", err(c.fd_error), if c.fd_ok() { "" } else { " ✗" }),
                    format!(
                        "{}{}",
                        err(c.forward_error),
                        if c.forward_ok() { "" } else { " ✗" }
                    ),
                    "ok".to_string(),
                ),
                PointOutcome::NotChecked(why) => (
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    format!("not checked: {why}"),
                ),
            };
            if !p.passed() {
                result = "FAIL".into();
                let args: Vec<String> = p.args.iter().map(|v| v.to_string()).collect();
                let mut why = Vec::new();
                if let PointOutcome::Checked(c) = &p.outcome {
                    let list = |v: &[f64]| {
                        v.iter()
                            .map(|x| format!("{x:e}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    why.push(format!("  reverse mode:        ({})", list(&c.reverse)));
                    why.push(format!("  forward mode:        ({})", list(&c.forward)));
                    why.push(format!("  finite differences:  ({})", list(&c.fd)));
                }
                if let JitAgreement::Different(d) = &p.jit {
                    why.push(format!("  JIT vs interpreter:  {d}"));
                }
                let at = if p.args.iter().any(|v| matches!(v, Val::Tensor(_))) {
                    "tensor arguments (their elements: `check --json`)".to_string()
                } else {
                    format!("--args={}", args.join(","))
                };
                reproduce.push(format!("@{} at {at}:\n{}", r.func, why.join("\n")));
            }
            println!(
                "| @{} | {point} | {value} | {fd} | {fwd} | {jit} | {result} |",
                r.func
            );
        }
    }
    for n in notes {
        println!("\nnote: {n}");
    }
    if !reproduce.is_empty() {
        println!("\nDisagreements (re-run one with --func F --args ...):");
        for r in reproduce {
            println!("{r}");
        }
    }
}

fn to_json(reports: &[FunctionReport]) -> serde_json::Value {
    let list = |v: &[f64]| serde_json::Value::Array(v.iter().map(|&x| f64_to_json(x)).collect());
    let functions: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let points: Vec<serde_json::Value> = r
                .points
                .iter()
                .map(|p| {
                    let mut o = serde_json::json!({
                        "args": p.args.iter().map(val_to_json).collect::<Vec<_>>(),
                        "ybar": list(&p.ybar),
                        "passed": p.passed(),
                    });
                    match &p.outcome {
                        PointOutcome::Checked(c) => {
                            o["value"] = f64_to_json(c.value);
                            o["reverse"] = list(&c.reverse);
                            o["forward"] = list(&c.forward);
                            o["fd"] = list(&c.fd);
                            o["fd_error"] = f64_to_json(c.fd_error);
                            o["forward_error"] = f64_to_json(c.forward_error);
                        }
                        PointOutcome::NotChecked(why) => o["not_checked"] = why.as_str().into(),
                    }
                    o["jit"] = match &p.jit {
                        JitAgreement::Equal => "equal".into(),
                        JitAgreement::Different(d) => serde_json::json!({ "different": d }),
                        JitAgreement::NotCompiled(d) => serde_json::json!({ "not_compiled": d }),
                    };
                    o
                })
                .collect();
            let mut o = serde_json::json!({ "function": r.func, "passed": r.passed() });
            if let Some(s) = &r.skipped {
                o["skipped"] = s.as_str().into();
            } else {
                o["notes"] = r.notes.clone().into();
                o["points"] = points.into();
            }
            o
        })
        .collect();
    serde_json::json!({ "functions": functions })
}
