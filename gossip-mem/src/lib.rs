//! In-memory network and deterministic simulator for gossip.
