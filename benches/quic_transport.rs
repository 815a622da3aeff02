//! Small messages per second through the QUIC transport on 127.0.0.1
//! (mutual TLS, one connection, batching on), sender and receiver on one
//! current-thread tokio runtime, so the figure is per core.
//!
//! ```text
//! cargo bench --bench quic_transport
//! ```
//!
//! Each iteration pushes `BATCH` messages from `a` to `b`, keeping at most
//! `WINDOW` in flight (below the per-peer queue, so nothing is dropped), and
//! waits until `b` has received all of them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use gossip_core::{Incoming, Transport, TransportError};
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicTransport};

const BATCH: u64 = 10_000;
const WINDOW: u64 = 1_000;

async fn bind(ca: &ClusterCa, name: &str) -> (QuicTransport, Incoming) {
    let identity = NodeIdentity::issue(ca, name).expect("node certificate");
    let config = QuicConfig::new(
        "127.0.0.1:0".parse().expect("literal address"),
        "bench",
        identity,
    );
    let mut t = QuicTransport::bind(config).await.expect("bind on loopback");
    let incoming = t.incoming();
    (t, incoming)
}

async fn recv(incoming: &mut Incoming) {
    let got = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await;
    black_box(got.expect("a message within 10 s").expect("incoming open"));
}

/// Sends `BATCH` messages of `payload` from `a` to `b`, windowed; returns
/// when all arrived.
async fn push(a: &QuicTransport, to: std::net::SocketAddr, b_in: &mut Incoming, payload: &Bytes) {
    let (mut sent, mut received) = (0u64, 0u64);
    while sent < BATCH {
        if sent - received >= WINDOW {
            recv(b_in).await;
            received += 1;
            continue;
        }
        match a.send(to, payload.clone()) {
            Ok(()) => sent += 1,
            Err(TransportError::QueueFull) => {
                recv(b_in).await;
                received += 1;
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
    while received < sent {
        recv(b_in).await;
        received += 1;
    }
}

fn small_messages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ca = ClusterCa::generate("bench").expect("ca");
    let ((a, _a_in), (b, mut b_in)) =
        rt.block_on(async { (bind(&ca, "a").await, bind(&ca, "b").await) });
    let to = b.local_addr();
    let mut group = c.benchmark_group("quic_transport");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for size in [64usize, 1024] {
        let payload = Bytes::from(vec![7u8; size]);
        group.bench_function(format!("messages_{size}B"), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        push(&a, to, &mut b_in, &payload).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    let m = a.metrics();
    eprintln!(
        "sender: {} frames in {} streams ({:.1} per stream), dropped {}",
        m.frames_out,
        m.streams_out,
        m.frames_out as f64 / m.streams_out.max(1) as f64,
        m.dropped_queue_full + m.dropped_unsent
    );
    rt.block_on(async {
        a.close().await;
        b.close().await;
    });
}

criterion_group!(benches, small_messages);
criterion_main!(benches);
