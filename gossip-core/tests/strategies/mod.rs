//! Proptest strategies shared by the codec and fuzz tests.

use gossip_core::proto::reconcile::{Fingerprint, Range, RangeSum, Recon};
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
