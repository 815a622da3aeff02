//! The queue of events waiting for [`Node::poll_event`](crate::proto::Node::poll_event),
//! bounded and fair: when it is full, the event that gives way is the
//! oldest one about the member with more queued events than any fair share,
//! so a burst about one peer (a forged keyspace, a flapping member) cannot
//! push out what the application has to hear about the others.

use std::collections::{HashMap, VecDeque};

use crate::proto::event::Event;

/// Room kept once the queue is drained (a burst's room is given back).
const KEPT: usize = 256;

/// Bounded queue of events, fair between the members they are about.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    queue: VecDeque<Event>,
    /// Queued events per member name (events about this node itself are
    /// not counted: they are never the ones to give way first).
    about: HashMap<String, usize>,
}

/// The member an event is about, if another node.
fn subject(e: &Event) -> Option<&str> {
    Some(match e {
        Event::MemberJoined { id }
        | Event::MemberStatus { id, .. }
        | Event::MemberForgotten { id } => &id.name,
        Event::MemberRestarted { new, .. } => &new.name,
        Event::NameConflict { claimant, .. } => &claimant.name,
        Event::KeyChanged { owner, .. } | Event::KeyDeleted { owner, .. } => &owner.name,
        Event::Joined | Event::LeaveAnnounced => return None,
    })
}

impl EventQueue {
    /// Queues `event`, holding at most `max` (`max` ≥ 1). Returns whether
    /// an older event was dropped to make room.
    pub fn push(&mut self, event: Event, max: usize) -> bool {
        let dropped = self.queue.len() >= max;
        if dropped {
            let victim = self.victim();
            if let Some(e) = self.queue.remove(victim) {
                self.forget(&e);
            }
        }
        if let Some(name) = subject(&event) {
            *self.about.entry(name.to_owned()).or_default() += 1;
        }
        self.queue.push_back(event);
        dropped
    }

    /// Next event, oldest first.
    pub fn pop(&mut self) -> Option<Event> {
        let e = self.queue.pop_front();
        match &e {
            Some(e) => self.forget(e),
            None if self.queue.capacity() > KEPT => {
                // A catch-up page admits thousands of members at once, one
                // event each: do not keep that burst's room for the node's
                // lifetime (it was 135 KB per node in a 2,000-node simulation).
                self.queue = VecDeque::new();
                self.about = HashMap::new();
            }
            None => {}
        }
        e
    }

    fn forget(&mut self, e: &Event) {
        if let Some(name) = subject(e)
            && let Some(n) = self.about.get_mut(name)
        {
            *n -= 1;
            if *n == 0 {
                self.about.remove(name);
            }
        }
    }

    /// The position of the event to drop: the oldest about the member with
    /// the most queued events; the oldest of all if no member has more
    /// than one.
    fn victim(&self) -> usize {
        let top = self.about.values().copied().max().unwrap_or(0);
        if top <= 1 {
            return 0;
        }
        self.queue
            .iter()
            .position(|e| subject(e).is_some_and(|n| self.about.get(n) == Some(&top)))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::NodeId;
    use bytes::Bytes;
    use std::sync::Arc;

    fn key(owner: &str, k: usize) -> Event {
        Event::KeyChanged {
            owner: Arc::new(NodeId::new(owner, "127.0.0.1:1".parse().expect("addr"), 1)),
            key: format!("k{k}"),
            value: Bytes::new(),
            version: k as u64,
        }
    }

    fn owners(q: &mut EventQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|e| subject(&e).unwrap_or("self").to_owned())
            .collect()
    }

    #[test]
    fn a_flood_about_one_member_gives_way_before_the_others() {
        let mut q = EventQueue::default();
        q.push(key("quiet", 0), 8);
        q.push(Event::Joined, 8);
        let dropped = (0..100).filter(|&k| q.push(key("loud", k), 8)).count();
        assert_eq!(dropped, 94, "the queue stays at 8");
        q.push(key("other", 1), 8);
        let got = owners(&mut q);
        assert_eq!(got.len(), 8);
        assert_eq!(&got[..2], ["quiet", "self"], "the others' events are kept");
        assert_eq!(got.last().map(String::as_str), Some("other"));
        assert_eq!(got.iter().filter(|o| *o == "loud").count(), 5);
        assert!(q.about.is_empty(), "counts follow every pop");
    }

    #[test]
    fn with_no_member_ahead_the_oldest_gives_way() {
        let mut q = EventQueue::default();
        for (k, o) in ["a", "b", "c"].iter().enumerate() {
            q.push(key(o, k), 2);
        }
        assert_eq!(owners(&mut q), ["b", "c"]);
    }
}
