//! The simulator's event queue: events ordered by virtual time, ties broken by insertion
//! order, so a run is a pure function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual time in microseconds since the simulation started.
pub type Micros = u64;

/// A time-ordered queue of events of type `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Micros, u64, Slot<E>)>>,
    seq: u64,
}

/// Wraps an event so that only time and sequence decide the order.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: Micros, event: E) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, Slot(event))));
    }

    /// The earliest event if it is due at or before `until`.
    pub fn pop_until(&mut self, until: Micros) -> Option<(Micros, E)> {
        if self
            .heap
            .peek()
            .is_some_and(|Reverse((t, _, _))| *t <= until)
        {
            self.heap.pop().map(|Reverse((t, _, Slot(e)))| (t, e))
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_then_insertion_order() {
        let mut q = EventQueue::default();
        q.push(5, "b");
        q.push(1, "a");
        q.push(5, "c");
        assert_eq!(q.pop_until(10), Some((1, "a")));
        assert_eq!(q.pop_until(4), None);
        assert_eq!(q.pop_until(10), Some((5, "b")));
        assert_eq!(q.pop_until(10), Some((5, "c")));
        assert!(q.is_empty());
    }
}
