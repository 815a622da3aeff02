//! Catch-up for joiners: paging through one peer's membership instead of
//! learning members a digest window at a time.

use super::*;

/// A peer must know this many more members than we do (at least) before
/// we sweep through its membership.
const SWEEP_MIN: u64 = 16;
/// Rounds between two full sweeps made for a small shortfall (the members
/// digest windows have not brought yet). 5 left the last nodes of a
/// 10,000-node mass join waiting 5 rounds for a handful of members.
const FULL_SWEEP_ROUNDS: u32 = 2;
/// Pages asked for per round at most (a page is up to a message): the
/// sweep is bounded per round, not by wire speed, whatever peers answer.
/// 10,000 members take 4 pages.
const MAX_PAGES_PER_ROUND: u32 = 16;

/// The joiner's catch-up state: the sweep under way (or finished, kept
/// for resuming), the best-informed peer seen, the last full sweep.
#[derive(Clone, Debug, Default)]
pub(super) struct CatchUp {
    sweep: Option<Sweep>,
    /// The peer that knew the most members, and how many.
    best_known: Option<(Id, u64)>,
    /// When the last full sweep for a small shortfall started.
    last_full_sweep: Option<Instant>,
}

/// A catch-up in progress: paging through one peer's membership.
#[derive(Clone, Debug)]
pub(super) struct Sweep {
    peer: Id,
    /// Where the next page starts in the peer's membership.
    cursor: u64,
    /// Where this run of pages started.
    resumed_at: u64,
    /// How many members the peer knew at its last page.
    known: u64,
    /// Pages are being fetched (false: finished, kept for resuming).
    active: bool,
    /// The last run brought nothing new: try another peer next time.
    exhausted: bool,
    /// Last time a page arrived.
    progress: Instant,
    /// Pages asked for this round; past `MAX_PAGES_PER_ROUND`, or after a
    /// page that brought nothing, the next is asked for next round.
    pages: u32,
    /// A page is due but waits for the next round.
    waiting: bool,
}

impl Node {
    /// Notes a peer's member count. A node that knows far fewer members
    /// than a peer (it just joined) catches up by sweeping through one
    /// peer's membership a page per exchange instead of learning members a
    /// digest window at a time. The first sweep starts at once.
    pub(super) fn consider_sweep(&mut self, now: Instant, peer: &Id, known: u64) {
        if known <= self.members.len() as u64 {
            return;
        }
        if self
            .catchup
            .best_known
            .as_ref()
            .is_none_or(|(_, k)| known > *k)
        {
            self.catchup.best_known = Some((peer.clone(), known));
        }
        if self.catchup.sweep.is_none() && known > self.sweep_threshold() {
            self.make_room(known);
            self.start_sweep(now, peer.clone(), 0);
        }
    }

    /// Makes room for the `known` members a peer has, if that is far more
    /// than we hold: all at once, as growing a quarter at a time would copy
    /// a joiner's table several times over.
    fn make_room(&mut self, known: u64) {
        if known > self.sweep_threshold() {
            let ours = self.members.len() as u64;
            self.members.reserve(
                usize::try_from(known - ours)
                    .unwrap_or(0)
                    .min(self.config.max_nodes),
            );
        }
    }

    fn sweep_threshold(&self) -> u64 {
        let ours = self.members.len() as u64;
        ours.saturating_add(SWEEP_MIN.max(ours / 16))
    }

    fn start_sweep(&mut self, now: Instant, peer: Id, cursor: u64) {
        let addr = peer.addr;
        if cursor == 0 {
            self.catchup.last_full_sweep = Some(now);
        }
        self.catchup.sweep = Some(Sweep {
            peer,
            cursor,
            resumed_at: cursor,
            known: 0,
            active: true,
            exhausted: false,
            progress: now,
            pages: 1,
            waiting: false,
        });
        self.send_syn(addr, Some(cursor));
    }

    /// Once a round: drops a sweep whose peer went quiet, then resumes or
    /// starts one if a peer knew more members than we do.
    pub(super) fn tick_sweep(&mut self, now: Instant) {
        if let Some(sw) = &mut self.catchup.sweep
            && sw.active
        {
            if now.saturating_since(sw.progress) > self.config.gossip_interval * 3 {
                self.catchup.sweep = None;
            } else if sw.waiting {
                sw.waiting = false;
                sw.pages = 1;
                let (addr, cursor) = (sw.peer.addr, sw.cursor);
                self.send_syn(addr, Some(cursor));
                return;
            } else {
                sw.pages = 0;
            }
        }
        self.resume_sweep(now);
    }

    /// If a peer knew far more members than we do, resume the
    /// sweep from the peer we swept before (its members are kept in arrival
    /// order, so resuming reads only the newer ones), or, if that peer is
    /// gone or had nothing new, start over from the peer that knows most.
    fn resume_sweep(&mut self, now: Instant) {
        let Some((best, known)) = self.catchup.best_known.take() else {
            return;
        };
        let ours = self.members.len() as u64;
        match &self.catchup.sweep {
            Some(sw) if sw.active => {}
            // Resuming costs only the members we lack (and one exchange):
            // worth it for any shortfall, which ends the long tail of a join,
            // unless that peer knew far fewer than the best one (it lacks
            // what we lack: resuming would bring a few members per round).
            Some(sw)
                if !sw.exhausted
                    && known > ours
                    && sw.known.saturating_add(SWEEP_MIN) >= known
                    && self
                        .members
                        .get(&sw.peer.name)
                        .is_some_and(|m| m.status == Status::Live) =>
            {
                let (peer, cursor) = (sw.peer.clone(), sw.cursor);
                self.start_sweep(now, peer, cursor);
            }
            // The peer we swept before is gone or had nothing new: start
            // over from the peer that knows most. That reads its whole
            // membership: at once for a large shortfall, and at most every
            // `FULL_SWEEP_ROUNDS` for a handful of members windows missed.
            _ if known > ours.saturating_add(SWEEP_MIN)
                || self.catchup.last_full_sweep.is_none_or(|t| {
                    now.saturating_since(t) >= self.config.gossip_interval * FULL_SWEEP_ROUNDS
                }) =>
            {
                self.start_sweep(now, best, 0)
            }
            _ => {}
        }
    }

    /// Asks for the next page of a sweep right away, or ends it.
    pub(super) fn continue_sweep(
        &mut self,
        now: Instant,
        peer: &Id,
        known: u64,
        next_page: Option<u64>,
    ) {
        self.make_room(known);
        match (&mut self.catchup.sweep, next_page) {
            (Some(sw), Some(next)) if sw.active && sw.peer == *peer => {
                let moved = next > sw.cursor;
                sw.cursor = next;
                sw.known = known;
                sw.progress = now;
                if next < known {
                    if moved && sw.pages < MAX_PAGES_PER_ROUND {
                        sw.pages += 1;
                        self.send_syn(peer.addr, Some(next));
                    } else {
                        sw.waiting = true;
                    }
                } else {
                    sw.active = false;
                    sw.exhausted = next == sw.resumed_at;
                }
            }
            _ => self.consider_sweep(now, peer, known),
        }
    }

    /// Headers of the members in slots `start..`, within `room` bytes.
    /// Returns them and the slot the next page starts at.
    pub(super) fn membership_page(&self, room: usize, start: u64) -> (Vec<NodeDelta>, usize, u64) {
        let n = self.members.len();
        let mut used = 0;
        let mut page = Vec::with_capacity(room / 24);
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(n);
        for i in start..n {
            let (id, m) = self.members.at(i);
            let d = NodeDelta {
                id: id.clone(),
                heartbeat: m.heartbeat,
                left: m.left,
                floor: m.max_version,
                reset: false,
                gc_version: m.gc_version(),
                max_version: m.max_version,
                updates: Vec::new(),
            };
            let s = size::node_delta(&d);
            if used + s > room {
                // A header that does not fit an empty page is skipped (the
                // digests bring that member): the sweep always moves on.
                let next = if page.is_empty() { i + 1 } else { i };
                return (page, used, next as u64);
            }
            used += s;
            page.push(d);
        }
        (page, used, n as u64)
    }
}
