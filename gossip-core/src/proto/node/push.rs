//! The node's side of eager push ([`eager`](crate::proto::eager)): what
//! counts as news, building pushes and announcements, and answering
//! `Push`, `IHave`, `Graft` and `Prune`.

use super::*;

impl Node {
    /// Sends the news noted so far, unless it is held back to travel with
    /// more ([`Config::eager_batch`]): one `Push` per eager peer (without
    /// the news that peer brought), and queues its announcements.
    pub(super) fn push_news(&mut self, now: Instant) {
        if !self.config.eager {
            self.eager.clear_news();
            return;
        }
        let Some(news) = self.eager.flush(now, self.config.eager_batch) else {
            self.announce(now);
            return;
        };
        // Eager peers that are no longer live are dropped; at first, or with
        // none left, the node picks some at random.
        let members = &self.members;
        self.eager.retain_peers(|p| {
            members
                .find_id(p)
                .is_some_and(|i| members.at(i).1.status == Status::Live)
        });
        if self.eager.needs_seeding() {
            let live = self.live_peers();
            let peers = self.sample(Status::Live, self.config.eager_fanout, live);
            self.eager.seed(&peers);
        }
        let budget = self
            .config
            .max_message_bytes
            .saturating_sub(self.overhead());
        let wanted = news.iter().map(|n| (n.owner.clone(), n.floor)).collect();
        let (delta, bytes) = self.build_deltas(wanted, budget);
        if delta.is_empty() {
            return;
        }
        let source_of = |d: &NodeDelta| {
            news.iter()
                .find(|n| n.owner.name == d.id.name)
                .and_then(|n| n.source)
        };
        let have: Vec<DigestEntry> = delta
            .iter()
            .map(|d| DigestEntry {
                id: d.id.clone(),
                heartbeat: d.heartbeat,
                max_version: d.max_version,
            })
            .collect();
        let eager: Vec<SocketAddr> = self.eager.peers().iter().map(|p| p.addr).collect();
        for &to in &eager {
            // Without the news this peer brought us.
            let (part, part_bytes) = if delta.iter().any(|d| source_of(d) == Some(to)) {
                let part: Vec<NodeDelta> = delta
                    .iter()
                    .filter(|d| source_of(d) != Some(to))
                    .cloned()
                    .collect();
                let b = part.iter().map(size::node_delta).sum();
                (part, b)
            } else {
                (delta.clone(), bytes)
            };
            if part.is_empty() {
                continue;
            }
            self.metrics.pushes += 1;
            let len = size::ack(part.len(), part_bytes);
            self.send(to, Message::Push { delta: part }, len);
        }
        self.eager.announce(have);
        self.announce(now);
    }

    /// Sends the announcements queued, unless they wait for
    /// [`Config::lazy_batch`]: one `IHave` to each of `lazy_fanout` random
    /// live peers that are not eager ones.
    fn announce(&mut self, now: Instant) {
        let Some(have) = self.eager.flush_lazy(now, self.config.lazy_batch) else {
            return;
        };
        let eager: Vec<SocketAddr> = self.eager.peers().iter().map(|p| p.addr).collect();
        let live = self.live_peers();
        let lazy: Vec<SocketAddr> = self
            .sample(Status::Live, self.config.lazy_fanout + eager.len(), live)
            .into_iter()
            .map(|p| p.addr)
            .filter(|a| !eager.contains(a))
            .take(self.config.lazy_fanout)
            .collect();
        let have_bytes = have.iter().map(size::digest_entry).sum();
        for to in lazy {
            let len = size::entries(have.len(), have_bytes);
            self.send(to, Message::IHave { have: have.clone() }, len);
        }
    }

    /// A `Push` arrived: applied like any delta. One that brought nothing
    /// new is a second path here: the sender is pruned.
    pub(super) fn on_push(&mut self, now: Instant, sender: &Id, delta: Vec<NodeDelta>) {
        let before = self.eager.noted();
        self.apply_deltas(now, delta, false);
        if self.eager.noted() > before {
            self.eager.add_peer(sender);
        } else {
            self.eager.remove_peer(&sender.name);
            self.metrics.prunes += 1;
            self.send(sender.addr, Message::Prune, 1);
        }
    }

    /// An `IHave` arrived: states the sender holds; those ahead of ours
    /// are waited for, and grafted if eager push does not bring them.
    pub(super) fn on_ihave(&mut self, now: Instant, sender: &Id, have: Vec<DigestEntry>) {
        for e in &have {
            if e.id.name == self.me.name
                || refute::impossible(e.max_version)
                || self.rejoin.forgotten.contains(&e.id)
            {
                continue;
            }
            let held = self.members.find_id(&e.id).and_then(|i| {
                let (id, m) = self.members.at(i);
                (id.generation == e.id.generation).then_some(m.max_version)
            });
            self.eager
                .announced(now, sender.addr, e, held, self.config.graft_timeout);
        }
    }

    /// A `Graft` arrived: the sender wants updates above the versions it
    /// gave, pushed to it eagerly from now on.
    pub(super) fn on_graft(&mut self, sender: &Id, want: Vec<DigestEntry>) {
        self.eager.add_peer(sender);
        let wanted: Vec<(Id, u64)> = want.into_iter().map(|e| (e.id, e.max_version)).collect();
        let budget = self
            .config
            .max_message_bytes
            .saturating_sub(self.overhead());
        let (delta, bytes) = self.build_deltas(wanted, budget);
        if !delta.is_empty() {
            let len = size::ack(delta.len(), bytes);
            self.send(sender.addr, Message::Push { delta }, len);
        }
    }

    /// Grafts announced updates that have not arrived in time.
    pub(super) fn graft_overdue(&mut self, now: Instant) {
        let members = &self.members;
        let held = |id: &Id| {
            members.find_id(id).and_then(|i| {
                let (ours, m) = members.at(i);
                (ours.generation == id.generation).then_some(m.max_version)
            })
        };
        let due = self.eager.due(now, self.config.graft_timeout, held);
        for (to, want) in due {
            self.metrics.grafts += 1;
            let len = size::entries(1, size::digest_entry(&want));
            self.send(to, Message::Graft { want: vec![want] }, len);
        }
    }
}
