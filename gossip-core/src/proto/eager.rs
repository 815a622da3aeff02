//! Eager push: an update new to a node leaves it at once instead of waiting
//! for the next round, on a tree that optimises itself (Plumtree, Leitão et
//! al. 2007), with the periodic exchange behind it for whatever it loses.
//!
//! - News (a key write, a leave: state that raised an owner's version) is
//!   pushed as a `Push` of the new updates to the node's *eager* peers,
//!   except the one it came from, and announced as an `IHave` (owner and
//!   version, no payload) to a few other live peers (*lazy* push).
//! - A `Push` that brings nothing new is a second path to this node: it
//!   answers `Prune`, and both ends push to each other lazily from then on.
//!   The eager edges left form a spanning tree, and each node receives each
//!   update about once.
//! - An `IHave` of a state this node lacks starts a timer; if the update has
//!   not arrived by then, the node asks the announcer with a `Graft` (which
//!   also makes that edge eager again: the tree repairs itself).
//! - Heartbeats, which change every round, are never pushed.
//!
//! This file holds the part's state and its decisions; `node/push.rs` wires
//! it to the node (what "new" means, building the deltas, sending).

use std::net::SocketAddr;

use crate::proto::id::Id;
use crate::proto::message::DigestEntry;
use crate::proto::time::Instant;

/// Announced states this node waits for, at most (older ones give way).
const MAX_MISSING: usize = 1024;
/// Announcers remembered per missing state (each is asked in turn).
const MAX_ANNOUNCERS: usize = 4;

/// An owner whose state moved above `floor` here, learned from `source`
/// (`None`: our own, or from several peers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct News {
    pub owner: Id,
    pub floor: u64,
    pub source: Option<SocketAddr>,
}

/// A batching window: what arrives within `window` of the last send waits
/// for the window's end; the first send after a quiet spell goes at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Window {
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Window {
    /// Whether something waiting (`waiting`) may be sent at `now`; if so,
    /// the send is recorded, if not, when it is due.
    fn open(&mut self, now: Instant, window: std::time::Duration, waiting: bool) -> bool {
        if !waiting {
            self.due = None;
            return false;
        }
        if let Some(t) = self.last
            && now < t + window
        {
            self.due = Some(t + window);
            return false;
        }
        self.last = Some(now);
        self.due = None;
        true
    }
}

/// An announced state not yet held.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Missing {
    owner: Id,
    version: u64,
    /// Who announced it, first first: asked in this order.
    announcers: Vec<SocketAddr>,
    /// When to ask the next announcer.
    deadline: Instant,
}

/// The eager-push part of a node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Eager {
    /// Peers pushed to eagerly (Plumtree's eager set; everyone else is lazy).
    peers: Vec<Id>,
    missing: Vec<Missing>,
    /// News not pushed yet.
    news: Vec<News>,
    /// News noted since start (tells whether an input brought any).
    noted: u64,
    /// The sender of the message being handled (its news is not pushed
    /// back to it).
    source: Option<SocketAddr>,
    /// When news was last pushed, and when the news held back is due.
    push_window: Window,
    /// Announcements not sent yet (one per owner, the highest version), and
    /// their own window: they only repair, so they may wait longer.
    lazy: Vec<DigestEntry>,
    lazy_window: Window,
    /// Whether the eager set was filled with random peers once: from then
    /// on it changes only by prunes, grafts and departures (refilled only
    /// if it empties).
    seeded: bool,
}

impl Eager {
    /// The eager peers.
    pub fn peers(&self) -> &[Id] {
        &self.peers
    }

    /// Whether the eager set needs random peers: never filled, or empty.
    pub fn needs_seeding(&self) -> bool {
        !self.seeded || self.peers.is_empty()
    }

    /// Adds the random peers that start the eager set.
    pub fn seed(&mut self, peers: &[Id]) {
        self.seeded = true;
        for p in peers {
            self.add_peer(p);
        }
    }

    /// Makes `peer` eager (it sent us news, or grafted).
    pub fn add_peer(&mut self, peer: &Id) {
        if !self.peers.iter().any(|p| p.name == peer.name) {
            self.peers.push(peer.clone());
        } else if let Some(p) = self.peers.iter_mut().find(|p| p.name == peer.name) {
            *p = peer.clone();
        }
    }

    /// Makes the peer of this name lazy (it pruned us, or sent a duplicate,
    /// or is no longer live).
    pub fn remove_peer(&mut self, name: &str) {
        self.peers.retain(|p| p.name != name);
    }

    /// Keeps only the peers for which `keep` holds.
    pub fn retain_peers(&mut self, keep: impl FnMut(&Id) -> bool) {
        self.peers.retain(keep);
    }

    /// Sets the sender of the message being handled (`None` between messages).
    pub fn set_source(&mut self, source: Option<SocketAddr>) {
        self.source = source;
    }

    /// Notes news: `owner`'s state moved above `floor` here, learned from
    /// the message being handled (or our own).
    pub fn note(&mut self, owner: &Id, floor: u64) {
        self.noted += 1;
        let source = self.source;
        if let Some(n) = self.news.iter_mut().find(|n| n.owner.name == owner.name) {
            if n.owner.generation == owner.generation {
                n.floor = n.floor.min(floor);
            } else {
                n.owner = owner.clone();
                n.floor = floor;
            }
            if n.source != source {
                n.source = None;
            }
            return;
        }
        self.news.push(News {
            owner: owner.clone(),
            floor,
            source,
        });
    }

    /// How many pieces of news were ever noted: an input brought news if
    /// this grew while it was handled.
    pub fn noted(&self) -> u64 {
        self.noted
    }

    /// Takes the news to push now, or `None` if it is held back: news that
    /// arrives within `window` of the last push waits for the window's end,
    /// so that pushes under load travel together (the first after a quiet
    /// spell leaves at once).
    pub fn flush(&mut self, now: Instant, window: std::time::Duration) -> Option<Vec<News>> {
        let waiting = !self.news.is_empty();
        self.push_window
            .open(now, window, waiting)
            .then(|| std::mem::take(&mut self.news))
    }

    /// Queues announcements of states this node now holds.
    pub fn announce(&mut self, have: impl IntoIterator<Item = DigestEntry>) {
        for e in have {
            match self.lazy.iter_mut().find(|l| l.id.name == e.id.name) {
                Some(l) if l.id.generation > e.id.generation => {}
                Some(l) if l.id.generation == e.id.generation && l.max_version >= e.max_version => {
                }
                Some(l) => *l = e,
                None => self.lazy.push(e),
            }
        }
    }

    /// Takes the announcements to send now, or `None` if they wait (as
    /// [`flush`](Self::flush), with its own `window`).
    pub fn flush_lazy(
        &mut self,
        now: Instant,
        window: std::time::Duration,
    ) -> Option<Vec<DigestEntry>> {
        let waiting = !self.lazy.is_empty();
        self.lazy_window
            .open(now, window, waiting)
            .then(|| std::mem::take(&mut self.lazy))
    }

    /// Drops the news (eager push is off).
    pub fn clear_news(&mut self) {
        self.news.clear();
        self.push_window.due = None;
        self.lazy.clear();
        self.lazy_window.due = None;
    }

    /// `from` announced `entry`, of which this node holds `held` (the
    /// version, if it holds that incarnation). Starts waiting for it if it
    /// is ahead.
    pub fn announced(
        &mut self,
        now: Instant,
        from: SocketAddr,
        entry: &DigestEntry,
        held: Option<u64>,
        timeout: std::time::Duration,
    ) {
        if held.is_some_and(|v| v >= entry.max_version) {
            return;
        }
        if let Some(m) = self
            .missing
            .iter_mut()
            .find(|m| m.owner.name == entry.id.name)
        {
            if m.owner.generation == entry.id.generation && m.version >= entry.max_version {
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                    m.announcers.push(from);
                }
                return;
            }
            *m = Missing {
                owner: entry.id.clone(),
                version: entry.max_version,
                announcers: vec![from],
                deadline: now + timeout,
            };
            return;
        }
        if self.missing.len() >= MAX_MISSING {
            self.missing.remove(0);
        }
        self.missing.push(Missing {
            owner: entry.id.clone(),
            version: entry.max_version,
            announcers: vec![from],
            deadline: now + timeout,
        });
    }

    /// This node now holds `owner`'s state up to `version`: stops waiting
    /// for what that covers.
    pub fn received(&mut self, owner: &Id, version: u64) {
        self.missing.retain(|m| {
            !(m.owner.name == owner.name
                && m.owner.generation <= owner.generation
                && m.version <= version)
        });
    }

    /// The earliest deadline: held-back news, or a missing state.
    pub fn deadline(&self) -> Option<Instant> {
        self.missing
            .iter()
            .map(|m| m.deadline)
            .chain(self.push_window.due)
            .chain(self.lazy_window.due)
            .min()
    }

    /// The grafts due at `now`: for every missing state whose deadline
    /// passed, the next announcer to ask and what to ask for (the owner at
    /// the version this node holds, from `held`). A state is forgotten once
    /// every announcer was asked (the periodic exchange still brings it).
    pub fn due(
        &mut self,
        now: Instant,
        timeout: std::time::Duration,
        held: impl Fn(&Id) -> Option<u64>,
    ) -> Vec<(SocketAddr, DigestEntry)> {
        let mut out = Vec::new();
        for m in &mut self.missing {
            if m.deadline > now || m.announcers.is_empty() {
                continue;
            }
            let to = m.announcers.remove(0);
            out.push((
                to,
                DigestEntry {
                    id: m.owner.clone(),
                    heartbeat: 0,
                    max_version: held(&m.owner).unwrap_or(0),
                },
            ));
            m.deadline = now + timeout;
        }
        // Kept until the last graft had its time to be answered.
        self.missing
            .retain(|m| !(m.announcers.is_empty() && m.deadline <= now));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::NodeId;
    use std::sync::Arc;
    use std::time::Duration;

    fn id(name: &str, generation: u64) -> Id {
        Arc::new(NodeId::new(
            name,
            "127.0.0.1:1".parse().expect("addr"),
            generation,
        ))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn entry(owner: &Id, version: u64) -> DigestEntry {
        DigestEntry {
            id: owner.clone(),
            heartbeat: 3,
            max_version: version,
        }
    }

    const T: Duration = Duration::from_millis(50);

    #[test]
    fn peers_are_added_once_and_removed_by_name() {
        let mut e = Eager::default();
        e.add_peer(&id("a", 1));
        e.add_peer(&id("a", 2));
        e.add_peer(&id("b", 1));
        assert_eq!(e.peers().len(), 2);
        assert_eq!(e.peers()[0].generation, 2, "the newer incarnation is kept");
        e.remove_peer("a");
        assert_eq!(
            e.peers()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn news_of_one_owner_is_merged_to_the_lowest_floor_and_any_source() {
        let mut e = Eager::default();
        let a = id("a", 1);
        e.set_source(Some(addr(1)));
        e.note(&a, 5);
        e.note(&id("b", 1), 0);
        e.set_source(Some(addr(2)));
        e.note(&a, 3);
        e.set_source(None);
        assert_eq!(e.noted(), 3);
        let news = e.flush(Instant::ZERO, T).expect("due");
        let got: Vec<_> = news
            .iter()
            .map(|n| (n.owner.name.as_str(), n.floor, n.source))
            .collect();
        assert_eq!(got, [("a", 3, None), ("b", 0, Some(addr(1)))]);
        assert_eq!(e.flush(Instant::ZERO, T), None, "nothing left");
    }

    #[test]
    fn news_within_the_window_of_a_push_waits_for_its_end() {
        let mut e = Eager::default();
        let a = id("a", 1);
        let t0 = Instant::ZERO;
        e.note(&a, 0);
        assert!(e.flush(t0, T).is_some(), "the first push leaves at once");
        e.note(&a, 1);
        assert_eq!(e.flush(t0 + T / 2, T), None, "held back");
        assert_eq!(e.deadline(), Some(t0 + T));
        e.note(&id("b", 1), 0);
        assert_eq!(e.flush(t0 + T, T).map(|n| n.len()), Some(2), "together");
        assert_eq!(e.deadline(), None);
    }

    #[test]
    fn announcements_keep_the_highest_state_per_owner_and_wait_for_their_window() {
        let mut e = Eager::default();
        let (a, b) = (id("a", 1), id("b", 1));
        let t0 = Instant::ZERO;
        e.announce([entry(&a, 2)]);
        assert_eq!(
            e.flush_lazy(t0, T).map(|l| l.len()),
            Some(1),
            "at once after quiet"
        );
        e.announce([entry(&a, 3), entry(&b, 1)]);
        e.announce([entry(&a, 1)]);
        assert_eq!(e.flush_lazy(t0 + T / 2, T), None);
        assert_eq!(e.deadline(), Some(t0 + T));
        let got = e.flush_lazy(t0 + T, T).expect("due");
        assert_eq!(got, vec![entry(&a, 3), entry(&b, 1)]);
    }

    #[test]
    fn an_announcement_of_what_we_hold_is_ignored() {
        let mut e = Eager::default();
        let a = id("a", 1);
        e.announced(Instant::ZERO, addr(1), &entry(&a, 4), Some(4), T);
        assert_eq!(e.deadline(), None);
    }

    #[test]
    fn a_missing_update_is_grafted_from_each_announcer_in_turn() {
        let mut e = Eager::default();
        let a = id("a", 1);
        let t0 = Instant::ZERO;
        e.announced(t0, addr(1), &entry(&a, 4), Some(2), T);
        e.announced(t0, addr(2), &entry(&a, 4), Some(2), T);
        assert_eq!(e.deadline(), Some(t0 + T));
        assert!(
            e.due(t0, T, |_| Some(2)).is_empty(),
            "not before the deadline"
        );
        let g = e.due(t0 + T, T, |_| Some(2));
        assert_eq!(
            g,
            vec![(
                addr(1),
                DigestEntry {
                    id: a.clone(),
                    heartbeat: 0,
                    max_version: 2
                }
            )]
        );
        let g = e.due(t0 + T * 2, T, |_| Some(2));
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0, addr(2), "then the second announcer");
        assert!(e.due(t0 + T * 3, T, |_| Some(2)).is_empty());
        assert_eq!(e.deadline(), None, "forgotten once everyone was asked");
    }

    #[test]
    fn receiving_the_update_stops_the_wait() {
        let mut e = Eager::default();
        let a = id("a", 1);
        e.announced(Instant::ZERO, addr(1), &entry(&a, 4), None, T);
        e.received(&a, 3);
        assert!(e.deadline().is_some(), "version 3 does not cover 4");
        e.received(&a, 4);
        assert_eq!(e.deadline(), None);
    }
}
