//! Errors of the protocol core.

use thiserror::Error;

/// A configuration that cannot work. Nothing was started.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The named setting is out of range.
    #[error("invalid config: {0}")]
    Invalid(&'static str),
}

/// A local write (`set`, `delete`) that was refused. State is unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The key is longer than `max_key_bytes`. State unchanged.
    #[error("key too long: {len} bytes, limit {limit}")]
    KeyTooLong {
        /// Length of the refused key.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The value is larger than `max_value_bytes`. State unchanged.
    #[error("value too large: {len} bytes, limit {limit}")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The keyspace already holds `max_keys_per_node` keys. State unchanged.
    #[error("keyspace full: {limit} keys")]
    KeyspaceFull {
        /// The configured limit.
        limit: usize,
    },
    /// The write would take the keyspace over `max_keyspace_bytes`. State
    /// unchanged.
    #[error("keyspace too large: {bytes} bytes, limit {limit}")]
    KeyspaceTooLarge {
        /// Bytes the keyspace would hold.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The node has left the cluster and accepts no more writes. State unchanged.
    #[error("node has left the cluster")]
    Left,
    /// The key is under the prefix reserved for broadcasts
    /// ([`broadcast::PREFIX`](crate::proto::broadcast::PREFIX)): send a
    /// broadcast instead. State unchanged.
    #[error("key under the reserved broadcast prefix")]
    ReservedKey,
}

/// Why an incoming message was refused. The node's state is unchanged in
/// every case; the refusal is counted in [`Metrics`](crate::proto::Metrics)
/// and logged.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// Larger than `max_message_bytes`; not decoded at all.
    #[error("message too large")]
    Oversized,
    /// Could not be decoded.
    #[error("malformed message")]
    Malformed,
    /// Carries another protocol version.
    #[error("unknown protocol version")]
    WrongVersion,
    /// Comes from another cluster.
    #[error("message from another cluster")]
    WrongCluster,
    /// Claims to come from this very node (a loop, or a node sharing our
    /// name and generation).
    #[error("message from ourselves")]
    FromSelf,
    /// Names a node whose name is longer than `max_name_bytes` (its
    /// sender or any member it describes). No honest node sends one: none
    /// admits such a name.
    #[error("node name too long")]
    NameTooLong,
    /// The envelope names another node than the transport authenticated,
    /// or another address than the one it came from (see
    /// [`Node::handle_authenticated`](crate::proto::Node::handle_authenticated)).
    #[error("sender is not who the envelope claims")]
    IdentityMismatch,
    /// The sender claims a generation no honest node has (see
    /// [`refute::MAX_CLAIM`](crate::proto::refute::MAX_CLAIM)).
    #[error("impossible generation")]
    Impossible,
}
