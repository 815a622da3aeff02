//! `Node::handle_authenticated`: the transport names the sender, and the
//! core refuses envelopes that claim another node or another address.

use std::net::SocketAddr;

use gossip_core::proto::{Config, Instant, Node, NodeId, RefuseReason};

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

fn node(i: u16, seeds: &[u16]) -> Node {
    Node::new(
        Config::default(),
        NodeId::new(format!("n{i}"), addr(i), 1),
        seeds.iter().map(|&s| addr(s)).collect(),
        u64::from(i) + 100,
        Instant::ZERO,
    )
    .expect("valid config")
}

/// The first message `n2` sends to its seed `n1`, encoded.
fn join_bytes() -> Vec<u8> {
    let mut b = node(2, &[1]);
    b.handle_timeout(Instant::ZERO);
    b.poll_transmit()
        .expect("a join attempt to the seed")
        .encode()
        .to_vec()
}

#[test]
fn another_name_is_refused_and_counted() {
    let mut a = node(1, &[]);
    let bytes = join_bytes();
    assert_eq!(
        a.handle_authenticated(Instant::ZERO, addr(2), Some("n3"), &bytes),
        Err(RefuseReason::IdentityMismatch)
    );
    let r = a.metrics().refused;
    assert_eq!((r.identity_mismatch, r.total()), (1, 1));
    assert_eq!(a.member_count(), 1, "state unchanged");
    assert!(a.poll_transmit().is_none(), "nothing answered");
}

#[test]
fn another_address_is_refused() {
    let mut a = node(1, &[]);
    let bytes = join_bytes();
    assert_eq!(
        a.handle_authenticated(Instant::ZERO, addr(5), Some("n2"), &bytes),
        Err(RefuseReason::IdentityMismatch)
    );
    assert_eq!(a.metrics().refused.identity_mismatch, 1);
    assert_eq!(a.member_count(), 1);
}

#[test]
fn the_authenticated_sender_is_heard_and_answered_at_its_address() {
    let mut a = node(1, &[]);
    let bytes = join_bytes();
    assert_eq!(
        a.handle_authenticated(Instant::ZERO, addr(2), Some("n2"), &bytes),
        Ok(())
    );
    assert_eq!(a.metrics().messages_in, 1);
    assert_eq!(a.metrics().refused.total(), 0);
    assert_eq!(a.metrics().bytes_in, bytes.len() as u64);
    let reply = a.poll_transmit().expect("an answer");
    assert_eq!(reply.to, addr(2));
}

#[test]
fn unauthenticated_is_handle_bytes() {
    let mut a = node(1, &[]);
    let bytes = join_bytes();
    // No name: the envelope is believed, whatever address it came from.
    assert_eq!(
        a.handle_authenticated(Instant::ZERO, addr(5), None, &bytes),
        Ok(())
    );
    assert_eq!(a.metrics().messages_in, 1);
    assert_eq!(
        a.handle_authenticated(Instant::ZERO, addr(5), Some("n2"), &garbage()),
        Err(RefuseReason::Malformed)
    );
}

/// Bytes with this build's version byte that are no envelope.
fn garbage() -> Vec<u8> {
    let mut b = vec![gossip_core::proto::PROTOCOL_VERSION];
    b.extend_from_slice(b"garbage");
    b
}
