//! QUIC transport for gossip (placeholder: implemented by its own issue).
