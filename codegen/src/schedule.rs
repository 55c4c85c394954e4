//! Instruction scheduling for short live ranges, before lowering.
//!
//! Reverse-mode code computes every primal value in a forward sweep and reads it again
//! in the adjoint sweep, so in program order almost every value is live across the
//! whole function: Cranelift spills them, and chunked functions pass them through the
//! workspace. The derivative's data dependencies rarely demand that order (the adjoint
//! of element `i` of a sum needs only element `i`'s primal values), so this pass
//! reorders each region's instructions with a greedy list scheduler that prefers the
//! ready instruction that ends the most live ranges:
//!
//! `score = (operands whose last use this is) − (results that will be used)`,
//!
//! highest first, ties in program order (so code with nothing to gain keeps its
//! order). Values used only by the terminator do not count as live, because the
//! lowering stores returned values to the results buffer as soon as they exist.
//!
//! Only the order changes, never an operation, so results are bit-identical. Data
//! dependencies (including values read inside a loop body) are kept, and instructions
//! with effects (`guard`, `call`, `loop`) keep their order among themselves; pure
//! instructions may move across them, which is safe because no pure op traps. The
//! terminator stays last. The IR seen by the user (dumps, the interpreter) is not
//! changed: the JIT schedules its own copy.
//!
//! Cost: linear per region in practice. The ready instructions are kept by score in
//! bitmaps (`Ready`): insertion, removal and re-prioritisation (a score only grows,
//! when an operand's remaining uses drop to one) are O(1), and taking the best costs a
//! look at each score present plus one word per 2¹⁸ instructions.

use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Region, Value, ValueDef};

/// Reorders every region of `f` (see the module docs).
pub(crate) fn schedule_function(f: &mut Function) {
    let regions: Vec<Region> = f.regions.keys().collect();
    let mut local: SecondaryMap<Inst, u32> = SecondaryMap::with_default(u32::MAX);
    for r in regions {
        if let Some(order) = region_order(f, r, &mut local) {
            f.regions[r].insts = order;
        }
    }
}

/// The scheduled order of `f`'s body region, leaving `f` as it is: for a function with
/// no other region, all that [`schedule_function`] would change, without a copy of the
/// function (a traced gradient has 10⁶ instructions).
pub(crate) fn body_order(f: &Function) -> Vec<Inst> {
    let mut local: SecondaryMap<Inst, u32> = SecondaryMap::with_default(u32::MAX);
    region_order(f, f.body, &mut local).unwrap_or_else(|| f.regions[f.body].insts.clone())
}

/// The scheduled order of region `r`, or `None` to keep the one it has.
fn region_order(f: &Function, r: Region, local: &mut SecondaryMap<Inst, u32>) -> Option<Vec<Inst>> {
    let insts = &f.regions[r].insts;
    let (&term, body) = insts.split_last()?;
    if !matches!(f.insts[term].op, Op::Ret | Op::Yield) || body.len() < 3 {
        return None;
    }
    let n = body.len();
    for (i, &inst) in body.iter().enumerate() {
        local[inst] = i as u32;
    }
    // The local instruction defining `v`, if any.
    let def_of = |f: &Function, local: &SecondaryMap<Inst, u32>, v: Value| -> Option<usize> {
        match f.values.get(v)?.def {
            ValueDef::Result(d, _) => {
                let k = local[d];
                (k != u32::MAX && body.get(k as usize) == Some(&d)).then_some(k as usize)
            }
            ValueDef::Param(..) => None,
        }
    };

    // Operands of each instruction that are defined in this region (deduplicated),
    // including those read anywhere inside its nested regions, as one flat list with
    // offsets (no per-instruction allocation: this runs on 10⁶-instruction gradients).
    let mut op_start: Vec<u32> = Vec::with_capacity(n + 1);
    let mut op_list: Vec<u32> = Vec::with_capacity(2 * n);
    let mut stack: Vec<Inst> = Vec::new();
    // Whether each instruction has effects, noted in the same walk (another pass over
    // the instruction table costs a sixth of the scheduler on a 10⁶-instruction body).
    let mut effects: Vec<bool> = Vec::with_capacity(n);
    for &inst in body {
        let start = op_list.len();
        op_start.push(start as u32);
        effects.push(!f.insts[inst].op.is_pure());
        stack.clear();
        stack.push(inst);
        while let Some(j) = stack.pop() {
            let d = &f.insts[j];
            for &a in &d.args {
                if let Some(k) = def_of(f, local, a) {
                    let k = k as u32;
                    if !op_list[start..].contains(&k) {
                        op_list.push(k);
                    }
                }
            }
            for &nr in &d.regions {
                stack.extend(f.regions[nr].insts.iter().copied());
            }
        }
    }
    op_start.push(op_list.len() as u32);
    let ops = |i: usize| &op_list[op_start[i] as usize..op_start[i + 1] as usize];

    // Users of each instruction's results (the terminator's use does not count), flat.
    let mut use_start = vec![0u32; n + 1];
    for &k in &op_list {
        use_start[k as usize + 1] += 1;
    }
    for i in 0..n {
        use_start[i + 1] += use_start[i];
    }
    let mut use_list = vec![0u32; op_list.len()];
    let mut fill = use_start.clone();
    for i in 0..n {
        for &k in ops(i) {
            use_list[fill[k as usize] as usize] = i as u32;
            fill[k as usize] += 1;
        }
    }
    let users = |k: usize| &use_list[use_start[k] as usize..use_start[k + 1] as usize];

    // Predecessors: operand definitions, and the previous instruction with effects.
    let mut npred: Vec<u32> = (0..n).map(|i| ops(i).len() as u32).collect();
    let mut effect_next = vec![u32::MAX; n];
    let mut last_effect: Option<usize> = None;
    for i in 0..n {
        if effects[i] {
            if let Some(e) = last_effect {
                effect_next[e] = i as u32;
                if !ops(i).contains(&(e as u32)) {
                    npred[i] += 1;
                }
            }
            last_effect = Some(i);
        }
    }
    let mut rem: Vec<u32> = (0..n).map(|k| users(k).len() as u32).collect();
    let mut score: Vec<i32> = (0..n)
        .map(|i| {
            let kills = ops(i).iter().filter(|&&k| rem[k as usize] == 1).count() as i32;
            kills - i32::from(rem[i] > 0)
        })
        .collect();

    let mut ready = Ready::new(n);
    for i in 0..n {
        if npred[i] == 0 {
            ready.insert(score[i], i);
        }
    }
    let mut done = vec![false; n];
    let mut order: Vec<Inst> = Vec::with_capacity(insts.len());
    while let Some(i) = ready.pop() {
        done[i] = true;
        order.push(body[i]);
        for &k in ops(i) {
            let k = k as usize;
            rem[k] -= 1;
            if rem[k] == 1 {
                if let Some(&w) = users(k).iter().find(|&&w| !done[w as usize]) {
                    let w = w as usize;
                    if npred[w] == 0 {
                        ready.raise(score[w], w);
                    }
                    score[w] += 1;
                }
            }
        }
        let mut release = |t: usize, ready: &mut Ready| {
            npred[t] -= 1;
            if npred[t] == 0 {
                ready.insert(score[t], t);
            }
        };
        for &t in users(i) {
            release(t as usize, &mut ready);
        }
        let e = effect_next[i];
        if e != u32::MAX && !ops(e as usize).contains(&(i as u32)) {
            release(e as usize, &mut ready);
        }
    }
    if order.len() != n {
        // Unreachable for verified IR (dependencies follow program order, so they are
        // acyclic); keep the original order rather than lose instructions.
        return None;
    }
    order.push(term);
    Some(order)
}

/// The ready instructions of a region by score: [`Ready::pop`] takes the lowest index
/// of the highest score (what a binary heap of `(score, Reverse(index))` would give, with
/// no stale entries). Each score has a set of indices kept as a three-level bitmap
/// (bits, one summary bit per word, one per summary word), so insertion and removal are
/// O(1) and the minimum is a few `trailing_zeros`: a traced gradient starts with 10⁵
/// instructions ready at once, where a heap's pops missed the cache at every level.
struct Ready {
    n: usize,
    /// `sets[s + 1]`: the ready instructions of score `s` (scores are at least -1).
    sets: Vec<IndexSet>,
}

impl Ready {
    fn new(n: usize) -> Self {
        Ready { n, sets: vec![] }
    }

    fn set(&mut self, score: i32) -> &mut IndexSet {
        let k = usize::try_from(score + 1).unwrap_or(0);
        if self.sets.len() <= k {
            self.sets.resize_with(k + 1, || IndexSet::new(0));
        }
        if self.sets[k].len == 0 && self.sets[k].words.is_empty() {
            self.sets[k] = IndexSet::new(self.n);
        }
        &mut self.sets[k]
    }

    fn insert(&mut self, score: i32, i: usize) {
        self.set(score).insert(i);
    }

    /// Moves ready instruction `i` from `score` to `score + 1`.
    fn raise(&mut self, score: i32, i: usize) {
        self.set(score).remove(i);
        self.set(score + 1).insert(i);
    }

    fn pop(&mut self) -> Option<usize> {
        let set = self.sets.iter_mut().rev().find(|s| s.len > 0)?;
        let i = set.min()?;
        set.remove(i);
        Some(i)
    }
}

/// A set of indices below `n` (see [`Ready`]).
struct IndexSet {
    len: usize,
    words: Vec<u64>,
    mid: Vec<u64>,
    top: Vec<u64>,
}

impl IndexSet {
    fn new(n: usize) -> Self {
        let words = n.div_ceil(64);
        let mid = words.div_ceil(64);
        IndexSet {
            len: 0,
            words: vec![0; words],
            mid: vec![0; mid],
            top: vec![0; mid.div_ceil(64)],
        }
    }

    fn insert(&mut self, i: usize) {
        let (w, m) = (i / 64, i / 4096);
        if self.words[w] & (1 << (i % 64)) == 0 {
            self.len += 1;
            self.words[w] |= 1 << (i % 64);
            self.mid[m] |= 1 << (w % 64);
            self.top[m / 64] |= 1 << (m % 64);
        }
    }

    fn remove(&mut self, i: usize) {
        let (w, m) = (i / 64, i / 4096);
        if self.words[w] & (1 << (i % 64)) != 0 {
            self.len -= 1;
            self.words[w] &= !(1 << (i % 64));
            if self.words[w] == 0 {
                self.mid[m] &= !(1 << (w % 64));
                if self.mid[m] == 0 {
                    self.top[m / 64] &= !(1 << (m % 64));
                }
            }
        }
    }

    /// The lowest index in the set.
    fn min(&self) -> Option<usize> {
        let t = self.top.iter().position(|&t| t != 0)?;
        let m = t * 64 + self.top[t].trailing_zeros() as usize;
        let w = m * 64 + self.mid[m].trailing_zeros() as usize;
        Some(w * 64 + self.words[w].trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::{parse_function, print_function};

    /// `Ready` pops what a binary heap of `(score, Reverse(index))` with lazy
    /// re-prioritisation pops, on random insertions and raises (sizes crossing the
    /// bitmaps' word and summary boundaries).
    #[test]
    fn ready_set_pops_in_heap_order() {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        for n in [3, 64, 65, 4096, 4097, 300_000] {
            let mut ready = Ready::new(n);
            let mut heap = BinaryHeap::new();
            let mut score = vec![-1i32; n];
            let mut state = vec![0u8; n]; // 0 waiting, 1 ready, 2 done
            for _ in 0..3 * n.min(20_000) {
                let i = rand(n);
                match (rand(3), state[i]) {
                    (0, 0) => {
                        score[i] = rand(4) as i32 - 1;
                        state[i] = 1;
                        ready.insert(score[i], i);
                        heap.push((score[i], Reverse(i)));
                    }
                    (1, 1) => {
                        ready.raise(score[i], i);
                        score[i] += 1;
                        heap.push((score[i], Reverse(i)));
                    }
                    _ => {
                        let want = loop {
                            match heap.pop() {
                                Some((s, Reverse(j))) if state[j] == 1 && s == score[j] => {
                                    break Some(j)
                                }
                                Some(_) => continue,
                                None => break None,
                            }
                        };
                        let got = ready.pop();
                        assert_eq!(got, want, "n = {n}");
                        if let Some(j) = got {
                            state[j] = 2;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn interleaves_independent_sweeps_and_keeps_effects_in_order() {
        // Two independent chains written sweep by sweep: scheduling pairs each value
        // with its last use.
        let src = "func @f(%x: f64, %y: f64) -> f64 {\n  %a = sin %x\n  %b = sin %y\n  \
                   %c = cos %a\n  %d = cos %b\n  %e = add %c, %d\n  ret %e\n}\n";
        let mut f = parse_function(src).unwrap();
        schedule_function(&mut f);
        let text = print_function(&f);
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("%c = cos") < pos("%b = sin"), "{text}");
        jitad_ir::verify_function(&f, None).unwrap();

        // Guards keep their order; every instruction is still there.
        let src = "func @g(%x: f64) -> f64 {\n  %z = const 0.0 : f64\n  %c1 = gt %x, %z\n  \
                   guard %c1\n  %c2 = lt %x, %z\n  %n = eq %c2, %c2\n  guard %n\n  \
                   %s = sqrt %x\n  ret %s\n}\n";
        let mut g = parse_function(src).unwrap();
        let before = g.num_insts();
        schedule_function(&mut g);
        let text = print_function(&g);
        assert_eq!(g.num_insts(), before);
        assert!(text.find("guard %c1").unwrap() < text.find("guard %n").unwrap());
        assert!(text.trim_end().ends_with("ret %s\n}"), "{text}");
        jitad_ir::verify_function(&g, None).unwrap();
    }
}
