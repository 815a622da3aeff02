//! What peers can make this node hold, counted as it grows: bytes of state
//! of all owners together (`Config::max_state_bytes`) and members made
//! known per message (`Config::max_new_members_per_message`).

/// The running counts behind the limits on state and admissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Bytes of keys and values held, all owners: counted again exactly at
    /// every round, raised by every update applied in between (so it never
    /// undercounts).
    state_bytes: usize,
    /// Members the message being handled may still make known; `None`
    /// while no limit applies (a catch-up page this node asked for).
    admissions_left: Option<usize>,
}

impl Budget {
    /// A message arrives: it may make `limit` members known (`None`: no limit).
    pub fn start_message(&mut self, limit: Option<usize>) {
        self.admissions_left = limit;
    }

    /// Whether one more member may be made known by this message (and
    /// counts it).
    pub fn admit(&mut self) -> bool {
        match &mut self.admissions_left {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// Bytes of state held, as counted.
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Whether changing an entry from `old` to `new` bytes keeps the state
    /// within `limit`.
    pub fn fits(&self, old: usize, new: usize, limit: usize) -> bool {
        new <= old || self.state_bytes.saturating_add(new - old) <= limit
    }

    /// An entry changed from `old` to `new` bytes.
    pub fn changed(&mut self, old: usize, new: usize) {
        self.state_bytes = (self.state_bytes + new).saturating_sub(old);
    }

    /// The exact count, from a pass over all state.
    pub fn recount(&mut self, state_bytes: usize) {
        self.state_bytes = state_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissions_are_limited_per_message() {
        let mut b = Budget::default();
        assert!(b.admit(), "no limit before any message");
        b.start_message(Some(2));
        assert!(b.admit() && b.admit());
        assert!(!b.admit() && !b.admit(), "the third and later are refused");
        b.start_message(None);
        assert!(
            (0..1_000).all(|_| b.admit()),
            "a page asked for has no limit"
        );
        b.start_message(Some(1));
        assert!(b.admit() && !b.admit(), "every message starts again");
    }

    #[test]
    fn state_bytes_stay_within_the_limit() {
        let mut b = Budget::default();
        assert!(b.fits(0, 100, 100));
        b.changed(0, 100);
        assert!(!b.fits(0, 1, 100), "full");
        assert!(
            b.fits(10, 10, 100),
            "an entry that does not grow always fits"
        );
        assert!(b.fits(50, 40, 100) && !b.fits(50, 51, 100));
        b.changed(100, 40);
        assert_eq!(b.state_bytes(), 40);
        b.recount(7);
        assert_eq!(b.state_bytes(), 7);
    }
}
