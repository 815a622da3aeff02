//! Node identity.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Who a node is: a name, the address it gossips on, and a generation.
///
/// The name is the stable identity an application knows a node by. The
/// generation grows on every restart (production uses the start time in
/// microseconds since the Unix epoch); a higher generation supersedes
/// everything the cluster knew of a lower one, so a restarted node starts
/// afresh with an empty keyspace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Stable name, unique within a cluster.
    pub name: String,
    /// The address peers send gossip to.
    pub addr: SocketAddr,
    /// Incarnation number; higher supersedes lower.
    pub generation: u64,
}

impl NodeId {
    /// A node identity.
    pub fn new(name: impl Into<String>, addr: SocketAddr, generation: u64) -> Self {
        NodeId {
            name: name.into(),
            addr,
            generation,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

/// A shared node identity. Identities are cloned into every digest, delta and
/// event; sharing them keeps a 10,000-node simulation within memory.
pub type Id = Arc<NodeId>;
