//! An item due at a time, ordered by (time, arrival sequence): the entries
//! of the simulator's event queue and of the in-memory network's delay heap.
//! Wrap in `std::cmp::Reverse` to pop the earliest from a `BinaryHeap`.

use std::cmp::Ordering;

/// `item`, due at `at`; `seq` breaks ties in arrival order.
#[derive(Debug)]
pub(crate) struct Timed<T, I> {
    pub at: T,
    pub seq: u64,
    pub item: I,
}

impl<T: Ord, I> PartialEq for Timed<T, I> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord, I> Eq for Timed<T, I> {}

impl<T: Ord, I> PartialOrd for Timed<T, I> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord, I> Ord for Timed<T, I> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}
