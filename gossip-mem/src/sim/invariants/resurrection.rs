//! A deleted key never reappears, and a forgotten node never comes back.
//!
//! Deletions are recorded by the scenario ([`Resurrection::deleted`]). A
//! node that learned an old value before the tombstone reached it is fine;
//! a node that already holds the owner's updates up to the tombstone must
//! never show a value of that key older than it.
//! Forgetting is seen in events; the same incarnation must not be admitted
//! again by the node that forgot it.

use std::collections::{BTreeMap, BTreeSet};

use gossip_core::proto::Event;

use crate::sim::{Ctx, Sim};

/// Tombstones and forgotten incarnations seen so far.
#[derive(Debug, Default)]
pub struct Resurrection {
    /// (owner name, owner generation, key) → tombstone version.
    tombstones: BTreeMap<(String, u64, String), u64>,
    /// (observer, name, generation) forgotten by that observer.
    forgotten: BTreeSet<(usize, String, u64)>,
}

/// The property, as named in violations.
pub const NAME: &str = "nothing deleted or forgotten comes back";

impl Resurrection {
    /// Records that `owner` (at `generation`) deleted `key` at `version`.
    pub fn deleted(&mut self, owner: &str, generation: u64, key: &str, version: u64) {
        self.tombstones
            .insert((owner.to_owned(), generation, key.to_owned()), version);
    }

    /// Checks key and membership events.
    pub fn on_event(&mut self, ctx: &Ctx<'_>, event: &Event) -> Option<(&'static str, String)> {
        match event {
            Event::KeyChanged {
                owner,
                key,
                version,
                ..
            } => {
                let t =
                    self.tombstones
                        .get(&(owner.name.clone(), owner.generation, key.clone()))?;
                let past = ctx.slots[ctx.node]
                    .node()?
                    .member(&owner.name)
                    .is_some_and(|m| m.max_version >= *t);
                (past && *version < *t).then(|| {
                    (
                        NAME,
                        format!(
                            "n{} got {owner}/{key} v{version} back after its deletion at v{t}",
                            ctx.node
                        ),
                    )
                })
            }
            Event::MemberForgotten { id } => {
                self.forgotten
                    .insert((ctx.node, id.name.clone(), id.generation));
                None
            }
            Event::MemberJoined { id } => self
                .forgotten
                .contains(&(ctx.node, id.name.clone(), id.generation))
                .then(|| {
                    (
                        NAME,
                        format!("n{} admitted {id} again after forgetting it", ctx.node),
                    )
                }),
            _ => None,
        }
    }

    /// No node past a recorded tombstone holds an older value of its key.
    pub fn on_round(&mut self, sim: &Sim) -> Option<(&'static str, String)> {
        for ((owner, generation, key), t) in &self.tombstones {
            for i in 0..sim.len() {
                let Some(n) = sim.node(i) else { continue };
                if n.member(owner)
                    .is_some_and(|m| m.id.generation == *generation && m.max_version >= *t)
                    && let Some((_, v)) = n.get(owner, key)
                    && v < *t
                {
                    return Some((
                        NAME,
                        format!("n{i} holds {owner}/{key} v{v}, deleted at v{t}"),
                    ));
                }
            }
        }
        None
    }

    /// Forgets what node `i` forgot (it restarted with empty state).
    pub fn restarted(&mut self, i: usize) {
        self.forgotten.retain(|f| f.0 != i);
    }
}
