//! What an application asks of the node beyond the protocol's commands:
//! cheap read-only views across owners, seeds changed at run time, and its
//! own metadata sent along with its first knock, so that no peer learns of
//! this node without it.

use super::*;

impl Node {
    /// Every owner's value of `key`, as this node holds them: `(owner,
    /// value, version)` for each member with a live value under that key
    /// ("what does each node say about `service/port`"). O(members), no
    /// copies; in no particular order.
    pub fn values_of<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = (&'a Id, &'a Bytes, u64)> + 'a {
        self.members.iter().filter_map(move |(id, m)| {
            let e = m.keyspace()?.get(key)?;
            e.value.as_ref().map(|v| (id, v, e.version))
        })
    }

    /// The seeds this node joins (and re-merges) through.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Replaces the seeds (this node's own address is ignored), for
    /// deployments whose seed addresses change while nodes run. A node
    /// that is alone knocks on the new seeds at its next round instead of
    /// waiting out the backoff it built up on the old ones.
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        let me = self.me.addr;
        self.seeds = seeds.into_iter().filter(|s| *s != me).collect();
        self.rejoin.backoff = self.config.join_retry_min;
        self.rejoin.next_knock = Instant::ZERO;
    }

    /// Before this node's first answer: pushes its own state to `to` (a
    /// seed or member it knocks on) ahead of the `Syn`, so the peer admits
    /// it with its metadata in one step rather than first as a bare name
    /// from the `Syn`'s envelope and its keys an exchange later. Nothing if
    /// it holds no state of its own yet. Best effort like everything sent:
    /// if the push is lost, the exchange brings the keys as before.
    pub(super) fn introduce(&mut self, to: SocketAddr) {
        if self.joined || self.own_entry().max_version == 0 {
            return;
        }
        let budget = self
            .config
            .max_message_bytes
            .saturating_sub(self.overhead());
        let (delta, bytes) = self.build_deltas(vec![(self.me.clone(), 0)], budget);
        if delta.is_empty() {
            return;
        }
        self.metrics.pushes += 1;
        let len = size::ack(delta.len(), bytes);
        self.send(to, Message::Push { delta }, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, port: u16, seeds: Vec<SocketAddr>) -> Node {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Node::new(
            Config::default(),
            NodeId::new(name, addr, 1),
            seeds,
            u64::from(port),
            Instant::ZERO,
        )
        .expect("valid config")
    }

    fn addr(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[test]
    fn the_first_message_a_peer_gets_carries_the_joiners_keys() {
        let mut joiner = node("j", 1, vec![addr(2)]);
        let mut seed = node("s", 2, vec![]);
        let t = Instant::ZERO;
        joiner.set(t, "role", "db".into()).expect("write");
        joiner.handle_timeout(t);
        let first = joiner.poll_transmit().expect("the joiner knocks");
        assert!(matches!(first.envelope.message, Message::Push { .. }));
        assert_eq!(first.to, addr(2));
        let second = joiner.poll_transmit().expect("and sends its digest");
        assert!(matches!(second.envelope.message, Message::Syn { .. }));

        seed.handle_bytes(t, addr(1), &first.encode())
            .expect("accepted");
        // (The seed's own `Joined` aside: the joiner is the first peer it hears.)
        let events: Vec<Event> = std::iter::from_fn(|| seed.poll_event())
            .filter(|e| *e != Event::Joined)
            .collect();
        assert!(
            matches!(&events[0], Event::MemberJoined { id } if id.name == "j"),
            "{events:?}"
        );
        assert!(
            matches!(&events[1], Event::KeyChanged { key, .. } if key == "role"),
            "the key comes in the same step: {events:?}"
        );
        assert_eq!(
            seed.get("j", "role").map(|(v, _)| v.clone()),
            Some("db".into())
        );
    }

    #[test]
    fn a_joiner_without_keys_sends_only_its_digest() {
        let mut joiner = node("j", 1, vec![addr(2)]);
        joiner.handle_timeout(Instant::ZERO);
        let all: Vec<Transmit> = std::iter::from_fn(|| joiner.poll_transmit()).collect();
        assert_eq!(all.len(), 1);
        assert!(matches!(all[0].envelope.message, Message::Syn { .. }));
    }

    #[test]
    fn values_of_lists_every_owner_holding_the_key() {
        let mut a = node("a", 1, vec![addr(2)]);
        let mut b = node("b", 2, vec![]);
        let t = Instant::ZERO;
        a.set(t, "service/port", "80".into()).expect("write");
        b.set(t, "service/port", "81".into()).expect("write");
        b.set(t, "other", "x".into()).expect("write");
        a.handle_timeout(t);
        while let Some(tx) = a.poll_transmit() {
            b.handle_bytes(t, addr(1), &tx.encode()).expect("accepted");
        }
        let mut seen: Vec<(String, Bytes, u64)> = b
            .values_of("service/port")
            .map(|(id, v, version)| (id.name.clone(), v.clone(), version))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [("a".into(), "80".into(), 1), ("b".into(), "81".into(), 1)]
        );
        assert_eq!(b.values_of("missing").count(), 0);
        b.delete(t, "service/port").expect("delete");
        assert_eq!(
            b.values_of("service/port").count(),
            1,
            "tombstones are not values"
        );
    }

    #[test]
    fn new_seeds_are_knocked_on_at_the_next_round() {
        let mut n = node("n", 1, vec![addr(2), addr(1)]);
        assert_eq!(n.seeds(), [addr(2)], "its own address is ignored");
        let mut now = Instant::ZERO;
        n.handle_timeout(now);
        assert_eq!(n.poll_transmit().map(|t| t.to), Some(addr(2)));
        n.set_seeds(vec![addr(3), addr(1)]);
        assert_eq!(n.seeds(), [addr(3)]);
        // The next round (the prober's timer may fire first, with nobody
        // to probe): its only transmit is the knock on the new seed.
        let round = now + n.config().gossip_interval * 2;
        let mut to: Vec<SocketAddr> = Vec::new();
        while to.is_empty() && now < round {
            now = n.poll_timeout();
            n.handle_timeout(now);
            to = std::iter::from_fn(|| n.poll_transmit())
                .map(|t| t.to)
                .collect();
        }
        assert_eq!(to, [addr(3)]);
    }
}
