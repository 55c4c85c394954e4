//! `jitad bench`: the benchmark suite ([`jitad::suite`]) as one table, or JSON rows.
//!
//! Criterion (`cargo bench`) is the careful measurement; this command is the quick,
//! readable one: per case it calibrates a batch of calls, takes the median of several
//! batches, and prints each leg's median and its ratio to hand-written Rust.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use jitad::json::f64_to_json;
use jitad::suite::{self, Case, Leg, Rosenbrock};
use std::time::Duration;

/// Options of `jitad bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Fewer, shorter samples and no n = 10⁴/10⁵ rows (finishes in well under a minute).
    #[arg(long)]
    quick: bool,
    /// Print an array of `{"problem", "n", "leg", "median_ns"}` rows instead of tables
    /// (non-finite numbers as the strings "inf", "-inf", "nan").
    #[arg(long)]
    json: bool,
    /// Run only the problems whose name contains this (`quickstart`, `rosenbrock`,
    /// `mlp`; `compile` selects the compile-time rows).
    filter: Option<String>,
}

/// One measured row.
struct Row {
    problem: &'static str,
    n: usize,
    leg: Leg,
    median_ns: f64,
}

/// Runs the suite.
pub fn run(args: &Args) -> Result<()> {
    let (samples, sample_time) = if args.quick {
        (5, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(100))
    };
    let wanted = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    let compile_sizes: &[usize] = match (wanted("compile"), args.quick) {
        (false, _) => &[],
        (true, true) => &[1000, 10_000],
        (true, false) => &[1000, 10_000, 100_000],
    };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("tracing, differentiating and compiling the problems");
    let mut groups = suite::all_cases(args.quick, &wanted)?;
    let total: usize = groups.iter().map(Vec::len).sum::<usize>() + compile_sizes.len();
    bar.set_length(total as u64);

    let mut rows = Vec::new();
    for group in &mut groups {
        for case in group.iter_mut() {
            bar.set_message(format!("{} n={} {}", case.problem, case.n, case.leg.name()));
            rows.push(measure(case, samples, sample_time));
            bar.inc(1);
        }
    }
    let mut compile = Vec::new();
    for &n in compile_sizes {
        bar.set_message(format!("trace + grad + compile, rosenbrock n={n}"));
        let reps = if n <= 10_000 { 3 } else { 1 };
        let mut runs = (0..reps)
            .map(|_| suite::compile_times(&Rosenbrock(n)))
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by_key(|t| t.total());
        compile.push((n, runs.swap_remove(runs.len() / 2)));
        bar.inc(1);
    }
    bar.finish_and_clear();

    if args.json {
        let mut out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "problem": r.problem, "n": r.n, "leg": r.leg.name(),
                    "median_ns": f64_to_json(r.median_ns)
                })
            })
            .collect();
        for (n, t) in &compile {
            out.push(serde_json::json!({
                "problem": "rosenbrock", "n": n, "leg": "compile",
                "median_ns": f64_to_json(t.total().as_nanos() as f64),
                "trace_ns": f64_to_json(t.trace.as_nanos() as f64),
                "ad_ns": f64_to_json(t.ad.as_nanos() as f64),
                "compile_ns": f64_to_json(t.compile.as_nanos() as f64),
                "cranelift_ns": f64_to_json(t.cranelift.as_nanos() as f64),
                "primal_insts": t.primal_insts,
                "grad_insts": t.grad_insts,
            }));
        }
        println!("{}", serde_json::Value::Array(out));
        return Ok(());
    }

    println!("Value + gradient per call: median time, and its ratio to hand-written Rust.\n");
    print!("| problem | n |");
    for leg in Leg::ALL {
        print!(" {} |", leg.name());
    }
    println!();
    println!("|---|---:|{}", "---:|".repeat(Leg::ALL.len()));
    let mut i = 0;
    while i < rows.len() {
        let (problem, n) = (rows[i].problem, rows[i].n);
        let group: Vec<&Row> = rows[i..]
            .iter()
            .take_while(|r| r.problem == problem && r.n == n)
            .collect();
        i += group.len();
        let hand = group
            .iter()
            .find(|r| r.leg == Leg::Hand)
            .map_or(f64::NAN, |r| r.median_ns);
        print!("| {problem} | {n} |");
        for leg in Leg::ALL {
            match group.iter().find(|r| r.leg == leg) {
                Some(r) if leg == Leg::Hand => print!(" {} |", fmt_ns(r.median_ns)),
                Some(r) => print!(" {} ({:.2}×) |", fmt_ns(r.median_ns), r.median_ns / hand),
                None => print!(" — |"),
            }
        }
        println!();
    }
    if compile.is_empty() {
        return Ok(());
    }
    println!("\nTrace + grad + compile, extended Rosenbrock (wall clock):\n");
    println!(
        "| n | primal insts | grad insts | trace | AD + clean-up | compile (Cranelift) | total |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (n, t) in &compile {
        println!(
            "| {n} | {} | {} | {} | {} | {} ({}) | {} |",
            t.primal_insts,
            t.grad_insts,
            fmt_dur(t.trace),
            fmt_dur(t.ad),
            fmt_dur(t.compile),
            fmt_dur(t.cranelift),
            fmt_dur(t.total())
        );
    }
    Ok(())
}

fn measure(case: &mut Case, samples: usize, sample_time: Duration) -> Row {
    Row {
        problem: case.problem,
        n: case.n,
        leg: case.leg,
        median_ns: case.median_ns(samples, sample_time),
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn fmt_dur(d: Duration) -> String {
    fmt_ns(d.as_nanos() as f64)
}
