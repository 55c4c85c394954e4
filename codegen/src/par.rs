//! Running the independent parts of one planning step on several threads.
//!
//! Used where a step reads a 10⁶-instruction function part by part and the parts do
//! not depend on each other (checking a long body, describing chunks for sharing).
//! The first part runs on the calling thread, the others on scoped threads; a part
//! whose thread the OS refuses runs on the calling thread too. Results come back in
//! part order, so the caller sees what one walk would have seen.

use std::ops::Range;

/// `0..n` cut into at most `parts` contiguous ranges of nearly equal length (none
/// empty; one empty range when `n` is 0).
pub(crate) fn split(n: usize, parts: usize) -> Vec<Range<usize>> {
    let per = n.div_ceil(parts.max(1)).max(1);
    let mut out: Vec<Range<usize>> = (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect();
    if out.is_empty() {
        out.push(0..0);
    }
    out
}

/// `work` on each of `parts`, in part order; a part's panic is its `Err`, except the
/// first part's, which goes on unwinding in the caller.
pub(crate) fn run_parts<T: Send>(
    parts: &[Range<usize>],
    work: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<std::thread::Result<T>> {
    let Some((first, rest)) = parts.split_first() else {
        return vec![];
    };
    if rest.is_empty() {
        return vec![Ok(work(first.clone()))];
    }
    let work = &work;
    std::thread::scope(|sc| {
        let handles: Vec<_> = rest
            .iter()
            .map(|r| {
                let part = r.clone();
                let spawned = std::thread::Builder::new().spawn_scoped(sc, move || work(part));
                (r.clone(), spawned.ok())
            })
            .collect();
        let mut out = vec![Ok(work(first.clone()))];
        for (r, h) in handles {
            out.push(match h {
                Some(h) => h.join(),
                None => Ok(work(r)),
            });
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range_in_order() {
        assert_eq!(split(10, 3), vec![0..4, 4..8, 8..10]);
        assert_eq!(split(2, 4), vec![0..1, 1..2]);
        assert_eq!(split(0, 2), vec![0..0]);
        let r = run_parts(&split(1000, 3), |p| p.sum::<usize>());
        let sums: Vec<usize> = r.into_iter().map(Result::unwrap).collect();
        assert_eq!(sums.iter().sum::<usize>(), 999 * 1000 / 2);
        assert_eq!(sums.len(), 3);
    }
}
