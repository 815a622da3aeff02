//! Proptest strategies shared by the codec and fuzz tests.

use std::sync::Arc;

use gossip_core::proto::reconcile::{Fingerprint, Range, RangeSum, Recon};
use gossip_core::proto::{Message, NodeId, Rumor, RumorKind};
use proptest::prelude::*;

/// Reconciliation parts: ranges inside the tree and outside it, any counts
/// and hashes.
pub fn recon() -> impl Strategy<Value = Recon> {
    let range = || {
        prop_oneof![
            any::<u16>().prop_map(Range),
            (0u16..=3, any::<u16>())
                .prop_map(|(level, p)| Range((level << 12) | (p & ((1u16 << (4 * level)) - 1)))),
        ]
    };
    (
        prop::collection::vec((range(), any::<u32>(), any::<u64>()), 0..6),
        prop::collection::vec(range(), 0..4),
    )
        .prop_map(|(sums, covers)| Recon {
            sums: sums
                .into_iter()
                .map(|(range, count, hash)| RangeSum {
                    range,
                    fingerprint: Fingerprint { count, hash },
                })
                .collect(),
            covers,
        })
}

/// Failure-detection messages (probes, their answers, flooded rumors) over
/// the ids, counters and names the caller picks: the codec tests give any
/// values, the fuzzer adversarial ones (claims about the receiver itself,
/// counters at the edges).
pub fn detection<I, C, N>(
    id: impl Fn() -> I,
    counter: impl Fn() -> C,
    name: N,
) -> impl Strategy<Value = Message>
where
    I: Strategy<Value = Arc<NodeId>> + 'static,
    C: Strategy<Value = u64> + 'static,
    N: Strategy<Value = String> + 'static,
{
    let kind = prop_oneof![
        Just(RumorKind::Suspect),
        Just(RumorKind::Dead),
        Just(RumorKind::Alive)
    ];
    let rumor = (id(), counter(), kind, name).prop_map(|(id, heartbeat, kind, by)| Rumor {
        id,
        heartbeat,
        kind,
        by,
    });
    let rumors = prop::collection::vec(rumor, 0..8).boxed();
    prop_oneof![
        (counter(), rumors.clone()).prop_map(|(seq, rumors)| Message::Ping { seq, rumors }),
        (counter(), id(), rumors.clone()).prop_map(|(seq, target, rumors)| {
            Message::PingReq {
                seq,
                target,
                rumors,
            }
        }),
        (counter(), rumors.clone()).prop_map(|(seq, rumors)| Message::PingAck { seq, rumors }),
        counter().prop_map(|seq| Message::PingNack { seq }),
        rumors.prop_map(|rumors| Message::Rumors { rumors }),
    ]
}
