//! Properties checked on every simulated step, one small module each.
//!
//! [`Checker`](crate::sim::invariants::Checker) feeds every event to each property and, once per round, lets
//! them look at the whole cluster. A property never stops the run; it counts
//! violations with a description of the first few, so a failing test shows
//! what went wrong, and the seed replays it.

pub mod convergence;
pub mod false_dead;
pub mod resurrection;
pub mod versions;

use gossip_core::proto::Event;

use crate::sim::{Ctx, Sim};

/// A broken property: when, where and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Which property.
    pub property: &'static str,
    /// Virtual time in rounds.
    pub round: f64,
    /// What happened.
    pub what: String,
}

/// All properties together, fed from the event callback and once a round.
#[derive(Debug, Default)]
pub struct Checker {
    /// Versions never decrease.
    pub versions: versions::Versions,
    /// Deleted keys and forgotten nodes never come back.
    pub resurrection: resurrection::Resurrection,
    /// No reachable, running, unpaused node is declared Dead.
    pub false_dead: false_dead::FalseDead,
    violations: Vec<Violation>,
    counts: Vec<(&'static str, usize)>,
}

/// Violations kept with their description (all are counted).
const KEEP: usize = 20;

impl Checker {
    /// Feeds one event (call from the simulation's event callback).
    pub fn on_event(&mut self, ctx: &Ctx<'_>, event: &Event, interval_micros: u64) {
        let round = ctx.now.as_micros() as f64 / interval_micros as f64;
        let found = [
            self.versions.on_event(ctx, event),
            self.resurrection.on_event(ctx, event),
            self.false_dead.on_event(ctx, event),
        ];
        for (property, what) in found.into_iter().flatten() {
            self.record(Violation {
                property,
                round,
                what,
            });
        }
    }

    /// Looks at the whole cluster (call about once a round).
    pub fn on_round(&mut self, sim: &Sim) {
        let round = sim.rounds();
        let found: Vec<_> = [self.versions.on_round(sim), self.resurrection.on_round(sim)]
            .into_iter()
            .flatten()
            .collect();
        for (property, what) in found {
            self.record(Violation {
                property,
                round,
                what,
            });
        }
    }

    fn record(&mut self, v: Violation) {
        match self.counts.iter_mut().find(|(p, _)| *p == v.property) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((v.property, 1)),
        }
        if self.violations.len() < KEEP {
            self.violations.push(v);
        }
    }

    /// All violations so far.
    pub fn count(&self) -> usize {
        self.counts.iter().map(|(_, c)| c).sum()
    }

    /// Violations of one property so far.
    pub fn count_of(&self, property: &str) -> usize {
        self.counts
            .iter()
            .find(|(p, _)| *p == property)
            .map_or(0, |(_, c)| *c)
    }

    /// The first violations, described.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
}
