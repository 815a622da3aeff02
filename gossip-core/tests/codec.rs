//! Codec round-trips, exact sizes, and refusal of hostile input.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gossip_core::proto::{
    DigestEntry, Envelope, KeyUpdate, Message, NodeDelta, NodeId, RefuseReason, decode, encode,
};
use proptest::prelude::*;

mod strategies;
use strategies::{detection, recon};

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn id() -> impl Strategy<Value = Arc<NodeId>> {
    ("[a-z0-9-]{0,24}", addr(), any::<u64>()).prop_map(|(n, a, g)| Arc::new(NodeId::new(n, a, g)))
}

fn digest() -> impl Strategy<Value = Vec<DigestEntry>> {
    prop::collection::vec(
        (id(), any::<u64>(), any::<u64>()).prop_map(|(id, heartbeat, max_version)| DigestEntry {
            id,
            heartbeat,
            max_version,
        }),
        0..8,
    )
}

fn delta() -> impl Strategy<Value = Vec<NodeDelta>> {
    let update = (
        "\\PC{0,12}",
        any::<u64>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(key, version, value)| KeyUpdate {
            key,
            version,
            value: value.map(Bytes::from),
        });
    let d = (
        id(),
        any::<u64>(),
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(update, 0..5),
    )
        .prop_map(
            |(id, heartbeat, left, floor, reset, gc_version, max_version, updates)| NodeDelta {
                id,
                heartbeat,
                left,
                floor,
                reset,
                gc_version,
                max_version,
                updates,
            },
        );
    prop::collection::vec(d, 0..4)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            digest(),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            recon()
        )
            .prop_map(|(digest, known, page, recon)| Message::Syn {
                digest,
                known,
                page,
                recon,
            }),
        (
            digest(),
            delta(),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            recon()
        )
            .prop_map(|(digest, delta, known, next_page, recon)| Message::SynAck {
                digest,
                delta,
                known,
                next_page,
                recon,
            }),
        delta().prop_map(|delta| Message::Ack { delta }),
        delta().prop_map(|delta| Message::Push { delta }),
        digest().prop_map(|have| Message::IHave { have }),
        Just(Message::Prune),
        detection(id, any::<u64>, "[a-z0-9-]{0,24}"),
    ]
}

proptest! {
    #[test]
    fn round_trip_with_exact_size(cluster in any::<u64>(), from in id(), message in message()) {
        let env = Envelope { cluster, from, message };
        let bytes = encode(&env);
        prop_assert_eq!(bytes.len(), env.encoded_len(), "size accounting must be exact: budgets rely on it");
        prop_assert_eq!(decode(&bytes, usize::MAX), Ok(env));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, 1 << 20);
        // Behind a valid version byte, so that postcard sees them too.
        let mut versioned = vec![gossip_core::proto::PROTOCOL_VERSION];
        versioned.extend_from_slice(&bytes);
        let _ = decode(&versioned, 1 << 20);
    }

    #[test]
    fn truncated_or_extended_messages_are_refused(from in id(), message in message(), cut in 1usize..8, junk in any::<u8>()) {
        let env = Envelope { cluster: 7, from, message };
        let bytes = encode(&env);
        let short = &bytes[..bytes.len().saturating_sub(cut)];
        if short.len() < bytes.len() {
            prop_assert!(decode(short, usize::MAX).is_err());
        }
        let mut long = bytes.to_vec();
        long.push(junk);
        prop_assert_eq!(decode(&long, usize::MAX), Err(RefuseReason::Malformed));
    }
}

#[test]
fn oversized_is_refused_before_decoding() {
    let junk = vec![1u8; 2048];
    assert_eq!(decode(&junk, 1024), Err(RefuseReason::Oversized));
}

#[test]
fn another_version_is_refused() {
    let env = Envelope {
        cluster: 1,
        from: Arc::new(NodeId::new("a", "127.0.0.1:1".parse().expect("literal"), 1)),
        message: Message::Ack { delta: vec![] },
    };
    let mut bytes = encode(&env).to_vec();
    bytes[0] = bytes[0].wrapping_add(1);
    assert_eq!(decode(&bytes, usize::MAX), Err(RefuseReason::WrongVersion));
    assert_eq!(decode(&[], usize::MAX), Err(RefuseReason::Malformed));
}
