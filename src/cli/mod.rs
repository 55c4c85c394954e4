//! Argument parsing and dispatch for the `jitad` binary.

mod demo;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use jitad_ir::interp::Val;
use jitad_ir::{Module, ScalarType, Type};
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
    /// The quickstart example f(x,y) = (x+y)(x-y) end to end.
    Demo,
    /// Parse and verify a .jir file, then print a stage of it.
    Dump {
        /// The .jir file.
        file: PathBuf,
        /// Function to show (default: every function for `ir`, the first one otherwise).
        #[arg(long)]
        func: Option<String>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Emit::Ir)]
        emit: Emit,
    },
    /// Evaluate a function of a .jir file.
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
        /// Print `{"results": [...]}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The verified IR, printed back.
    Ir,
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo => demo::run(),
        Command::Dump { file, func, emit } => {
            let module = load(&file)?;
            match emit {
                Emit::Ir => match func {
                    Some(name) => {
                        let f = module
                            .get(&name)
                            .ok_or_else(|| anyhow!("no function @{name} in {}", file.display()))?;
                        print!("{}", jitad_ir::print::print_function(f));
                    }
                    None => print!("{}", jitad_ir::print::print_module(&module)),
                },
            }
            Ok(())
        }
        Command::Run {
            file,
            func,
            args,
            json,
        } => {
            let module = load(&file)?;
            let name = entry_name(&module, func.as_deref())?;
            let f = module
                .get(&name)
                .ok_or_else(|| anyhow!("no function @{name}"))?;
            let vals = parse_args(&args, &f.sig.params)
                .with_context(|| format!("bad --args for @{name}"))?;
            let results = jitad_ir::interp::eval(&module, &name, &vals)?;
            print_results(&results, json);
            Ok(())
        }
    }
}

/// Reads, parses and verifies a `.jir` file.
fn load(path: &Path) -> Result<Module> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let module =
        jitad_ir::parse::parse_module(&src).map_err(|e| anyhow!("{}:{e}", path.display()))?;
    jitad_ir::verify::verify_module(&module)
        .map_err(|e| anyhow!("{}: verifier errors:\n{e}", path.display()))?;
    Ok(module)
}

/// The function to run: the one named, or the first in the file.
fn entry_name(module: &Module, func: Option<&str>) -> Result<String> {
    match func {
        Some(n) => {
            let n = n.strip_prefix('@').unwrap_or(n);
            if module.get(n).is_none() {
                bail!("no function @{n}");
            }
            Ok(n.to_string())
        }
        None => module
            .funcs
            .first()
            .map(|f| f.name.clone())
            .ok_or_else(|| anyhow!("the file has no functions")),
    }
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

fn parse_val(s: &str, ty: Type) -> Result<Val> {
    let scalar = ty
        .scalar()
        .ok_or_else(|| anyhow!("tensor parameters ({ty}) cannot be given on the command line"))?;
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

/// Prints results one per line, or as `{"results": [...]}`. JSON has no NaN or
/// infinities; they print as `null`.
fn print_results(results: &[Val], json: bool) {
    if json {
        let arr: Vec<serde_json::Value> = results.iter().map(val_json).collect();
        println!("{}", serde_json::json!({ "results": arr }));
    } else {
        for r in results {
            println!("{r}");
        }
    }
}

fn val_json(v: &Val) -> serde_json::Value {
    match *v {
        Val::F64(x) => serde_json::json!(x),
        Val::F32(x) => serde_json::json!(x),
        Val::I64(x) => serde_json::json!(x),
        Val::Bool(x) => serde_json::json!(x),
    }
}
