//! QUIC transport benchmark (being written).
fn main() {}
