//! Explicit parallelism, as in faer: every parallel kernel takes a [`Par`] argument.
//!
//! Kernels split their work into tasks whose results do not depend on how many tasks there are
//! (per-row arithmetic is independent of the split, reductions run in a fixed order), so
//! `Par::Seq` and `Par::Rayon(n)` give bit-identical results for every `n`.

use std::num::NonZeroUsize;

use rayon::prelude::*;

/// How a kernel may use threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Par {
    /// On the calling thread.
    #[default]
    Seq,
    /// Split into up to `n` tasks on the current rayon pool (install a pool to bound threads).
    Rayon(NonZeroUsize),
}

impl Par {
    /// `Seq` for `n <= 1`, otherwise `Rayon(n)`.
    pub fn rayon(n: usize) -> Par {
        NonZeroUsize::new(n)
            .filter(|n| n.get() > 1)
            .map_or(Par::Seq, Par::Rayon)
    }

    /// The number of tasks work is split into.
    pub fn degree(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Rayon(n) => n.get(),
        }
    }

    /// Runs `f(0) .. f(tasks - 1)`, in order for `Seq`, on rayon otherwise.
    pub(crate) fn for_each_task(self, tasks: usize, f: impl Fn(usize) + Sync + Send) {
        match self {
            Par::Seq => (0..tasks).for_each(f),
            Par::Rayon(_) if tasks <= 1 => (0..tasks).for_each(f),
            Par::Rayon(_) => (0..tasks).into_par_iter().for_each(f),
        }
    }
}

impl Par {
    /// Runs `f(chunk, item)` over consecutive `chunk`-long pieces of `data` paired with `items`.
    pub(crate) fn for_each_chunk<T: Send, U: Sync>(
        self,
        data: &mut [T],
        chunk: usize,
        items: &[U],
        f: impl Fn(&mut [T], &U) + Sync + Send,
    ) {
        match self {
            Par::Seq => data.chunks_mut(chunk).zip(items).for_each(|(c, u)| f(c, u)),
            Par::Rayon(_) => data
                .par_chunks_mut(chunk)
                .zip(items)
                .for_each(|(c, u)| f(c, u)),
        }
    }
}

/// The `i`-th of `parts` nearly equal consecutive ranges of `0..n`.
pub(crate) fn split_range(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let (q, r) = (n / parts, n % parts);
    let start = i * q + i.min(r);
    start..start + q + usize::from(i < r)
}

/// A raw pointer that tasks share to write disjoint parts of one buffer.
pub(crate) struct SyncPtr<T>(pub *mut T);
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    /// The pointer. A method, so that closures capture the whole `SyncPtr` (which is `Sync`)
    /// rather than its raw-pointer field (which is not).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: only used by kernels whose tasks write provably disjoint elements (see each use), and
// only for `T: Send` element types (f32, f64).
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SyncPtr<T> {}
