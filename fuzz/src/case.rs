//! Cases: deterministic `.jir` texts from a run seed and a case number.
//!
//! [`make_case`] gives the same text for the same `(seed, id, corpus)`, so the driver
//! never ships program text between processes: a worker and its driver both rebuild a
//! case from its number. Two sources, about half each:
//!
//! - **grammar-aware**: [`jitad_ir::random_module`] with random [`GenOptions`] (sizes,
//!   loops, calls, every type, smooth or every op, tensor sub-computations in a third of
//!   them), printed as text;
//! - **byte-level**: one to four mutations of a corpus file (the golden files under
//!   `tests/ir/`, any depth) or of a generated program: bit flips, interesting bytes,
//!   span deletion and duplication, dictionary tokens (op names, keywords, extreme
//!   literals, checkpoint policies), line deletion, duplication, swaps and splices from
//!   another corpus file, number replacement.

use crate::rng::{case_seed, Rng};
use jitad_ir::{print_module, random_module, GenOptions, Op};
use std::path::{Path, PathBuf};

/// One fuzz case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The case number within its run.
    pub id: u64,
    /// The seed of everything random about checking it (arguments, `wrt`, policies).
    pub check_seed: u64,
    /// The program text.
    pub text: String,
    /// Where it came from: `gen` or `mutate:<file>`.
    pub origin: String,
}

/// A corpus of texts to mutate (each with a display name).
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// `(name, text)`, sorted by name.
    pub files: Vec<(String, String)>,
}

impl Corpus {
    /// Every `*.jir` file under `dir` (recursively), sorted by path; unreadable files
    /// and directories are skipped.
    pub fn load(dir: &Path) -> Corpus {
        let mut paths = Vec::new();
        let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "jir") {
                    paths.push(p);
                }
            }
        }
        paths.sort();
        let files = paths
            .into_iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                let name = p
                    .strip_prefix(dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                Some((name, text))
            })
            .collect();
        Corpus { files }
    }
}

/// The default corpus directory: the repository's `tests/ir`.
pub fn default_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir")
}

/// Random generator options.
pub fn gen_options(r: &mut Rng) -> GenOptions {
    let max_insts = if r.chance(1, 8) { 120 } else { 40 };
    GenOptions {
        num_params: 1 + r.below(4),
        num_insts: 2 + r.below(max_insts),
        loops: r.chance(2, 3),
        calls: r.chance(1, 2),
        all_types: r.chance(1, 2),
        smooth_only: r.chance(1, 3),
        tensors: r.chance(1, 3),
    }
}

/// Case `id` of run `seed`.
pub fn make_case(seed: u64, id: u64, corpus: &Corpus) -> Case {
    let cs = case_seed(seed, id);
    let mut r = Rng::new(cs);
    let check_seed = r.next_u64();
    let generated = |r: &mut Rng| {
        let opts = gen_options(r);
        print_module(&random_module(r.next_u64(), &opts))
    };
    let (text, origin) = if corpus.files.is_empty() || r.chance(1, 2) {
        (generated(&mut r), "gen".to_string())
    } else {
        let (base, name) = if r.chance(1, 4) {
            (generated(&mut r), "gen".to_string())
        } else {
            let (n, t) = r.pick(&corpus.files).clone();
            (t, n)
        };
        let mut bytes = base.into_bytes();
        let n = 1 + r.below(4);
        for _ in 0..n {
            mutate(&mut bytes, &mut r, corpus);
        }
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            format!("mutate:{name}"),
        )
    };
    Case {
        id,
        check_seed,
        text,
        origin,
    }
}

const INTERESTING_BYTES: &[u8] = b"%@{}()[],:=.-+0123456789;\n \tei_";

const TOKENS: &[&str] = &[
    " loop %i in 0..3 (%a = %x : f64) { yield %a } ",
    " loop %j in 0..%n () { yield } ",
    " tapeloop ",
    " revloop ",
    " call @f(",
    " call @main(",
    " yield ",
    " ret ",
    " guard ",
    "%x",
    "%i",
    "%n",
    "%v1",
    "@f",
    "@main",
    "0..",
    "..",
    "->",
    " : ",
    ", ",
    " = ",
    "99999999999",
    "2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "0",
    "1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "-0.0",
    "f32",
    "i64",
    "bool",
    "f64",
    "f64[2]",
    "f64[3,4]",
    "{",
    "}",
    "(",
    ")",
    " checkpoint store-all ",
    " checkpoint recompute ",
    " checkpoint binomial:1 ",
    " checkpoint every:1 ",
    " checkpoint auto:0 ",
    " tape %tape0 ",
    " caps (",
    " seed (",
    " fwd @f.grad.loop0 ",
    " bwd @f.grad.loop0.bwd ",
    "func @g(%x: f64) -> f64 {\n  ret %x\n}\n",
    "func @r(%x: f64) -> f64 {\n  %y = call @r(%x)\n  ret %y\n}\n",
];

fn number_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric())) {
            let s = i;
            while i < b.len()
                && (b[i].is_ascii_digit() || b[i] == b'.' && b.get(i + 1) != Some(&b'.'))
            {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

fn line_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            out.push((s, i + 1));
            s = i + 1;
        }
    }
    if s < b.len() {
        out.push((s, b.len()));
    }
    out
}

/// Applies one random mutation to `b`.
pub fn mutate(b: &mut Vec<u8>, r: &mut Rng, corpus: &Corpus) {
    let len = b.len();
    let pos = r.below(len + 1);
    match r.below(12) {
        0 if len > 0 => {
            let i = r.below(len);
            b[i] ^= 1 << r.below(8);
        }
        1 if len > 0 => {
            let i = r.below(len);
            b[i] = *r.pick(INTERESTING_BYTES);
        }
        2 if len > 0 => {
            let n = 1 + r.below(16);
            let end = (pos + n).min(len);
            b.drain(pos.min(len)..end);
        }
        3 if len > 0 => {
            let s = r.below(len);
            let e = (s + 1 + r.below(32)).min(len);
            let span: Vec<u8> = b[s..e].to_vec();
            let at = r.below(len + 1);
            b.splice(at..at, span);
        }
        4 => {
            let t = if r.chance(1, 3) {
                Op::NAMES[r.below(Op::NAMES.len())]
            } else {
                TOKENS[r.below(TOKENS.len())]
            };
            b.splice(pos..pos, t.bytes());
        }
        5..=8 => {
            let lines = line_spans(b);
            if lines.is_empty() {
                return;
            }
            let (s, e) = lines[r.below(lines.len())];
            match r.below(4) {
                0 => {
                    b.drain(s..e);
                }
                1 => {
                    let l: Vec<u8> = b[s..e].to_vec();
                    let at = lines[r.below(lines.len())].0;
                    b.splice(at..at, l);
                }
                2 => {
                    let (s2, e2) = lines[r.below(lines.len())];
                    if s2 >= e {
                        let (a, c) = (b[s..e].to_vec(), b[s2..e2].to_vec());
                        b.splice(s2..e2, a);
                        b.splice(s..e, c);
                    } else if e2 <= s {
                        let (a, c) = (b[s2..e2].to_vec(), b[s..e].to_vec());
                        b.splice(s..e, a);
                        b.splice(s2..e2, c);
                    }
                }
                _ => {
                    if corpus.files.is_empty() {
                        return;
                    }
                    let other = r.pick(&corpus.files).1.as_bytes();
                    let ol = line_spans(other);
                    if ol.is_empty() {
                        return;
                    }
                    let (s2, e2) = ol[r.below(ol.len())];
                    b.splice(s..e, other[s2..e2].iter().copied());
                }
            }
        }
        9 | 10 => {
            let nums = number_spans(b);
            if nums.is_empty() {
                return;
            }
            let (s, e) = nums[r.below(nums.len())];
            let rep: String = match r.below(8) {
                0 => "0".into(),
                1 => "1".into(),
                2 => "64".into(),
                3 => "100000".into(),
                4 => "2147483647".into(),
                5 => "9223372036854775807".into(),
                6 => format!("{}", r.below(10)),
                _ => format!("{}", r.below(1000)),
            };
            b.splice(s..e, rep.bytes());
        }
        _ => {
            // Insert a random printable byte.
            let c = 32 + r.below(95) as u8;
            b.insert(pos.min(b.len()), c);
        }
    }
}
