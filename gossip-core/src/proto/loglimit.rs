//! At most one log line per peer per interval about its misbehaviour.
//!
//! A peer that sends garbage at wire speed must not turn into a log line
//! per message: the first refusal in an interval is logged, the rest are
//! counted (`Metrics::logs_suppressed`). Refusals themselves are always
//! counted in `Metrics::refused`, whatever is logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::time::Instant;

/// Peers tracked at once. Past this, peers not logged within the last
/// interval are dropped; if all were, new ones are not logged until some
/// age out (a flood from more than this many addresses logs nothing more).
const MAX_TRACKED: usize = 1024;

/// When each peer was last logged about.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    last: BTreeMap<SocketAddr, Instant>,
}

impl LogLimit {
    /// Whether a line about `peer` may be logged at `now`, given one per
    /// `every`. Records it if so.
    pub fn allow(&mut self, now: Instant, peer: SocketAddr, every: Duration) -> bool {
        if let Some(t) = self.last.get_mut(&peer) {
            if now.saturating_since(*t) < every {
                return false;
            }
            *t = now;
            return true;
        }
        if self.last.len() >= MAX_TRACKED {
            self.last.retain(|_, t| now.saturating_since(*t) < every);
            if self.last.len() >= MAX_TRACKED {
                return false;
            }
        }
        self.last.insert(peer, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_per_interval() {
        let mut l = LogLimit::default();
        let every = Duration::from_secs(1);
        let a: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("literal");
        let t = Instant::from_micros(5_000_000);
        assert!(l.allow(t, a, every));
        assert!(!l.allow(t + Duration::from_millis(999), a, every));
        assert!(l.allow(t, b, every), "another peer has its own budget");
        assert!(l.allow(t + every, a, every));
    }

    #[test]
    fn a_flood_from_many_addresses_stays_bounded() {
        let mut l = LogLimit::default();
        let every = Duration::from_secs(1);
        let t = Instant::from_micros(1_000_000);
        let allowed = (0..5_000u32)
            .filter(|&i| {
                l.allow(
                    t,
                    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1)),
                    every,
                )
            })
            .count();
        assert_eq!(allowed, MAX_TRACKED);
        assert!(l.last.len() <= MAX_TRACKED);
        // An interval later the old entries make room again.
        let later = t + every;
        assert!(l.allow(later, SocketAddr::from(([10, 1, 0, 0], 1)), every));
        assert!(l.last.len() <= MAX_TRACKED);
    }
}
