//! The push-pull exchange: choosing peers, building digests, answering
//! them, and applying deltas.

use super::*;
use crate::proto::reconcile::Recon;

/// How a digest entry compares with what this node holds.
pub(super) enum Cmp {
    /// Forgotten or otherwise not to act on.
    Ignore,
    /// Another node claims this name; our entry for it (sent back, so the
    /// claimant learns its name is taken).
    Conflict(DigestEntry),
    /// We do not know this incarnation (unknown name or newer generation).
    Unknown,
    /// The peer holds updates we lack; our entry.
    TheyAhead(DigestEntry),
    /// We hold updates above `floor` the peer lacks.
    WeAhead { floor: u64 },
    /// Same versions; our entry if our heartbeat is newer.
    Same { newer: Option<DigestEntry> },
}

/// Entries the rotating window may skip in a row before it ends.
const WINDOW_MISSES: u32 = 8;
/// The smallest digest entry: a one-byte name, an IPv4 address, varints.
const MIN_ENTRY_BYTES: usize = 12;

impl Node {
    pub(super) fn gossip(&mut self, now: Instant) {
        debug_assert!(
            self.members.summary_is_exact(),
            "every change of a member's identity or max_version refreshes the summary"
        );
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(self.config.fanout + 2);
        let live_peers = self.live_peers();
        for id in self.sample(Status::Live, self.config.fanout, live_peers) {
            targets.push(id.addr);
        }
        if live_peers == 0 {
            // Not (or no longer) part of a cluster: knock on every seed and
            // on members we knew, with a capped backoff.
            self.alone_targets(now, &mut targets);
        } else {
            self.rejoin.backoff = self.config.join_retry_min;
            let unreachable =
                self.members.count(Status::Dead) + self.members.count(Status::Suspect);
            if unreachable > 0 && self.rng.random_bool(self.config.unreachable_probability) {
                let pick =
                    self.sample_scan(|m| matches!(m.status, Status::Dead | Status::Suspect), 1);
                targets.extend(pick.into_iter().map(|id| id.addr));
            }
            if !self.seeds.is_empty() && self.rng.random_bool(self.config.seed_probability) {
                let seed = self.seeds[self.rng.random_range(0..self.seeds.len())];
                targets.push(seed);
            }
        }
        self.knock_forgotten(now);
        targets.sort_unstable();
        targets.dedup();
        self.tick_sweep(now);
        for to in targets {
            self.introduce(to);
            self.send_syn(to, None);
        }
    }

    pub(super) fn send_syn(&mut self, to: SocketAddr, page: Option<u64>) {
        let (digest, entry_bytes, recon) = match page {
            // A catch-up exchange carries nothing else: it is about the page.
            Some(_) => {
                let own = self.own_entry();
                let bytes = size::digest_entry(&own);
                (vec![own], bytes, Recon::default())
            }
            None => {
                let (digest, bytes) = self.syn_digest();
                (digest, bytes, self.opening_recon())
            }
        };
        self.send_syn_of(to, digest, entry_bytes, page, recon);
    }

    /// Sends a `Syn` of these parts (`entry_bytes`: what `digest` takes).
    pub(super) fn send_syn_of(
        &mut self,
        to: SocketAddr,
        digest: Vec<DigestEntry>,
        entry_bytes: usize,
        page: Option<u64>,
        recon: Recon,
    ) {
        let known = self.members.len() as u64;
        let len = size::syn(digest.len(), entry_bytes, known, page, &recon);
        self.send(
            to,
            Message::Syn {
                digest,
                known,
                page,
                recon,
            },
            len,
        );
    }

    pub(super) fn own_entry(&self) -> DigestEntry {
        self.members.digest_entry(0)
    }

    /// Whether digests leave out the heartbeat window (see
    /// [`Config::heartbeat_window`]): only with probing on, which does not
    /// need every heartbeat everywhere.
    pub(super) fn relays_no_heartbeats(&self) -> bool {
        self.config.probe && !self.config.heartbeat_window
    }

    pub(super) fn live_peers(&self) -> usize {
        let own_live = usize::from(
            self.members
                .get(&self.me.name)
                .is_some_and(|m| m.status == Status::Live),
        );
        self.members.count(Status::Live) - own_live
    }

    /// Up to `k` distinct random peers with `status`, of which there are `available`.
    pub(super) fn sample(&mut self, status: Status, k: usize, available: usize) -> Vec<Id> {
        if available <= 2 * k {
            return self.sample_scan(|m| m.status == status, k);
        }
        let mut out: Vec<Id> = Vec::with_capacity(k);
        for _ in 0..16 * k {
            if out.len() == k {
                break;
            }
            // Slot 0 is this node.
            let (id, m) = self
                .members
                .at(self.rng.random_range(1..self.members.len()));
            if m.status == status && !out.iter().any(|o| o.name == id.name) {
                out.push(id.clone());
            }
        }
        out
    }

    pub(super) fn sample_scan(&mut self, pred: impl Fn(&Member) -> bool, k: usize) -> Vec<Id> {
        let mut all: Vec<Id> = self
            .members
            .iter()
            .skip(1)
            .filter(|(_, m)| pred(m))
            .map(|(id, _)| id.clone())
            .collect();
        all.shuffle(&mut self.rng);
        all.truncate(k);
        all
    }

    /// This node's digest: itself, fresh nodes (up to half the budget),
    /// nodes it knows it lags on, then a window rotating through the
    /// membership, all within `digest_bytes`. Returns the entries and the
    /// bytes they take.
    pub(super) fn syn_digest(&mut self) -> (Vec<DigestEntry>, usize) {
        let budget = self.config.digest_bytes;
        let behind = std::mem::take(&mut self.behind);
        let mut used = 0;
        // Entries take 16 bytes or more: one allocation, no regrowth.
        let mut out: Vec<DigestEntry> = Vec::with_capacity(budget / 16);
        let push = |e: DigestEntry, limit: usize, out: &mut Vec<DigestEntry>, used: &mut usize| {
            let s = size::digest_entry(&e);
            if *used + s > limit {
                return false;
            }
            *used += s;
            out.push(e);
            true
        };
        // Marks say which members are listed already.
        self.members.start_marking();
        self.members.mark(0);
        push(self.own_entry(), budget, &mut out, &mut used);
        for h in &self.hot {
            let Some(i) = self.members.find_id(&h.id) else {
                continue;
            };
            if self.members.is_marked(i) {
                continue;
            }
            // An entry that does not fit is skipped, not the end: a long
            // name must not hide the entries behind it.
            if push(
                self.members.digest_entry(i),
                budget / 2,
                &mut out,
                &mut used,
            ) {
                self.members.mark(i);
            }
        }
        for wanted in &behind {
            let found = self.members.find_id(wanted);
            if found.is_some_and(|i| self.members.is_marked(i)) {
                continue;
            }
            let e = match found {
                Some(i) if self.members.at(i).0.generation >= wanted.generation => {
                    self.members.digest_entry(i)
                }
                _ => DigestEntry {
                    id: wanted.clone(),
                    heartbeat: 0,
                    max_version: 0,
                },
            };
            if push(e, budget * 3 / 4, &mut out, &mut used)
                && let Some(i) = found
            {
                self.members.mark(i);
            }
        }
        // Without the window range reconciliation alone finds what differs
        // (heartbeats then reach only the nodes a member talks to).
        if self.relays_no_heartbeats() {
            return (out, used);
        }
        // The window: entries that do not fit are skipped (the next lap
        // brings them); it ends when the room left is below the smallest
        // entry, or after a few misses in a row. It starts next time at the
        // first entry skipped, unless that is where it started: the cursor
        // always moves, so no entry can stop the rotation.
        let n = self.members.len();
        let start = self.digest_cursor;
        let mut next = None;
        let mut misses = 0;
        for i in rotate(n, start) {
            if self.members.is_marked(i) {
                continue;
            }
            if push(self.members.digest_entry(i), budget, &mut out, &mut used) {
                misses = 0;
                continue;
            }
            if next.is_none() && i != start {
                next = Some(i);
            }
            misses += 1;
            if misses >= WINDOW_MISSES || budget.saturating_sub(used) < MIN_ENTRY_BYTES {
                next = next.or(Some(i + 1));
                break;
            }
        }
        self.digest_cursor = next.unwrap_or(start);
        (out, used)
    }

    pub(super) fn on_syn(
        &mut self,
        now: Instant,
        sender: &Id,
        digest: Vec<DigestEntry>,
        page: Option<u64>,
        recon: Recon,
    ) {
        let budget = self.config.digest_bytes;
        let mut used = 0;
        let mut reply: Vec<DigestEntry> = Vec::with_capacity(digest.len());
        // Newer heartbeats only refresh failure detectors: they get what
        // room the requests (which move state) leave in the reply.
        let mut newer: Vec<DigestEntry> = Vec::with_capacity(digest.len());
        let mut wanted: Vec<(Id, u64)> = Vec::new();
        let slots = self.resolve(&digest);
        // Marks say which members the initiator mentioned.
        self.members.start_marking();
        for &i in slots.iter().flatten() {
            self.members.mark(i as usize);
        }
        for (e, &slot) in digest.iter().zip(&slots) {
            let answer = match self.compare(now, e, slot) {
                Cmp::Unknown => Some(DigestEntry {
                    id: e.id.clone(),
                    heartbeat: 0,
                    max_version: 0,
                }),
                Cmp::TheyAhead(ours) => Some(ours),
                Cmp::WeAhead { floor } => {
                    wanted.push((e.id.clone(), floor));
                    None
                }
                // A leaver learns its announcement arrived when it sees its
                // own entry come back at the leave's version. Our header
                // (which says Left) goes too: a member that never left
                // learns of a leave forged at the very version it holds
                // (it wrote there before hearing of the forgery), which it
                // refutes; versions alone would never tell it.
                Cmp::Same { newer: None }
                    if slot.is_some_and(|i| self.members.at(i as usize).1.left)
                        && e.id.name == sender.name =>
                {
                    wanted.push((e.id.clone(), e.max_version));
                    Some(e.clone())
                }
                Cmp::Same { newer: n } => {
                    newer.extend(n);
                    None
                }
                Cmp::Conflict(ours) => Some(ours),
                Cmp::Ignore => None,
            };
            reply.extend(answer);
        }
        reply.extend(newer);
        // Members the digest just made known are mentioned too: the hot
        // list need not push them back.
        for (e, _) in digest.iter().zip(&slots).filter(|(_, s)| s.is_none()) {
            if let Some(i) = self.members.find_id(&e.id) {
                self.members.mark(i);
            }
        }
        reply.retain(|a| {
            let s = size::digest_entry(a);
            let fits = used + s <= budget;
            used += if fits { s } else { 0 };
            fits
        });
        // Members of the ranges the digest covers that it did not name.
        wanted.extend(self.uncovered(&recon.covers));
        let answer = self.answer_sums(&recon.sums);
        for h in &self.hot {
            if !self
                .members
                .find_id(&h.id)
                .is_some_and(|i| self.members.is_marked(i))
            {
                wanted.push((h.id.clone(), h.floor));
            }
        }
        if !self.members.is_marked(0) && (recon.sums.is_empty() || !self.relays_no_heartbeats()) {
            // The initiator may not know us yet (a joiner knocking on a seed):
            // our header costs a few bytes and tells it we are alive, and
            // feeds its heartbeat detector. Without the heartbeat window an
            // initiator that offers fingerprints finds us by them if it
            // lacks us.
            let own = self
                .members
                .get(&self.me.name)
                .expect("this node is always in its own membership");
            wanted.push((self.me.clone(), own.max_version));
        }
        let budget = self
            .config
            .max_message_bytes
            .saturating_sub(self.overhead() + used);
        // A page request gets half the room whatever the deltas want: a
        // fresh member holding more than a message of data must not crowd
        // out the page (the sweep would ask again at once, and again).
        let delta_budget = if page.is_some() { budget / 2 } else { budget };
        let (mut delta, mut delta_bytes) = self.build_deltas(wanted, delta_budget);
        let mut next_page = None;
        if let Some(start) = page {
            let (headers, bytes, next) =
                self.membership_page(budget.saturating_sub(delta_bytes), start);
            next_page = Some(next);
            delta.extend(headers);
            delta_bytes += bytes;
        }
        let known = self.members.len() as u64;
        // Sized from the parts just added up: a page holds thousands of
        // deltas, each a pointer to follow.
        let len = size::synack(
            reply.len(),
            used,
            delta.len(),
            delta_bytes,
            known,
            next_page,
            &answer,
        );
        self.send(
            sender.addr,
            Message::SynAck {
                digest: reply,
                delta,
                known,
                next_page,
                recon: answer,
            },
            len,
        );
    }

    /// Takes in a digest received: counts its entries toward the coverage
    /// failure detection relies on, and returns the slot of every entry's
    /// member (see [`Members::find_ids`]), looked up before any entry is
    /// acted on: comparing entries never moves a member, so the slots stay
    /// right.
    pub(super) fn resolve(&mut self, digest: &[DigestEntry]) -> Vec<Option<u32>> {
        self.coverage.saw(digest.len());
        self.members.find_ids(digest.iter().map(|e| &e.id))
    }

    /// Compares a peer's digest entry with what we hold (the member in
    /// `slot`, from [`resolve`](Node::resolve)), adopting a newer heartbeat
    /// on the way.
    pub(super) fn compare(&mut self, now: Instant, e: &DigestEntry, slot: Option<u32>) -> Cmp {
        if slot == Some(0) {
            return self.compare_self(e);
        }
        if self.rejoin.forgotten.contains(&e.id) {
            self.on_forgotten(now, &e.id, e.heartbeat);
            return Cmp::Ignore;
        }
        let held = slot.map(|i| self.members.at(i as usize).0.generation);
        if refute::impossible(e.heartbeat)
            || refute::impossible(e.max_version)
            || refute::impossible_generation(held, e.id.generation)
        {
            self.metrics.refused.count_part(PartRefused::Impossible);
            return Cmp::Ignore;
        }
        let phi = self.phi;
        let i = match slot {
            Some(i) => i as usize,
            // An entry that asks about a member nobody told it of: we
            // cannot help either.
            None if e.heartbeat == 0 => return Cmp::Ignore,
            // A member new to us: admitted from the entry at once (one
            // message is enough to learn a member, which matters under
            // loss); its updates are asked for below like any member's.
            // Not pushed as fresh news: the relay spreads it already, and
            // during a mass join pushing every member learned so fills the
            // hot list with old news (BENCHMARKS.md, issue 10).
            None => match self.admit(now, e.id.clone()) {
                Some(Ok(i)) => i,
                // An earlier entry of this very digest named it.
                Some(Err((i, _))) => i,
                // Counted by `admit`.
                None => return Cmp::Ignore,
            },
        };
        let (id, m) = self.members.at_mut(i);
        if e.id.generation != id.generation || e.heartbeat == 0 {
            return if e.id.generation > id.generation {
                Cmp::Unknown
            } else {
                Cmp::WeAhead { floor: 0 }
            };
        }
        if e.id.addr != id.addr {
            let ours = DigestEntry {
                id: id.clone(),
                heartbeat: m.heartbeat,
                max_version: m.max_version,
            };
            self.report_conflict(ours.id.clone(), e.id.clone());
            return Cmp::Conflict(ours);
        }
        let revived = m.observe(e.heartbeat, now, &phi);
        let (heartbeat, max_version) = (m.heartbeat, m.max_version);
        if revived {
            self.revive(i);
        }
        // Our entry only where it is sent back (cloning an identity is not free).
        let ours = || self.members.digest_entry(i);
        match max_version.cmp(&e.max_version) {
            std::cmp::Ordering::Greater => Cmp::WeAhead {
                floor: e.max_version,
            },
            std::cmp::Ordering::Less => Cmp::TheyAhead(ours()),
            std::cmp::Ordering::Equal => Cmp::Same {
                newer: (heartbeat > e.heartbeat).then(ours),
            },
        }
    }

    /// A peer's entry about this very node.
    pub(super) fn compare_self(&mut self, e: &DigestEntry) -> Cmp {
        if e.id.generation < self.me.generation {
            // Our own previous incarnation: tell them about this one.
            return Cmp::WeAhead { floor: 0 };
        }
        // Never adopted; noted, and refuted at the next round if ahead.
        if !self.claim_about_self(&e.id, e.heartbeat, e.max_version, false) || *e.id != *self.me {
            return Cmp::Ignore;
        }
        if let Some(v) = self.leave_version
            && e.max_version >= v
            && !self.leave_announced
        {
            self.leave_announced = true;
            self.emit(Event::LeaveAnnounced);
        }
        let own = self
            .members
            .get(&self.me.name)
            .expect("this node is always in its own membership");
        if e.heartbeat == 0 {
            Cmp::WeAhead { floor: 0 }
        } else if own.max_version > e.max_version {
            Cmp::WeAhead {
                floor: e.max_version,
            }
        } else {
            Cmp::Same { newer: None }
        }
    }

    /// Deltas for the wanted nodes within `budget` bytes. Nodes are served
    /// in random order, first each up to a fair share, then the rest of the
    /// budget in that order: no node's updates starve behind a busy one's.
    /// Returns the deltas and the bytes they take.
    pub(super) fn build_deltas(
        &mut self,
        mut wanted: Vec<(Id, u64)>,
        budget: usize,
    ) -> (Vec<NodeDelta>, usize) {
        wanted.sort_unstable_by(|a, b| a.0.name.cmp(&b.0.name).then(a.1.cmp(&b.1)));
        wanted.dedup_by(|later, first| later.0.name == first.0.name);
        wanted.shuffle(&mut self.rng);
        let share = budget / wanted.len().max(1);
        let mut used = 0;
        let mut out: Vec<NodeDelta> = Vec::with_capacity(wanted.len());
        // Deltas cut short by their share: (position in `out`, slot).
        let mut cut: Vec<(usize, usize)> = Vec::new();
        for (id, floor) in &wanted {
            let Some((d, slot)) = self.node_delta(id, *floor, share.min(budget - used)) else {
                continue;
            };
            used += size::node_delta(&d);
            if d.max_version < self.members.at(slot).1.max_version {
                cut.push((out.len(), slot));
            }
            out.push(d);
        }
        for (i, slot) in cut {
            let d = &mut out[i];
            let m = self.members.at(slot).1;
            let Some(ks) = m.keyspace() else {
                continue;
            };
            let before = size::node_delta(d);
            let target = m.max_version;
            let room = budget.saturating_sub(used).saturating_sub(3);
            let (more, complete) = ks.updates_after(d.max_version, target, room);
            if !more.is_empty() {
                d.updates.extend(more);
                d.max_version = complete;
                used = used - before + size::node_delta(d);
            }
        }
        (out, used)
    }

    /// The delta of one node for a peer that holds everything up to `floor`,
    /// within `budget` bytes, and the node's slot; `None` if not even the
    /// header fits.
    pub(super) fn node_delta(
        &self,
        id: &Id,
        floor: u64,
        budget: usize,
    ) -> Option<(NodeDelta, usize)> {
        let slot = self.members.find_id(id)?;
        let (ours, m) = self.members.at(slot);
        // A peer on an older generation takes the whole state.
        let floor = if ours.generation != id.generation {
            0
        } else {
            floor
        };
        let gc = m.gc_version();
        let reset = floor < gc && floor < m.max_version;
        let floor = if reset { 0 } else { floor.min(m.max_version) };
        let mut d = NodeDelta {
            id: ours.clone(),
            heartbeat: m.heartbeat,
            left: m.left,
            floor,
            reset,
            gc_version: gc,
            max_version: m.max_version,
            updates: Vec::new(),
        };
        let header = size::delta_header(&d) + 3;
        if header > budget {
            return None;
        }
        if let Some(ks) = m.keyspace() {
            let (updates, complete) = ks.updates_after(floor, m.max_version, budget - header);
            d.updates = updates;
            d.max_version = complete;
        }
        Some((d, slot))
    }

    /// Applies a message's deltas in order. Their members are looked up in
    /// one pass first (see [`Members::find_ids`]): a catch-up page holds
    /// thousands of them. `paged`: the message answers a catch-up sweep,
    /// so members new to us are old news to the cluster, not to be pushed.
    pub(super) fn apply_deltas(&mut self, now: Instant, deltas: Vec<NodeDelta>, paged: bool) {
        let slots = self.members.find_ids(deltas.iter().map(|d| &d.id));
        for (d, slot) in deltas.into_iter().zip(slots) {
            // Applying only adds members or replaces one in place, so a slot
            // found stays right; a name not found may still be added by an
            // earlier delta of this very message (admitting finds that).
            self.apply_delta(now, d, slot.map(|i| i as usize), paged);
        }
    }

    /// Applies one delta; `found` is the slot of its member, if known
    /// (`None`: it was not in the table when the message arrived).
    pub(super) fn apply_delta(
        &mut self,
        now: Instant,
        mut d: NodeDelta,
        found: Option<usize>,
        paged: bool,
    ) {
        if found == Some(0) {
            if d.id.generation >= self.me.generation {
                // Never adopted; noted, and refuted at the next round if ahead.
                self.claim_about_self(&d.id, d.heartbeat, d.max_version, d.left);
            }
            return;
        }
        let held = found.map(|i| self.members.at(i).0.generation);
        if impossible_delta(&d, held) {
            self.metrics.refused.count_part(PartRefused::Impossible);
            return;
        }
        if self.rejoin.forgotten.contains(&d.id) {
            self.on_forgotten(now, &d.id, d.heartbeat);
            return;
        }
        let (i, fresh) = match found {
            // The delta's identity moves into the table.
            None => match self.admit(now, d.id) {
                Some(Ok(i)) => (i, true),
                // An earlier delta of this very message brought the name.
                Some(Err((i, id))) => {
                    d.id = id;
                    return self.apply_delta(now, d, Some(i), paged);
                }
                // Counted by `admit`.
                None => return,
            },
            Some(i) => {
                let ours = self.members.at(i).0;
                if ours.generation < d.id.generation {
                    (self.restarted(now, d.id, i), true)
                } else if ours.generation > d.id.generation {
                    return;
                } else if ours.addr != d.id.addr {
                    let existing = ours.clone();
                    self.report_conflict(existing, d.id);
                    return;
                } else {
                    (i, false)
                }
            }
        };
        let phi = self.phi;
        // Identities are cloned only where an event or a list keeps one.
        let (owner, m) = self.members.at_mut(i);
        let revived = m.observe(d.heartbeat, now, &phi);
        let old_mv = m.max_version;
        let was_left = m.left;
        let mut gone: Vec<String> = Vec::new();
        if d.reset && m.max_version < d.gc_version {
            // We are older than tombstones the peer has forgotten: start over.
            let old = m.keys.take();
            gone = old
                .iter()
                .flat_map(|k| k.entries.iter())
                .filter(|(_, e)| e.value.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            m.keyspace_mut().gc_version = d.gc_version;
            m.max_version = 0;
        }
        let applicable = d.floor <= m.max_version;
        let mut changes: Vec<Event> = Vec::new();
        let mut refusals: Vec<PartRefused> = Vec::new();
        if applicable {
            let (max_keys, max_key, max_value) = (
                self.config.max_keys_per_node,
                self.config.max_key_bytes,
                self.config.max_value_bytes,
            );
            let (max_keyspace_bytes, max_state_bytes) =
                (self.config.max_keyspace_bytes, self.config.max_state_bytes);
            let base = m.max_version;
            let complete = d.max_version;
            for u in d.updates {
                if u.version <= base {
                    continue;
                }
                let ks = m.keyspace_mut();
                if ks
                    .entries
                    .get(&u.key)
                    .is_some_and(|e| e.version >= u.version)
                {
                    continue;
                }
                // An update over a limit of ours is skipped and counted, and
                // the rest applies: holding the owner's other updates beats
                // stalling behind this one (and asking for it every round).
                let (old_bytes, new_bytes) = (ks.bytes(), ks.bytes_with(&u.key, u.value.as_ref()));
                let refused = if u.key.len() > max_key {
                    Some(PartRefused::KeyTooLong)
                } else if u.value.as_ref().is_some_and(|v| v.len() > max_value) {
                    Some(PartRefused::ValueTooLarge)
                } else if ks.entries.len() >= max_keys && !ks.entries.contains_key(&u.key) {
                    Some(PartRefused::KeyspaceFull)
                } else if new_bytes > max_keyspace_bytes && new_bytes > old_bytes {
                    Some(PartRefused::KeyspaceTooLarge)
                } else if !self.budget.fits(old_bytes, new_bytes, max_state_bytes) {
                    Some(PartRefused::StateFull)
                } else {
                    None
                };
                if let Some(part) = refused {
                    refusals.push(part);
                    continue;
                }
                self.budget.changed(old_bytes, new_bytes);
                let key = u.key.clone();
                let version = u.version;
                match ks.apply(u, now) {
                    Some(Change::Set(value)) => changes.push(Event::KeyChanged {
                        owner: owner.clone(),
                        key,
                        value,
                        version,
                    }),
                    Some(Change::Deleted) => changes.push(Event::KeyDeleted {
                        owner: owner.clone(),
                        key,
                    }),
                    None => {}
                }
            }
            m.max_version = m.max_version.max(complete);
        }
        // A leave is a version of its own (see `Node::leave`): taken only
        // with state newer than ours, or about a member new to us. A forged
        // one thus makes us ahead of the member, which hears of it when we
        // answer its digest, and refutes it with a new generation.
        let announced = d.left && !was_left && (fresh || d.max_version > old_mv);
        m.left |= announced;
        for key in gone {
            if m.keyspace().and_then(|k| k.get(&key)).is_none() {
                changes.push(Event::KeyDeleted {
                    owner: owner.clone(),
                    key,
                });
            }
        }
        let new_mv = m.max_version;
        self.members.refresh(i);
        if announced {
            let id = self.members.at(i).0.clone();
            let from = self.members.set_status_at(i, Status::Left);
            self.emit(Event::MemberStatus {
                id,
                from,
                to: Status::Left,
                reason: StatusReason::Announced,
            });
        } else if revived {
            self.revive(i);
        }
        if !applicable {
            // A gap: we lack updates between our version and the delta's floor.
            self.metrics.deltas_skipped += 1;
            self.add_behind(self.members.at(i).0.clone());
        }
        for part in refusals {
            self.metrics.refused.count_part(part);
        }
        self.metrics.updates_applied += changes.len() as u64;
        for e in changes {
            self.emit(e);
        }
        // Fresh news is pushed for a few rounds: new state, a leave, or a
        // member new to us, unless a catch-up page brought it (everyone
        // else knows it: during a mass join, pushing every member learned
        // would fill the hot list with old news for log n rounds).
        if new_mv > old_mv || announced {
            let owner = self.members.at(i).0;
            self.eager.received(owner, new_mv);
            if !paged {
                self.eager.note(owner, if fresh { 0 } else { old_mv });
            }
        }
        if (fresh && !paged) || new_mv > old_mv || announced {
            let owner = self.members.at(i).0.clone();
            self.push_hot(owner, if fresh { 0 } else { old_mv }, now, fresh);
        }
    }

    /// Admits a member that was not in the table when its message arrived:
    /// its new slot, `Err` with its slot (and `id` back) if an earlier delta
    /// of the same message admitted it meanwhile, `None` (counted) if the
    /// table is full or the message made `max_new_members_per_message`
    /// known already.
    pub(super) fn admit(&mut self, now: Instant, id: Id) -> Option<Result<usize, (usize, Id)>> {
        let full = self.members.len() >= self.config.max_nodes;
        if full || !self.budget.admit() {
            // An earlier delta of this very message may have admitted it.
            if let Some(i) = self.members.find_id(&id) {
                return Some(Err((i, id)));
            }
            let part = if full {
                PartRefused::TableFull
            } else {
                PartRefused::TooManyNew
            };
            self.metrics.refused.count_part(part);
            return None;
        }
        let m = Member::new(0, now, self.config.gossip_interval);
        let inserted = self.members.insert(id, m);
        if let Ok(i) = inserted {
            let id = self.members.at(i).0.clone();
            self.emit(Event::MemberJoined { id });
        }
        Some(inserted)
    }

    /// Admits a new generation of the member in slot `i`, which supersedes
    /// everything of the old one. Returns the slot.
    pub(super) fn restarted(&mut self, now: Instant, id: Id, i: usize) -> usize {
        let m = Member::new(0, now, self.config.gossip_interval);
        let (old, gone) = self.members.replace(i, id.clone(), m);
        for (key, e) in gone.keys.iter().flat_map(|k| k.entries.iter()) {
            if e.value.is_some() {
                self.emit(Event::KeyDeleted {
                    owner: old.clone(),
                    key: key.clone(),
                });
            }
        }
        self.hot.retain(|h| h.id.name != old.name);
        self.emit(Event::MemberRestarted { old, new: id });
        i
    }

    /// The Suspect or Dead member in slot `i` heartbeats again.
    /// Not while the probing part holds a suspicion or conviction that
    /// the heartbeat does not refute.
    pub(super) fn revive(&mut self, i: usize) {
        let (id, m) = self.members.at(i);
        if !self.detection.allows_revival(id, m.heartbeat) {
            return;
        }
        let from = self.members.set_status_at(i, Status::Live);
        self.emit(Event::MemberStatus {
            id: self.members.at(i).0.clone(),
            from,
            to: Status::Live,
            reason: StatusReason::Heartbeat,
        });
    }

    pub(super) fn check_sender(&mut self, sender: &Id) {
        // An older incarnation still talking while a newer one holds its name.
        if let Some((id, m)) = self.members.find_id(sender).map(|i| self.members.at(i))
            && (id.generation > sender.generation
                || (id.generation == sender.generation && id.addr != sender.addr))
            && m.status == Status::Live
        {
            let existing = id.clone();
            self.report_conflict(existing, sender.clone());
        }
    }

    /// The initiator's side of an answer: send what the responder asked for,
    /// remember what it has that we lack (asked for in our next digest).
    pub(super) fn on_synack(
        &mut self,
        now: Instant,
        sender: &Id,
        digest: Vec<DigestEntry>,
        recon: Recon,
    ) {
        let mut wanted = Vec::new();
        let slots = self.resolve(&digest);
        for (e, &slot) in digest.iter().zip(&slots) {
            match self.compare(now, e, slot) {
                Cmp::WeAhead { floor } => wanted.push((e.id.clone(), floor)),
                Cmp::TheyAhead(_) | Cmp::Unknown => self.add_behind(e.id.clone()),
                Cmp::Same { .. } | Cmp::Ignore | Cmp::Conflict(_) => {}
            }
        }
        if !recon.covers.is_empty() {
            // Marks say which members the responder named (looked up again
            // only where the digest made them known just now).
            self.members.start_marking();
            for (e, slot) in digest.iter().zip(&slots) {
                if let Some(i) = slot
                    .map(|i| i as usize)
                    .or_else(|| self.members.find_id(&e.id))
                {
                    self.members.mark(i);
                }
            }
            wanted.extend(self.uncovered(&recon.covers));
        }
        if !wanted.is_empty() {
            let budget = self
                .config
                .max_message_bytes
                .saturating_sub(self.overhead());
            let (delta, bytes) = self.build_deltas(wanted, budget);
            let len = size::ack(delta.len(), bytes);
            self.send(sender.addr, Message::Ack { delta }, len);
        }
        self.follow_up(sender.addr, &recon.sums);
    }
}

/// Whether a delta carries a claim no honest node makes; `held` is the
/// generation held of its member, if any.
fn impossible_delta(d: &NodeDelta, held: Option<u64>) -> bool {
    refute::impossible_generation(held, d.id.generation)
        || [d.heartbeat, d.floor, d.gc_version, d.max_version]
            .into_iter()
            .any(refute::impossible)
        || d.updates.iter().any(|u| refute::impossible(u.version))
}
