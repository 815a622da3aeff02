//! Phi-accrual failure detection with O(1) memory per peer.
//!
//! Each peer's heartbeat inter-arrival times feed an exponentially smoothed
//! mean and variance (no sample window). Phi is `-log10` of the probability
//! that a heartbeat is still to come after the silence seen so far, under a
//! normal distribution shifted by the acceptable pause (as in Akka).

use std::time::Duration;

use crate::proto::time::Instant;

/// Settings the detector reads from [`Config`](crate::proto::Config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhiParams {
    pub min_std_dev: f32,
    pub acceptable_pause: f32,
    pub smoothing: f32,
    /// Below this standardized silence phi cannot reach the threshold:
    /// checks skip computing it (see [`PhiParams::y_floor`]).
    pub y_floor: f64,
    /// Seconds: no detector expects heartbeats more often, or more
    /// regularly, than every `gap_floor`. Zero while the digests this node
    /// receives cover the membership every round; the expected gap
    /// ([`Coverage::expected_gap`]) when they do not, so that detectors which
    /// learned a faster pace (from a burst of updates, or while the cluster
    /// was smaller) do not mistake the sparser arrivals for silence.
    pub gap_floor: f32,
    /// Seconds: an inter-arrival gap longer than this is an outage (a
    /// partition, a pause of the peer, a run of lost messages), not the
    /// peer's pace, and is not learned (as in Cassandra, which drops gaps
    /// over 2 s at a 1 s interval). Learned, one 40 s gap after a healed
    /// partition made a later crash of that peer take 53 rounds to
    /// convict instead of 11. See [`PhiParams::max_sample_for`].
    pub max_sample: f32,
}

impl PhiParams {
    /// [`max_sample`](Self::max_sample) for a gossip `interval`, an
    /// `acceptable_pause` and the current gap floor (seconds): the pause
    /// plus two of the gaps heartbeats are expected at.
    pub fn max_sample_for(interval: Duration, acceptable_pause: Duration, gap_floor: f32) -> f32 {
        secs(acceptable_pause) + 2.0 * secs(interval).max(gap_floor)
    }

    /// The standardized silence `y` at which phi reaches `threshold`, less
    /// a margin for rounding: phi grows with `y`, so a smaller `y` needs no
    /// logarithm to know it is below. Found by bisection, once per node.
    pub fn y_floor(threshold: f64) -> f64 {
        let (mut lo, mut hi) = (-20.0, 60.0);
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if phi_of(mid) < threshold {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo - 0.01
    }
}

/// Phi of a silence `y` standard deviations past the expected arrival, with
/// the logistic approximation of the normal distribution used by Akka.
fn phi_of(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let phi = if y > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    };
    if phi.is_finite() { phi } else { f64::MAX }
}

/// How much of the membership the digests this node receives cover per
/// round, and so how often a peer's heartbeat can reach it at best: every
/// detector's expectations are floored at that gap
/// ([`PhiParams::gap_floor`]).
///
/// Why: up to a few thousand members the digests a node receives in a
/// round cover the whole membership, and a peer's heartbeat arrives about
/// once a round. In a larger cluster a budgeted digest covers only a part,
/// so each peer's heartbeat arrives every few rounds, irregularly, and a
/// detector that learned (or was started at) one round mistakes that for
/// silence until it has learned better, which takes dozens of rounds: 254
/// false suspicions per node per round right after a 10,000-node join.
///
/// The entries per digest are measured (name lengths and what peers hold
/// change them); the digests per round follow from the fan-out: each round
/// a node sends `fanout` Syns, gets as many SynAcks back and about as many
/// Syns from others. Not measured per round: a node that hears nothing at
/// all (cut off) must still suspect its peers, not conclude that heartbeats
/// have become rare. Not used to start new detectors either: right after a
/// join the digests are far smaller than they settle at, and a detector
/// started that slow would take hundreds of rounds to notice a crash in a
/// 100-node cluster.
/// Most intervals [`Coverage`] expects between two heartbeats of a peer:
/// 10,000 members with 16 KiB digests need about 3.
pub(crate) const MAX_GAP_ROUNDS: f64 = 8.0;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Coverage {
    /// Smoothed entries per digest received (`None`: no digest yet).
    per_digest: Option<f64>,
}

impl Coverage {
    /// A digest of `entries` entries arrived (each may carry a newer
    /// heartbeat).
    pub fn saw(&mut self, entries: usize) {
        let x = entries as f64;
        self.per_digest = Some(self.per_digest.map_or(x, |m| 0.9 * m + 0.1 * x));
    }

    /// The expected gap between heartbeats of one of `members` peers when
    /// `fanout` exchanges start per `interval`: the interval, or longer when
    /// the digests received in one do not cover every member.
    ///
    /// Capped at [`MAX_GAP_ROUNDS`] intervals: the average comes from what
    /// peers send, and a peer sending empty digests must neither stop this
    /// node from suspecting anyone nor reach arithmetic that panics.
    pub fn expected_gap(&self, members: usize, fanout: usize, interval: Duration) -> Duration {
        let per_round = self.per_digest.unwrap_or(0.0) * fanout.saturating_mul(2) as f64;
        let rounds = (members as f64 / per_round).min(MAX_GAP_ROUNDS);
        if per_round > 0.0 && rounds > 1.0 {
            // `rounds` is finite and in (1, MAX_GAP_ROUNDS]: cannot overflow.
            Duration::try_from_secs_f64(interval.as_secs_f64() * rounds).unwrap_or(interval)
        } else {
            interval
        }
    }

    /// [`PhiParams::gap_floor`]: the expected gap in seconds where it is
    /// longer than `interval`, else zero (no floor).
    pub fn gap_floor(&self, members: usize, fanout: usize, interval: Duration) -> f32 {
        let gap = self.expected_gap(members, fanout, interval);
        if gap > interval { secs(gap) } else { 0.0 }
    }
}

/// Arrival statistics of one peer: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Detector {
    /// When the last new heartbeat arrived.
    pub last: Instant,
    /// Smoothed inter-arrival mean, seconds.
    mean: f32,
    /// Smoothed inter-arrival variance, seconds².
    var: f32,
}

fn secs(d: Duration) -> f32 {
    d.as_secs_f32()
}

impl Detector {
    /// A detector that has seen one heartbeat at `now` and expects one per
    /// `interval`, give or take an interval (std = interval, as for
    /// arrivals at random times) until it has learned the peer's pace.
    ///
    /// Why not Akka's bootstrap (std = interval / 4): in a large cluster a
    /// budgeted digest brings each peer's heartbeat only every few rounds,
    /// irregularly, and a detector needs dozens of rounds to learn that. With
    /// interval / 4, the spreading experiment at 5,000 nodes saw 42 false
    /// suspicions per node per round after the join, and 506 (123 convicted)
    /// at 10,000; with std = interval, 1.7 and 254 (5 convicted); with the
    /// gap floor of [`Coverage`] as well, 0.33 and 0 (none convicted). The
    /// price of std = interval: a crash among 100 nodes is convicted a
    /// round later (12.2 rounds instead of 11.2).
    pub fn new(now: Instant, interval: Duration) -> Self {
        let mean = secs(interval);
        Detector {
            last: now,
            mean,
            var: mean.powi(2),
        }
    }

    /// Records that a newer heartbeat arrived at `now`.
    pub fn heartbeat(&mut self, now: Instant, p: &PhiParams) {
        let x = secs(now.saturating_since(self.last));
        self.last = now;
        if x > p.max_sample {
            return;
        }
        let diff = x - self.mean;
        let incr = p.smoothing * diff;
        self.mean += incr;
        self.var = (1.0 - p.smoothing) * (self.var + diff * incr);
    }

    /// Forgets the silence so far: used when this node itself was stalled.
    pub fn restart_clock(&mut self, now: Instant) {
        self.last = now;
    }

    /// How many standard deviations `elapsed` of silence lies past the
    /// expected arrival (shifted by the acceptable pause).
    fn standardized(&self, elapsed: Duration, p: &PhiParams) -> f64 {
        let mean = f64::from(self.mean.max(p.gap_floor) + p.acceptable_pause);
        let std = f64::from(self.var.sqrt().max(p.min_std_dev).max(p.gap_floor));
        (elapsed.as_secs_f64() - mean) / std
    }

    /// Phi after `elapsed` of silence.
    pub fn phi_after(&self, elapsed: Duration, p: &PhiParams) -> f64 {
        phi_of(self.standardized(elapsed, p))
    }

    /// Phi after `elapsed` of silence if it is above `threshold` (the one
    /// `p.y_floor` was made for). Cheap when it is far below, as for most
    /// members most of the time.
    pub fn phi_above(&self, elapsed: Duration, threshold: f64, p: &PhiParams) -> Option<f64> {
        let y = self.standardized(elapsed, p);
        if y < p.y_floor {
            return None;
        }
        Some(phi_of(y)).filter(|&phi| phi > threshold)
    }

    /// Phi at `now`.
    #[cfg(test)]
    pub fn phi(&self, now: Instant, p: &PhiParams) -> f64 {
        self.phi_after(now.saturating_since(self.last), p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PhiParams = PhiParams {
        min_std_dev: 0.5,
        acceptable_pause: 2.0,
        smoothing: 0.1,
        y_floor: f64::MIN,
        gap_floor: 0.0,
        max_sample: f32::MAX,
    };

    #[test]
    fn the_floor_never_hides_a_phi_above_the_threshold() {
        for (threshold, gap_floor) in [(1.0, 0.0), (3.0, 0.0), (8.0, 0.0), (12.0, 0.0), (8.0, 2.5)]
        {
            let p = PhiParams {
                y_floor: PhiParams::y_floor(threshold),
                gap_floor,
                ..P
            };
            assert!(phi_of(p.y_floor) < threshold, "floor below the crossing");
            assert!(phi_of(p.y_floor + 0.02) > threshold, "and close to it");
            let d = Detector::new(at(0.0), Duration::from_secs(1));
            for ms in (0..60_000).step_by(7) {
                let silence = Duration::from_millis(ms);
                let exact = Some(d.phi_after(silence, &p)).filter(|&phi| phi > threshold);
                assert_eq!(d.phi_above(silence, threshold, &p), exact, "{ms} ms");
            }
        }
    }

    fn at(s: f64) -> Instant {
        Instant::from_micros((s * 1e6) as u64)
    }

    #[test]
    fn phi_grows_with_silence() {
        let mut d = Detector::new(at(0.0), Duration::from_secs(1));
        for i in 1..=20 {
            d.heartbeat(at(f64::from(i)), &P);
        }
        let p1 = d.phi(at(21.0), &P);
        let p5 = d.phi(at(25.0), &P);
        let p10 = d.phi(at(30.0), &P);
        assert!(p1 < 0.5, "one regular interval is unsuspicious: {p1}");
        assert!(p5 > p1 && p10 > p5);
        assert!(
            p10 > 8.0,
            "ten silent seconds convict a 1 s heartbeat: {p10}"
        );
    }

    #[test]
    fn irregular_peers_get_more_slack() {
        let mut steady = Detector::new(at(0.0), Duration::from_secs(1));
        let mut bursty = steady;
        let mut t = 0.0;
        for i in 0..40 {
            t += 1.0;
            steady.heartbeat(at(t), &P);
            bursty.heartbeat(at(if i % 2 == 0 { t - 0.9 } else { t + 2.0 }), &P);
        }
        let silence = Duration::from_secs(6);
        assert!(bursty.phi_after(silence, &P) < steady.phi_after(silence, &P));
    }

    #[test]
    fn an_outage_is_not_learned_as_the_peers_pace() {
        let capped = PhiParams {
            max_sample: PhiParams::max_sample_for(
                Duration::from_secs(1),
                Duration::from_secs(2),
                0.0,
            ),
            ..P
        };
        let mut learned = Detector::new(at(0.0), Duration::from_secs(1));
        let mut capped_d = learned;
        let mut t = 0.0;
        for _ in 0..30 {
            t += 1.0;
            learned.heartbeat(at(t), &P);
            capped_d.heartbeat(at(t), &capped);
        }
        // A 40 s partition, then regular heartbeats again.
        t += 40.0;
        learned.heartbeat(at(t), &P);
        capped_d.heartbeat(at(t), &capped);
        for _ in 0..10 {
            t += 1.0;
            learned.heartbeat(at(t), &P);
            capped_d.heartbeat(at(t), &capped);
        }
        let silence = Duration::from_secs(10);
        assert!(
            learned.phi_after(silence, &P) < 1.0,
            "the learned outage hides a crash"
        );
        assert!(
            capped_d.phi_after(silence, &capped) > 8.0,
            "dropping the outage sample keeps the pace"
        );
        assert_eq!(capped_d.last, at(t), "the clock still moves on");
    }

    #[test]
    fn empty_digests_neither_panic_nor_silence_detection() {
        let second = Duration::from_secs(1);
        let mut c = Coverage::default();
        c.saw(3);
        for _ in 0..5_000 {
            c.saw(0);
        }
        for members in [0, 1, 1_000, usize::MAX] {
            for fanout in [1, 3, usize::MAX] {
                let gap = c.expected_gap(members, fanout, second);
                assert!(gap <= second.mul_f64(MAX_GAP_ROUNDS), "{gap:?}");
                let _ = c.gap_floor(members, fanout, second);
            }
        }
    }

    #[test]
    fn coverage_stretches_the_expected_gap_only_when_digests_miss_members() {
        let second = Duration::from_secs(1);
        let mut c = Coverage::default();
        assert_eq!(c.expected_gap(10_000, 3, second), second, "no digest yet");
        // Six digests a round (fan-out 3) of 500 entries: 3,000 of 10,000.
        c.saw(500);
        let gap = c.expected_gap(10_000, 3, second);
        assert!(gap > 3 * second && gap < 4 * second, "{gap:?}");
        assert_eq!(c.expected_gap(2_000, 3, second), second, "all covered");
        assert_eq!(
            c.expected_gap(10_000, 1, second),
            second.mul_f64(MAX_GAP_ROUNDS),
            "fan-out 1: 10 rounds, capped"
        );
        // Smoothed: one digest twice as large barely moves it.
        c.saw(1_000);
        assert!(c.expected_gap(10_000, 3, second) > 3 * second);
    }

    #[test]
    fn the_gap_floor_keeps_a_fast_learned_pace_from_convicting_sparse_arrivals() {
        let mut d = Detector::new(at(0.0), Duration::from_secs(1));
        for i in 1..=30 {
            d.heartbeat(at(f64::from(i)), &P);
        }
        let sparse = PhiParams {
            gap_floor: 3.0,
            ..P
        };
        let silence = Duration::from_secs(8);
        assert!(d.phi_after(silence, &P) > 8.0, "learned 1 s: convicted");
        assert!(
            d.phi_after(silence, &sparse) < 1.0,
            "expecting 3 s gaps: not"
        );
        assert!(
            d.phi_after(Duration::from_secs(60), &sparse) > 8.0,
            "a long silence still convicts"
        );
    }
}
