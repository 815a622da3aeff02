//! Ready-made configurations for the usual environments.
//!
//! The failure-detector settings follow from one rule: a peer is suspected
//! once its silence exceeds roughly `mean interval + acceptable_pause +
//! 5.2 × max(std, min_std_dev)` (phi 8 under the normal model), and declared
//! dead `suspect_timeout` later. Heartbeats reach a node indirectly, one hop
//! per exchange, so their inter-arrival time is about one interval with a
//! spread of about half an interval; the pause and the floor on the standard
//! deviation absorb scheduling delays and lost messages. Each preset keeps
//! these at a fixed ratio to its interval so that detection takes a similar
//! number of rounds everywhere (about 9–14 rounds to suspect, a few more to
//! convict), and only the interval changes with the environment.

use std::time::Duration;

use crate::proto::config::Config;

impl Config {
    /// A data-center LAN: sub-millisecond links, rare loss, nodes on
    /// dedicated cores.
    ///
    /// - `gossip_interval` 500 ms: with push-pull a fresh update reaches
    ///   1,000 nodes in about 2–3 intervals, so about a second; halving the
    ///   default 1 s doubles the (small, digest-bounded) background traffic.
    /// - `acceptable_pause` 1 s and `min_std_dev` 250 ms: tolerate a GC pause
    ///   or a lost exchange of two intervals without climbing phi; a crash is
    ///   suspected after about 2.5–3 s.
    /// - `suspect_timeout` 2 s: dead after about 5 s, close to Akka's default
    ///   (~5.5 s) and well under Cassandra's (~18 s).
    /// - `probe_timeout` 100 ms: a probe retries, directly and through
    ///   three peers, after 100 ms without an answer.
    /// - `stall_threshold` 3 s: six missed rounds of our own means we were
    ///   stalled, not the peers.
    /// - Joins retry every 500 ms while alone.
    pub fn lan() -> Self {
        Config {
            gossip_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(100),
            interval_jitter: 0.1,
            fanout: 3,
            min_std_dev: Duration::from_millis(250),
            acceptable_pause: Duration::from_secs(1),
            suspect_timeout: Duration::from_secs(2),
            stall_threshold: Duration::from_secs(3),
            join_retry_min: Duration::from_millis(500),
            join_retry_max: Duration::from_millis(500),
            ..Config::default()
        }
    }

    /// Links across regions: tens to hundreds of milliseconds, occasional
    /// loss bursts and brief routing partitions.
    ///
    /// - `gossip_interval` 2 s: a round trip of 100–300 ms is a small share of
    ///   the interval, so exchanges finish within their round; traffic per
    ///   node stays a quarter of the LAN preset's.
    /// - `acceptable_pause` 6 s, `min_std_dev` 1 s, `phi_threshold` 10: a
    ///   loss burst of a few rounds must not convict; suspicion after about
    ///   15 s of silence.
    /// - `suspect_timeout` 10 s: a short partition heals before anyone is
    ///   declared dead.
    /// - `unreachable_probability` and `seed_probability` 0.2: partitions are
    ///   more likely than on a LAN, so probe the other side more often.
    /// - `probe_timeout` 600 ms: two round trips of the slowest links.
    /// - `stall_threshold` 12 s and joins retrying every 2 s while alone.
    /// - Eager push waits 500 ms for an announced update before asking for
    ///   it, and batches pushes within 20 ms, announcements within 200 ms.
    pub fn wan() -> Self {
        Config {
            gossip_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_millis(600),
            interval_jitter: 0.1,
            fanout: 3,
            unreachable_probability: 0.2,
            seed_probability: 0.2,
            phi_threshold: 10.0,
            min_std_dev: Duration::from_secs(1),
            acceptable_pause: Duration::from_secs(6),
            suspect_timeout: Duration::from_secs(10),
            stall_threshold: Duration::from_secs(12),
            join_retry_min: Duration::from_secs(2),
            join_retry_max: Duration::from_secs(2),
            // Links of 50-300 ms: an announced update may take a few.
            graft_timeout: Duration::from_millis(500),
            eager_batch: Duration::from_millis(20),
            lazy_batch: Duration::from_millis(200),
            ..Config::default()
        }
    }

    /// Many nodes in one process or on one machine (tests, demos, the
    /// in-memory transport): fast rounds so that scenarios finish in
    /// seconds.
    ///
    /// - `gossip_interval` 100 ms: ten rounds a second; a 64-node cluster
    ///   converges and spreads a key in well under a second.
    /// - `acceptable_pause` 300 ms and `min_std_dev` 100 ms: one process
    ///   driving hundreds of nodes on a couple of cores delays timers by tens
    ///   of milliseconds, which must not look like a crash; a crash is
    ///   suspected after about 1 s (10 rounds).
    /// - `suspect_timeout` 500 ms: dead about 1.5 s after the crash.
    /// - `probe_timeout` 50 ms and `suspicion_mult` 3: probes must survive
    ///   the same scheduling delays; with 64 nodes an accuser convicts 0.5
    ///   to 1 s after its probe failed.
    /// - `stall_threshold` 500 ms: a node whose own timer ran five rounds
    ///   late was starved of CPU; it must not convict its peers on waking.
    /// - `grace_period` 60 s: dead and left nodes are still listed for the
    ///   length of a test, yet a long-running demo forgets them.
    /// - Joins retry every 100 ms while alone, so a node started before its
    ///   seeds joins quickly.
    /// - Eager push waits 5 ms for an announced update before asking for
    ///   it, and batches pushes within 1 ms, announcements within 10 ms.
    pub fn local() -> Self {
        Config {
            gossip_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            suspicion_mult: 3.0,
            interval_jitter: 0.1,
            fanout: 3,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_millis(300),
            suspect_timeout: Duration::from_millis(500),
            stall_threshold: Duration::from_millis(500),
            grace_period: Duration::from_secs(60),
            join_retry_min: Duration::from_millis(100),
            join_retry_max: Duration::from_millis(100),
            graft_timeout: Duration::from_millis(5),
            eager_batch: Duration::from_millis(1),
            lazy_batch: Duration::from_millis(10),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for c in [Config::lan(), Config::wan(), Config::local()] {
            assert_eq!(c.validate(), Ok(()));
            assert!(c.acceptable_pause > c.gossip_interval);
            assert!(c.stall_threshold > c.gossip_interval * 2);
            assert!(c.eager, "eager push is on in every preset");
            assert!(c.graft_timeout < c.gossip_interval / 2);
        }
    }
}
