//! Versions per node never decrease: neither a key's version as announced
//! in events, nor how far a node holds another node's updates (within one
//! generation of that node).

use std::collections::BTreeMap;

use gossip_core::proto::Event;

use crate::sim::{Ctx, Sim};

/// Last versions seen, per observer.
#[derive(Debug, Default)]
pub struct Versions {
    keys: BTreeMap<(usize, String, u64, String), u64>,
    members: BTreeMap<(usize, String, u64), u64>,
}

/// The property, as named in violations.
pub const NAME: &str = "versions never decrease";

impl Versions {
    /// A key event must carry a newer version than the last one seen.
    pub fn on_event(&mut self, ctx: &Ctx<'_>, event: &Event) -> Option<(&'static str, String)> {
        let Event::KeyChanged {
            owner,
            key,
            version,
            ..
        } = event
        else {
            return None;
        };
        let last = self
            .keys
            .entry((ctx.node, owner.name.clone(), owner.generation, key.clone()))
            .or_insert(0);
        if *version <= *last {
            return Some((
                NAME,
                format!(
                    "n{} saw {owner}/{key} go from version {last} to {version}",
                    ctx.node
                ),
            ));
        }
        *last = *version;
        None
    }

    /// How far each node holds each member never goes back.
    pub fn on_round(&mut self, sim: &Sim) -> Option<(&'static str, String)> {
        let mut first = None;
        for i in 0..sim.len() {
            let Some(n) = sim.node(i) else { continue };
            for m in n.members() {
                let last = self
                    .members
                    .entry((i, m.id.name.clone(), m.id.generation))
                    .or_insert(0);
                if m.max_version < *last && first.is_none() {
                    first = Some((
                        NAME,
                        format!(
                            "n{i} holds {} up to {} after {}",
                            m.id, m.max_version, *last
                        ),
                    ));
                }
                *last = (*last).max(m.max_version);
            }
        }
        first
    }

    /// Forgets what node `i` saw (it restarted with empty state).
    pub fn restarted(&mut self, i: usize) {
        self.keys.retain(|k, _| k.0 != i);
        self.members.retain(|k, _| k.0 != i);
    }
}
