//! A deleted key never reappears, and a forgotten node never comes back.
//!
//! Deletions are recorded by the scenario ([`Resurrection::deleted`]). A
//! node that learned an old value before the tombstone reached it is fine;
//! a node that already holds the owner's updates up to the tombstone must
//! never show a value of that key older than it.
//! Forgetting is seen in events; the same incarnation must not be admitted
//! again by the node that forgot it, unless it runs: a forgotten node that
//! is alive and talks for itself comes back (a partition longer than the
//! grace period heals), a crashed one must stay forgotten.

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
            Event::MemberJoined { id } => {
                let key = (ctx.node, id.name.clone(), id.generation);
                if !self.forgotten.contains(&key) {
                    return None;
                }
                let runs = crate::sim::node_index(&id.name)
                    .and_then(|t| ctx.slots.get(t))
                    .is_some_and(|slot| slot.is_up() && slot.generation == id.generation);
                if runs {
                    // It came back by itself: forgetting it again is new.
                    self.forgotten.remove(&key);
                    return None;
                }
                Some((
                    NAME,
                    format!(
                        "n{} admitted {id} again after forgetting it, and it does not run",
                        ctx.node
                    ),
                ))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Sim, SimConfig};
    use gossip_core::proto::Instant;

    fn joined(sim: &Sim, observer: usize, of: usize, r: &mut Resurrection) -> Option<String> {
        let id = std::sync::Arc::new(gossip_core::proto::NodeId::new(
            format!("n{of}"),
            crate::sim::sim_addr(of),
            1,
        ));
        let ctx = Ctx {
            now: Instant::ZERO,
            node: observer,
            slots: &sim.nodes,
        };
        r.on_event(&ctx, &Event::MemberForgotten { id: id.clone() });
        r.on_event(&ctx, &Event::MemberJoined { id })
            .map(|(_, what)| what)
    }

    #[test]
    fn a_crashed_node_admitted_again_is_caught() {
        let mut sim = Sim::new(SimConfig::default());
        sim.add_node(&[]);
        sim.add_node(&[0]);
        sim.crash(1);
        let mut r = Resurrection::default();
        let found = joined(&sim, 0, 1, &mut r);
        assert!(found.is_some_and(|w| w.contains("does not run")));
    }

    #[test]
    fn a_running_node_coming_back_by_itself_is_fine() {
        let mut sim = Sim::new(SimConfig::default());
        sim.add_node(&[]);
        sim.add_node(&[0]);
        let mut r = Resurrection::default();
        assert_eq!(joined(&sim, 0, 1, &mut r), None);
    }

    #[test]
    fn a_deleted_key_seen_again_is_caught() {
        let mut sim = Sim::new(SimConfig::default());
        sim.add_node(&[]);
        sim.add_node(&[0]);
        for key in ["k", "x"] {
            sim.with_node(
                1,
                |n, now| n.set(now, key, bytes::Bytes::from_static(b"v")),
                &mut |_, _| {},
            );
        }
        sim.run_for_rounds(5.0, &mut |_, _| {});
        let owner = sim.node(0).and_then(|n| n.member("n1"));
        let owner = owner.expect("n0 knows n1 after five rounds");
        assert_eq!(owner.max_version, 2, "n0 holds both writes");
        // Say `k` was deleted at version 2: n0 is past that, so a value of
        // `k` at version 1 reaching it is a resurrection.
        let mut r = Resurrection::default();
        r.deleted("n1", 1, "k", 2);
        let ctx = Ctx {
            now: Instant::ZERO,
            node: 0,
            slots: &sim.nodes,
        };
        let stale = Event::KeyChanged {
            owner: owner.id,
            key: "k".into(),
            value: bytes::Bytes::from_static(b"v"),
            version: 1,
        };
        assert!(r.on_event(&ctx, &stale).is_some());
        assert!(r.on_round(&sim).is_some(), "n0 holds k at v1 < 2");
    }
}
