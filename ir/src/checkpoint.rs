//! Checkpointing: how the reverse sweep of a loop obtains each iteration's state.
//!
//! Reverse mode needs the loop-carried state `s_i` of every iteration `i`, in reverse
//! order. Reverse mode writes an active loop as a pair (see `jitad_passes::revloop`):
//! a `tapeloop` in the forward sweep runs the iterations and records what the policy
//! keeps ([`record`]), and a `revloop` in the adjoint sweep runs the backward
//! iterations from the last to the first ([`reverse_recorded`]). A [`Policy`] decides
//! what is stored and what is recomputed; every policy gives the same gradient (the
//! same operations on the same states, in the same order), and differs only in memory
//! and forward steps recomputed:
//!
//! | policy | snapshots held | forward steps recomputed for `l` iterations |
//! |---|---|---|
//! | `store-all` | `l` (recorded by the forward sweep) | 0 |
//! | `binomial:S` | `S` (the initial state included) | `r·l − β(S+1, r−1)`, less the forward sweep's share |
//! | `every:K` | `⌈l/K⌉ + K − 1` (the initial state included) | `(⌈l/K⌉ − 1)(K − 1)` recorded; `(⌈l/K⌉ − 1)·K + l − ⌈l/K⌉` without a tape |
//! | `recompute` | 1 | `l(l−1)/2` |
//! | `auto:B` | store-all if `l` states fit in `B` bytes, else binomial within `B` | |
//!
//! `binomial` is Revolve (Griewank & Walther, ACM TOMS 26(1), 2000): with `S`
//! snapshots and repetition number `r` (the least `r` with `β(S, r) ≥ l`, where
//! `β(s, r) = C(s + r, s)`), the number of forward steps `r·l − β(S+1, r−1)` is the
//! minimum possible; the schedule (its optimal splits) follows Revolve's own. `l` may
//! be known only when the loop runs. Recorded by a `tapeloop`, the forward sweep itself
//! takes Revolve's first sweep (its spine snapshots and the last segment's states), so
//! the reverse sweep recomputes about `l` steps fewer than that count. Likewise under
//! `every:K` the forward sweep stores the state at the start of every segment and all
//! the last segment's states, so the reverse sweep recomputes each earlier segment once
//! from its snapshot and never runs from the initial state. A `revloop` without a tape
//! (hand-written IR) runs the whole schedule with [`reverse`]; under `store-all` that
//! costs `l − 1` forward steps, under `every:K` the run to every snapshot besides.
//!
//! The driver works for either engine: the caller supplies the forward and backward
//! step of one iteration ([`Steps`]) over 8-byte slots (the JIT's ABI). Snapshots live
//! in a per-thread [`Arena`] that grows to the largest size needed and is then reused,
//! so steady-state calls allocate nothing. Per thread rather than in a compiled
//! handle's workspace: the tape's size depends on the trip count, known only at call
//! time, and a handle is shared by threads calling it at once — each thread gets its
//! own storage without locks, and nested sweeps (a loop in a loop body) stack on it.
//! [`Stats`] report what the sweeps did.
//!
//! # Tapes and levels
//!
//! A tape (what [`record`] keeps for one `tapeloop`) owns everything it recorded: its
//! snapshots in the arena and, under binomial, the Revolve tasks it left for the
//! reverse sweep. Tapes, the task stack and the arena are stacks on one thread, and a
//! tape is only visible at the *level* that recorded it: each top-level call
//! ([`enter_call`], used by the interpreter and the compiled handle) and each step
//! function a driver runs opens a level of its own (steps run a span at a time,
//! [`Steps::spans`], record no tapes, so they need none). A tape lives until the
//! first of:
//!
//! 1. its `revloop` consumes it ([`reverse_recorded`]);
//! 2. an older tape of its level is consumed: younger tapes die first, with their tasks
//!    and snapshots, so consuming a tape never runs another's tasks;
//! 3. the step function whose body recorded it returns;
//! 4. the top-level call that recorded it returns ([`CallScope::finish`]).
//!
//! A `revloop` consuming a tape checks that it describes the recorded loop: the same
//! start, trip count, state count, checkpointing policy, and initial state bit for bit
//! (a mismatch is a [`DriverError`], the one list of driver failures both engines
//! report). A top-level call made from inside a sweep (a [`Steps`] implementation that
//! calls a compiled function or the interpreter) runs on a fresh level and leaves the
//! enclosing sweep's snapshots, tasks and tapes untouched.

use std::cell::{Cell, RefCell};

/// What the reverse sweep of a loop stores and what it recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Store-all if the whole tape fits in this many bytes, else `binomial` with as many
    /// snapshots as fit (at least 2).
    Auto(u64),
    /// A snapshot of the carried state before every iteration.
    StoreAll,
    /// Revolve-optimal binomial checkpointing with this many snapshots (≥ 1, the
    /// initial state included).
    Binomial(u32),
    /// A snapshot every `k` iterations (taken by the forward sweep when a `tapeloop`
    /// records the loop); each segment is recomputed once from its snapshot, stored,
    /// and reversed.
    Every(u32),
    /// Nothing stored: every state is recomputed from the initial one (O(l²) steps; for
    /// comparison and tests).
    Recompute,
}

/// The default memory budget of [`Policy::Auto`]: 256 MiB.
pub const DEFAULT_BUDGET: u64 = 256 << 20;

impl Default for Policy {
    fn default() -> Self {
        Policy::Auto(DEFAULT_BUDGET)
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Auto(b) => write!(f, "auto:{b}"),
            Policy::StoreAll => f.write_str("store-all"),
            Policy::Binomial(s) => write!(f, "binomial:{s}"),
            Policy::Every(k) => write!(f, "every:{k}"),
            Policy::Recompute => f.write_str("recompute"),
        }
    }
}

/// Why a policy text was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad checkpoint policy `{0}`: expected store-all, binomial:S (S ≥ 1), every:K (K ≥ 1), \
     recompute or auto:BYTES"
)]
pub struct PolicyError(pub String);

impl std::str::FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError(s.to_string());
        let num = |t: &str| t.parse::<u64>().map_err(|_| bad());
        let small = |t: &str| -> Result<u32, PolicyError> {
            let v = num(t)?;
            u32::try_from(v).ok().filter(|&v| v >= 1).ok_or_else(bad)
        };
        match s.split_once(':') {
            None if s == "store-all" => Ok(Policy::StoreAll),
            None if s == "recompute" => Ok(Policy::Recompute),
            None if s == "auto" => Ok(Policy::default()),
            Some(("binomial", n)) => Ok(Policy::Binomial(small(n)?)),
            Some(("every", n)) => Ok(Policy::Every(small(n)?)),
            Some(("auto", n)) => Ok(Policy::Auto(num(n)?)),
            _ => Err(bad()),
        }
    }
}

/// What reverse sweeps did (summed over every sweep of a call, nested loops included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reverse sweeps run (one per `revloop` executed).
    pub sweeps: u64,
    /// Snapshots of the carried state taken (the initial state is not counted, except
    /// by the store-all and binomial recordings).
    pub snapshots: u64,
    /// Largest snapshot storage held at once, in bytes (the initial state excluded,
    /// except while a store-all, binomial or every:K recording holds it).
    pub peak_tape_bytes: u64,
    /// Forward steps recomputed by the reverse sweeps (the forward sweep's own
    /// iterations are not counted).
    pub forward_steps: u64,
    /// Backward steps (one per iteration).
    pub backward_steps: u64,
}

impl Stats {
    /// No sweeps, no steps ([`Stats::default`], usable in `const` contexts).
    pub const ZERO: Stats = Stats {
        sweeps: 0,
        snapshots: 0,
        peak_tape_bytes: 0,
        forward_steps: 0,
        backward_steps: 0,
    };

    /// Adds `other` (peaks take the maximum).
    pub fn merge(&mut self, other: &Stats) {
        self.sweeps += other.sweeps;
        self.snapshots += other.snapshots;
        self.peak_tape_bytes = self.peak_tape_bytes.max(other.peak_tape_bytes);
        self.forward_steps += other.forward_steps;
        self.backward_steps += other.backward_steps;
    }
}

/// `β(s, r) = C(s + r, s)`, saturating at `u64::MAX`; 0 for `r < 0`.
pub fn beta(s: u64, r: i64) -> u64 {
    if r < 0 {
        return 0;
    }
    let r = r as u64;
    // C(s + r, min(s, r)) computed incrementally: each partial product is a binomial.
    let k = s.min(r);
    let mut c: u128 = 1;
    for j in 1..=u128::from(k) {
        c = c * (u128::from(s.max(r)) + j) / j;
        if c > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    c as u64
}

/// The repetition number: the least `r` with `β(s, r) ≥ l` (`s ≥ 1`).
pub fn repetitions(l: u64, s: u64) -> i64 {
    let mut r = 0;
    while beta(s, r) < l {
        r += 1;
    }
    r
}

/// Revolve's forward-step count for `l` iterations and `s ≥ 1` snapshots:
/// `r·l − β(s+1, r−1)`.
pub fn revolve_forward_steps(l: u64, s: u64) -> u64 {
    if l == 0 {
        return 0;
    }
    let r = repetitions(l, s);
    (r as u64) * l - beta(s + 1, r - 1)
}

/// Rows of [`PASCAL`]: binomial coefficients `C(n, k)` for `n < PASCAL_ROWS`, all below
/// 2⁶³ (the largest, `C(63, 31)`, is about 9.2·10¹⁷), so none saturates.
const PASCAL_ROWS: usize = 64;

/// Pascal's triangle, `PASCAL[n][k] = C(n, k)` (0 for `k > n`), built at compile time
/// with additions only.
static PASCAL: [[u64; PASCAL_ROWS]; PASCAL_ROWS] = {
    let mut t = [[0u64; PASCAL_ROWS]; PASCAL_ROWS];
    let mut n = 0;
    while n < PASCAL_ROWS {
        t[n][0] = 1;
        let mut k = 1;
        while k <= n {
            t[n][k] = t[n - 1][k - 1] + t[n - 1][k];
            k += 1;
        }
        n += 1;
    }
    t
};

/// `C(n, k)` from [`PASCAL`] (`n < PASCAL_ROWS`), 0 for `k > n`.
#[inline]
fn pascal(n: u64, k: u64) -> u64 {
    if k > n {
        0
    } else {
        PASCAL[n as usize][k as usize]
    }
}

/// [`split`] through [`PASCAL`], `None` when its coefficients fall outside the table.
/// The divisions of Revolve's formula are exact, and each of its quantities is a
/// binomial coefficient: `range = β(ds, r)`, `bino1 = β(ds, r−1)`, `bino2 =
/// β(ds−1, r−1)`, `bino3 = β(ds−2, r−1)`, `bino4 = β(ds, r−2)`, `bino5 = β(ds−3, r)`
/// (with `β(s, r) = C(s + r, s)`), so table lookups give the same offset without a
/// division: a binomial sweep splits once per snapshot it takes, and the formula's
/// seven 128-bit divisions cost about as much as a short run of steps.
fn split_table(l: u64, ds: u64) -> Option<u64> {
    let limit = PASCAL_ROWS as u64;
    let mut reps = 0u64;
    loop {
        let n = ds.checked_add(reps).filter(|&n| n < limit)?;
        if pascal(n, ds) >= l {
            break;
        }
        reps += 1;
    }
    let range = pascal(ds + reps, ds);
    let bino1 = pascal(ds + reps - 1, ds);
    let bino2 = if ds > 1 {
        pascal(ds + reps - 2, ds - 1)
    } else {
        1
    };
    let bino3 = if ds == 1 {
        0
    } else if ds > 2 {
        pascal(ds + reps - 3, ds - 2)
    } else {
        1
    };
    let bino4 = if reps >= 2 {
        pascal(ds + reps - 2, ds)
    } else {
        0
    };
    let bino5 = if ds < 3 {
        0
    } else if reps > 1 {
        pascal(ds + reps - 3, ds - 3)
    } else {
        1
    };
    let binos = [range, bino1, bino2, bino3, bino4, bino5].map(u128::from);
    Some(revolve_offset(u128::from(l), binos))
}

/// Revolve's split offset for `l ≥ 2` iterations from its binomial quantities
/// `[range, bino1, …, bino5]` (see [`split_table`]), however they were computed.
fn revolve_offset(l: u128, [range, bino1, bino2, bino3, bino4, bino5]: [u128; 6]) -> u64 {
    let m = if l <= bino1 + bino3 {
        bino4
    } else if l >= range - bino5 {
        bino1
    } else {
        l - bino2 - bino3
    };
    m.clamp(1, l - 1) as u64
}

/// Where to place the next snapshot when reversing `l ≥ 2` iterations whose first state
/// is held, with `ds ≥ 1` snapshots in all (the held one included): the offset `m`
/// (`1 ≤ m < l`) of Revolve's optimal split (Griewank & Walther's `revolve`, adapted).
fn split(l: u64, ds: u64) -> u64 {
    split_table(l, ds).unwrap_or_else(|| split_divide(l, ds))
}

/// [`split`] by Revolve's formula, for any `l` and `ds`.
fn split_divide(l: u64, ds: u64) -> u64 {
    // u128 throughout: `range·reps` overflows u64 for large `l` and `ds`.
    let (l, ds) = (u128::from(l), u128::from(ds));
    let mut reps: u128 = 0;
    let mut range: u128 = 1;
    while range < l {
        reps += 1;
        range = range * (reps + ds) / reps;
    }
    let bino1 = range * reps / (ds + reps);
    let bino2 = if ds > 1 {
        bino1 * ds / (ds + reps - 1)
    } else {
        1
    };
    let bino3 = if ds == 1 {
        0
    } else if ds > 2 {
        bino2 * (ds - 1) / (ds + reps - 2)
    } else {
        1
    };
    let bino4 = bino2 * (reps - 1) / ds;
    let bino5 = if ds < 3 {
        0
    } else if reps > 1 {
        bino3 * (ds - 2) / reps
    } else {
        1
    };
    revolve_offset(l, [range, bino1, bino2, bino3, bino4, bino5])
}

/// Iterations of `start..end` (none when `end ≤ start`). Exact: when `end > start` the
/// difference fits in u64.
pub fn trip_count(start: i64, end: i64) -> u64 {
    if end > start {
        end.wrapping_sub(start) as u64
    } else {
        0
    }
}

/// `dst ← src` (equal lengths). A loop state is a few words, and `copy_from_slice` of
/// a length known only at run time is a call into `memmove`, which cost the sweeps
/// more than the copying: lengths up to 8 are copied as that many moves instead.
#[inline]
pub fn copy_words(dst: &mut [u64], src: &[u64]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => {
                    if let (Ok(d), Ok(s)) =
                        (<&mut [u64; $n]>::try_from(&mut *dst), <&[u64; $n]>::try_from(src))
                    {
                        *d = *s;
                        return;
                    }
                })*
                _ => {}
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8);
    dst.copy_from_slice(src);
}

/// The forward and backward step of one loop iteration, over 8-byte slots.
pub trait Steps {
    /// The error a step can fail with (a failed guard).
    type Error;
    /// `state ← F(i, state)`.
    fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), Self::Error>;
    /// `adj ← B(i, state, adj)`, where `state` is the state before iteration `i`.
    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), Self::Error>;

    /// Whether the driver runs these steps a span at a time ([`Steps::forward_span`],
    /// [`Steps::backward_span`]). Only for steps that record no tape and run no sweep
    /// themselves (no `tapeloop` or `revloop` in what they run): the driver then opens
    /// no level around them and keeps its snapshot storage borrowed while they run.
    /// Compiled loops whose steps are plain code say yes, so a sweep costs one call per
    /// span instead of one per step. False by default.
    fn spans(&self) -> bool {
        false
    }

    /// Iterations `first..first+count` forward on `state`; with a `tape`, the state
    /// after the `j`-th of them is written to `tape[j·k..(j+1)·k]` (`k = state.len()`).
    /// The default runs [`Steps::forward`] one step at a time.
    fn forward_span(
        &mut self,
        first: i64,
        count: u64,
        state: &mut [u64],
        mut tape: Option<&mut [u64]>,
    ) -> Result<(), Self::Error> {
        let k = state.len();
        for j in 0..count {
            self.forward(first.wrapping_add(j as i64), state)?;
            if let Some(t) = tape.as_deref_mut() {
                let off = j as usize * k;
                copy_words(&mut t[off..off + k], state);
            }
        }
        Ok(())
    }

    /// The backward steps of iterations `first+count−1` down to `first`, where iteration
    /// `first + j` starts from the state in `base` for `j = 0`, else from
    /// `tape[(j−1)·k..j·k]` (`k = base.len()`). The default runs [`Steps::backward`]
    /// one step at a time.
    fn backward_span(
        &mut self,
        first: i64,
        count: u64,
        base: &[u64],
        tape: &[u64],
        adj: &mut [u64],
    ) -> Result<(), Self::Error> {
        let k = base.len();
        for j in (0..count).rev() {
            let state = if j == 0 {
                base
            } else {
                let off = (j - 1) as usize * k;
                &tape[off..off + k]
            };
            self.backward(first.wrapping_add(j as i64), state, adj)?;
        }
        Ok(())
    }
}

/// Snapshot storage: a stack of 8-byte words in segments that never move, so a nested
/// reverse sweep (a loop inside a loop body) can grow it while an outer sweep holds
/// positions in it. One per thread, grown to the largest size needed and reused.
#[derive(Debug, Default)]
pub struct Arena {
    segs: Vec<Box<[u64]>>,
    /// (segment, offset) of the next free word.
    top: (usize, usize),
}

/// A position in the [`Arena`], to release back to.
#[derive(Clone, Copy, Debug)]
pub struct Mark((usize, usize));

/// Where a block of words lives in the [`Arena`].
#[derive(Clone, Copy, Debug)]
pub struct Block {
    seg: usize,
    off: usize,
}

impl Block {
    /// The block starting `words` further on (inside the same allocation).
    #[inline]
    fn offset(self, words: usize) -> Block {
        Block {
            seg: self.seg,
            off: self.off + words,
        }
    }
}

impl Arena {
    /// An arena holding nothing ([`Arena::default`], usable in `const` contexts).
    pub const EMPTY: Arena = Arena {
        segs: Vec::new(),
        top: (0, 0),
    };

    /// The current top, for [`Arena::release`].
    pub fn mark(&self) -> Mark {
        Mark(self.top)
    }

    /// Frees everything allocated since `m` (the storage is kept for reuse).
    pub fn release(&mut self, m: Mark) {
        self.top = m.0;
    }

    /// Allocates `n` words (contiguous); `None` when the memory cannot be had.
    #[inline]
    pub fn alloc(&mut self, n: usize) -> Option<Block> {
        let (seg, off) = self.top;
        match self.segs.get(seg) {
            Some(s) if s.len() - off >= n => {
                self.top = (seg, off + n);
                Some(Block { seg, off })
            }
            _ => self.alloc_grow(n),
        }
    }

    /// [`Arena::alloc`] past the current segment: the next one that fits, or a new one.
    #[inline(never)]
    fn alloc_grow(&mut self, n: usize) -> Option<Block> {
        let (mut seg, mut off) = self.top;
        loop {
            match self.segs.get(seg) {
                Some(s) if s.len() - off >= n => {
                    self.top = (seg, off + n);
                    return Some(Block { seg, off });
                }
                Some(_) => {
                    seg += 1;
                    off = 0;
                }
                None => {
                    let prev = self.segs.last().map_or(0, |s| s.len());
                    let size = n.max(4096).max(prev.saturating_mul(2).min(1 << 24));
                    let mut v: Vec<u64> = Vec::new();
                    v.try_reserve_exact(size).ok()?;
                    v.resize(size, 0);
                    self.segs.push(v.into_boxed_slice());
                }
            }
        }
    }

    /// The words of `b` (`n` of them).
    #[inline]
    pub fn get(&mut self, b: Block, n: usize) -> &mut [u64] {
        &mut self.segs[b.seg][b.off..b.off + n]
    }

    /// The words of `b` (`n` of them), shared.
    #[inline]
    fn slice(&self, b: Block, n: usize) -> &[u64] {
        &self.segs[b.seg][b.off..b.off + n]
    }

    /// Words held by the arena (its capacity, not its use).
    pub fn capacity_words(&self) -> usize {
        self.segs.iter().map(|s| s.len()).sum()
    }
}

thread_local! {
    // `const` initialisers: the driver touches the arena around every step, and a
    // lazily initialised thread-local costs a call to its accessor on each access.
    static ARENA: RefCell<Arena> = const { RefCell::new(Arena::EMPTY) };
    static STATS: RefCell<Stats> = const { RefCell::new(Stats::ZERO) };
    /// Tapes recorded by `tapeloop`s and not yet consumed, innermost last.
    static PENDING: RefCell<Vec<Recorded>> = const { RefCell::new(Vec::new()) };
    static NEXT_TOKEN: Cell<u64> = const { Cell::new(1) };
    /// The current level: step functions running (sweeps nest inside loop bodies) plus
    /// top-level calls open. A tape can only be consumed at the level that recorded it.
    static NEST: Cell<u32> = const { Cell::new(0) };
    /// `PENDING.len()`, readable without a borrow (checked around every step).
    static PENDING_LEN: Cell<usize> = const { Cell::new(0) };
    /// Snapshot bytes held on this thread right now (all sweeps and tapes), for the
    /// peak in [`Stats`].
    static HELD: Cell<u64> = const { Cell::new(0) };
    /// Whether any sweep ran since the last [`reset_thread`]: lets calls of functions
    /// without loops skip the bookkeeping (one flag read).
    static USED: Cell<bool> = const { Cell::new(false) };
}

/// True when a sweep or recording ran on this thread since the last [`reset_thread`].
pub fn used() -> bool {
    USED.with(|u| u.get())
}

fn mark_used() {
    USED.with(|u| u.set(true));
}

/// Adds (or removes) snapshot bytes held on this thread and raises the peak.
fn held_bytes(delta: i128) {
    let now = HELD.with(|h| {
        let v = (i128::from(h.get()) + delta).max(0) as u64;
        h.set(v);
        v
    });
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        s.peak_tape_bytes = s.peak_tape_bytes.max(now);
    });
}

/// What a `tapeloop` left for its `revloop`.
#[derive(Clone, Copy, Debug)]
struct Recorded {
    token: u64,
    /// The step nesting level it was recorded at.
    nest: u32,
    /// The concrete policy (`auto` resolved).
    policy: Policy,
    start: i64,
    l: u64,
    k: usize,
    /// Arena position before the recording: released when the tape is consumed.
    mark: Mark,
    /// The initial state (`k` words).
    base: Block,
    /// Under store-all, binomial and every:K: the recorded final segment.
    seg: Option<Segment>,
    /// Under every:K: the snapshots at the starts of the segments before the final one.
    every: Option<EverySnaps>,
    /// Under binomial: the task stack's height below the recorded schedule.
    tasks_bottom: usize,
    /// The policy as the `tapeloop` wrote it (before `auto` was resolved).
    requested: Policy,
    /// Snapshot bytes held on the thread before the recording (restored when it goes).
    held_before: u64,
}

/// The last iterations `a..l` of a recorded loop, whose states were all stored during
/// the forward sweep (all of them under store-all, where `a = 0`).
#[derive(Clone, Copy, Debug)]
struct Segment {
    a: u64,
    /// The state before iteration `a`.
    base: Block,
    /// The states before iterations `a+1..l` (`(l−a−1)·k` words).
    tape: Block,
    words: usize,
    mark: Mark,
}

/// The snapshots an every:K recording took: the state before iteration `q·kk` for
/// `q` in `1..=count`, the `q`-th at word `(q−1)·k` of `blocks`.
#[derive(Clone, Copy, Debug)]
struct EverySnaps {
    kk: u64,
    count: u64,
    blocks: Block,
    words: usize,
}

/// Forgets every recorded tape, snapshot and statistic of this thread — when nothing is
/// running on it (no sweep, no top-level call); otherwise does nothing, as the running
/// sweeps own that state. [`enter_call`] does this for the outermost call, so that
/// what a panicking step left behind cannot hold memory into the next call.
pub fn reset_thread() {
    if !used() || NEST.with(|n| n.get()) != 0 {
        return;
    }
    USED.with(|u| u.set(false));
    NEST.with(|n| n.set(0));
    HELD.with(|h| h.set(0));
    STATS.with(|s| *s.borrow_mut() = Stats::default());
    PENDING.with(|p| p.borrow_mut().clear());
    PENDING_LEN.with(|n| n.set(0));
    TASKS.with(|t| t.borrow_mut().clear());
    ARENA.with(|a| a.borrow_mut().release(Mark((0, 0))));
}

/// Why a loop driver failed, other than by an error of a step: the one list of driver
/// failures, reported alike by both engines (the interpreter in its `EvalError`, the
/// JIT through the driver statuses listed in `jitad_codegen`'s `abi` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The snapshots the policy needs do not fit in memory (or their size overflows).
    #[error(
        "the checkpointing policy needs {bytes} bytes of snapshots, which cannot be \
         allocated; use binomial:S or a memory budget"
    )]
    TooLarge {
        /// Bytes asked for.
        bytes: u128,
    },
    /// The token names no pending tape of this level of this call: consumed already,
    /// dropped (see the module docs), recorded at another level, or forged.
    #[error("tape token {0} is not a pending tape of this call and level")]
    BadToken(u64),
    /// The `revloop` starts elsewhere than the loop its tape recorded.
    #[error(
        "the revloop starts at {revloop}, but its tape (token {token}) was recorded from {tape}"
    )]
    StartMismatch {
        /// The tape's token.
        token: u64,
        /// The recorded loop's start.
        tape: i64,
        /// The `revloop`'s start.
        revloop: i64,
    },
    /// The `revloop` runs another number of iterations than its tape recorded.
    #[error(
        "the revloop runs {revloop} iteration(s), but its tape (token {token}) recorded {tape}"
    )]
    TripCountMismatch {
        /// The tape's token.
        token: u64,
        /// Iterations recorded.
        tape: u64,
        /// The `revloop`'s trip count.
        revloop: u64,
    },
    /// The `revloop`'s carried state has another number of slots than the recording's.
    #[error(
        "the revloop carries {revloop} state slot(s), but its tape (token {token}) recorded {tape}"
    )]
    StateCountMismatch {
        /// The tape's token.
        token: u64,
        /// State slots recorded.
        tape: usize,
        /// The `revloop`'s state slots.
        revloop: usize,
    },
    /// An initial state slot of the `revloop` differs (bit for bit) from the recording's.
    #[error(
        "the revloop's initial state slot {slot} differs from the one its tape (token \
         {token}) recorded"
    )]
    InitMismatch {
        /// The tape's token.
        token: u64,
        /// The first differing slot.
        slot: usize,
    },
    /// The `revloop`'s checkpointing policy is not the one its tape was recorded with.
    #[error(
        "the revloop's policy is {revloop}, but its tape (token {token}) was recorded with {tape}"
    )]
    PolicyMismatch {
        /// The tape's token.
        token: u64,
        /// The recording's policy.
        tape: Policy,
        /// The `revloop`'s policy.
        revloop: Policy,
    },
    /// The driver panicked (a bug in jitad); the JIT's driver catches it rather than
    /// let it unwind through machine code.
    #[error("a loop driver panicked (a bug in jitad)")]
    Panicked,
}

/// Why a sweep could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SweepError<E> {
    /// A step failed (a guard).
    Step(E),
    /// The driver itself refused or failed.
    Driver(DriverError),
}

impl<E> From<DriverError> for SweepError<E> {
    fn from(e: DriverError) -> Self {
        SweepError::Driver(e)
    }
}

impl<E: std::fmt::Display> std::fmt::Display for SweepError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SweepError::Step(e) => e.fmt(f),
            SweepError::Driver(e) => e.fmt(f),
        }
    }
}

/// `n` words from this thread's arena, or [`DriverError::TooLarge`].
fn alloc_words<E>(n: usize) -> Result<Block, SweepError<E>> {
    with_arena(|a| alloc_in(a, n))
}

/// `n` words from `a` (this thread's arena, already borrowed), or
/// [`DriverError::TooLarge`].
fn alloc_in<E>(a: &mut Arena, n: usize) -> Result<Block, SweepError<E>> {
    a.alloc(n).ok_or(SweepError::Driver(DriverError::TooLarge {
        bytes: n as u128 * 8,
    }))
}

/// `l·k` words as a `usize`, or [`DriverError::TooLarge`] when it overflows.
fn words<E>(l: u64, k: usize) -> Result<usize, SweepError<E>> {
    usize::try_from(l)
        .ok()
        .and_then(|l| l.checked_mul(k))
        .ok_or(SweepError::Driver(DriverError::TooLarge {
            bytes: u128::from(l) * k as u128 * 8,
        }))
}

/// Drops the pending tapes from position `n` on (the younger ones), with their tasks
/// and snapshots: they sit above everything older on the task stack and in the arena.
fn drop_tapes_from(n: usize) {
    let oldest = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let oldest = p.get(n).copied();
        p.truncate(n);
        oldest
    });
    PENDING_LEN.with(|l| l.set(n));
    if let Some(r) = oldest {
        TASKS.with(|t| t.borrow_mut().truncate(r.tasks_bottom));
        with_arena(|a| a.release(r.mark));
        HELD.with(|h| h.set(r.held_before));
    }
}

/// One level down while a step function runs; on leaving (also by unwinding) the
/// level is restored and the tapes the step recorded and did not consume are dropped.
struct StepLevel {
    pending: usize,
}

impl Drop for StepLevel {
    #[inline]
    fn drop(&mut self) {
        NEST.with(|n| n.set(n.get().saturating_sub(1)));
        if PENDING_LEN.with(|n| n.get()) != self.pending {
            drop_tapes_from(self.pending);
        }
    }
}

/// One nesting level down for a run of steps: the same as [`in_step`] around each
/// step (tapes a step records and does not consume die when it returns, see
/// [`StepRun::after_step`]), with one level change per run instead of two per step —
/// the driver's own work between the steps reads no level.
struct StepRun {
    pending: usize,
}

impl StepRun {
    #[inline]
    fn open() -> Self {
        let pending = PENDING_LEN.with(|n| n.get());
        NEST.with(|n| n.set(n.get() + 1));
        StepRun { pending }
    }

    /// Drops what the step that just returned recorded and did not consume.
    #[inline]
    fn after_step(&self) {
        if PENDING_LEN.with(|n| n.get()) != self.pending {
            drop_tapes_from(self.pending);
        }
    }
}

impl Drop for StepRun {
    #[inline]
    fn drop(&mut self) {
        NEST.with(|n| n.set(n.get().saturating_sub(1)));
        self.after_step();
    }
}

/// Runs one step function one nesting level down: tapes it records and does not
/// consume die when it returns.
#[inline]
fn in_step<R>(f: impl FnOnce() -> R) -> R {
    let _level = StepLevel {
        pending: PENDING_LEN.with(|n| n.get()),
    };
    NEST.with(|n| n.set(n.get() + 1));
    f()
}

/// A top-level call's level (from [`enter_call`]): closed by [`CallScope::finish`], or
/// when dropped (also by unwinding).
#[derive(Debug)]
#[must_use = "the call's level stays open until `finish`"]
pub struct CallScope {
    nest: u32,
    pending: usize,
    held: u64,
    outer: Stats,
    open: bool,
}

/// Opens a level for a top-level call (the interpreter's or the compiled handle's) on
/// this thread. The outermost one — nothing running, no tape pending — first clears
/// what a panicking sweep may have left and the statistics of earlier calls; one made
/// from inside a sweep (a [`Steps`] implementation calling back into jitad) leaves
/// the sweep's snapshots, tasks, tapes and statistics as they are.
pub fn enter_call() -> CallScope {
    let nest = NEST.with(|n| n.get());
    let pending = PENDING_LEN.with(|n| n.get());
    let outer = if nest == 0 && pending == 0 {
        reset_thread();
        STATS.with(|s| *s.borrow_mut() = Stats::default());
        // No token is live: number this call's tapes from 1 (the same in both engines).
        NEXT_TOKEN.with(|t| t.set(1));
        Stats::default()
    } else {
        take_stats()
    };
    NEST.with(|n| n.set(nest + 1));
    CallScope {
        nest,
        pending,
        held: HELD.with(|h| h.get()),
        outer,
        open: true,
    }
}

impl CallScope {
    /// Closes the call's level: its tapes that no `revloop` consumed are dropped with
    /// their snapshots. Returns what the call's sweeps did; the thread's statistics
    /// ([`take_stats`]) then hold those of the enclosing sweep (if any) plus these.
    pub fn finish(mut self) -> Stats {
        self.close()
    }

    fn close(&mut self) -> Stats {
        if !std::mem::take(&mut self.open) {
            return Stats::default();
        }
        if PENDING_LEN.with(|n| n.get()) != self.pending {
            drop_tapes_from(self.pending);
        }
        NEST.with(|n| n.set(self.nest));
        HELD.with(|h| h.set(self.held));
        let mine = take_stats();
        let mut all = self.outer;
        all.merge(&mine);
        STATS.with(|s| *s.borrow_mut() = all);
        mine
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a `revloop` says of the loop it reverses, checked against its tape.
#[derive(Clone, Copy, Debug)]
pub struct LoopSpec<'a> {
    /// Its checkpointing policy, as written.
    pub policy: Policy,
    /// The first iteration.
    pub start: i64,
    /// The trip count.
    pub trips: u64,
    /// The initial state, one 8-byte slot each.
    pub inits: &'a [u64],
}

/// Forward steps for iterations `start + j`, `j` in `js`, on `state`, on one
/// [`StepRun`].
fn forward_span<S: Steps>(
    steps: &mut S,
    start: i64,
    js: std::ops::Range<u64>,
    state: &mut [u64],
) -> Result<(), SweepError<S::Error>> {
    run_forward(
        steps,
        start.wrapping_add(js.start as i64),
        js.end - js.start,
        state,
        None,
        None,
    )
}

/// Forward steps `first..first+count` on `state`, writing the state after each to
/// `tape` (`n` words of the arena) when given: one span when the steps run spans
/// ([`Steps::spans`]), else one step at a time on a [`StepRun`].
///
/// `counted` (a statistic) grows by one before each step, as the steps run one at a
/// time, or by `count` before a span, which does not say how far it got when it fails
/// (the compiled handle reports no statistics for a failed call).
fn run_forward<S: Steps>(
    steps: &mut S,
    first: i64,
    count: u64,
    state: &mut [u64],
    tape: Option<(Block, usize)>,
    counted: Option<&mut u64>,
) -> Result<(), SweepError<S::Error>> {
    if count == 0 {
        return Ok(());
    }
    if steps.spans() {
        if let Some(c) = counted {
            *c += count;
        }
        // The steps touch no checkpointing state: the arena stays borrowed.
        return with_arena(|a| {
            let tape = tape.map(|(b, n)| a.get(b, n));
            steps.forward_span(first, count, state, tape)
        })
        .map_err(SweepError::Step);
    }
    let k = state.len();
    let mut counted = counted;
    let run = StepRun::open();
    for j in 0..count {
        if let Some(c) = counted.as_deref_mut() {
            *c += 1;
        }
        steps
            .forward(first.wrapping_add(j as i64), state)
            .map_err(SweepError::Step)?;
        run.after_step();
        if let Some((b, n)) = tape {
            let off = j as usize * k;
            with_arena(|a| copy_words(&mut a.get(b, n)[off..off + k], state));
        }
    }
    Ok(())
}

fn step_backward<S: Steps>(
    steps: &mut S,
    i: i64,
    state: &[u64],
    adj: &mut [u64],
) -> Result<(), SweepError<S::Error>> {
    if steps.spans() {
        return steps.backward(i, state, adj).map_err(SweepError::Step);
    }
    in_step(|| steps.backward(i, state, adj)).map_err(SweepError::Step)
}

/// The forward sweep of a loop that will be reversed: runs `l` iterations from
/// `state` (which holds the final state on return) and records what `policy` keeps:
/// every state under store-all; under binomial, Revolve's first sweep (spine snapshots,
/// the last segment's states, and the tasks left for the reverse sweep); under every:K,
/// the state at the start of every segment and the last segment's states; the initial
/// state otherwise. Returns the token for [`reverse_recorded`].
pub fn record<S: Steps>(
    policy: Policy,
    start: i64,
    l: u64,
    state: &mut [u64],
    steps: &mut S,
) -> Result<u64, SweepError<S::Error>> {
    mark_used();
    let k = state.len();
    let requested = policy;
    let policy = resolve(policy, k, l.saturating_add(2));
    let mark = with_arena(|a| a.mark());
    let tasks_bottom = TASKS.with(|t| t.borrow().len());
    let held_before = HELD.with(|h| h.get());
    let r = (|| {
        let base = alloc_words(k)?;
        with_arena(|a| a.get(base, k).copy_from_slice(state));
        let (mut a, mut seg_base) = (0u64, base);
        let mut every = None;
        match policy {
            Policy::StoreAll => {}
            Policy::Every(kk) => {
                // A snapshot at the start of every segment but the first (whose start
                // is `base`), all in one block: the reverse sweep recomputes each
                // segment once from its snapshot, never from the initial state.
                let kk = u64::from(kk.max(1));
                let snaps = l.div_ceil(kk).saturating_sub(1);
                let n = words(snaps, k)?;
                let blocks = alloc_words(n)?;
                // The initial state counts as held, as under binomial (released with
                // it at the end of the reverse sweep).
                held_bytes((n + k) as i128 * 8);
                STATS.with(|s| s.borrow_mut().snapshots += snaps);
                for q in 0..snaps {
                    forward_span(steps, start, q * kk..(q + 1) * kk, state)?;
                    let off = q as usize * k;
                    with_arena(|ar| copy_words(&mut ar.get(blocks, n)[off..off + k], state));
                }
                a = snaps * kk;
                if snaps > 0 {
                    seg_base = blocks.offset((snaps - 1) as usize * k);
                }
                every = Some(EverySnaps {
                    kk,
                    count: snaps,
                    blocks,
                    words: n,
                });
            }
            Policy::Binomial(snaps) => {
                // Revolve's first sweep, taken by the forward sweep itself: advance,
                // snapshot, and leave the tasks the reverse sweep will run, down the
                // right spine until the rest fits in the snapshots left.
                let mut free = u64::from(snaps.max(1)) - 1;
                held_bytes(k as i128 * 8);
                STATS.with(|s| s.borrow_mut().snapshots += 1);
                while l - a > free + 1 && free > 0 {
                    let m = split(l - a, free + 1);
                    forward_span(steps, start, a..a + m, state)?;
                    let mark = with_arena(|ar| ar.mark());
                    let snap = alloc_words(k)?;
                    with_arena(|ar| copy_words(ar.get(snap, k), state));
                    held_bytes(k as i128 * 8);
                    STATS.with(|s| s.borrow_mut().snapshots += 1);
                    TASKS.with(|t| {
                        let mut t = t.borrow_mut();
                        t.push(Task::Reverse {
                            a,
                            b: a + m,
                            free,
                            base: seg_base,
                        });
                        t.push(Task::Release(mark));
                    });
                    a += m;
                    free = free.saturating_sub(1);
                    seg_base = snap;
                }
                if l - a > free + 1 {
                    // No snapshot left to store the rest: the reverse sweep recomputes
                    // it from the last one; the forward sweep just runs on.
                    TASKS.with(|t| {
                        t.borrow_mut().push(Task::Reverse {
                            a,
                            b: l,
                            free,
                            base: seg_base,
                        })
                    });
                    forward_span(steps, start, a..l, state)?;
                    a = l;
                }
            }
            _ => {
                forward_span(steps, start, 0..l, state)?;
                return Ok((base, None, None));
            }
        }
        // The final segment a..l: every state stored, then on to the final state.
        let stored = (l - a).saturating_sub(1);
        let n = words(stored, k)?;
        let seg_mark = with_arena(|ar| ar.mark());
        let tape = alloc_words(n)?;
        held_bytes(
            n as i128 * 8
                + if policy == Policy::StoreAll {
                    k as i128 * 8
                } else {
                    0
                },
        );
        STATS.with(|s| s.borrow_mut().snapshots += stored + u64::from(policy == Policy::StoreAll));
        // Every state but the last stored, then the last step.
        run_forward(
            steps,
            start.wrapping_add(a as i64),
            stored,
            state,
            Some((tape, n)),
            None,
        )?;
        if l > a {
            run_forward(
                steps,
                start.wrapping_add((l - 1) as i64),
                1,
                state,
                None,
                None,
            )?;
        }
        Ok((
            base,
            Some(Segment {
                a,
                base: seg_base,
                tape,
                words: n,
                mark: seg_mark,
            }),
            every,
        ))
    })();
    let (base, seg, every) = match r {
        Ok(x) => x,
        Err(e) => {
            TASKS.with(|t| t.borrow_mut().truncate(tasks_bottom));
            with_arena(|a| a.release(mark));
            HELD.with(|h| h.set(held_before));
            return Err(e);
        }
    };
    let token = NEXT_TOKEN.with(|t| {
        let v = t.get();
        t.set(v.wrapping_add(1).max(1));
        v
    });
    let nest = NEST.with(|n| n.get());
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        PENDING_LEN.with(|n| n.set(p.len() + 1));
        p.push(Recorded {
            token,
            nest,
            policy,
            start,
            l,
            k,
            mark,
            base,
            seg,
            every,
            tasks_bottom,
            requested,
            held_before,
        })
    });
    Ok(token)
}

/// The reverse sweep of a loop recorded by [`record`]: under store-all it reads the
/// recorded states (no forward step runs again); under binomial it reverses the
/// recorded last segment, then runs the schedule's remaining tasks; under every:K it
/// reverses the recorded last segment, then each earlier one recomputed once from its
/// snapshot; under recompute it runs [`reverse`] from the recorded initial state. Frees the recording,
/// and first the younger tapes of its level (see the module docs).
///
/// `spec` is what the `revloop` says of the loop; it must match the recording (start,
/// trip count, state count, policy, initial state bit for bit), else a
/// [`DriverError`] names the difference and the tape stays pending.
pub fn reverse_recorded<S: Steps>(
    token: u64,
    spec: LoopSpec<'_>,
    adj: &mut [u64],
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    let nest = NEST.with(|n| n.get());
    let found = PENDING.with(|p| {
        let p = p.borrow();
        let at = p.iter().rposition(|r| r.token == token && r.nest == nest)?;
        Some((at, p[at]))
    });
    let Some((at, rec)) = found else {
        return Err(DriverError::BadToken(token).into());
    };
    check_spec(token, &rec, &spec)?;
    // Younger tapes of this level die first, with their tasks and snapshots (they sit
    // above this one's); then this one leaves the pending list.
    drop_tapes_from(at + 1);
    PENDING.with(|p| p.borrow_mut().truncate(at));
    PENDING_LEN.with(|n| n.set(at));
    let k = rec.k;
    let r = match rec.seg {
        Some(seg) => {
            let mut sw = Sweep {
                k,
                stats: Stats {
                    sweeps: 1,
                    ..Stats::default()
                },
            };
            // The final segment from its stored states, last to first.
            let mut st = Scratch::new(k);
            let mut r = reverse_stored(
                rec.start.wrapping_add(seg.a as i64),
                rec.l - seg.a,
                seg.base,
                seg.tape,
                seg.words,
                &mut st,
                adj,
                &mut sw,
                steps,
            );
            with_arena(|a| a.release(seg.mark));
            held_bytes(-(seg.words as i128) * 8);
            // Then every:K's earlier segments, each recomputed once from its
            // snapshot; or the binomial schedule's tasks the forward sweep left.
            if let (Ok(()), Some(ev)) = (&r, rec.every) {
                r = reverse_segments(
                    rec.start, ev.kk, ev.count, rec.base, ev.blocks, adj, &mut sw, steps,
                );
                held_bytes(-(ev.words as i128) * 8);
            }
            if r.is_ok() {
                r = run_tasks(rec.tasks_bottom, rec.start, adj, &mut sw, steps);
            }
            TASKS.with(|t| t.borrow_mut().truncate(rec.tasks_bottom));
            held_bytes(-(k as i128) * 8);
            STATS.with(|s| {
                let mut s = s.borrow_mut();
                let peak = s.peak_tape_bytes;
                s.merge(&sw.stats);
                s.peak_tape_bytes = peak;
            });
            r
        }
        None => {
            let mut state0 = Scratch::new(k);
            with_arena(|a| state0.as_mut().copy_from_slice(a.get(rec.base, k)));
            reverse(rec.policy, rec.start, rec.l, state0.as_mut(), adj, steps)
        }
    };
    with_arena(|a| a.release(rec.mark));
    HELD.with(|h| h.set(rec.held_before));
    r
}

/// Whether the `revloop`'s `spec` describes the loop `rec` recorded.
fn check_spec(token: u64, rec: &Recorded, spec: &LoopSpec<'_>) -> Result<(), DriverError> {
    if spec.inits.len() != rec.k {
        return Err(DriverError::StateCountMismatch {
            token,
            tape: rec.k,
            revloop: spec.inits.len(),
        });
    }
    if spec.start != rec.start {
        return Err(DriverError::StartMismatch {
            token,
            tape: rec.start,
            revloop: spec.start,
        });
    }
    if spec.trips != rec.l {
        return Err(DriverError::TripCountMismatch {
            token,
            tape: rec.l,
            revloop: spec.trips,
        });
    }
    if spec.policy != rec.requested {
        return Err(DriverError::PolicyMismatch {
            token,
            tape: rec.requested,
            revloop: spec.policy,
        });
    }
    let slot = with_arena(|a| {
        let base = a.get(rec.base, rec.k);
        base.iter().zip(spec.inits).position(|(a, b)| a != b)
    });
    match slot {
        Some(slot) => Err(DriverError::InitMismatch { token, slot }),
        None => Ok(()),
    }
}

/// Runs `f` on this thread's arena. Borrows are short: never call a step inside.
#[inline]
fn with_arena<R>(f: impl FnOnce(&mut Arena) -> R) -> R {
    ARENA.with(|a| f(&mut a.borrow_mut()))
}

/// Takes (and resets) the statistics of the sweeps run on this thread since the last
/// call. The interpreter and the compiled handle call this around each evaluation.
pub fn take_stats() -> Stats {
    STATS.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Snapshot storage of this thread's arena, in bytes (capacity held for reuse).
pub fn arena_bytes() -> usize {
    ARENA.with(|a| a.borrow().capacity_words() * 8)
}

/// Bookkeeping of one sweep.
struct Sweep {
    k: usize,
    stats: Stats,
}

impl Sweep {
    fn hold(&mut self, snapshots: u64) {
        self.stats.snapshots += snapshots;
        held_bytes(i128::from(snapshots) * self.k as i128 * 8);
    }
    fn drop_held(&mut self, snapshots: u64) {
        held_bytes(-i128::from(snapshots) * self.k as i128 * 8);
    }
}

/// Reverses the `l` iterations `start..start+l` of a loop: `state0` is the state before
/// iteration `start`, `adj` the adjoint state after the last iteration on entry and
/// before the first on return. `policy` decides what is stored (see the module docs).
pub fn reverse<S: Steps>(
    policy: Policy,
    start: i64,
    l: u64,
    state0: &[u64],
    adj: &mut [u64],
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    mark_used();
    let k = state0.len();
    let mut sw = Sweep {
        k,
        stats: Stats {
            sweeps: 1,
            ..Stats::default()
        },
    };
    let policy = resolve(policy, k, l);
    let mark = with_arena(|a| a.mark());
    let held_before = HELD.with(|h| h.get());
    let r = alloc_words(k).and_then(|base| {
        with_arena(|a| a.get(base, k).copy_from_slice(state0));
        match policy {
            Policy::Recompute => recompute(start, l, base, adj, &mut sw, steps),
            Policy::Every(kk) => every(start, l, u64::from(kk), base, adj, &mut sw, steps),
            Policy::Binomial(s) => {
                binomial(start, l, u64::from(s).max(1), base, adj, &mut sw, steps)
            }
            Policy::StoreAll | Policy::Auto(_) => segment(start, l, base, adj, &mut sw, steps),
        }
    });
    with_arena(|a| a.release(mark));
    // Everything the sweep held is free again (also after a failed step).
    HELD.with(|h| h.set(held_before));
    // Peaks are tracked thread-wide by `held_bytes`; merge the counts.
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        let peak = s.peak_tape_bytes;
        s.merge(&sw.stats);
        s.peak_tape_bytes = peak;
    });
    r
}

/// The concrete policy `auto` stands for, for `k` state slots and `l` iterations.
pub fn resolve(policy: Policy, k: usize, l: u64) -> Policy {
    match policy {
        Policy::Auto(budget) => {
            let state_bytes = (k as u64).max(1) * 8;
            let fit = budget / state_bytes;
            if fit.saturating_add(2) >= l {
                Policy::StoreAll
            } else {
                Policy::Binomial(fit.clamp(2, u64::from(u32::MAX)) as u32)
            }
        }
        p => p,
    }
}

/// A copy of the state in `from` (`k` words), in a scratch buffer.
fn load(from: Block, k: usize) -> Scratch {
    let mut buf = Scratch::new(k);
    with_arena(|a| copy_words(buf.as_mut(), a.get(from, k)));
    buf
}

/// Forward steps `first..end` (iteration numbers) on `st`, on one [`StepRun`].
fn fwd_run<S: Steps>(
    steps: &mut S,
    first: i64,
    end: i64,
    st: &mut Scratch,
    sw: &mut Sweep,
) -> Result<(), SweepError<S::Error>> {
    let count = trip_count(first, end);
    let counted = Some(&mut sw.stats.forward_steps);
    run_forward(steps, first, count, st.as_mut(), None, counted)
}

fn bwd<S: Steps>(
    steps: &mut S,
    i: i64,
    st: &mut Scratch,
    adj: &mut [u64],
    sw: &mut Sweep,
) -> Result<(), SweepError<S::Error>> {
    sw.stats.backward_steps += 1;
    step_backward(steps, i, st.as_mut(), adj)
}

/// Store-all over `l` iterations from the state in `base`: the states of iterations
/// `1..l−1` are stored (the last one is the working state, used at once).
fn segment<S: Steps>(
    start: i64,
    l: u64,
    base: Block,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    if l == 0 {
        return Ok(());
    }
    let k = sw.k;
    let stored = l.saturating_sub(2);
    let n = words(stored, k)?;
    let mark = with_arena(|a| a.mark());
    let tape = alloc_words(n)?;
    sw.hold(stored);
    let r = (|| {
        let mut work = load(base, k);
        let counted = Some(&mut sw.stats.forward_steps);
        run_forward(
            steps,
            start,
            stored,
            work.as_mut(),
            Some((tape, n)),
            counted,
        )?;
        if l >= 2 {
            let counted = Some(&mut sw.stats.forward_steps);
            run_forward(
                steps,
                start + (l - 2) as i64,
                1,
                work.as_mut(),
                None,
                counted,
            )?;
        }
        bwd(steps, start + (l - 1) as i64, &mut work, adj, sw)?;
        reverse_stored(start, l - 1, base, tape, n, &mut work, adj, sw, steps)
    })();
    sw.drop_held(stored);
    with_arena(|a| a.release(mark));
    r
}

/// The backward steps of iterations `start..start+count` from stored states: the
/// first in `base`, the others in `tape` (`n` words). `work` is one scratch buffer for
/// them all: it is 264 bytes, and moving a fresh one per iteration cost more than the
/// copy.
#[allow(clippy::too_many_arguments)] // the sweep's state, as its callers hold it
fn reverse_stored<S: Steps>(
    start: i64,
    count: u64,
    base: Block,
    tape: Block,
    n: usize,
    work: &mut Scratch,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    let k = sw.k;
    if count == 0 {
        return Ok(());
    }
    if steps.spans() {
        sw.stats.backward_steps += count;
        // The steps touch no checkpointing state: the arena stays borrowed.
        return with_arena(|a| {
            let a = &*a;
            steps.backward_span(start, count, a.slice(base, k), a.slice(tape, n), adj)
        })
        .map_err(SweepError::Step);
    }
    let run = StepRun::open();
    for j in (0..count).rev() {
        with_arena(|a| {
            let src = if j == 0 {
                a.get(base, k)
            } else {
                let off = (j - 1) as usize * k;
                &mut a.get(tape, n)[off..off + k]
            };
            copy_words(work.as_mut(), src);
        });
        sw.stats.backward_steps += 1;
        steps
            .backward(start.wrapping_add(j as i64), work.as_mut(), adj)
            .map_err(SweepError::Step)?;
        run.after_step();
    }
    Ok(())
}

/// Every state recomputed from the initial one.
fn recompute<S: Steps>(
    start: i64,
    l: u64,
    base: Block,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    for j in (0..l).rev() {
        let mut work = load(base, sw.k);
        fwd_run(steps, start, start + j as i64, &mut work, sw)?;
        bwd(steps, start + j as i64, &mut work, adj, sw)?;
    }
    Ok(())
}

/// A snapshot at the start of every segment of `kk` iterations; segments reversed
/// last to first, each by [`segment`].
fn every<S: Steps>(
    start: i64,
    l: u64,
    kk: u64,
    base: Block,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    if l == 0 {
        return Ok(());
    }
    let k = sw.k;
    let kk = kk.max(1);
    let nseg = l.div_ceil(kk);
    let snaps = usize::try_from(nseg - 1).map_err(|_| DriverError::TooLarge {
        bytes: u128::from(nseg) * k as u128 * 8,
    })?;
    let n = words(snaps as u64, k)?;
    let mark = with_arena(|a| a.mark());
    let blocks_base = alloc_words(n)?;
    sw.hold(snaps as u64);
    let r = (|| {
        let mut work = load(base, k);
        for q in 1..nseg {
            let (first, end) = (start + ((q - 1) * kk) as i64, start + (q * kk) as i64);
            fwd_run(steps, first, end, &mut work, sw)?;
            let off = (q - 1) as usize * k;
            with_arena(|a| {
                a.get(blocks_base, snaps * k)[off..off + k].copy_from_slice(work.as_mut())
            });
        }
        // The last segment (possibly shorter), then the full ones before it.
        let last = nseg - 1;
        let last_base = if last == 0 {
            base
        } else {
            blocks_base.offset((last - 1) as usize * k)
        };
        let m = with_arena(|a| a.mark());
        segment(
            start + (last * kk) as i64,
            l - last * kk,
            last_base,
            adj,
            sw,
            steps,
        )?;
        with_arena(|a| a.release(m));
        reverse_segments(start, kk, last, base, blocks_base, adj, sw, steps)
    })();
    sw.drop_held(snaps as u64);
    with_arena(|a| a.release(mark));
    r
}

/// Reverses the `count` segments of `kk` iterations `start..start+count·kk`, last to
/// first, each by [`segment`] from the snapshot at its start: segment 0's in `base`,
/// segment `q`'s at word `(q−1)·k` of `snaps`. Each is recomputed once (`kk − 1`
/// forward steps) and its storage freed before the next.
#[allow(clippy::too_many_arguments)] // the sweep's state, as its callers hold it
fn reverse_segments<S: Steps>(
    start: i64,
    kk: u64,
    count: u64,
    base: Block,
    snaps: Block,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    for q in (0..count).rev() {
        let seg_base = if q == 0 {
            base
        } else {
            snaps.offset((q - 1) as usize * sw.k)
        };
        let m = with_arena(|a| a.mark());
        let r = segment(
            start.wrapping_add((q * kk) as i64),
            kk,
            seg_base,
            adj,
            sw,
            steps,
        );
        with_arena(|a| a.release(m));
        r?;
    }
    Ok(())
}

/// A task of the binomial schedule.
#[derive(Clone, Copy, Debug)]
enum Task {
    /// Reverse iterations `a..b` with `free` snapshots to spare; the state before `a`
    /// is in `base`.
    Reverse {
        a: u64,
        b: u64,
        free: u64,
        base: Block,
    },
    /// Drop the snapshot taken at this arena mark.
    Release(Mark),
}

thread_local! {
    /// The binomial schedule's task stack, shared by nested sweeps (each pops only what
    /// it pushed), grown once and reused.
    static TASKS: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
}

/// Revolve: `s` snapshots in all, the initial state (in `base`) included.
fn binomial<S: Steps>(
    start: i64,
    l: u64,
    s: u64,
    base: Block,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    let bottom = TASKS.with(|t| t.borrow().len());
    let push = |task: Task| TASKS.with(|t| t.borrow_mut().push(task));
    push(Task::Reverse {
        a: 0,
        b: l,
        free: s - 1,
        base,
    });
    let r = run_tasks(bottom, start, adj, sw, steps);
    TASKS.with(|t| t.borrow_mut().truncate(bottom));
    r
}

/// Runs the binomial schedule's tasks above `bottom` on the task stack.
fn run_tasks<S: Steps>(
    bottom: usize,
    start: i64,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    if steps.spans() {
        return run_tasks_spans(bottom, start, adj, sw, steps);
    }
    let k = sw.k;
    let push = |task: Task| TASKS.with(|t| t.borrow_mut().push(task));
    (|| {
        loop {
            let task = TASKS.with(|t| {
                let mut t = t.borrow_mut();
                if t.len() > bottom {
                    t.pop()
                } else {
                    None
                }
            });
            let Some(task) = task else { break };
            match task {
                Task::Release(m) => {
                    with_arena(|a| a.release(m));
                    sw.drop_held(1);
                }
                Task::Reverse { a, b, free, base } => {
                    let l = b - a;
                    if l <= free + 2 {
                        let m = with_arena(|ar| ar.mark());
                        segment(start.wrapping_add(a as i64), l, base, adj, sw, steps)?;
                        with_arena(|ar| ar.release(m));
                        continue;
                    }
                    let m = split(l, free + 1);
                    let mut work = load(base, k);
                    fwd_run(
                        steps,
                        start.wrapping_add(a as i64),
                        start.wrapping_add((a + m) as i64),
                        &mut work,
                        sw,
                    )?;
                    // `b − (a + m) ≥ 2` here (l > free + 2 ≥ 2 and Revolve leaves
                    // room), but stay correct if it is 1: the working state is used at
                    // once and is not a snapshot.
                    if b - (a + m) == 1 {
                        bwd(
                            steps,
                            start.wrapping_add((a + m) as i64),
                            &mut work,
                            adj,
                            sw,
                        )?;
                        push(Task::Reverse {
                            a,
                            b: a + m,
                            free,
                            base,
                        });
                        continue;
                    }
                    let mark = with_arena(|ar| ar.mark());
                    let snap = alloc_words(k)?;
                    with_arena(|ar| copy_words(ar.get(snap, k), work.as_mut()));
                    sw.hold(1);
                    push(Task::Reverse {
                        a,
                        b: a + m,
                        free,
                        base,
                    });
                    push(Task::Release(mark));
                    push(Task::Reverse {
                        a: a + m,
                        b,
                        free: free.saturating_sub(1),
                        base: snap,
                    });
                }
            }
        }
        Ok(())
    })()
}

/// A direct-mapped cache of [`split`], for one sweep: a schedule splits the same few
/// small `(l, ds)` pairs over and over (at N = 10⁵ under binomial:20, 88% of its
/// lookups hit), and a hit costs far less than the search for the repetition number.
struct SplitMemo([(u64, u64, u64); 64]);

impl SplitMemo {
    fn new() -> Self {
        // `split` is only asked for `l ≥ 3`: the zero key matches nothing.
        SplitMemo([(0, 0, 0); 64])
    }

    #[inline]
    fn split(&mut self, l: u64, ds: u64) -> u64 {
        let h = (l ^ ds.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        let e = &mut self.0[h as usize];
        if e.0 != l || e.1 != ds {
            *e = (l, ds, split(l, ds));
        }
        e.2
    }
}

/// [`run_tasks`] for steps that run spans: the same schedule, the same statistics,
/// at a fraction of the cost per task. A deep binomial schedule is mostly tasks of one
/// or two iterations (at N = 10⁵ under binomial:20, about 96,000 forward runs, 84,000
/// of them of one or two steps, and 42,000 leaves of two iterations), so what a task
/// costs besides its steps decides the sweep's speed. Such
/// steps touch no checkpointing state ([`Steps::spans`]), so this keeps the arena
/// borrowed and the task stack in hand for the whole run, counts the snapshot bytes
/// it holds locally (the thread's peak is raised once, at the end), and reuses one
/// working state. Its leaves hold exactly what `segment`'s do (the last state in the
/// working buffer); a leaf of two iterations, most of them, is two calls: one forward
/// step, then one backward span over both with the working state as its tape.
fn run_tasks_spans<S: Steps>(
    bottom: usize,
    start: i64,
    adj: &mut [u64],
    sw: &mut Sweep,
    steps: &mut S,
) -> Result<(), SweepError<S::Error>> {
    let k = sw.k;
    let slot = k as u64 * 8;
    let mut tasks = TaskStack::take(bottom);
    // Snapshot bytes held on the thread, and the peak as `held_bytes` raises it (at
    // every change), both applied to the thread once, at the end.
    let mut held = HELD.with(|h| h.get());
    let mut peak = 0u64;
    let mut work = Scratch::new(k);
    let mut memo = SplitMemo::new();
    let r = with_arena(|ar| -> Result<(), SweepError<S::Error>> {
        // The task to run next when it is known (it would be the next popped), and
        // whether `work` holds its initial state already.
        let mut next: Option<(u64, u64, u64, Block)> = None;
        let mut in_work = false;
        loop {
            let (a, b, free, base) = match next.take() {
                Some(t) => t,
                None => match tasks.pop() {
                    None => break,
                    Some(Task::Release(m)) => {
                        ar.release(m);
                        held = held.saturating_sub(slot);
                        peak = peak.max(held);
                        continue;
                    }
                    Some(Task::Reverse { a, b, free, base }) => (a, b, free, base),
                },
            };
            let have = std::mem::replace(&mut in_work, false);
            let l = b - a;
            if l == 0 {
                continue;
            }
            let first = start.wrapping_add(a as i64);
            let work = work.as_mut();
            if !have {
                copy_words(work, ar.slice(base, k));
            }
            if l <= free + 2 {
                // A leaf, as `segment` reverses it: the states before iterations
                // `a+1..b−1` stored, the last one in `work`.
                sw.stats.forward_steps += l - 1;
                sw.stats.backward_steps += l;
                if l <= 2 {
                    // No state to store (`segment` holds none either).
                    peak = peak.max(held);
                    let r = if l == 1 {
                        steps.backward(first, work, adj)
                    } else {
                        // `work` is the tape of a two-step span.
                        steps.forward_span(first, 1, work, None).and_then(|()| {
                            steps.backward_span(first, 2, ar.slice(base, k), work, adj)
                        })
                    };
                    r.map_err(SweepError::Step)?;
                    continue;
                }
                let stored = l - 2;
                let n = words(stored, k)?;
                let m = ar.mark();
                let tape = alloc_in(ar, n)?;
                sw.stats.snapshots += stored;
                peak = peak.max(held.saturating_add(stored.saturating_mul(slot)));
                let last = first.wrapping_add((l - 1) as i64);
                let r = steps
                    .forward_span(first, stored, work, Some(ar.get(tape, n)))
                    .and_then(|()| steps.forward_span(last.wrapping_sub(1), 1, work, None))
                    .and_then(|()| steps.backward(last, work, adj))
                    .and_then(|()| {
                        let tape = ar.slice(tape, n);
                        steps.backward_span(first, l - 1, ar.slice(base, k), tape, adj)
                    });
                ar.release(m);
                r.map_err(SweepError::Step)?;
                continue;
            }
            let m = memo.split(l, free + 1);
            sw.stats.forward_steps += m;
            steps
                .forward_span(first, m, work, None)
                .map_err(SweepError::Step)?;
            if b - (a + m) == 1 {
                // As in `run_tasks`: the working state is used at once.
                sw.stats.backward_steps += 1;
                steps
                    .backward(start.wrapping_add((a + m) as i64), work, adj)
                    .map_err(SweepError::Step)?;
                next = Some((a, a + m, free, base));
                continue;
            }
            let mark = ar.mark();
            let snap = alloc_in(ar, k)?;
            copy_words(ar.get(snap, k), work);
            sw.stats.snapshots += 1;
            held = held.saturating_add(slot);
            peak = peak.max(held);
            // `run_tasks` pushes the right part last and so runs it next: here it
            // runs next without the push, from the state still in `work`.
            tasks.push(Task::Reverse {
                a,
                b: a + m,
                free,
                base,
            });
            tasks.push(Task::Release(mark));
            next = Some((a + m, b, free.saturating_sub(1), snap));
            in_work = true;
        }
        Ok(())
    });
    drop(tasks);
    HELD.with(|h| h.set(held));
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        s.peak_tape_bytes = s.peak_tape_bytes.max(peak);
    });
    r
}

/// The task stack, taken out of [`TASKS`] for a sweep that runs spans (which touches
/// no other sweep's tasks) and put back when dropped — also if a step panics — with
/// the tasks above `bottom` (this sweep's: done, or abandoned on an error) gone.
struct TaskStack {
    tasks: Vec<Task>,
    bottom: usize,
}

impl TaskStack {
    fn take(bottom: usize) -> Self {
        TaskStack {
            tasks: TASKS.with(|t| std::mem::take(&mut *t.borrow_mut())),
            bottom,
        }
    }

    /// The top task above `bottom`.
    #[inline]
    fn pop(&mut self) -> Option<Task> {
        if self.tasks.len() > self.bottom {
            self.tasks.pop()
        } else {
            None
        }
    }

    #[inline]
    fn push(&mut self, t: Task) {
        self.tasks.push(t);
    }
}

impl Drop for TaskStack {
    fn drop(&mut self) {
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.truncate(self.bottom);
        // During thread teardown the stack may be gone: nothing is left to keep.
        let _ = TASKS.try_with(|t| *t.borrow_mut() = tasks);
    }
}

/// A small state lives on the stack; larger ones (a tensor's elements) use a heap
/// buffer taken from a per-thread pool ([`SCRATCH_POOL`]) and given back when dropped,
/// so steady-state sweeps allocate nothing whatever the state's size. The size
/// difference is the point: no heap access at all for the usual few-slot state.
#[allow(clippy::large_enum_variant)]
enum Scratch {
    Stack([u64; 32], usize),
    Heap(Vec<u64>),
}

/// The most buffers [`SCRATCH_POOL`] keeps: more than a sweep holds at once (a few per
/// nested sweep), so the pool is not a leak for a thread that once held many.
const SCRATCH_POOL_MAX: usize = 64;

thread_local! {
    /// Heap buffers of dropped [`Scratch`] states, for the next ones.
    static SCRATCH_POOL: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
}

impl Scratch {
    fn new(k: usize) -> Self {
        if k <= 32 {
            Scratch::Stack([0; 32], k)
        } else {
            let mut v = SCRATCH_POOL
                .try_with(|p| p.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            v.clear();
            v.resize(k, 0);
            Scratch::Heap(v)
        }
    }
    #[inline]
    fn as_mut(&mut self) -> &mut [u64] {
        match self {
            Scratch::Stack(a, k) => &mut a[..*k],
            Scratch::Heap(v) => v,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Scratch::Heap(v) = self {
            let v = std::mem::take(v);
            // During thread teardown the pool may be gone: the buffer is then freed.
            let _ = SCRATCH_POOL.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < SCRATCH_POOL_MAX {
                    p.push(v);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop with state (x, counter): x ← x·c + i, where the adjoint state is
    /// ∂L/∂x; the backward step records which iterations it saw, in order.
    struct Affine {
        c: f64,
        seen: Vec<i64>,
        /// The `x` of each state a backward step saw (its bits): a forward step run
        /// with a wrong iteration number changes them.
        xs: Vec<u64>,
        /// Run a span at a time (through the default span methods).
        spans: bool,
    }

    impl Steps for Affine {
        type Error = ();
        fn spans(&self) -> bool {
            self.spans
        }
        fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), ()> {
            let x = f64::from_bits(state[0]);
            state[0] = (x * self.c + i as f64).to_bits();
            // The counter is the iteration number, in two's complement.
            state[1] = state[1].wrapping_add(1);
            Ok(())
        }
        fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), ()> {
            // The state must be the one before iteration i: the counter says so.
            assert_eq!(state[1] as i64, i, "state of the wrong iteration");
            self.seen.push(i);
            self.xs.push(state[0]);
            let a = f64::from_bits(adj[0]);
            adj[0] = (a * self.c).to_bits();
            Ok(())
        }
    }

    fn run(policy: Policy, l: u64) -> (Vec<i64>, f64, Stats) {
        let (seen, adj, stats, _) = run_spans(policy, 0, l, false);
        (seen, adj, stats)
    }

    /// `reverse` on [`Affine`] from iteration `start`: the iterations and states the
    /// backward steps saw, the adjoint, the statistics.
    fn run_spans(
        policy: Policy,
        start: i64,
        l: u64,
        spans: bool,
    ) -> (Vec<i64>, f64, Stats, Vec<u64>) {
        let mut s = Affine {
            c: 0.5,
            seen: vec![],
            xs: vec![],
            spans,
        };
        let mut adj = [1.0f64.to_bits()];
        take_stats();
        let state0 = [2.0f64.to_bits(), start as u64];
        reverse(policy, start, l, &state0, &mut adj, &mut s).unwrap();
        (s.seen, f64::from_bits(adj[0]), take_stats(), s.xs)
    }

    #[test]
    fn every_policy_visits_every_state_in_reverse() {
        for l in [0u64, 1, 2, 3, 4, 7, 10, 33, 100] {
            let expect: Vec<i64> = (0..l as i64).rev().collect();
            let want_adj = 0.5f64.powi(l as i32);
            for p in [
                Policy::StoreAll,
                Policy::Recompute,
                Policy::Every(1),
                Policy::Every(3),
                Policy::Every(10),
                Policy::Binomial(1),
                Policy::Binomial(2),
                Policy::Binomial(3),
                Policy::Binomial(5),
                Policy::Binomial(200),
                Policy::Auto(64),
                Policy::Auto(1 << 20),
            ] {
                let (seen, adj, st) = run(p, l);
                assert_eq!(seen, expect, "{p} l={l}");
                assert_eq!(adj, want_adj, "{p} l={l}");
                assert_eq!(st.backward_steps, l, "{p} l={l}");
            }
        }
    }

    /// The two-phase form: `record` (the forward sweep) then `reverse_recorded`.
    fn run_recorded(policy: Policy, l: u64) -> (Vec<i64>, f64, Stats, u64) {
        let (seen, adj, stats, last, _) = run_recorded_spans(policy, 0, l, false);
        (seen, adj, stats, last)
    }

    /// [`run_spans`] through `record` and `reverse_recorded`; also the final `x`.
    #[allow(clippy::type_complexity)] // a test's whole observation, compared at once
    fn run_recorded_spans(
        policy: Policy,
        start: i64,
        l: u64,
        spans: bool,
    ) -> (Vec<i64>, f64, Stats, u64, Vec<u64>) {
        let mut s = Affine {
            c: 0.5,
            seen: vec![],
            xs: vec![],
            spans,
        };
        reset_thread();
        take_stats();
        mark_used();
        let inits = [2.0f64.to_bits(), start as u64];
        let mut state = inits;
        let token = record(policy, start, l, &mut state, &mut s).unwrap();
        assert_eq!(
            state[1].wrapping_sub(start as u64),
            l,
            "the forward sweep ran every iteration"
        );
        let mut adj = [1.0f64.to_bits()];
        let spec = LoopSpec {
            policy,
            start,
            trips: l,
            inits: &inits,
        };
        reverse_recorded(token, spec, &mut adj, &mut s).unwrap();
        (s.seen, f64::from_bits(adj[0]), take_stats(), state[0], s.xs)
    }

    #[test]
    fn recorded_sweeps_visit_every_state_within_their_snapshots() {
        for l in [0u64, 1, 2, 3, 7, 10, 33, 100, 1000] {
            let expect: Vec<i64> = (0..l as i64).rev().collect();
            for p in [
                Policy::StoreAll,
                Policy::Binomial(1),
                Policy::Binomial(2),
                Policy::Binomial(3),
                Policy::Binomial(10),
                Policy::Every(1),
                Policy::Every(4),
                Policy::Every(31),
                Policy::Recompute,
            ] {
                let (seen, adj, st, _) = run_recorded(p, l);
                assert_eq!(seen, expect, "{p} l={l}");
                assert_eq!(adj, 0.5f64.powi(l as i32), "{p} l={l}");
                if let Policy::Binomial(s) = p {
                    // At most s states held at once, the initial one included.
                    assert!(st.peak_tape_bytes <= 16 * u64::from(s), "{p} l={l}: {st:?}");
                    // The forward sweep is Revolve's first sweep: what remains to
                    // recompute is at most Revolve's count less the l − 1 steps of
                    // that sweep, plus one for the extra stored state at its end.
                    // The forward sweep takes Revolve's first sweep (spine snapshots and
                    // the final segment's states), so the reverse sweep recomputes
                    // less than Revolve's count: never more, and with two or more
                    // snapshots at least half the first sweep's l − 1 steps less.
                    let rev = revolve_forward_steps(l, u64::from(s));
                    assert!(st.forward_steps <= rev, "{p} l={l}: {st:?} vs {rev}");
                    if s >= 2 {
                        let saved = rev - st.forward_steps;
                        assert!(2 * saved >= l.saturating_sub(1), "{p} l={l}: saved {saved}");
                    }
                }
                if p == Policy::StoreAll {
                    assert_eq!(st.forward_steps, 0);
                    assert_eq!(st.peak_tape_bytes, 16 * l.max(1));
                }
            }
        }
    }

    /// Steps run a span at a time visit the same states in the same order, with the
    /// same results and statistics, as steps run one at a time: under every policy,
    /// recorded or not.
    #[test]
    fn spans_run_the_same_sweeps_as_single_steps() {
        for l in [0u64, 1, 2, 3, 4, 7, 10, 33, 100, 1000] {
            for p in [
                Policy::StoreAll,
                Policy::Recompute,
                Policy::Every(1),
                Policy::Every(3),
                Policy::Every(31),
                Policy::Binomial(1),
                Policy::Binomial(2),
                Policy::Binomial(3),
                Policy::Binomial(10),
                Policy::Auto(64),
                Policy::Auto(1 << 20),
            ] {
                // From iteration −7 too: a span run with the wrong iteration numbers
                // changes the states (`xs`).
                for start in [0, -7] {
                    if p != Policy::Recompute || l <= 100 {
                        let one = run_spans(p, start, l, false);
                        let spans = run_spans(p, start, l, true);
                        assert_eq!(one, spans, "{p} l={l} start={start}");
                    }
                    if !matches!(p, Policy::Auto(_)) {
                        let one = run_recorded_spans(p, start, l, false);
                        let spans = run_recorded_spans(p, start, l, true);
                        assert_eq!(one, spans, "{p} l={l} start={start}, recorded");
                    }
                }
            }
        }
    }

    /// A step that fails (forward at iteration `fwd_at`, backward at `bwd_at`) fails
    /// the sweep alike whether the steps run one at a time or a span at a time, and
    /// the thread's checkpointing state is clean afterwards (nothing left held).
    #[test]
    fn a_failing_step_fails_spans_and_single_steps_alike() {
        struct Failing {
            inner: Affine,
            fwd_at: i64,
            bwd_at: i64,
        }
        impl Steps for Failing {
            type Error = i64;
            fn spans(&self) -> bool {
                self.inner.spans
            }
            fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), i64> {
                if i == self.fwd_at {
                    return Err(i);
                }
                self.inner.forward(i, state).map_err(|()| -1)
            }
            fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), i64> {
                if i == self.bwd_at {
                    return Err(-i - 100);
                }
                self.inner.backward(i, state, adj).map_err(|()| -1)
            }
        }
        for p in [
            Policy::StoreAll,
            Policy::Binomial(3),
            Policy::Every(4),
            Policy::Recompute,
        ] {
            for (fwd_at, bwd_at) in [(17, -1), (-1, 23), (3, 5)] {
                let mut got = vec![];
                for spans in [false, true] {
                    let scope = enter_call();
                    let mut s = Failing {
                        inner: Affine {
                            c: 0.5,
                            seen: vec![],
                            xs: vec![],
                            spans,
                        },
                        fwd_at,
                        bwd_at,
                    };
                    let mut adj = [1.0f64.to_bits()];
                    let r = reverse(p, 0, 40, &[2.0f64.to_bits(), 0], &mut adj, &mut s);
                    // Nothing held before the call's scope resets the thread either.
                    assert_eq!(live(), (0, 0, 0), "{p} spans={spans}, in the call");
                    scope.finish();
                    assert_eq!(live(), (0, 0, 0), "{p} spans={spans}");
                    got.push(r);
                }
                assert!(got[0].is_err(), "{p} {fwd_at} {bwd_at}");
                assert_eq!(got[0], got[1], "{p} {fwd_at} {bwd_at}");
            }
        }
    }

    /// A nonlinear loop, x ← sin(x)·c + i·10⁻³ with a counter, whose backward step
    /// reads the state (∂/∂x = cos(x)·c): a wrong state changes the gradient's bits.
    struct Sine {
        c: f64,
        forward: u64,
    }

    impl Steps for Sine {
        type Error = ();
        fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), ()> {
            self.forward += 1;
            let x = f64::from_bits(state[0]);
            state[0] = (x.sin() * self.c + i as f64 * 1e-3).to_bits();
            state[1] += 1;
            Ok(())
        }
        fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), ()> {
            assert_eq!(state[1] as i64, i, "state of the wrong iteration");
            let (x, a) = (f64::from_bits(state[0]), f64::from_bits(adj[0]));
            adj[0] = (a * x.cos() * self.c).to_bits();
            Ok(())
        }
    }

    /// `record` then `reverse_recorded` (or `reverse` alone when `taped` is false) of
    /// the [`Sine`] loop: the gradient's bits, the statistics, and the forward steps
    /// counted by the steps themselves during the reverse sweep.
    fn sine(policy: Policy, l: u64, taped: bool) -> (u64, Stats, u64) {
        let mut s = Sine { c: 0.9, forward: 0 };
        let init = [0.3f64.to_bits(), 0];
        let scope = enter_call();
        let mut adj = [1.0f64.to_bits()];
        if taped {
            let mut state = init;
            let token = record(policy, 0, l, &mut state, &mut s).unwrap();
            assert_eq!(s.forward, l, "the forward sweep ran every iteration once");
            s.forward = 0;
            reverse_recorded(token, spec(policy, l, &init), &mut adj, &mut s).unwrap();
        } else {
            reverse(policy, 0, l, &init, &mut adj, &mut s).unwrap();
        }
        let st = scope.finish();
        assert_eq!(live(), (0, 0, 0), "{policy} l={l}: everything freed");
        (adj[0], st, s.forward)
    }

    #[test]
    fn recorded_every_recomputes_each_segment_once_from_its_snapshot() {
        for kk in [1u64, 2, 3, 7, 10, 16] {
            for l in [
                0u64,
                1,
                2,
                kk - 1,
                kk,
                kk + 1,
                2 * kk,
                5 * kk,
                5 * kk + 3,
                100,
                257,
            ] {
                let p = Policy::Every(kk as u32);
                let (want, _, _) = sine(Policy::StoreAll, l, true);
                let (got, st, fwd) = sine(p, l, true);
                assert_eq!(got, want, "{p} l={l}: gradient bits differ from store-all");
                let (untaped, _, _) = sine(p, l, false);
                assert_eq!(untaped, want, "{p} l={l}: the tapeless sweep differs");
                // Each segment but the last (recorded by the forward sweep) is
                // recomputed once from its snapshot: K − 1 steps each.
                let nseg = l.div_ceil(kk);
                let want_fwd = nseg.saturating_sub(1) * (kk - 1);
                assert_eq!(fwd, want_fwd, "{p} l={l}: steps counted by the loop");
                assert_eq!(st.forward_steps, want_fwd, "{p} l={l}: {st:?}");
                assert_eq!(st.backward_steps, l, "{p} l={l}");
                // States held at once (16 bytes each), the initial one included:
                // during the forward sweep, the segments' starts and the last
                // segment's other states; then the segments' starts and one
                // recomputed segment's stored states (all but its first and last).
                if l > 0 {
                    let last = l - (nseg - 1) * kk;
                    let fwd_peak = nseg + last - 1;
                    let rev_peak = if nseg > 1 {
                        nseg + kk.saturating_sub(2)
                    } else {
                        0
                    };
                    let held = st.peak_tape_bytes / 16;
                    assert_eq!(held, fwd_peak.max(rev_peak), "{p} l={l}: {st:?}");
                    assert!(
                        held < nseg + kk,
                        "{p} l={l}: the table's bound ⌈l/K⌉ + K − 1"
                    );
                }
            }
        }
    }

    #[test]
    fn recorded_every_recomputes_about_half_of_the_tapeless_sweep() {
        // (l, K, tapeless count, recorded count): the tapeless sweep runs to every
        // snapshot from s₀ ((⌈l/K⌉ − 1)·K steps) and then each segment again
        // (l − ⌈l/K⌉); the recorded one only the second part, less the last segment.
        for (l, kk, before, after) in [
            (1000u64, 10u32, 990 + 900, 99 * 9),
            (100_000, 316, 316 * 316 + (100_000 - 317), 316 * 315),
        ] {
            let p = Policy::Every(kk);
            let tapeless = run(p, l).2;
            let (_, _, recorded, _) = run_recorded(p, l);
            assert_eq!(tapeless.forward_steps, before, "{p} l={l}");
            assert_eq!(recorded.forward_steps, after, "{p} l={l}");
        }
    }

    #[test]
    fn forward_steps_match_the_closed_forms() {
        for l in [1u64, 2, 5, 10, 37, 100, 1000] {
            assert_eq!(run(Policy::StoreAll, l).2.forward_steps, l - 1);
            assert_eq!(run(Policy::Recompute, l).2.forward_steps, l * (l - 1) / 2);
            assert_eq!(run(Policy::StoreAll, l).2.snapshots, l.saturating_sub(2));
        }
    }

    #[test]
    fn binomial_matches_revolve() {
        // Forward steps r·l − β(s+1, r−1), at most s snapshots held (the initial state
        // counts as one), for many (l, s).
        for s in 1..=12u64 {
            for l in (1..=300u64).chain([1000, 4321, 10_000]) {
                let (_, _, st) = run(Policy::Binomial(s as u32), l);
                assert_eq!(st.forward_steps, revolve_forward_steps(l, s), "l={l} s={s}");
                let held = st.peak_tape_bytes / 16; // two 8-byte slots per state
                assert!(held < s.max(1), "l={l} s={s}: {held} snapshots held");
            }
        }
    }

    /// The memo answers what `split` answers, through collisions and evictions: the
    /// pairs are asked in an order that revisits each after many others.
    #[test]
    fn split_memo_answers_as_split() {
        let mut memo = SplitMemo::new();
        for round in 0..3u64 {
            for ds in 1..40u64 {
                // Large `l` only with enough snapshots: the formula's search for the
                // repetition number takes about `l` rounds when `ds` is 1.
                let large = if ds >= 10 {
                    vec![1 << 20, (1 << 40) + round]
                } else {
                    vec![]
                };
                for l in (3..600u64).chain(large) {
                    assert_eq!(memo.split(l, ds), split(l, ds), "l={l} ds={ds}");
                }
            }
        }
    }

    /// The table-driven split is Revolve's formula, wherever the table reaches.
    #[test]
    fn split_by_table_equals_the_formula() {
        let mut checked = 0;
        for ds in 1..=60u64 {
            let ls = (2..=3000u64).chain((0..40).map(|e| 3001 + (1u64 << e) / 3));
            for l in ls.chain([u64::MAX / 2, u64::MAX]) {
                if let Some(m) = split_table(l, ds) {
                    assert_eq!(m, split_divide(l, ds), "l={l} ds={ds}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 150_000, "{checked}");
        // Beyond the table (one snapshot: β(1, r) = r + 1 < 100 up to r = 98): the
        // formula.
        assert_eq!(split_table(100, 1), None);
        assert_eq!(split(100, 1), split_divide(100, 1));
    }

    #[test]
    fn revolve_formula_small_cases() {
        // Hand-checked: s = 1 is recompute-from-start; l ≤ s + 1 is store-all.
        assert_eq!(revolve_forward_steps(3, 1), 3);
        assert_eq!(revolve_forward_steps(4, 1), 6);
        assert_eq!(revolve_forward_steps(4, 2), 4);
        assert_eq!(revolve_forward_steps(10, 2), 20);
        assert_eq!(revolve_forward_steps(5, 9), 4);
        assert_eq!(beta(2, 3), 10);
        assert_eq!(beta(3, -1), 0);
    }

    #[test]
    fn policies_parse_and_print() {
        for text in [
            "store-all",
            "recompute",
            "binomial:20",
            "every:100",
            "auto:1024",
        ] {
            let p: Policy = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
        }
        for bad in ["binomial", "binomial:0", "every:-1", "fast", "auto:x"] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }

    /// The thread's pending tapes, task stack height and snapshot bytes held.
    fn live() -> (usize, usize, u64) {
        (
            PENDING.with(|p| p.borrow().len()),
            TASKS.with(|t| t.borrow().len()),
            HELD.with(|h| h.get()),
        )
    }

    fn spec(policy: Policy, l: u64, inits: &[u64]) -> LoopSpec<'_> {
        LoopSpec {
            policy,
            start: 0,
            trips: l,
            inits,
        }
    }

    #[test]
    fn consuming_a_tape_drops_the_younger_ones_and_runs_only_its_own_tasks() {
        let scope = enter_call();
        let init = [2.0f64.to_bits(), 0];
        let p = Policy::Binomial(3);
        let mut s = Affine {
            c: 0.5,
            seen: vec![],
            xs: vec![],
            spans: false,
        };
        let mut state = init;
        let t1 = record(p, 0, 10, &mut state, &mut s).unwrap();
        let after_first = live();
        let mut state = init;
        let t2 = record(p, 0, 10, &mut state, &mut s).unwrap();
        assert!(live().1 > after_first.1, "the second tape left tasks");
        let mut adj = [1.0f64.to_bits()];
        reverse_recorded(t1, spec(p, 10, &init), &mut adj, &mut s).unwrap();
        // Ten backward steps, c^10: the younger tape's tasks were not run.
        assert_eq!(f64::from_bits(adj[0]), 0.5f64.powi(10));
        assert_eq!(s.seen, (0..10).rev().collect::<Vec<_>>());
        assert_eq!(live(), (0, 0, 0), "both tapes are gone");
        let e = reverse_recorded(t2, spec(p, 10, &init), &mut adj, &mut s).unwrap_err();
        assert_eq!(e, SweepError::Driver(DriverError::BadToken(t2)));
        scope.finish();
    }

    #[test]
    fn a_tape_dies_with_the_step_or_the_call_that_recorded_it() {
        // A backward step that records a tape and never consumes it.
        struct Leaky;
        impl Steps for Leaky {
            type Error = ();
            fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
                state[1] += 1;
                Ok(())
            }
            fn backward(&mut self, _i: i64, _s: &[u64], _a: &mut [u64]) -> Result<(), ()> {
                let mut st = [0, 0];
                record(Policy::Binomial(2), 0, 20, &mut st, &mut Leaky).unwrap();
                Ok(())
            }
        }
        let scope = enter_call();
        let mut adj = [0];
        reverse(Policy::Binomial(2), 0, 8, &[0, 0], &mut adj, &mut Leaky).unwrap();
        assert_eq!(live(), (0, 0, 0));
        // A call's unconsumed tape goes when the call finishes.
        let mut st = [0, 0];
        record(Policy::Binomial(2), 0, 20, &mut st, &mut Leaky).unwrap();
        assert_ne!(live(), (0, 0, 0));
        scope.finish();
        assert_eq!(live(), (0, 0, 0));
    }

    #[test]
    fn each_steps_tapes_die_before_the_next_step_runs() {
        // Steps that each record a tape and leave it: every step must find the tapes
        // of the one before gone, at its own level, whatever the policy and however
        // the driver groups its steps into runs.
        struct Inc;
        impl Steps for Inc {
            type Error = ();
            fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
                state[0] += 1;
                Ok(())
            }
            fn backward(&mut self, _i: i64, _s: &[u64], _a: &mut [u64]) -> Result<(), ()> {
                Ok(())
            }
        }
        struct Leaky {
            seen: Vec<(usize, u32)>,
        }
        impl Leaky {
            fn leak(&mut self) {
                self.seen
                    .push((PENDING_LEN.with(|n| n.get()), NEST.with(|n| n.get())));
                let mut st = [0];
                record(Policy::StoreAll, 0, 3, &mut st, &mut Inc).unwrap();
            }
        }
        impl Steps for Leaky {
            type Error = ();
            fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
                self.leak();
                state[0] += 1;
                Ok(())
            }
            fn backward(&mut self, _i: i64, _s: &[u64], adj: &mut [u64]) -> Result<(), ()> {
                self.leak();
                adj[0] += 1;
                Ok(())
            }
        }
        for p in [
            Policy::StoreAll,
            Policy::Binomial(3),
            Policy::Every(4),
            Policy::Recompute,
            Policy::Auto(64),
        ] {
            let scope = enter_call();
            let outside = (PENDING_LEN.with(|n| n.get()), NEST.with(|n| n.get()) + 1);
            let mut leaky = Leaky { seen: vec![] };
            let (mut st, mut adj) = ([0u64], [0u64]);
            let token = record(p, 0, 17, &mut st, &mut leaky).unwrap();
            assert_eq!(st, [17]);
            reverse_recorded(token, spec(p, 17, &[0]), &mut adj, &mut leaky).unwrap();
            reverse(p, 0, 17, &[0], &mut adj, &mut leaky).unwrap();
            assert_eq!(adj, [34], "{p}");
            assert!(leaky.seen.len() >= 17 * 3, "{p}");
            assert!(
                leaky.seen.iter().all(|&s| s == outside),
                "{p}: {:?}",
                leaky.seen
            );
            scope.finish();
            assert_eq!(live(), (0, 0, 0), "{p}");
        }
    }

    #[test]
    fn small_copies_copy_every_word() {
        for n in 0..12u64 {
            let src: Vec<u64> = (1..=n).collect();
            let mut dst = vec![0; n as usize];
            copy_words(&mut dst, &src);
            assert_eq!(dst, src);
        }
    }

    #[test]
    fn a_call_inside_a_step_cannot_consume_the_steps_tapes() {
        // A step records a tape, then a top-level call made from the step tries to
        // consume it: the call is another level, so the token is refused there, and the
        // tape is still the step's to consume.
        struct Reentrant;
        impl Steps for Reentrant {
            type Error = ();
            fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
                state[1] += 1;
                Ok(())
            }
            fn backward(&mut self, _i: i64, _s: &[u64], _a: &mut [u64]) -> Result<(), ()> {
                let init = [0u64, 0];
                let mut st = init;
                let mut inner = Affine {
                    c: 0.5,
                    seen: vec![],
                    xs: vec![],
                    spans: false,
                };
                let t = record(Policy::StoreAll, 0, 4, &mut st, &mut inner).unwrap();
                let mut adj = [1.0f64.to_bits()];
                let call = enter_call();
                let e = reverse_recorded(t, spec(Policy::StoreAll, 4, &init), &mut adj, &mut inner);
                assert_eq!(e, Err(SweepError::Driver(DriverError::BadToken(t))));
                call.finish();
                reverse_recorded(t, spec(Policy::StoreAll, 4, &init), &mut adj, &mut inner)
                    .unwrap();
                assert_eq!(inner.seen, [3, 2, 1, 0]);
                Ok(())
            }
        }
        let scope = enter_call();
        let mut adj = [0];
        reverse(Policy::Binomial(2), 0, 5, &[0, 0], &mut adj, &mut Reentrant).unwrap();
        assert_eq!(live(), (0, 0, 0));
        scope.finish();
    }

    #[test]
    fn a_revloop_must_describe_its_tape() {
        let scope = enter_call();
        let init = [2.0f64.to_bits(), 0];
        let p = Policy::Binomial(3);
        let mut s = Affine {
            c: 0.5,
            seen: vec![],
            xs: vec![],
            spans: false,
        };
        let mut state = init;
        let t = record(p, 0, 10, &mut state, &mut s).unwrap();
        let mut adj = [1.0f64.to_bits()];
        let other = [2.0f64.to_bits(), 1];
        let token = t;
        for (sp, want) in [
            (
                LoopSpec {
                    start: 1,
                    ..spec(p, 10, &init)
                },
                DriverError::StartMismatch {
                    token,
                    tape: 0,
                    revloop: 1,
                },
            ),
            (
                spec(p, 9, &init),
                DriverError::TripCountMismatch {
                    token,
                    tape: 10,
                    revloop: 9,
                },
            ),
            (
                spec(p, 10, &init[..1]),
                DriverError::StateCountMismatch {
                    token,
                    tape: 2,
                    revloop: 1,
                },
            ),
            (
                spec(Policy::Binomial(4), 10, &init),
                DriverError::PolicyMismatch {
                    token,
                    tape: p,
                    revloop: Policy::Binomial(4),
                },
            ),
            (
                spec(p, 10, &other),
                DriverError::InitMismatch { token, slot: 1 },
            ),
        ] {
            let e = reverse_recorded(t, sp, &mut adj, &mut s).unwrap_err();
            assert_eq!(e, SweepError::Driver(want));
        }
        // Refusals leave the tape pending and untouched: it still gives c^10.
        assert!(s.seen.is_empty());
        reverse_recorded(t, spec(p, 10, &init), &mut adj, &mut s).unwrap();
        assert_eq!(f64::from_bits(adj[0]), 0.5f64.powi(10));
        scope.finish();
    }

    #[test]
    fn nested_sweeps_share_the_arena() {
        // A backward step that runs a whole inner sweep, as a loop inside a loop body.
        struct Outer(bool);
        impl Steps for Outer {
            type Error = ();
            fn forward(&mut self, _i: i64, state: &mut [u64]) -> Result<(), ()> {
                state[1] += 1;
                Ok(())
            }
            fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), ()> {
                assert_eq!(state[1] as i64, i);
                let (seen, a, _, _) = run_spans(Policy::Binomial(3), 0, 50, self.0);
                assert_eq!(seen.len(), 50);
                adj[0] = (f64::from_bits(adj[0]) + a).to_bits();
                Ok(())
            }
        }
        // The inner sweeps one step at a time, then a span at a time.
        for inner_spans in [false, true] {
            let mut adj = [0.0f64.to_bits()];
            let mut outer = Outer(inner_spans);
            reverse(Policy::Binomial(4), 0, 40, &[0, 0], &mut adj, &mut outer).unwrap();
            assert_eq!(f64::from_bits(adj[0]), 40.0 * 0.5f64.powi(50));
        }
    }
}
