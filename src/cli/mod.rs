//! Argument parsing and dispatch for the `jitad` binary.
//!
//! Every JSON it writes uses [`jitad::json`]'s lossless numbers: finite values exactly,
//! infinities and NaN as the strings "inf", "-inf", "nan".

// `print!`/`println!` for the whole CLI (defined before the submodules so they see
// them): a closed stdout (`jitad dump f.jir | head`) ends the process quietly, as the
// default SIGPIPE action would, where std's macros panic.
macro_rules! print {
    ($($t:tt)*) => {
        $crate::cli::out(format_args!($($t)*))
    };
}
macro_rules! println {
    () => {
        $crate::cli::out(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::cli::out(format_args!("{}\n", format_args!($($t)*)))
    };
}

mod bench;
mod check;
mod demo;

/// Writes to stdout; exits with status 0 if the reader has gone (a broken pipe), 1 on
/// any other write error.
pub(crate) fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use jitad::json::val_to_json;
use jitad::{CompileOptions, Traced, Val};
use jitad_ir::checkpoint::{Policy, Stats};
use jitad_ir::{ScalarType, Type};
use std::path::{Path, PathBuf};

/// jitad: trace once, differentiate as IR, JIT-compile with Cranelift.
#[derive(Parser, Debug)]
#[command(name = "jitad", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The quickstart example f(x,y) = (x+y)(x-y) end to end: IR, tangent and adjoint
    /// IR, compiled value and gradient checked against finite differences, speed.
    Demo,
    /// Parse and verify a .jir file, then print a stage of it.
    Dump {
        /// The .jir file.
        file: PathBuf,
        /// Function to start from (default: the first in the file; `--emit ir` without
        /// `--func` prints every function).
        #[arg(long)]
        func: Option<String>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Emit::Ir)]
        emit: Emit,
        /// Differentiate with respect to these parameters only (comma-separated
        /// indices; default: every float parameter).
        #[arg(long, value_delimiter = ',')]
        wrt: Option<Vec<usize>>,
        /// For `--emit clif|asm|dot`: which function to show (default: the function
        /// itself).
        #[arg(long, value_enum, default_value_t = Stage::Primal)]
        of: Stage,
        #[command(flatten)]
        ckpt: Checkpointing,
    },
    /// Evaluate a function of a .jir file (JIT-compiled unless `--engine interp`).
    Run {
        /// The .jir file.
        file: PathBuf,
        /// Function to run (default: the first in the file).
        #[arg(long)]
        func: Option<String>,
        /// Comma-separated arguments, one per parameter (`3,2`; `nan`, `inf`,
        /// `true` as the parameter types need).
        #[arg(long, allow_hyphen_values = true, default_value = "")]
        args: String,
        /// A JSON file with the arguments instead of `--args`: an array with one entry
        /// per parameter, or an object keyed by parameter name (`{"x": 2.0, "w": ...}`);
        /// a number (or bool; "inf", "-inf", "nan") for a scalar, and for a tensor a
        /// (nested or flat) array of its elements in row-major order or
        /// `{"shape": [2, 2], "data": [...]}`: `[2.0, [[1, 2], [3, 4]]]`.
        #[arg(long, conflicts_with = "args")]
        inputs: Option<PathBuf>,
        /// Also compute the gradient (the function must have one float result).
        #[arg(long)]
        grad: bool,
        /// With `--grad`: differentiate with respect to these parameters only.
        #[arg(long, value_delimiter = ',')]
        wrt: Option<Vec<usize>>,
        /// Which engine evaluates the function.
        #[arg(long, value_enum, default_value_t = Engine::Jit)]
        engine: Engine,
        /// Print `{"results": [...]}` (and `"gradient": [...]` with `--grad`, and
        /// `"stats": {...}` when loops were reversed) as JSON. Numbers read back exactly:
        /// infinities and NaN are the strings "inf", "-inf", "nan".
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ckpt: Checkpointing,
    },
    /// Run the benchmark suite: hand-written, JIT, interpreter, tape, forward-mode JIT.
    Bench(bench::Args),
    /// Check a file's derivatives: reverse mode against finite differences and forward
    /// mode, and the JIT against the interpreter, at given or random points; exits 1 on
    /// disagreement.
    Check(check::Args),
}

/// How reverse mode stores loop states (`--checkpoint`, `--mem-budget`).
#[derive(clap::Args, Debug, Clone)]
struct Checkpointing {
    /// Checkpointing policy of reverse sweeps through loops: store-all, binomial:S,
    /// every:K, recompute (default: store-all if the tape fits the memory budget,
    /// binomial within it otherwise).
    #[arg(long, value_name = "POLICY")]
    checkpoint: Option<Policy>,
    /// Memory budget of the default policy, in bytes (default 256 MiB).
    #[arg(long, value_name = "BYTES", conflicts_with = "checkpoint")]
    mem_budget: Option<u64>,
}

impl Checkpointing {
    /// The policy asked for, if any.
    fn policy(&self) -> Option<Policy> {
        self.checkpoint.or(self.mem_budget.map(Policy::Auto))
    }

    fn apply(&self, t: Traced) -> Traced {
        match self.policy() {
            Some(p) => t.with_checkpoint(p),
            None => t,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The verified IR, printed back.
    Ir,
    /// The IR after the clean-up pipeline (DCE, CSE, constant folding, simplification).
    Opt,
    /// Forward mode: `(x, dx) -> (y, dy)`, optimised.
    Jvp,
    /// Reverse mode: `(x, ybar) -> (y, xbar)`, optimised.
    Vjp,
    /// Value and gradient: `(x) -> (y, g)`, optimised.
    Grad,
    /// Hessian-vector product: `(x, v) -> (y, g, Hv)`, optimised.
    Hvp,
    /// Cranelift IR of the compiled function (see `--of`).
    Clif,
    /// Machine code listing of the compiled function (see `--of`).
    Asm,
    /// Graphviz DOT of the computational graph (see `--of`); tangents blue, adjoints red.
    Dot,
    /// The compiled schedule of a tensor function (see `--of`): its fusion groups (one
    /// loop each), the runtime ops between them, and the workspace it needs.
    Fusion,
}

/// A derivative stage, for `--of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// The function as written.
    Primal,
    /// Its optimised jvp.
    Jvp,
    /// Its optimised vjp.
    Vjp,
    /// Its optimised grad.
    Grad,
    /// Its optimised hvp.
    Hvp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// Cranelift-compiled machine code.
    Jit,
    /// The reference interpreter.
    Interp,
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Dump {
            file,
            func,
            emit,
            wrt,
            of,
            ckpt,
        } => dump(&file, func.as_deref(), emit, wrt.as_deref(), of, &ckpt),
        Command::Run {
            file,
            func,
            args,
            inputs,
            grad,
            wrt,
            engine,
            json,
            ckpt,
        } => {
            let traced = load(&file, func.as_deref())?;
            let params = &traced.function().sig.params;
            let vals = match &inputs {
                Some(path) => read_inputs(path, params, &param_names(traced.function()))
                    .with_context(|| format!("bad --inputs for @{}", traced.name()))?,
                None => parse_args(&args, params)
                    .with_context(|| format!("bad --args for @{}", traced.name()))?,
            };
            if grad {
                let g = ckpt.apply(derive(&traced, Stage::Grad, wrt.as_deref())?);
                let (out, stats) = evaluate(&g, &vals, engine)?;
                let (value, gradient) = out.split_at(1);
                print_results(value, Some(gradient), &stats, json);
            } else {
                if wrt.is_some() {
                    bail!("--wrt needs --grad");
                }
                let (out, stats) = evaluate(&ckpt.apply(traced), &vals, engine)?;
                print_results(&out, None, &stats, json);
            }
            Ok(())
        }
    }
}

fn dump(
    file: &Path,
    func: Option<&str>,
    emit: Emit,
    wrt: Option<&[usize]>,
    of: Stage,
    ckpt: &Checkpointing,
) -> Result<()> {
    let traced = load(file, func)?;
    let derive = |t: &Traced, s: Stage, w: Option<&[usize]>| derive(t, s, w).map(|d| ckpt.apply(d));
    if of != Stage::Primal && !matches!(emit, Emit::Clif | Emit::Asm | Emit::Dot | Emit::Fusion) {
        bail!("--of applies to --emit clif, asm, dot and fusion only");
    }
    if wrt.is_some() && matches!(emit, Emit::Ir | Emit::Opt) {
        bail!("--wrt applies to derivatives only (--emit jvp|vjp|grad|hvp, or --of)");
    }
    match emit {
        Emit::Ir if func.is_none() => print!("{}", jitad_ir::print_module(traced.module())),
        Emit::Ir => print!("{}", traced.to_jir()),
        Emit::Opt => print!("{}", traced.optimize().to_jir()),
        Emit::Jvp => print!("{}", derive(&traced, Stage::Jvp, wrt)?.to_jir()),
        Emit::Vjp => print!("{}", derive(&traced, Stage::Vjp, wrt)?.to_jir()),
        Emit::Grad => print!("{}", derive(&traced, Stage::Grad, wrt)?.to_jir()),
        Emit::Hvp => print!("{}", derive(&traced, Stage::Hvp, wrt)?.to_jir()),
        Emit::Dot => {
            let t = derive(&traced, of, wrt)?;
            print!("{}", jitad_ir::dot::function_to_dot(t.function()));
        }
        Emit::Clif | Emit::Asm | Emit::Fusion => {
            let t = derive(&traced, of, wrt)?;
            let opts = CompileOptions {
                emit_text: true,
                ..CompileOptions::default()
            };
            let c = t.compile_with(&opts)?;
            let text = match emit {
                Emit::Clif => c.clif_text(),
                Emit::Fusion => c.fusion_text(),
                _ => c.asm_text(),
            };
            print!("{}", text.unwrap_or_default());
        }
    }
    Ok(())
}

/// The derived stage of `t` (or `t` itself for `Primal`).
fn derive(t: &Traced, stage: Stage, wrt: Option<&[usize]>) -> Result<Traced> {
    Ok(match (stage, wrt) {
        (Stage::Primal, _) => t.clone(),
        (Stage::Jvp, None) => t.jvp()?,
        (Stage::Jvp, Some(w)) => t.jvp_wrt(w)?,
        (Stage::Vjp, None) => t.vjp()?,
        (Stage::Vjp, Some(w)) => t.vjp_wrt(w)?,
        (Stage::Grad, None) => t.grad()?,
        (Stage::Grad, Some(w)) => t.grad_wrt(w)?,
        (Stage::Hvp, None) => t.hvp()?,
        (Stage::Hvp, Some(w)) => t.hvp_wrt(w)?,
    })
}

/// Evaluates `t` on `args` with the chosen engine; also returns what its reverse
/// sweeps through loops did.
fn evaluate(t: &Traced, args: &[Val], engine: Engine) -> Result<(Vec<Val>, Stats)> {
    match engine {
        Engine::Interp => Ok(t.eval_with_stats(args)?),
        Engine::Jit => {
            let c = t.compile()?;
            let mut out: Vec<Val> = c.results().iter().map(|&ty| zero(ty)).collect();
            let stats = c.call_with_stats(args, &mut out)?;
            Ok((out, stats))
        }
    }
}

fn zero(ty: ScalarType) -> Val {
    match ty {
        ScalarType::F64 => Val::F64(0.0),
        ScalarType::F32 => Val::F32(0.0),
        ScalarType::I64 => Val::I64(0),
        ScalarType::Bool => Val::Bool(false),
    }
}

/// Reads, parses and verifies a `.jir` file; `func` names the entry (default: first).
fn load(path: &Path, func: Option<&str>) -> Result<Traced> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Traced::from_jir(&src, func).map_err(|e| match e {
        jitad::Error::Verify(errors) => {
            anyhow!("{}: verifier errors:\n{errors}", path.display())
        }
        e => anyhow!("{}:{e}", path.display()),
    })
}

/// Parses `--args` against the parameter types.
fn parse_args(text: &str, params: &[Type]) -> Result<Vec<Val>> {
    let parts: Vec<&str> = if text.trim().is_empty() {
        vec![]
    } else {
        text.split(',').map(str::trim).collect()
    };
    if parts.len() != params.len() {
        bail!(
            "expected {} argument(s) ({}), got {}",
            params.len(),
            params
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            parts.len()
        );
    }
    parts
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (s, ty))| parse_val(s, *ty).with_context(|| format!("argument {i} `{s}`")))
        .collect()
}

/// The parameters' names (without `%`), where they have one.
fn param_names(f: &jitad_ir::Function) -> Vec<Option<String>> {
    f.params()
        .iter()
        .map(|&p| f.name_of(p).map(str::to_string))
        .collect()
}

/// Reads `--inputs`: a JSON array with one entry per parameter, or an object keyed by
/// parameter name (see `Command::Run` and [`jitad::json::json_to_args`]).
fn read_inputs(path: &Path, params: &[Type], names: &[Option<String>]) -> Result<Vec<Val>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(jitad::json::json_to_args(&json, params, names)?)
}

fn parse_val(s: &str, ty: Type) -> Result<Val> {
    let scalar = ty.scalar().ok_or_else(|| {
        anyhow!(
            "tensor parameters ({ty}) cannot be given with --args: pass a JSON file with \
             --inputs"
        )
    })?;
    Ok(match scalar {
        ScalarType::F64 => Val::F64(parse_float(s)?),
        ScalarType::F32 => Val::F32(parse_float(s)? as f32),
        ScalarType::I64 => Val::I64(s.parse().map_err(|_| anyhow!("expected an i64"))?),
        ScalarType::Bool => Val::Bool(match s {
            "true" => true,
            "false" => false,
            _ => bail!("expected `true` or `false`"),
        }),
    })
}

fn parse_float(s: &str) -> Result<f64> {
    match s {
        "nan" => Ok(f64::NAN),
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| anyhow!("expected a number")),
    }
}

/// Prints results one per line (then `gradient: g0, g1, ...`), or as
/// `{"results": [...], "gradient": [...]}` with [`jitad::json`]'s lossless numbers
/// (NaN and infinities as the strings "nan", "inf", "-inf").
fn print_results(results: &[Val], gradient: Option<&[Val]>, stats: &Stats, json: bool) {
    if json {
        let arr: Vec<serde_json::Value> = results.iter().map(val_to_json).collect();
        let mut obj = serde_json::json!({ "results": arr });
        if let Some(g) = gradient {
            obj["gradient"] = g.iter().map(val_to_json).collect();
        }
        if stats.sweeps > 0 {
            obj["stats"] = serde_json::json!({
                "sweeps": stats.sweeps,
                "snapshots": stats.snapshots,
                "peak_tape_bytes": stats.peak_tape_bytes,
                "forward_steps": stats.forward_steps,
                "backward_steps": stats.backward_steps,
            });
        }
        println!("{obj}");
    } else {
        for r in results {
            println!("{r}");
        }
        if let Some(g) = gradient {
            let g: Vec<String> = g.iter().map(|v| v.to_string()).collect();
            println!("gradient: {}", g.join(", "));
        }
        if stats.sweeps > 0 {
            println!(
                "reverse sweeps: {}, snapshots: {}, peak tape: {} bytes, forward steps: {}, \
                 backward steps: {}",
                stats.sweeps,
                stats.snapshots,
                stats.peak_tape_bytes,
                stats.forward_steps,
                stats.backward_steps
            );
        }
    }
}
