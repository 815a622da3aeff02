//! Structure-aware fuzzing of one node: valid envelopes with adversarial
//! fields (0 and `u64::MAX` counters, generations, pages and `known`; empty
//! and oversized digests; long names; unknown members; claims about the
//! receiver itself), raw bytes behind a valid version byte, and local
//! commands, interleaved with timeouts that jump ahead by any amount.
//!
//! After every step: no panic (debug builds check every overflow), and every
//! bound holds — members ≤ `max_nodes`, keys ≤ `max_keys_per_node`,
//! transmits ≤ `max_pending_transmits` and each within
//! `max_message_bytes` (and of the exact size it claims), events ≤
//! `max_pending_events`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{
    Config, DigestEntry, Envelope, Instant, KeyUpdate, Message, Node, NodeDelta, NodeId,
    PROTOCOL_VERSION, cluster_id,
};
use proptest::prelude::*;

mod strategies;
use strategies::{detection, recon};

const VICTIM: &str = "victim";

fn victim_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}

fn config() -> Config {
    Config {
        cluster: "fuzz".into(),
        max_nodes: 40,
        max_keys_per_node: 16,
        max_pending_transmits: 64,
        max_pending_events: 256,
        max_message_bytes: 8 * 1024,
        digest_bytes: 2 * 1024,
        max_value_bytes: 1024,
        max_key_bytes: 64,
        max_name_bytes: 32,
        max_keyspace_bytes: 4 * 1024,
        max_state_bytes: 12 * 1024,
        max_new_members_per_message: 8,
        ..Config::default()
    }
}

/// Counters as an adversary picks them: the edges and anything between.
fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        0u64..64,
        any::<u64>(),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..12).prop_map(|i| format!("n{i}")),
        1 => Just(VICTIM.to_owned()),
        1 => Just(String::new()),
        1 => "[a-z]{30,40}",
        1 => Just("x".repeat(20_000)),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (0u16..12).prop_map(|p| SocketAddr::from(([127, 0, 0, 1], 7100 + p))),
        Just(victim_addr()),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

fn id() -> impl Strategy<Value = Arc<NodeId>> {
    (name(), addr(), counter()).prop_map(|(n, a, g)| Arc::new(NodeId::new(n, a, g)))
}

fn entry() -> impl Strategy<Value = DigestEntry> {
    (id(), counter(), counter()).prop_map(|(id, heartbeat, max_version)| DigestEntry {
        id,
        heartbeat,
        max_version,
    })
}

fn entries() -> impl Strategy<Value = Vec<DigestEntry>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(entry(), 1..8),
        prop::collection::vec(entry(), 40..120),
    ]
}

fn update() -> impl Strategy<Value = KeyUpdate> {
    (
        prop_oneof![
            (0u8..20).prop_map(|k| format!("k{k}")),
            Just("k".repeat(100))
        ],
        counter(),
        prop::option::of(prop_oneof![
            Just(Bytes::from_static(b"v")),
            Just(Bytes::from(vec![7u8; 2000])),
        ]),
    )
        .prop_map(|(key, version, value)| KeyUpdate {
            key,
            version,
            value,
        })
}

fn deltas() -> impl Strategy<Value = Vec<NodeDelta>> {
    let delta = (
        id(),
        counter(),
        any::<bool>(),
        counter(),
        any::<bool>(),
        counter(),
        counter(),
        prop::collection::vec(update(), 0..6),
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
    prop::collection::vec(delta, 0..6)
}

fn message() -> impl Strategy<Value = Message> {
    let page = || prop::option::of(counter());
    prop_oneof![
        (entries(), counter(), page(), recon()).prop_map(|(digest, known, page, recon)| {
            Message::Syn {
                digest,
                known,
                page,
                recon,
            }
        }),
        (entries(), deltas(), counter(), page(), recon()).prop_map(
            |(digest, delta, known, next_page, recon)| Message::SynAck {
                digest,
                delta,
                known,
                next_page,
                recon,
            }
        ),
        deltas().prop_map(|delta| Message::Ack { delta }),
        deltas().prop_map(|delta| Message::Push { delta }),
        entries().prop_map(|have| Message::IHave { have }),
        entries().prop_map(|want| Message::Graft { want }),
        Just(Message::Prune),
        detection(id, counter, name()),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// A decoded envelope (the simulator's path).
    Message(Arc<NodeId>, Message, bool),
    /// The same, through the codec.
    Bytes(Arc<NodeId>, Message),
    /// Random bytes behind a valid version byte.
    Raw(Vec<u8>),
    /// The node's timer, `micros` later (possibly a huge jump).
    Timeout(u64),
    Set(u8, u16),
    Delete(u8),
    Leave,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (id(), message(), prop::bool::weighted(0.9)).prop_map(|(f, m, ours)| Step::Message(f, m, ours)),
        2 => (id(), message()).prop_map(|(f, m)| Step::Bytes(f, m)),
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Step::Raw),
        4 => prop_oneof![0u64..3_000_000, Just(u64::MAX / 4), 3_000_000u64..600_000_000].prop_map(Step::Timeout),
        1 => (0u8..24, 0u16..1500).prop_map(|(k, len)| Step::Set(k, len)),
        1 => (0u8..24).prop_map(Step::Delete),
        1 => Just(Step::Leave),
    ]
}

/// Drains the node's outputs, checking every bound.
fn check(n: &mut Node, c: &Config) -> Result<(), TestCaseError> {
    prop_assert!(
        n.member_count() <= c.max_nodes,
        "{} members",
        n.member_count()
    );
    for m in n.members() {
        prop_assert!(m.keys <= c.max_keys_per_node, "{} keys of {}", m.keys, m.id);
        let bytes: usize = n.keys(&m.id.name).map(|(k, v, _)| k.len() + v.len()).sum();
        prop_assert!(bytes <= c.max_keyspace_bytes, "{bytes} bytes of {}", m.id);
        prop_assert!(
            m.id.name.len() <= c.max_name_bytes,
            "a long name was admitted"
        );
    }
    let state = n.gauges().state_bytes;
    prop_assert!(state <= c.max_state_bytes, "{state} bytes of state");
    let mut transmits = 0;
    while let Some(tx) = n.poll_transmit() {
        transmits += 1;
        let bytes = tx.encode();
        prop_assert_eq!(bytes.len(), tx.len, "sizes are exact");
        prop_assert!(tx.len <= c.max_message_bytes, "{} bytes sent", tx.len);
    }
    prop_assert!(transmits <= c.max_pending_transmits);
    let mut events = 0;
    while n.poll_event().is_some() {
        events += 1;
    }
    prop_assert!(events <= c.max_pending_events);
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let c = config();
    let cluster = cluster_id(&c.cluster);
    let peer = SocketAddr::from(([127, 0, 0, 1], 7100));
    let mut n = Node::new(
        c.clone(),
        NodeId::new(VICTIM, victim_addr(), 5),
        vec![peer],
        9,
        Instant::ZERO,
    )
    .expect("valid config");
    let mut now = Instant::ZERO;
    n.handle_timeout(now);
    check(&mut n, &c)?;
    for s in steps {
        match s {
            Step::Message(from, message, ours) => {
                let envelope = Envelope {
                    cluster: if ours { cluster } else { cluster ^ 1 },
                    from,
                    message,
                };
                let page = matches!(
                    envelope.message,
                    Message::SynAck {
                        next_page: Some(_),
                        ..
                    }
                );
                let before = n.member_count();
                let _ = n.handle_message(now, peer, envelope);
                if !page {
                    let grown = n.member_count() - before;
                    // The sender itself counts: it is one of the members made known.
                    prop_assert!(
                        grown <= c.max_new_members_per_message,
                        "{grown} members from one message"
                    );
                }
            }
            Step::Bytes(from, message) => {
                let envelope = Envelope {
                    cluster,
                    from,
                    message,
                };
                let bytes = gossip_core::proto::encode(&envelope);
                let _ = n.handle_bytes(now, peer, &bytes);
            }
            Step::Raw(mut bytes) => {
                bytes.insert(0, PROTOCOL_VERSION);
                let _ = n.handle_bytes(now, peer, &bytes);
            }
            Step::Timeout(micros) => {
                now += Duration::from_micros(micros);
                n.handle_timeout(now);
            }
            Step::Set(k, len) => {
                let _ = n.set(now, &format!("k{k}"), Bytes::from(vec![1u8; len.into()]));
            }
            Step::Delete(k) => {
                let _ = n.delete(now, &format!("k{k}"));
            }
            Step::Leave => n.leave(now),
        }
        check(&mut n, &c)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_sequence_of_inputs_panics_or_breaks_a_bound(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }

    #[test]
    fn raw_bytes_behind_a_valid_version_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut b = bytes;
        b.insert(0, PROTOCOL_VERSION);
        let _ = gossip_core::proto::decode(&b, 1 << 20);
        run(vec![Step::Raw(b[1..].to_vec()), Step::Timeout(1_000_000)])?;
    }
}

/// The remote panic of the issue: one exchange, then thousands of Syns with
/// an empty digest, then a gossip tick.
#[test]
fn thousands_of_empty_digests_then_a_tick() {
    let c = Config::default();
    let cluster = cluster_id(&c.cluster);
    let peer_addr = SocketAddr::from(([127, 0, 0, 1], 7101));
    let me = NodeId::new("a", victim_addr(), 1);
    let mut n = Node::new(c.clone(), me, vec![], 1, Instant::ZERO).expect("valid config");
    let peer = Arc::new(NodeId::new("b", peer_addr, 1));
    let syn = |digest: Vec<DigestEntry>| Envelope {
        cluster,
        from: peer.clone(),
        message: Message::Syn {
            digest,
            known: 2,
            page: None,
            recon: Default::default(),
        },
    };
    let own = DigestEntry {
        id: peer.clone(),
        heartbeat: 1,
        max_version: 0,
    };
    let mut now = Instant::from_micros(1);
    n.handle_message(now, peer_addr, syn(vec![own]))
        .expect("a normal Syn is accepted");
    for _ in 0..5_000 {
        n.handle_message(now, peer_addr, syn(Vec::new()))
            .expect("an empty digest is well-formed");
    }
    while n.poll_transmit().is_some() {}
    for _ in 0..20 {
        now = n.poll_timeout();
        n.handle_timeout(now);
        while n.poll_transmit().is_some() {}
    }
    assert!(n.member("b").is_some());
}

/// The envelopes the fuzzer builds are the real thing: a well-formed one
/// is accepted and changes the victim's state (so the cases above reach
/// the exchange, not only the refusals).
#[test]
fn a_well_formed_envelope_of_the_fuzzer_is_applied() {
    let c = config();
    let mut n = Node::new(
        c.clone(),
        NodeId::new(VICTIM, victim_addr(), 5),
        vec![],
        9,
        Instant::ZERO,
    )
    .expect("valid config");
    let from = Arc::new(NodeId::new(
        "n1",
        SocketAddr::from(([127, 0, 0, 1], 7101)),
        3,
    ));
    let delta = NodeDelta {
        id: from.clone(),
        heartbeat: 4,
        left: false,
        floor: 0,
        reset: false,
        gc_version: 0,
        max_version: 1,
        updates: vec![KeyUpdate {
            key: "k1".into(),
            version: 1,
            value: Some(Bytes::from_static(b"v")),
        }],
    };
    let envelope = Envelope {
        cluster: cluster_id(&c.cluster),
        from,
        message: Message::Ack { delta: vec![delta] },
    };
    n.handle_message(Instant::from_micros(1), victim_addr(), envelope)
        .expect("accepted");
    assert_eq!(
        n.get("n1", "k1").map(|(v, ver)| (v.clone(), ver)),
        Some((Bytes::from_static(b"v"), 1))
    );
}
