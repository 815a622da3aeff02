//! No node is declared Dead while it runs, is not paused, and is reachable
//! from the node that convicts it (same partition group). Under loss up to
//! 20% with default settings this must never happen; counted, not fatal, so
//! scenarios can report `false_positives`.

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
        let reachable = slot.group == ctx.slots[ctx.node].group;
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
