//! The membership table: every node this node knows, with its gossiped
//! state (heartbeat, versions, keyspace) and this node's opinion of it.
//!
//! Memory matters here: a 10,000-node simulation holds 10⁸ members, so a
//! member is kept small (shared identity, 16-byte detector, boxed keyspace).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use crate::proto::event::Status;
use crate::proto::failure::Detector;
use crate::proto::id::Id;
use crate::proto::keyspace::Keyspace;

/// Map key: the identity, ordered and looked up by name only.
#[derive(Clone, Debug)]
pub(crate) struct MemberKey(pub Id);

impl PartialEq for MemberKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for MemberKey {}
impl PartialOrd for MemberKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MemberKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name.cmp(&other.0.name)
    }
}
impl Borrow<str> for MemberKey {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

/// What this node holds of one member.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub heartbeat: u64,
    /// Every update up to this version is held.
    pub max_version: u64,
    pub left: bool,
    pub status: Status,
    pub detector: Detector,
    /// `None` until the member has written something.
    pub keys: Option<Box<Keyspace>>,
}

impl Member {
    pub fn keyspace(&self) -> Option<&Keyspace> {
        self.keys.as_deref()
    }

    pub fn keyspace_mut(&mut self) -> &mut Keyspace {
        self.keys.get_or_insert_with(Default::default)
    }

    pub fn gc_version(&self) -> u64 {
        self.keys.as_ref().map_or(0, |k| k.gc_version)
    }
}

/// All members, this node included, plus an index for sampling peers.
#[derive(Debug, Default)]
pub(crate) struct Members {
    pub map: BTreeMap<MemberKey, Member>,
    /// Every member but this node, in no particular order: uniform sampling.
    pub peers: Vec<Id>,
    counts: [usize; 4],
}

fn slot(s: Status) -> usize {
    match s {
        Status::Live => 0,
        Status::Suspect => 1,
        Status::Dead => 2,
        Status::Left => 3,
    }
}

impl Members {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.map.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        self.map.get_mut(name)
    }

    pub fn entry(&self, name: &str) -> Option<(&Id, &Member)> {
        self.map.get_key_value(name).map(|(k, m)| (&k.0, m))
    }

    /// Members with this status, this node included.
    pub fn count(&self, s: Status) -> usize {
        self.counts[slot(s)]
    }

    /// Inserts a member, or replaces one of the same name (a restart).
    /// `is_self` members are not sampled as peers.
    pub fn insert(&mut self, id: Id, member: Member, is_self: bool) -> Option<(Id, Member)> {
        self.counts[slot(member.status)] += 1;
        let old = self.map.remove_entry(id.name.as_str()).map(|(k, m)| (k.0, m));
        if let Some((old_id, old_m)) = &old {
            self.counts[slot(old_m.status)] -= 1;
            if let Some(p) = self.peers.iter_mut().find(|p| p.name == old_id.name) {
                *p = id.clone();
            }
        } else if !is_self {
            self.peers.push(id.clone());
        }
        self.map.insert(MemberKey(id), member);
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<(Id, Member)> {
        let (k, m) = self.map.remove_entry(name)?;
        self.counts[slot(m.status)] -= 1;
        if let Some(i) = self.peers.iter().position(|p| p.name == name) {
            self.peers.swap_remove(i);
        }
        Some((k.0, m))
    }

    /// Changes a member's status, keeping counts right. Returns the old one.
    pub fn set_status(&mut self, name: &str, to: Status) -> Option<Status> {
        let m = self.map.get_mut(name)?;
        let from = m.status;
        m.status = to;
        self.counts[slot(from)] -= 1;
        self.counts[slot(to)] += 1;
        Some(from)
    }
}

/// Names of forgotten incarnations, so a stale peer cannot bring them back.
/// Bounded: the oldest records go first.
#[derive(Debug, Default)]
pub(crate) struct Forgotten {
    generation: BTreeMap<String, u64>,
    order: VecDeque<String>,
}

impl Forgotten {
    pub fn insert(&mut self, id: &Id, cap: usize) {
        if self.generation.insert(id.name.clone(), id.generation).is_none() {
            self.order.push_back(id.name.clone());
        }
        while self.order.len() > cap {
            if let Some(name) = self.order.pop_front() {
                self.generation.remove(&name);
            }
        }
    }

    /// Whether this incarnation (or a newer one of the name) was forgotten.
    pub fn contains(&self, id: &Id) -> bool {
        self.generation.get(&id.name).is_some_and(|&g| id.generation <= g)
    }
}
