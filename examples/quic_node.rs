//! One gossip node over QUIC (being written).
fn main() {}
