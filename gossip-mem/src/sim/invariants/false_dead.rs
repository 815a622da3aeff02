//! No node is declared Dead while it runs, is not paused, and is reachable
//! from the node that convicts it (same partition group, links of both
//! working both ways; a slow node counts as reachable: it still answers).
//! A link that came back less than a gossip interval ago does not make
//! the two reachable yet: a verdict then rests on what one of them could
//! not hear or say, and a node that heard nobody at all (a deaf node,
//! which convicts for itself alone) may conclude in the moment before the
//! first message reaches it. A scenario that holds verdicts made while
//! cut off to be false, as `flap` does, counts them itself.
//! Under loss up to 20% with default settings this must never happen;
//! counted, not fatal, so scenarios can report `false_positives`.

use gossip_core::proto::{Event, Status};

use crate::sim::Ctx;

/// Convictions of healthy nodes.
#[derive(Debug, Default)]
pub struct FalseDead {
    /// How many so far.
    pub count: usize,
}

/// The property, as named in violations.
pub const NAME: &str = "no healthy node is declared dead";

impl FalseDead {
    /// Checks a status change against the target's real state.
    pub fn on_event(&mut self, ctx: &Ctx<'_>, event: &Event) -> Option<(&'static str, String)> {
        let Event::MemberStatus {
            id,
            to: Status::Dead,
            reason,
            ..
        } = event
        else {
            return None;
        };
        let target = crate::sim::node_index(&id.name).filter(|&t| t < ctx.slots.len())?;
        let slot = &ctx.slots[target];
        let healthy = slot.is_up() && !slot.is_paused() && slot.generation == id.generation;
        let judge = &ctx.slots[ctx.node];
        // Links cut one way (either node's) make the two unreachable from
        // each other, as a partition does.
        let reachable = slot.group == judge.group
            && slot.can_send()
            && slot.can_receive()
            && judge.can_send()
            && judge.can_receive()
            && !slot.catching_up(ctx.now)
            && !judge.catching_up(ctx.now);
        if healthy && reachable {
            self.count += 1;
            return Some((
                NAME,
                format!("n{} declared running n{target} dead ({reason:?})", ctx.node),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Sim, SimConfig};
    use gossip_core::proto::{Instant, NodeId, StatusReason};
    use std::sync::Arc;
    use std::time::Duration;

    /// Feeds "`judge` declared `target` (generation 1) Dead" to `f`.
    fn convict(sim: &Sim, judge: usize, target: usize, f: &mut FalseDead) -> Option<String> {
        convict_at(sim, Instant::ZERO, judge, target, f)
    }

    /// [`convict`] at `now`.
    fn convict_at(
        sim: &Sim,
        now: Instant,
        judge: usize,
        target: usize,
        f: &mut FalseDead,
    ) -> Option<String> {
        let ctx = Ctx {
            now,
            node: judge,
            slots: &sim.nodes,
        };
        let dead = Event::MemberStatus {
            id: Arc::new(NodeId::new(
                format!("n{target}"),
                crate::sim::sim_addr(target),
                1,
            )),
            from: Status::Suspect,
            to: Status::Dead,
            reason: StatusReason::Silent {
                silent_for: Duration::from_secs(10),
                phi: 20.0,
            },
        };
        f.on_event(&ctx, &dead).map(|(_, what)| what)
    }

    fn pair() -> Sim {
        let mut sim = Sim::new(SimConfig::default());
        sim.add_node(&[]);
        sim.add_node(&[0]);
        sim
    }

    #[test]
    fn a_healthy_reachable_node_declared_dead_is_counted() {
        let mut sim = pair();
        // Slow is still reachable: it answers, late.
        sim.set_slow(1, Duration::from_millis(500));
        let mut f = FalseDead::default();
        let found = convict(&sim, 0, 1, &mut f);
        assert!(found.is_some_and(|w| w.contains("n0 declared running n1 dead")));
        assert_eq!(f.count, 1);
    }

    #[test]
    fn a_node_cut_off_one_way_may_be_declared_dead() {
        let mut f = FalseDead::default();
        for (node, send, receive) in [(1, false, true), (1, true, false), (0, false, true)] {
            let mut sim = pair();
            sim.set_links(node, send, receive);
            assert_eq!(
                convict(&sim, 0, 1, &mut f),
                None,
                "n{node} {send} {receive}"
            );
        }
        let mut sim = pair();
        sim.crash(1);
        assert_eq!(convict(&sim, 0, 1, &mut f), None, "crashed");
        assert_eq!(f.count, 0);
    }

    #[test]
    fn a_link_back_for_a_gossip_interval_makes_a_verdict_count_again() {
        let interval = SimConfig::default().proto.gossip_interval;
        for node in [0, 1] {
            let mut sim = pair();
            sim.set_links(node, true, false);
            sim.run_for_rounds(1.0, &mut |_, _| {});
            sim.set_links(node, true, true);
            let mut f = FalseDead::default();
            // Just back: still catching up.
            assert_eq!(convict_at(&sim, sim.now(), 0, 1, &mut f), None, "n{node}");
            assert_eq!(
                convict_at(&sim, sim.now() + interval / 2, 0, 1, &mut f),
                None,
                "n{node}"
            );
            // A whole interval later: reachable, and counted.
            assert!(convict_at(&sim, sim.now() + interval, 0, 1, &mut f).is_some());
            assert_eq!(f.count, 1);
        }
    }
}
