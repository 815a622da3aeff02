//! Claims about this node: which ones no honest node can make, and how this
//! node answers the others.
//!
//! A node is the only authority on itself (DESIGN.md §12). It never adopts
//! what peers say about its own identity or state; when one of them holds a
//! claim *ahead* of its own state, this node moves its own state above the
//! claim and lets gossip carry that, as SWIM refutes a suspicion with a
//! higher incarnation:
//!
//! - a higher heartbeat (which makes peers convict it: its real heartbeats
//!   look old): its heartbeat jumps above the claim;
//! - a higher version (peers then skip its real writes): every key it holds
//!   is written again at versions above the claim, so a peer that believed
//!   the claim gets all of them;
//! - a higher generation (peers then replace it with the claimant, wiping
//!   its keys), or a leave it did not announce (peers see it Left for
//!   good): it takes a generation above the claim, at its own address,
//!   which supersedes everything peers held of its name.
//!
//! Refutations wait for the node's next round and take the highest claim
//! seen meanwhile, so a flood of forgeries costs one refutation per round.
//!
//! For refutation always to have room, counters above [`MAX_CLAIM`] are
//! claims no honest node makes (2⁶² heartbeats or writes: a million a
//! second for 146,000 years; generations are start times in microseconds,
//! about 2⁵¹ today). Receivers refuse them, and refuse a generation that
//! jumps more than [`MAX_GENERATION_JUMP`] over the one they hold. When a
//! heartbeat or version refutation would cross the ceiling, the node takes a
//! new generation instead, which starts its counters again.

/// The largest heartbeat, version or generation an honest node claims.
pub const MAX_CLAIM: u64 = 1 << 62;

/// The largest step from a member's generation held to a newer one:
/// 2⁵² µs is 142 years of downtime between two starts.
pub const MAX_GENERATION_JUMP: u64 = 1 << 52;

/// Whether a counter is beyond what an honest node can produce.
pub(crate) fn impossible(counter: u64) -> bool {
    counter > MAX_CLAIM
}

/// Whether a generation claimed for a member of which `held` is known
/// (`None`: not known) is beyond what an honest node can produce.
pub(crate) fn impossible_generation(held: Option<u64>, claimed: u64) -> bool {
    impossible(claimed) || held.is_some_and(|h| claimed > h.saturating_add(MAX_GENERATION_JUMP))
}

/// This node's own state, as refuting needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Own {
    pub generation: u64,
    pub heartbeat: u64,
    pub max_version: u64,
    /// Whether this node announced a leave itself.
    pub left: bool,
    /// Entries (values and tombstones) of its keyspace.
    pub keys: usize,
}

/// A peer's claim about this node, of this node's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub generation: u64,
    pub heartbeat: u64,
    pub max_version: u64,
    pub left: bool,
}

/// What this node does at its next round to stand above every claim seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Take this generation (and start heartbeat and versions again).
    pub generation: Option<u64>,
    /// Raise the heartbeat to this (the round's increment then moves it above).
    pub heartbeat: Option<u64>,
    /// Write every key again at versions above this one.
    pub restamp_above: Option<u64>,
}

/// The highest claims about this node seen since its last round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refutation {
    generation: u64,
    heartbeat: u64,
    version: u64,
    left: bool,
}

impl Refutation {
    /// Takes in a claim about this node (already checked against
    /// [`impossible`]). Returns whether it is ahead of `own`, so that it
    /// will be refuted at the next round.
    pub fn claim(&mut self, own: &Own, c: &Claim) -> bool {
        if c.generation > own.generation {
            self.generation = self.generation.max(c.generation);
            return true;
        }
        if c.generation < own.generation {
            // An older incarnation of ours: peers learn the new one by
            // the exchange as it is (we are ahead).
            return false;
        }
        if c.left && !own.left {
            // A leave is for good within a generation.
            self.left = true;
            return true;
        }
        let mut ahead = false;
        if c.heartbeat > own.heartbeat {
            self.heartbeat = self.heartbeat.max(c.heartbeat);
            ahead = true;
        }
        if c.max_version > own.max_version {
            self.version = self.version.max(c.max_version);
            ahead = true;
        }
        ahead
    }

    /// What to do now to move above every claim taken in since the last
    /// call, and forgets them.
    pub fn plan(&mut self, own: &Own) -> Plan {
        let seen = std::mem::take(self);
        let mut plan = Plan::default();
        let keys = own.keys as u64;
        let heartbeat_room = seen.heartbeat < MAX_CLAIM - 1;
        let version_room = seen.version.saturating_add(keys + 1) <= MAX_CLAIM;
        let generation = if seen.generation > own.generation {
            Some(seen.generation + 1)
        } else if seen.left
            || (seen.heartbeat > own.heartbeat && !heartbeat_room)
            || (seen.version > 0 && !version_room)
        {
            Some(own.generation + 1)
        } else {
            None
        };
        if let Some(g) = generation {
            // Over the ceiling no refutation is possible; `impossible`
            // makes that take 2^10 forged jumps of a generation.
            if !impossible(g) {
                plan.generation = Some(g);
            }
            return plan;
        }
        if seen.heartbeat > own.heartbeat {
            plan.heartbeat = Some(seen.heartbeat);
        }
        if seen.version > 0 {
            // Even if our own writes moved past the claim since, a peer
            // that believed it lacks our writes up to it: restamp anyway.
            plan.restamp_above = Some(seen.version.max(own.max_version));
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Own = Own {
        generation: 10,
        heartbeat: 50,
        max_version: 7,
        left: false,
        keys: 3,
    };

    fn claim(generation: u64, heartbeat: u64, max_version: u64, left: bool) -> Claim {
        Claim {
            generation,
            heartbeat,
            max_version,
            left,
        }
    }

    #[test]
    fn claims_at_or_below_our_state_need_nothing() {
        let mut r = Refutation::default();
        assert!(!r.claim(&OWN, &claim(10, 50, 7, false)));
        assert!(!r.claim(&OWN, &claim(10, 3, 1, false)));
        assert!(
            !r.claim(&OWN, &claim(9, u64::MAX, u64::MAX, true)),
            "an older incarnation"
        );
        assert_eq!(r.plan(&OWN), Plan::default());
    }

    #[test]
    fn a_higher_heartbeat_is_answered_above_the_highest_seen() {
        let mut r = Refutation::default();
        assert!(r.claim(&OWN, &claim(10, 900, 7, false)));
        assert!(r.claim(&OWN, &claim(10, 60, 7, false)));
        let plan = r.plan(&OWN);
        assert_eq!(plan.heartbeat, Some(900));
        assert_eq!((plan.generation, plan.restamp_above), (None, None));
        assert_eq!(
            r.plan(&OWN),
            Plan::default(),
            "claims are forgotten once planned"
        );
    }

    #[test]
    fn a_higher_version_restamps_the_keys() {
        let mut r = Refutation::default();
        assert!(r.claim(&OWN, &claim(10, 50, 1_000, false)));
        assert!(r.claim(&OWN, &claim(10, 50, 900, false)));
        let plan = r.plan(&OWN);
        assert_eq!(plan.restamp_above, Some(1_000));
        assert_eq!((plan.generation, plan.heartbeat), (None, None));
    }

    #[test]
    fn a_leave_we_did_not_announce_takes_a_new_generation() {
        let mut r = Refutation::default();
        assert!(r.claim(&OWN, &claim(10, 50, 8, true)));
        assert_eq!(r.plan(&OWN).generation, Some(11));
        let gone = Own { left: true, ..OWN };
        assert!(!r.claim(&gone, &claim(10, 50, 7, true)), "we did leave");
        assert_eq!(r.plan(&gone), Plan::default());
    }

    #[test]
    fn a_higher_generation_is_answered_with_one_above_it() {
        let mut r = Refutation::default();
        assert!(r.claim(&OWN, &claim(11, 0, 0, false)));
        assert!(r.claim(&OWN, &claim(10, 900, 900, true)));
        assert!(r.claim(&OWN, &claim(15, 0, 0, false)));
        let plan = r.plan(&OWN);
        assert_eq!(plan.generation, Some(16));
        assert_eq!(
            (plan.heartbeat, plan.restamp_above),
            (None, None),
            "a new generation starts over"
        );
    }

    #[test]
    fn claims_at_the_ceiling_are_answered_with_a_new_generation() {
        let mut r = Refutation::default();
        assert!(r.claim(&OWN, &claim(10, MAX_CLAIM, 7, false)));
        assert_eq!(r.plan(&OWN).generation, Some(11));
        assert!(r.claim(&OWN, &claim(10, 50, MAX_CLAIM - 2, false)));
        assert_eq!(
            r.plan(&OWN).generation,
            Some(11),
            "three keys do not fit above it"
        );
        assert!(r.claim(&OWN, &claim(MAX_CLAIM, 0, 0, false)));
        assert_eq!(r.plan(&OWN), Plan::default(), "no room above the ceiling");
    }

    #[test]
    fn impossible_counters_and_jumps() {
        assert!(!impossible(MAX_CLAIM));
        assert!(impossible(MAX_CLAIM + 1));
        assert!(impossible(u64::MAX));
        assert!(!impossible_generation(None, 1 << 51));
        assert!(!impossible_generation(Some(5), 5 + MAX_GENERATION_JUMP));
        assert!(impossible_generation(Some(5), 6 + MAX_GENERATION_JUMP));
        assert!(impossible_generation(None, u64::MAX));
    }
}
