//! The event queue: a binary heap of small `(time, sequence, slot)` keys over a slab of payloads.
//!
//! Keys are 20 bytes, so sifting the heap moves little memory whatever the payload; payload
//! slots are reused through a free list, so a steady run allocates nothing per event. Events at
//! the same instant come out in the order they were scheduled (the sequence number), which is
//! what makes a run repeatable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use cairn_dht::Timestamp;

/// Events of type `T` ordered by time, then by scheduling order.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    heap: BinaryHeap<Reverse<(Timestamp, u64, u32)>>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at`.
    pub(crate) fn push(&mut self, at: Timestamp, event: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at, self.next_seq, slot)));
        self.next_seq += 1;
    }

    /// The earliest event, if it is due at or before `limit`.
    pub(crate) fn pop_until(&mut self, limit: Timestamp) -> Option<(Timestamp, T)> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > limit {
            return None;
        }
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, event))
    }

    /// Events waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_order_then_fifo_and_slots_reused() {
        let mut q = EventQueue::new();
        let t = |n| Timestamp::from_micros(n);
        q.push(t(5), "c");
        q.push(t(1), "a");
        q.push(t(5), "d");
        q.push(t(3), "b");
        assert_eq!(q.pop_until(t(0)), None);
        let mut out = Vec::new();
        while let Some((_, e)) = q.pop_until(t(10)) {
            out.push(e);
        }
        assert_eq!(out, ["a", "b", "c", "d"]);
        q.push(t(20), "e");
        assert_eq!(q.slab.len(), 4, "a freed slot is reused");
        assert_eq!(q.len(), 1);
    }
}
