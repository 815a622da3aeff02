//! Counters of the QUIC transport: what went in and out, what was dropped,
//! who was refused or cut off.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A snapshot of the transport's counters (all since bind, except
        /// the gauges `connections_open`, `accepted_open`, `dialed_open` and
        /// `frame_bytes_buffered`). From
        /// [`QuicTransport::metrics`](crate::QuicTransport::metrics).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct QuicMetrics {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> QuicMetrics {
                QuicMetrics { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

metrics! {
    /// Connections open now (gauge).
    connections_open,
    /// Connections open now that peers dialed (gauge; at most
    /// `max_accepted_connections`).
    accepted_open,
    /// Connections open now that we dialed (gauge; at most
    /// `max_dialed_connections`).
    dialed_open,
    /// Dials not attempted because `max_dialed_connections` were open.
    dials_refused,
    /// Connections established by our dials.
    connections_dialed,
    /// Connections established by peers' dials.
    connections_accepted,
    /// Dials that failed (timeout, unreachable, refused).
    dial_failures,
    /// Connections closed as the loser of a simultaneous dial.
    duplicates_closed,
    /// Connections closed for lack of traffic (`connection_idle`) or by the
    /// QUIC idle timeout (a vanished peer).
    connections_idle_closed,
    /// Handshakes we refused: the peer's certificate failed verification
    /// (another CA, none at all) or it spoke another ALPN.
    tls_refused,
    /// Peer certificates refused (at either end of a handshake) for naming
    /// no gossip node: no, several or a malformed `gossip://` URI SAN.
    tls_no_node_name,
    /// Peer certificates refused for naming a node of another cluster
    /// (signed by our CA, but issued for another cluster).
    tls_wrong_cluster,
    /// Peer certificates refused because they name a node on the deny list.
    denied,
    /// Handshakes the peer refused: it rejected our certificate (with TLS
    /// 1.3 the dialer learns this only after its connect returned).
    tls_refused_by_peer,
    /// Other failed handshakes (timeouts, transport errors).
    handshake_failures,
    /// Connections refused because the peer (by name, or by address in
    /// insecure mode) is serving a cut-off penalty, or because
    /// `max_accepted_connections` was reached.
    connections_refused,
    /// Peers cut off for bad input (any of the next four reasons).
    peers_cut_off,
    /// Streams that were not well-formed frames (bad stream tag, empty or
    /// truncated frame).
    garbage,
    /// Frames announced larger than `max_frame_bytes` (refused unread).
    oversized_frames,
    /// Peers that opened streams faster than `max_streams_per_sec`.
    stream_floods,
    /// Streams not finished within `stream_timeout`.
    stream_timeouts,
    /// Times a peer cut us off (closed with the protocol-violation code).
    cut_off_by_peer,
    /// Frames (messages) received and delivered.
    frames_in,
    /// Frames (messages) written to a stream.
    frames_out,
    /// Payload bytes received.
    bytes_in,
    /// Payload bytes written.
    bytes_out,
    /// Streams accepted.
    streams_in,
    /// Streams opened (one per batch).
    streams_out,
    /// Sends dropped because the peer's queue was full (or too many peers).
    dropped_queue_full,
    /// Queued messages dropped unsent: the peer could not be reached or the
    /// connection failed mid-write.
    dropped_unsent,
    /// Received messages dropped because nobody drained `incoming` fast
    /// enough.
    dropped_incoming,
    /// Received messages dropped because their sender already held its
    /// `incoming_per_peer` share of the incoming queue.
    dropped_peer_share,
    /// Bytes held now in buffers of frames still arriving (gauge): it grows
    /// with the bytes received, never with a length a peer claims.
    frame_bytes_buffered,
    /// Failed-handshake log lines left out during bursts (a summary line
    /// says how many).
    handshake_logs_suppressed,
    /// Sends refused because the message exceeded `max_frame_bytes`.
    too_large,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}
