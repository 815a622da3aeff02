//! Protocol configuration.

use std::time::Duration;

use crate::proto::error::ConfigError;

/// Everything that tunes the protocol. Start from [`Config::default`] (LAN
/// settings, 1 s interval) and change what you need; [`Config::validate`] is
/// called by [`Node::new`](crate::proto::Node::new).
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster name. Messages from another cluster are refused; only a hash
    /// of the name travels.
    pub cluster: String,
    /// Time between two gossip rounds of this node.
    pub gossip_interval: Duration,
    /// Each interval is drawn uniformly from `interval × (1 ± jitter)`, so
    /// nodes do not fire in lockstep. In `[0, 0.5]`.
    pub interval_jitter: f64,
    /// Peers contacted per round.
    pub fanout: usize,
    /// Eager push (see [`eager`](crate::proto::eager)): news leaves a node
    /// the moment it arrives, on a self-pruning tree, instead of waiting
    /// for the next round. The periodic exchange runs either way.
    pub eager: bool,
    /// Peers a node starts pushing news to (the tree's edges are pruned
    /// from these and grafted back as needed).
    pub eager_fanout: usize,
    /// Peers that get an announcement (owner and version, no payload) of
    /// each piece of news forwarded.
    pub lazy_fanout: usize,
    /// How long an announced update may take to arrive by eager push
    /// before it is asked for (a `Graft`): a few link latencies.
    pub graft_timeout: Duration,
    /// News that arrives within this long of a node's last push waits for
    /// the window's end and travels with whatever else arrived meanwhile:
    /// under load, messages per update fall as the rate rises. The first
    /// push after a quiet spell leaves at once.
    pub eager_batch: Duration,
    /// The same for announcements (`IHave`), which only repair what eager
    /// push missed and so may wait longer: under load they are most of the
    /// messages eager push adds.
    pub lazy_batch: Duration,
    /// Chance per round of also contacting one unreachable (Dead) node, so
    /// recovered nodes and healed partitions are found.
    pub unreachable_probability: f64,
    /// Chance per round of also contacting one seed, so a split cluster
    /// re-merges through the seeds.
    pub seed_probability: f64,
    /// Largest encoded message this node sends or accepts.
    pub max_message_bytes: usize,
    /// Bytes of a digest. A digest lists fresh nodes first, then rotates
    /// through the membership, so it stops growing with the cluster.
    pub digest_bytes: usize,
    /// Rounds a fresh update stays "hot" (listed first and pushed to peers).
    /// `None`: `ceil(log2(members)) + 2`, enough for push-pull to reach all.
    pub hot_rounds: Option<u32>,
    /// Phi above which a peer becomes Suspect.
    pub phi_threshold: f64,
    /// Floor on the standard deviation of heartbeat inter-arrival times, so
    /// a very regular peer is not convicted for one late heartbeat.
    pub min_std_dev: Duration,
    /// Silence a peer may show on top of its mean inter-arrival time before
    /// its phi starts to climb (GC pauses, lost messages).
    pub acceptable_pause: Duration,
    /// Weight of a new inter-arrival sample in the running mean and
    /// variance (exponential smoothing, O(1) memory per peer). In `(0, 1]`.
    pub phi_smoothing: f64,
    /// How long a peer stays Suspect (phi above threshold throughout) before
    /// it is declared Dead.
    pub suspect_timeout: Duration,
    /// Detect failures by probing (SWIM with Lifeguard's refinements, see
    /// [`detection`](crate::proto::detection)): one random peer per
    /// `gossip_interval`. On by default. The heartbeat (phi) detector then
    /// only chooses whom to probe: a member whose heartbeats stop arriving
    /// is pinged, probed in full if it stays silent, and suspected only if
    /// that probe fails too. With
    /// probing off phi is the detector (a crash is then seen by all in
    /// about 12 rounds instead of about 3.5 at 100 nodes).
    pub probe: bool,
    /// Carry a window rotating through the membership's heartbeats in every
    /// digest, beside the range fingerprints of
    /// [`reconcile`](crate::proto::reconcile). Off by default: with
    /// probing on, liveness is what probes say, and an idle cluster's
    /// anti-entropy then costs a few hundred bytes per node per round at
    /// any size. On, heartbeats reach every node within a few rounds,
    /// which lets the phi detector point probes at members gone silent
    /// (a crash is suspected about half a round sooner at 1,000 nodes) and
    /// date stale verdicts, for up to `digest_bytes` per digest
    /// (BENCHMARKS.md, "Reconciliation"). Ignored with probing off, where
    /// the heartbeats are the detector and always travel.
    pub heartbeat_window: bool,
    /// How long a probe waits for a direct answer before it tries again and
    /// through `indirect_probes` other peers; the probe fails if nobody
    /// answered by the end of the interval. A few round trips; at most
    /// half of `gossip_interval` is used, so the indirect probes have time.
    pub probe_timeout: Duration,
    /// Peers asked to probe a target that did not answer directly.
    pub indirect_probes: usize,
    /// Peers each liveness claim (suspicion, conviction, refutation) new to
    /// a node is flooded to, besides riding on later probes.
    pub rumor_fanout: usize,
    /// Shortest suspicion before an accuser convicts, in `log10(members)`
    /// intervals (at least one and a half intervals).
    pub suspicion_mult: f64,
    /// Longest suspicion, as a multiple of the shortest: a suspicion starts
    /// there and falls to the shortest as independent accusers confirm it.
    pub suspicion_max_mult: f64,
    /// Independent accusers after which a suspicion lasts the shortest.
    pub suspicion_confirmations: usize,
    /// If this node itself saw no timer and no message for longer than
    /// this, it was stalled (GC pause, CPU starvation, suspended VM); on
    /// waking it gives every peer a fresh start instead of convicting it.
    pub stall_threshold: Duration,
    /// How long Dead and Left nodes, and tombstones, are kept before they
    /// are forgotten.
    ///
    /// Forgetting is not banishment. A node is the only witness of its own
    /// life: a message from the forgotten incarnation itself brings it back
    /// (a partition longer than this heals), while state about it relayed
    /// by others is refused, so a stale peer never resurrects the dead.
    /// Relayed state showing it with a heartbeat above the one it was
    /// forgotten at makes this node knock on it (a one-entry message); only
    /// its own answer re-admits it. A peer away for longer than this is
    /// reset to the tombstones' GC watermark, never resurrects a deleted key.
    pub grace_period: Duration,
    /// First retry interval while this node has no live peer (joining, or
    /// cut off); doubles each try up to `join_retry_max`. Tries happen on
    /// gossip ticks (so they are jittered like them): an interval or less
    /// means every tick. Each try knocks on every seed and on a few members
    /// known before.
    pub join_retry_min: Duration,
    /// Upper bound of the join retry interval. Keep it short (the default
    /// retries every round): under 30 % loss one try in three is lost and
    /// its answer too, and with a 2 s cap one joiner in a hundred was still
    /// alone after 13 rounds.
    pub join_retry_max: Duration,
    /// Longest node name, in bytes. Messages naming a longer one are
    /// refused whole (no honest node sends one: none admits it).
    pub max_name_bytes: usize,
    /// Most nodes this node will track (bounds what an outsider can grow).
    pub max_nodes: usize,
    /// Most keys a node's keyspace may hold, tombstones included.
    pub max_keys_per_node: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most bytes of keys and values one node's keyspace may hold
    /// (tombstones count their key). This node's own writes over it fail;
    /// peers' updates over it are skipped and counted.
    pub max_keyspace_bytes: usize,
    /// Most bytes of keys and values held of all nodes together, this
    /// node's own included: the memory an insider can make every node
    /// spend on state. Peers' updates over it are skipped and counted (own
    /// writes are limited by `max_keyspace_bytes` only).
    pub max_state_bytes: usize,
    /// Most members new to this node that one message may make known,
    /// except a catch-up page this node asked for: an insider cannot fill
    /// the table (and every peer's table) with one delta.
    pub max_new_members_per_message: usize,
    /// Most transmits queued before the oldest are dropped (and counted).
    pub max_pending_transmits: usize,
    /// Most events queued before the oldest are dropped (and counted).
    pub max_pending_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "default".to_owned(),
            gossip_interval: Duration::from_secs(1),
            interval_jitter: 0.1,
            fanout: 3,
            eager: true,
            eager_fanout: 1,
            lazy_fanout: 12,
            graft_timeout: Duration::from_millis(8),
            eager_batch: Duration::from_millis(5),
            lazy_batch: Duration::from_millis(50),
            unreachable_probability: 0.1,
            seed_probability: 0.1,
            max_message_bytes: 64 * 1024,
            digest_bytes: 16 * 1024,
            hot_rounds: None,
            phi_threshold: 8.0,
            min_std_dev: Duration::from_millis(500),
            acceptable_pause: Duration::from_secs(2),
            phi_smoothing: 0.1,
            suspect_timeout: Duration::from_secs(3),
            probe: true,
            heartbeat_window: false,
            probe_timeout: Duration::from_millis(200),
            indirect_probes: 3,
            rumor_fanout: 4,
            suspicion_mult: 0.5,
            suspicion_max_mult: 2.0,
            suspicion_confirmations: 3,
            stall_threshold: Duration::from_secs(5),
            grace_period: Duration::from_secs(3600),
            join_retry_min: Duration::from_secs(1),
            join_retry_max: Duration::from_secs(1),
            max_name_bytes: 128,
            max_nodes: 100_000,
            max_keys_per_node: 10_000,
            max_key_bytes: 256,
            max_value_bytes: 16 * 1024,
            max_keyspace_bytes: 4 * 1024 * 1024,
            max_state_bytes: 256 * 1024 * 1024,
            max_new_members_per_message: 256,
            max_pending_transmits: 1024,
            max_pending_events: 65_536,
        }
    }
}

impl Config {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str| Err(ConfigError::Invalid(what));
        if self.gossip_interval.is_zero() {
            return bad("gossip_interval must be positive");
        }
        if !(0.0..=0.5).contains(&self.interval_jitter) {
            return bad("interval_jitter must be in [0, 0.5]");
        }
        if self.fanout == 0 {
            return bad("fanout must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.unreachable_probability)
            || !(0.0..=1.0).contains(&self.seed_probability)
        {
            return bad("probabilities must be in [0, 1]");
        }
        if self.max_message_bytes < 1024 {
            return bad("max_message_bytes must be at least 1024");
        }
        if self.digest_bytes < 256 || self.digest_bytes > self.max_message_bytes / 2 {
            return bad("digest_bytes must be in [256, max_message_bytes / 2]");
        }
        if self.max_key_bytes + self.max_value_bytes + 64
            > self.max_message_bytes - self.digest_bytes - 256
        {
            return bad("one key and value must fit a message beside a digest");
        }
        if !(self.phi_smoothing > 0.0 && self.phi_smoothing <= 1.0) {
            return bad("phi_smoothing must be in (0, 1]");
        }
        if self.phi_threshold <= 0.0 {
            return bad("phi_threshold must be positive");
        }
        if self.join_retry_min.is_zero() || self.join_retry_max < self.join_retry_min {
            return bad("join retry bounds must be positive and ordered");
        }
        if self.max_name_bytes == 0 || self.max_name_bytes.saturating_add(64) > self.digest_bytes {
            return bad("max_name_bytes must be positive and its digest entry must fit a digest");
        }
        if self.eager && (self.eager_fanout == 0 || self.graft_timeout.is_zero()) {
            return bad("eager push needs eager_fanout and graft_timeout above zero");
        }
        if self.eager_batch >= self.gossip_interval || self.lazy_batch >= self.gossip_interval {
            return bad("eager_batch and lazy_batch must be shorter than gossip_interval");
        }
        if self.probe && self.probe_timeout.is_zero() {
            return bad("probe_timeout must be positive");
        }
        let suspicion_ok = self.suspicion_mult > 0.0
            && self.suspicion_mult <= 100.0
            && (1.0..=100.0).contains(&self.suspicion_max_mult);
        if !suspicion_ok {
            return bad("suspicion_mult must be in (0, 100], suspicion_max_mult in [1, 100]");
        }
        if self.max_nodes < 2
            || self.max_keys_per_node == 0
            || self.max_pending_transmits == 0
            || self.max_new_members_per_message == 0
        {
            return bad("limits must be positive");
        }
        if self.max_keyspace_bytes < self.max_key_bytes + self.max_value_bytes
            || self.max_state_bytes < self.max_keyspace_bytes
        {
            return bad(
                "max_keyspace_bytes must hold one largest entry, max_state_bytes one keyspace",
            );
        }
        Ok(())
    }
}
