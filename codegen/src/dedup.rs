//! Sharing the machine code of identical chunks.
//!
//! A function traced from repetitive scalar code (an unrolled time-stepper, the
//! element-by-element gradient of a sum) is chunked ([`crate::plan`]) into hundreds of
//! chunks that differ only in *where* they read and write: the argument words, result
//! words and workspace slots they touch move by a constant from one repetition to the
//! next. Such chunks are compiled once. A shared chunk takes, after the usual
//! `(args, results, workspace)`, one pointer per *group* of the words it touches, and
//! addresses each word relative to its group; the driver passes each call its own
//! groups' addresses.
//!
//! **When two chunks share.** [`canon`] walks a chunk in lowering order and writes down
//! everything its lowering depends on: every op, its operand structure (a value defined
//! in the chunk by the order of its definition, any other by the word it is loaded
//! from), every type, every region's shape, and each memory word as (family, group,
//! offset in the group). Groups are runs of a family's words (arguments, results,
//! workspace slots) with gaps of at most [`GAP`] words. Two chunks share their code
//! exactly when these descriptions are equal (compared in full, not by hash), so the
//! code lowered for one, called with the other's group addresses, does what the
//! other's own code would. Chunks with a `ret`, a checkpointed loop (their
//! descriptors), or more than [`MAX_GROUPS`] groups are never shared.
//!
//! **Guards.** A failing guard returns a status naming its entry in the module's guard
//! table, so the code of a shared chunk names its representative's guards. Each chunk
//! running another's code still gets entries of its own, with its guards' ordinals as
//! if it had been lowered, and its driver moves a status in the representative's range
//! to the same guard in its own ([`crate::lower::GuardShift`]): an error names the
//! guard that failed, as the interpreter does. Traced branches (`if x < y`) record a
//! guard per element, so in such code a chunk without guards is rare.
//!
//! **How much repeats.** Chunks have a fixed size (in instructions), so code that
//! repeats every p instructions is cut at p / gcd(size, p) different phases: that many
//! distinct chunks at most, whatever the number of repetitions (13 for the traced
//! Rosenbrock gradient, 1300 chunks at n = 10⁵). A long period (hundreds of
//! instructions) leaves as many distinct chunks; cutting where the content says
//! (content-defined chunking) would remove that, and is not done.
//!
//! Cost: one walk of each chunk and a hash per chunk; equal hashes are compared in
//! full. Linear in the chunk's instructions.

use crate::plan::FnPlan;
use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Type, Value, ValueDef};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;

/// Words of one family closer than this (exclusive gap) fall in one group.
pub(crate) const GAP: u32 = 16;

/// The most group pointers a shared chunk takes (beyond them, it is not shared).
pub(crate) const MAX_GROUPS: usize = 8;

/// Where a memory word lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Family {
    /// The argument buffer.
    Args = 0,
    /// The results buffer.
    Results = 1,
    /// The function's workspace slots.
    Slots = 2,
}

/// One item of a chunk's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tok<'f> {
    Op(&'f Op),
    Ty(&'f Type),
    W(u64),
}

/// A chunk's description ([`canon`]), and the groups its words fall in.
#[derive(Debug)]
pub(crate) struct Canon<'f> {
    toks: Vec<Tok<'f>>,
    hash: u64,
    /// Each group's family and first word, in group order.
    pub groups: Vec<(Family, u32)>,
}

impl PartialEq for Canon<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.toks == other.toks
    }
}

/// Marks for `Tok::W` items, so the kinds of word never alias.
const LOCAL: u64 = 1 << 62;
const MEM: u64 = 2 << 62;
const SHAPE: u64 = 3 << 62;

/// Group addressing of a shared chunk: where each memory word is.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Per family, the first word of each of its groups and the group's index, sorted.
    starts: [Vec<(u32, usize)>; 3],
}

impl Groups {
    /// From a chunk's group list ([`Canon::groups`]).
    pub fn new(groups: &[(Family, u32)]) -> Self {
        let mut g = Groups::default();
        for (k, &(fam, start)) in groups.iter().enumerate() {
            g.starts[fam as usize].push((start, k));
        }
        for s in &mut g.starts {
            s.sort_unstable();
        }
        g
    }

    /// The group holding `word` of `fam` and the word's offset in it.
    pub fn locate(&self, fam: Family, word: u32) -> Option<(usize, u32)> {
        let s = &self.starts[fam as usize];
        let k = s.partition_point(|&(start, _)| start <= word);
        let &(start, g) = s.get(k.checked_sub(1)?)?;
        Some((g, word - start))
    }
}

/// Scratch space reused across chunks: `local[v]` is `(chunk + 1) << 32 | id` for a
/// value defined in the chunk being described.
pub(crate) struct Scratch {
    local: SecondaryMap<Value, u64>,
    refs: Vec<(Family, u32)>,
}

impl Scratch {
    pub fn new(f: &Function) -> Self {
        let mut local = SecondaryMap::with_default(0);
        local.resize(f.values.len());
        Scratch {
            local,
            refs: vec![],
        }
    }
}

/// The description of chunk `chunk` of `f` under `plan`, or `None` if it may not be
/// shared (see the module docs).
pub(crate) fn canon<'f>(
    f: &'f Function,
    plan: &FnPlan,
    chunk: usize,
    scratch: &mut Scratch,
    nested: &mut Vec<Inst>,
) -> Option<Canon<'f>> {
    let stamp = (chunk as u64 + 1) << 32;
    let mut next_id = 0u64;
    let mut toks: Vec<Tok<'f>> = Vec::with_capacity(4 * plan.chunk_insts[chunk] + 16);
    scratch.refs.clear();
    let refs = &mut scratch.refs;
    let local = &mut scratch.local;
    for &top in &plan.top[plan.chunks[chunk].clone()] {
        nested.clear();
        nested.push(top);
        if !f.insts[top].regions.is_empty() {
            crate::plan::nested_insts(f, top, nested);
        }
        for &inst in nested.iter() {
            let d = &f.insts[inst];
            match d.op {
                Op::Ret | Op::TapeLoop(_) | Op::RevLoop(_) => return None,
                _ => {}
            }
            toks.push(Tok::Op(&d.op));
            // Counts as separate items: no count can spill into another's bits.
            for count in [d.args.len(), d.results.len(), d.regions.len()] {
                toks.push(Tok::W(SHAPE | count as u64));
            }
            for &r in &d.regions {
                let rd = &f.regions[r];
                toks.push(Tok::W(SHAPE | rd.insts.len() as u64));
                toks.push(Tok::W(SHAPE | rd.params.len() as u64));
                for &p in &rd.params {
                    local[p] = stamp | next_id;
                    next_id += 1;
                    toks.push(Tok::Ty(&f.values[p].ty));
                }
            }
            for &a in &d.args {
                let l = local[a];
                if l >> 32 == stamp >> 32 {
                    toks.push(Tok::W(LOCAL | (l & 0xffff_ffff)));
                    continue;
                }
                let word = match f.values[a].def {
                    ValueDef::Param(r, i) if r == f.body => (Family::Args, i),
                    ValueDef::Result(..) if plan.home_of(a).is_some_and(|h| h < chunk) => {
                        (Family::Slots, plan.slot_of(a)?)
                    }
                    _ => return None,
                };
                toks.push(Tok::W(MEM | refs.len() as u64));
                toks.push(Tok::Ty(&f.values[a].ty));
                refs.push(word);
            }
            for &r in &d.results {
                local[r] = stamp | next_id;
                next_id += 1;
                toks.push(Tok::Ty(&f.values[r].ty));
                // Only top-level results cross chunks (lowering stores them there).
                if inst != top {
                    continue;
                }
                if let Some(s) = plan.slot_of(r) {
                    toks.push(Tok::W(MEM | refs.len() as u64));
                    refs.push((Family::Slots, s));
                }
                for &p in plan.early_ret_of(r).unwrap_or(&[]) {
                    toks.push(Tok::W(MEM | refs.len() as u64));
                    refs.push((Family::Results, p));
                }
            }
        }
    }
    // Groups: runs of each family's distinct words.
    let mut words = refs.clone();
    words.sort_unstable();
    words.dedup();
    let mut groups: Vec<(Family, u32)> = vec![];
    let mut prev: Option<(Family, u32)> = None;
    for &(fam, w) in &words {
        match prev {
            Some((pf, pw)) if pf == fam && w - pw <= GAP => {}
            _ => groups.push((fam, w)),
        }
        prev = Some((fam, w));
    }
    if groups.len() > MAX_GROUPS {
        return None;
    }
    let g = Groups::new(&groups);
    toks.push(Tok::W(SHAPE | groups.len() as u64));
    for &(fam, _) in &groups {
        toks.push(Tok::W(fam as u64));
    }
    for &(fam, w) in refs.iter() {
        let (k, off) = g.locate(fam, w)?;
        toks.push(Tok::W((k as u64) << 32 | u64::from(off)));
    }
    let mut h = crate::plan::IdHasher::default();
    toks.hash(&mut h);
    Some(Canon {
        toks,
        hash: h.finish(),
        groups,
    })
}

/// How chunk `k` of a function is compiled.
#[derive(Debug, Clone)]
pub(crate) enum Sharing {
    /// Its own code, the usual ABI.
    Own,
    /// The code of chunk `rep` (possibly itself), called with these groups' addresses.
    Shared {
        rep: usize,
        groups: Vec<(Family, u32)>,
    },
}

impl Sharing {
    /// The groups whose addresses a call passes (none for a chunk with its own code).
    pub fn groups(&self) -> &[(Family, u32)] {
        match self {
            Sharing::Own => &[],
            Sharing::Shared { groups, .. } => groups,
        }
    }

    /// For chunk `k`: the earlier chunk whose code it runs (so it is not compiled).
    pub fn earlier_rep(&self, k: usize) -> Option<usize> {
        match *self {
            Sharing::Shared { rep, .. } if rep < k => Some(rep),
            _ => None,
        }
    }
}

/// A chunk's representative (the first chunk with its description) and its groups.
type Found = Option<(usize, Vec<(Family, u32)>)>;

/// Representatives by hash: each one's description and chunk index.
type Reps<'f> = HashMap<u64, Vec<(Canon<'f>, usize)>>;

/// Distinct descriptions kept per hash. Equal hashes of different chunks are rare
/// (a 64-bit hash), but input could be made to collide on purpose: with this bound a
/// chunk is compared with at most this many others, so the pass stays linear; a chunk
/// that finds its bucket full keeps its own code.
const MAX_BUCKET: usize = 4;

/// Chunks `range` of `f`: each one's representative among them, and the
/// representatives.
fn describe_part<'f>(
    f: &'f Function,
    plan: &FnPlan,
    range: Range<usize>,
) -> (Vec<Found>, Reps<'f>) {
    let mut scratch = Scratch::new(f);
    let mut nested = vec![];
    let mut reps: Reps<'f> = HashMap::new();
    let found = range
        .map(|k| {
            let mut c = canon(f, plan, k, &mut scratch, &mut nested)?;
            let groups = std::mem::take(&mut c.groups);
            let bucket = reps.entry(c.hash).or_default();
            let rep = match bucket.iter().find(|(r, _)| *r == c) {
                Some(&(_, rep)) => rep,
                None if bucket.len() < MAX_BUCKET => {
                    bucket.push((c, k));
                    k
                }
                None => return None,
            };
            Some((rep, groups))
        })
        .collect();
    (found, reps)
}

/// Decides, for every chunk of `f`, whether it shares code (see the module docs),
/// describing the chunks on up to `threads` threads. Chunks whose description occurs
/// once keep their own code and ABI.
pub(crate) fn share_chunks(f: &Function, plan: &FnPlan, threads: usize) -> Vec<Sharing> {
    let n = plan.chunks.len();
    if n < 2 {
        return vec![Sharing::Own; n];
    }
    // Contiguous parts, one per thread (a thread costs more than a few chunks).
    let ranges = crate::par::split(n, threads.clamp(1, n.div_ceil(32)));
    let described: Vec<(Vec<Found>, Reps<'_>)> =
        crate::par::run_parts(&ranges, |r| describe_part(f, plan, r))
            .into_iter()
            // A panic in a part (there is no known one) only loses its sharing.
            .map(|r| r.unwrap_or_else(|_| (vec![], HashMap::new())))
            .collect();
    // Merge: each part's representatives map to the first equal one of earlier parts.
    // A merged bucket holds at most `MAX_BUCKET` per part, and parts are at most
    // `threads`, so the comparisons stay linear.
    let mut global: Reps<'_> = HashMap::new();
    let mut rep_of = vec![usize::MAX; n];
    let mut found_all: Vec<Found> = Vec::with_capacity(n);
    for (range, (found, reps)) in ranges.iter().zip(described) {
        for (hash, bucket) in reps {
            let g = global.entry(hash).or_default();
            for (c, k) in bucket {
                match g.iter().find(|(r, _)| *r == c) {
                    Some(&(_, rep)) => rep_of[k] = rep,
                    None => {
                        rep_of[k] = k;
                        g.push((c, k));
                    }
                }
            }
        }
        // A part that panicked describes nothing: its chunks keep their own code.
        found_all.extend(
            found
                .into_iter()
                .chain(std::iter::repeat(None))
                .take(range.len()),
        );
    }
    let mut uses = vec![0usize; n];
    for (rep, _) in found_all.iter_mut().flatten() {
        *rep = rep_of[*rep];
        uses[*rep] += 1;
    }
    found_all
        .into_iter()
        .map(|r| match r {
            Some((rep, groups)) if uses[rep] > 1 => Sharing::Shared { rep, groups },
            _ => Sharing::Own,
        })
        .collect()
}
