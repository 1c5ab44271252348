//! The time-ordered list of call and return events of one partition, with lift / unlift.
//!
//! Wing & Gong's search walks this list: a call may be linearized next iff no return
//! precedes it among the remaining events. Linearizing an op *lifts* its call and return
//! out of the list; backtracking *unlifts* them (dancing links: each removed node keeps its
//! own prev / next, so reinsertion in LIFO order restores the list exactly).

/// What the search finds at a position of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The call of op `0`.
    Call(u32),
    /// The return of op `0`, which completed at a known time.
    Return(u32),
    /// The (+infinity) return of an op with unknown outcome. These sort after every finite
    /// event, so reaching one means every remaining op has an unknown outcome.
    Endless(u32),
    /// Past the last event.
    End,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    event: Event,
    prev: u32,
    next: u32,
}

/// Doubly linked list of events with a head and a tail sentinel.
///
/// Invariant: for every op still in the list, its call node precedes its return node.
pub(crate) struct EventList {
    nodes: Vec<Node>,
    /// `call_node[op]` / `return_node[op]`: where op's events live in `nodes`.
    call_node: Vec<u32>,
    return_node: Vec<u32>,
}

const HEAD: u32 = 0;

impl EventList {
    /// Builds the list for ops whose times are `(call_ns, return_ns)`, `None` meaning +inf.
    ///
    /// Order: by time; at equal times calls before returns (ops that touch are treated as
    /// concurrent, as porcupine does); then by op index, so the order is deterministic.
    pub(crate) fn new(times: &[(u64, Option<u64>)]) -> EventList {
        let op_count = u32::try_from(times.len()).expect("lincheck: over 2^32 ops in a key");
        // Sort key: (is +inf, time, 0 = call / 1 = return, op).
        let mut order: Vec<(bool, u64, u8, u32)> = Vec::with_capacity(times.len() * 2);
        for (op, (call_ns, return_ns)) in (0..op_count).zip(times) {
            assert!(
                return_ns.is_none_or(|r| r >= *call_ns),
                "op {op} returns before its call"
            );
            order.push((false, *call_ns, 0, op));
            order.push((return_ns.is_none(), return_ns.unwrap_or(u64::MAX), 1, op));
        }
        order.sort_unstable();
        let tail = u32::try_from(order.len() + 1).expect("lincheck: too many events");
        let mut nodes = Vec::with_capacity(order.len() + 2);
        nodes.push(Node {
            event: Event::End,
            prev: HEAD,
            next: 1,
        });
        let mut call_node = vec![0; times.len()];
        let mut return_node = vec![0; times.len()];
        for (position, (endless, _, kind, op)) in (1..tail).zip(order) {
            let event = match (kind, endless) {
                (0, _) => {
                    call_node[op as usize] = position;
                    Event::Call(op)
                }
                (_, false) => {
                    return_node[op as usize] = position;
                    Event::Return(op)
                }
                (_, true) => {
                    return_node[op as usize] = position;
                    Event::Endless(op)
                }
            };
            nodes.push(Node {
                event,
                prev: position - 1,
                next: position + 1,
            });
        }
        nodes.push(Node {
            event: Event::End,
            prev: tail - 1,
            next: tail,
        });
        EventList {
            nodes,
            call_node,
            return_node,
        }
    }

    /// Position of the first remaining event.
    pub(crate) fn first(&self) -> u32 {
        self.nodes[HEAD as usize].next
    }

    /// Position after `position`.
    pub(crate) fn next(&self, position: u32) -> u32 {
        self.nodes[position as usize].next
    }

    /// The event at `position` (`Event::End` at the tail).
    pub(crate) fn event(&self, position: u32) -> Event {
        self.nodes[position as usize].event
    }

    /// Position of op's call event.
    pub(crate) fn call_position(&self, op: u32) -> u32 {
        self.call_node[op as usize]
    }

    /// Removes op's call and return from the list.
    pub(crate) fn lift(&mut self, op: u32) {
        self.unlink(self.call_node[op as usize]);
        self.unlink(self.return_node[op as usize]);
    }

    /// Puts back op's call and return. Must undo the most recent `lift` still in effect.
    pub(crate) fn unlift(&mut self, op: u32) {
        self.relink(self.return_node[op as usize]);
        self.relink(self.call_node[op as usize]);
    }

    fn unlink(&mut self, position: u32) {
        let Node { prev, next, .. } = self.nodes[position as usize];
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
    }

    fn relink(&mut self, position: u32) {
        let Node { prev, next, .. } = self.nodes[position as usize];
        debug_assert_eq!(
            self.nodes[prev as usize].next, next,
            "unlift out of LIFO order"
        );
        self.nodes[prev as usize].next = position;
        self.nodes[next as usize].prev = position;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(list: &EventList) -> Vec<Event> {
        let mut events = Vec::new();
        let mut position = list.first();
        while list.event(position) != Event::End {
            events.push(list.event(position));
            position = list.next(position);
        }
        events
    }

    #[test]
    fn calls_sort_before_returns_at_equal_times_and_endless_returns_last() {
        // Goal: the event order porcupine uses; method: three ops touching at t = 10.
        let list = EventList::new(&[(0, Some(10)), (10, Some(20)), (5, None)]);
        use Event::*;
        assert_eq!(
            walk(&list),
            vec![Call(0), Call(2), Call(1), Return(0), Return(1), Endless(2)]
        );
    }

    #[test]
    fn unlift_restores_the_list_exactly() {
        // Goal: dancing links are reversible; method: lift two ops, unlift in LIFO order.
        let mut list = EventList::new(&[(0, Some(10)), (1, Some(2)), (3, Some(4))]);
        let before = walk(&list);
        list.lift(1);
        list.lift(0);
        assert_eq!(walk(&list), vec![Event::Call(2), Event::Return(2)]);
        list.unlift(0);
        list.unlift(1);
        assert_eq!(walk(&list), before);
        assert_eq!(list.event(list.call_position(2)), Event::Call(2));
    }
}
