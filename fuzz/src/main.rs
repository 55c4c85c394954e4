//! `jitad-fuzz`: the fuzzer's driver, worker and reproducer in one binary.
//!
//! ```text
//! cargo run --release -p jitad-fuzz -- --seconds 600            # fuzz ten minutes
//! cargo run --release -p jitad-fuzz -- --cases 5000 --seed 7    # a fixed slice
//! cargo run --release -p jitad-fuzz -- --check FILE...          # replay files
//! cargo run --release -p jitad-fuzz -- --print-case 42 --seed 7 # show one case
//! ```
//!
//! Options: `--seconds N` (default 60), `--cases N` (stop after N cases), `--seed S`
//! (default: from the clock; printed, so a run can be repeated), `--corpus DIR` (files
//! to mutate; default `tests/ir`), `--out DIR` (where findings go; default
//! `tests/fuzz/pending`), `--timeout S` (seconds one case may take, default 60:
//! generous, because a loaded machine stalls a worker for many seconds; release builds
//! run a case in milliseconds), `--no-minimize`.
//!
//! Design: the driver never runs a case itself. It starts a *worker* (this binary with
//! `--worker`), which runs cases `start, start+1, ...` and prints `case K` before each
//! and `ok K ...` or `fail K STAGE\tMESSAGE` after. Panics are caught in the worker
//! (`check_text`); a signal (a JIT segfault, a stack overflow's abort) kills only the
//! worker, and silence longer than `--timeout` is a hang: the driver kills it. Either
//! way the driver knows the case from the last `case K` line, rebuilds its text from
//! `(seed, K)`, writes it to `--out`, and starts a new worker at `K + 1`. Each new
//! finding (by signature: stage and message with digits masked, compared with the files
//! already in `--out` and `tests/fuzz/regressions`) is minimized by deleting lines while
//! a `--check` child process still reproduces the same signature.
//!
//! A finding file is a `.jir` text with a header of `;` comments: the signature, the
//! stage and message, and `; check-seed: N`, the seed the checks used. Once the bug is
//! fixed, move the file to `tests/fuzz/regressions/`: `cargo test -p jitad-fuzz` replays
//! every file there.
//!
//! Exit status: 0 when no case failed, 1 otherwise, 2 on bad usage.

use jitad_fuzz::case::{default_corpus_dir, make_case, Corpus};
use jitad_fuzz::check::{check_text, Failure, Stats};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Opts {
    seconds: f64,
    cases: Option<u64>,
    seed: u64,
    corpus: PathBuf,
    out: PathBuf,
    timeout: f64,
    minimize: bool,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("jitad-fuzz: {msg}\nsee the doc comment of fuzz/src/main.rs for usage");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut o = Opts {
        seconds: 60.0,
        cases: None,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        corpus: default_corpus_dir(),
        out: repo.join("tests/fuzz/pending"),
        timeout: 60.0,
        minimize: true,
    };
    let mut worker = false;
    let mut start = 0u64;
    let mut check: Vec<PathBuf> = Vec::new();
    let mut print_case: Option<u64> = None;
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].as_str();
        let mut val = || {
            i += 1;
            argv.get(i).cloned()
        };
        macro_rules! num {
            ($t:ty) => {
                match val().and_then(|v| v.parse::<$t>().ok()) {
                    Some(v) => v,
                    None => return usage(&format!("{a} needs a number")),
                }
            };
        }
        match a {
            "--seconds" => o.seconds = num!(f64),
            "--cases" => o.cases = Some(num!(u64)),
            "--seed" => o.seed = num!(u64),
            "--timeout" => o.timeout = num!(f64),
            "--start" => start = num!(u64),
            "--print-case" => print_case = Some(num!(u64)),
            "--corpus" => match val() {
                Some(v) => o.corpus = v.into(),
                None => return usage("--corpus needs a directory"),
            },
            "--out" => match val() {
                Some(v) => o.out = v.into(),
                None => return usage("--out needs a directory"),
            },
            "--no-minimize" => o.minimize = false,
            "--worker" => worker = true,
            "--check" => {
                check.extend(argv[i + 1..].iter().map(PathBuf::from));
                i = argv.len();
            }
            _ => return usage(&format!("unknown argument `{a}`")),
        }
        i += 1;
    }
    if let Some(id) = print_case {
        let c = make_case(o.seed, id, &Corpus::load(&o.corpus));
        println!(
            "; origin: {}\n; check-seed: {}\n{}",
            c.origin, c.check_seed, c.text
        );
        return ExitCode::SUCCESS;
    }
    if !check.is_empty() {
        return check_files(&check);
    }
    if worker {
        return run_worker(&o, start);
    }
    drive(&o)
}

/// `--check`: each file in-process; prints `ok` or `fail STAGE\tMESSAGE` per file.
fn check_files(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for p in files {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                failed = true;
                continue;
            }
        };
        match check_text(&text, check_seed_of(&text)) {
            Ok(_) => println!("ok"),
            Err(f) => {
                println!("fail {}\t{}", f.stage, escape(&f.message));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The `; check-seed: N` of a finding file's header (0 without one).
fn check_seed_of(text: &str) -> u64 {
    text.lines()
        .take_while(|l| l.starts_with(';'))
        .find_map(|l| l.strip_prefix("; check-seed:"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn run_worker(o: &Opts, start: u64) -> ExitCode {
    let corpus = Corpus::load(&o.corpus);
    let end = o.cases.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    for id in start..end {
        {
            let mut lock = stdout.lock();
            let _ = writeln!(lock, "case {id}");
            let _ = lock.flush();
        }
        let c = make_case(o.seed, id, &corpus);
        let line = match check_text(&c.text, c.check_seed) {
            Ok(s) => format!(
                "ok {id} {} {} {} {} {} {} {} {} {}",
                s.parsed,
                s.verified,
                s.evals,
                s.skipped,
                s.derived,
                s.ad_errors,
                s.dot_tests,
                s.interp_only,
                s.huge_workspace
            ),
            Err(f) => format!("fail {id} {}\t{}", f.stage, escape(&f.message)),
        };
        let mut lock = stdout.lock();
        let _ = writeln!(lock, "{line}");
        let _ = lock.flush();
    }
    ExitCode::SUCCESS
}

/// How a child process ended, as a failure (`None`: exit status 0).
fn death(status: std::process::ExitStatus) -> Option<Failure> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = match sig {
            4 => "SIGILL",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            11 => "SIGSEGV",
            9 => "SIGKILL",
            _ => "signal",
        };
        return Some(Failure {
            stage: "signal".into(),
            message: format!("the worker died of signal {sig} ({name})"),
        });
    }
    match status.code() {
        Some(0) => None,
        c => Some(Failure {
            stage: "exit".into(),
            message: format!("the worker exited with status {c:?}"),
        }),
    }
}

/// Signatures of the findings already on disk (`; signature: ...` headers).
fn known_signatures(dirs: &[&Path]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(t) = std::fs::read_to_string(&p) {
                if let Some(s) = t.lines().find_map(|l| l.strip_prefix("; signature: ")) {
                    out.insert(s.to_string(), p);
                }
            }
        }
    }
    out
}

struct Finding {
    failure: Failure,
    count: u64,
    file: PathBuf,
    new: bool,
}

fn drive(o: &Opts) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return usage(&format!("cannot find my own executable: {e}")),
    };
    let corpus = Corpus::load(&o.corpus);
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/regressions");
    let known = known_signatures(&[&o.out, &regressions]);
    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let end = o.cases.unwrap_or(u64::MAX);
    let (mut next, mut cases, mut restarts) = (0u64, 0u64, 0u64);
    let mut stats = Stats::default();
    eprintln!(
        "jitad-fuzz: seed {} for {} s{}, corpus {} ({} files), findings to {}",
        o.seed,
        o.seconds,
        o.cases
            .map(|c| format!(" or {c} cases"))
            .unwrap_or_default(),
        o.corpus.display(),
        corpus.files.len(),
        o.out.display()
    );
    let mut last_report = Instant::now();
    'outer: while next < end && Instant::now() < deadline {
        let child = Command::new(&exe)
            .args([
                "--worker",
                "--seed",
                &o.seed.to_string(),
                "--start",
                &next.to_string(),
            ])
            .args(
                o.cases
                    .map(|c| vec!["--cases".to_string(), c.to_string()])
                    .unwrap_or_default(),
            )
            .arg("--corpus")
            .arg(&o.corpus)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return usage(&format!("cannot start a worker: {e}")),
        };
        let Some(stdout) = child.stdout.take() else {
            return usage("worker without stdout");
        };
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut current: Option<u64> = None;
        let mut failure: Option<(u64, Failure)> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break 'outer;
            }
            let wait =
                Duration::from_secs_f64(o.timeout).min(deadline - now + Duration::from_millis(1));
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    let mut parts = line.splitn(3, ' ');
                    let tag = parts.next().unwrap_or("");
                    let id: Option<u64> = parts.next().and_then(|s| s.parse().ok());
                    let rest = parts.next().unwrap_or("");
                    match (tag, id) {
                        ("case", Some(k)) => current = Some(k),
                        ("ok", Some(k)) => {
                            let n: Vec<u64> =
                                rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                            if n.len() == 9 {
                                stats.add(&Stats {
                                    parsed: n[0],
                                    verified: n[1],
                                    evals: n[2],
                                    skipped: n[3],
                                    derived: n[4],
                                    ad_errors: n[5],
                                    dot_tests: n[6],
                                    interp_only: n[7],
                                    huge_workspace: n[8],
                                });
                            }
                            cases += 1;
                            current = None;
                            next = k + 1;
                        }
                        ("fail", Some(k)) => {
                            let (stage, msg) = rest.split_once('\t').unwrap_or((rest, ""));
                            let f = Failure {
                                stage: stage.to_string(),
                                message: unescape(msg),
                            };
                            cases += 1;
                            current = None;
                            next = k + 1;
                            record(o, &exe, &corpus, &known, &mut findings, k, f);
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        continue;
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Some(k) = current {
                        failure = Some((
                            k,
                            Failure {
                                stage: "hang".into(),
                                message: format!("no progress for {} s", o.timeout),
                            },
                        ));
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    if let (Some(k), Ok(status)) = (current, status) {
                        let f = death(status).unwrap_or(Failure {
                            stage: "exit".into(),
                            message: "the worker stopped in the middle of a case".into(),
                        });
                        failure = Some((k, f));
                    }
                    break;
                }
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                last_report = Instant::now();
                eprintln!(
                    "  {:.0} s: {cases} cases, {} findings",
                    t0.elapsed().as_secs_f64(),
                    findings.len()
                );
            }
        }
        let _ = reader.join();
        match failure {
            Some((k, f)) => {
                restarts += 1;
                cases += 1;
                next = k + 1;
                record(o, &exe, &corpus, &known, &mut findings, k, f);
            }
            None => {
                if current.is_none() && next >= end {
                    break;
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "jitad-fuzz: seed {}: {cases} cases in {secs:.1} s ({:.0}/s), {restarts} worker restarts",
        o.seed,
        cases as f64 / secs.max(1e-9)
    );
    println!(
        "  parsed {}, verified {}, evaluations on both engines {} (skipped over budget {}), \
         AD transforms {} (clean AD errors {}), dot-product tests {}, interpreter-only \
         evaluations (tensor programs) {}, JIT calls refused for a workspace of a GiB or \
         more {}",
        stats.parsed,
        stats.verified,
        stats.evals,
        stats.skipped,
        stats.derived,
        stats.ad_errors,
        stats.dot_tests,
        stats.interp_only,
        stats.huge_workspace
    );
    if findings.is_empty() {
        println!("  no failures");
        return ExitCode::SUCCESS;
    }
    println!("  {} distinct failures:", findings.len());
    for (sig, f) in &findings {
        println!(
            "  - [{}x{}] {sig}\n      {}",
            f.count,
            if f.new { ", new" } else { "" },
            f.file.display()
        );
        let _ = &f.failure;
    }
    ExitCode::FAILURE
}

/// Records failure `f` of case `k`: counts a known signature, writes (and minimizes) a
/// new one.
fn record(
    o: &Opts,
    exe: &Path,
    corpus: &Corpus,
    known: &BTreeMap<String, PathBuf>,
    findings: &mut BTreeMap<String, Finding>,
    k: u64,
    f: Failure,
) {
    let sig = f.signature();
    if let Some(x) = findings.get_mut(&sig) {
        x.count += 1;
        return;
    }
    eprintln!("  case {k}: {}", first_line(&f.to_string(), 300));
    if let Some(p) = known.get(&sig) {
        findings.insert(
            sig,
            Finding {
                failure: f,
                count: 1,
                file: p.clone(),
                new: false,
            },
        );
        return;
    }
    let c = make_case(o.seed, k, corpus);
    let mut text = c.text.clone();
    if o.minimize && f.stage != "hang" {
        text = minimize(o, exe, &text, c.check_seed, &sig);
    }
    let _ = std::fs::create_dir_all(&o.out);
    let stem: String = sig
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("_");
    let path = o
        .out
        .join(format!("{stem}_{:x}.jir", fxhash(&sig) & 0xffff));
    let header = format!(
        "; signature: {sig}\n; found by: jitad-fuzz --seed {} case {k} ({})\n; stage: {}\n; message: {}\n; check-seed: {}\n",
        o.seed,
        c.origin,
        f.stage,
        first_line(&f.message, 400),
        c.check_seed
    );
    let _ = std::fs::write(&path, format!("{header}{text}"));
    findings.insert(
        sig,
        Finding {
            failure: f,
            count: 1,
            file: path,
            new: true,
        },
    );
}

fn first_line(s: &str, max: usize) -> String {
    s.lines().next().unwrap_or("").chars().take(max).collect()
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs `--check` on `text` in a child; the failure's signature, if any.
fn reproduce(o: &Opts, exe: &Path, text: &str, check_seed: u64) -> Option<String> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("jitad-fuzz-min-{}.jir", std::process::id()));
    std::fs::write(&path, format!("; check-seed: {check_seed}\n{text}")).ok()?;
    let mut child = Command::new(exe)
        .arg("--check")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        let _ = tx.send(s);
    });
    let out = match rx.recv_timeout(Duration::from_secs_f64(o.timeout)) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    };
    let status = child.wait().ok()?;
    if let Some(f) = death(status) {
        if f.stage == "signal" {
            return Some(f.signature());
        }
    }
    let line = out.lines().next()?;
    let rest = line.strip_prefix("fail ")?;
    let (stage, msg) = rest.split_once('\t').unwrap_or((rest, ""));
    Some(
        Failure {
            stage: stage.into(),
            message: unescape(msg),
        }
        .signature(),
    )
}

/// Deletes chunks of lines while the signature still reproduces (at most 60 s).
fn minimize(o: &Opts, exe: &Path, text: &str, check_seed: u64, sig: &str) -> String {
    let t0 = Instant::now();
    let mut lines: Vec<&str> = text.lines().collect();
    if reproduce(o, exe, text, check_seed).as_deref() != Some(sig) {
        return text.to_string();
    }
    let mut chunk = lines.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < lines.len() {
            if t0.elapsed() > Duration::from_secs(60) {
                return lines.join("\n") + "\n";
            }
            let cand: Vec<&str> = lines[..i]
                .iter()
                .chain(lines[(i + chunk).min(lines.len())..].iter())
                .copied()
                .collect();
            let ct = cand.join("\n") + "\n";
            if reproduce(o, exe, &ct, check_seed).as_deref() == Some(sig) {
                lines = cand;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    lines.join("\n") + "\n"
}
