//! QUIC transport on 127.0.0.1: exchange, mutual TLS refusals, bad input,
//! simultaneous dials, vanished and restarted peers. No fixed sleeps: every
//! wait is for a condition, with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gossip_core::{Incoming, Received, Transport};
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicMetrics, QuicTransport};

const CLUSTER: &str = "test";
const DEADLINE: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn config(ca: &ClusterCa, name: &str) -> QuicConfig {
    let identity = NodeIdentity::issue(ca, name).expect("issue node certificate");
    QuicConfig::new(any_port(), CLUSTER, identity)
}

async fn bind(config: QuicConfig) -> (QuicTransport, Incoming) {
    let mut t = QuicTransport::bind(config).await.expect("bind on loopback");
    let incoming = t.incoming();
    (t, incoming)
}

/// Polls `cond` until it holds; fails the test at the deadline.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

async fn recv(incoming: &mut Incoming) -> (SocketAddr, Bytes) {
    let r = within("a message", incoming.next())
        .await
        .expect("incoming stream ended");
    (r.addr, r.bytes)
}

/// Sends `msg` from `a` until `b` receives it (the first sends may race a
/// connection being set up or replaced; gossip tolerates that loss).
async fn deliver(
    a: &QuicTransport,
    b_in: &mut Incoming,
    to: SocketAddr,
    msg: &'static [u8],
) -> SocketAddr {
    deliver_received(a, b_in, to, msg).await.addr
}

/// As [`deliver`], returning all the receiver saw.
async fn deliver_received(
    a: &QuicTransport,
    b_in: &mut Incoming,
    to: SocketAddr,
    msg: &'static [u8],
) -> Received {
    let start = tokio::time::Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "message never arrived");
        let _ = a.send(to, Bytes::from_static(msg));
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(200), b_in.next()).await {
            if r.bytes.as_ref() == msg {
                return r;
            }
        }
    }
}

fn refusals(m: &QuicMetrics) -> u64 {
    m.tls_refused + m.tls_refused_by_peer
}

#[tokio::test]
async fn two_transports_exchange_messages() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (a, mut a_in) = bind(config(&ca, "a")).await;
    let (b, mut b_in) = bind(config(&ca, "b")).await;

    // A burst queued before the writer runs goes out batched, in order.
    for i in 0..500u32 {
        a.send(b.local_addr(), Bytes::from(i.to_be_bytes().to_vec()))
            .expect("queue has room");
    }
    for i in 0..500u32 {
        let r = within("a message", b_in.next()).await.expect("a message");
        assert_eq!(
            r.addr,
            a.local_addr(),
            "from is the sender's listen address"
        );
        assert_eq!(r.peer.as_deref(), Some("a"), "named by its certificate");
        assert_eq!(r.bytes.as_ref(), i.to_be_bytes());
    }
    // The reply reuses the connection a dialed.
    b.send(a.local_addr(), Bytes::from_static(b"pong"))
        .expect("queue has room");
    let (from, bytes) = recv(&mut a_in).await;
    assert_eq!((from, bytes.as_ref()), (b.local_addr(), &b"pong"[..]));

    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(ma.frames_out, 500);
    assert!(
        ma.streams_out < 500,
        "small messages are batched: {} streams",
        ma.streams_out
    );
    assert_eq!(mb.frames_in, 500);
    assert_eq!(
        ma.connections_dialed + mb.connections_dialed,
        1,
        "one connection, used both ways"
    );
    assert_eq!(ma.connections_open, 1);
    assert_eq!(
        (
            ma.dropped_queue_full,
            ma.dropped_unsent,
            mb.dropped_incoming
        ),
        (0, 0, 0)
    );

    // Too large for a frame: refused at send, counted.
    let big = Bytes::from(vec![0u8; 64 * 1024 + 1]);
    assert!(a.send(b.local_addr(), big).is_err());
    assert_eq!(a.metrics().too_large, 1);

    a.close().await;
    b.close().await;
    assert!(
        a.send(b.local_addr(), Bytes::from_static(b"x")).is_err(),
        "closed transport refuses sends"
    );
    assert!(
        within("incoming to end", a_in.next()).await.is_none(),
        "incoming ends after close"
    );
}

#[tokio::test]
async fn foreign_ca_is_refused_and_counted_on_both_sides() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let foreign = ClusterCa::generate(CLUSTER).expect("foreign ca");
    let (a, _a_in) = bind(config(&ca, "a")).await;
    let (b, _b_in) = bind(config(&foreign, "b")).await;

    a.send(b.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    wait_for("a refuses b's certificate, b learns it", || {
        a.metrics().tls_refused >= 1 && b.metrics().tls_refused_by_peer >= 1
    })
    .await;
    b.send(a.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    wait_for("b refuses a's certificate, a learns it", || {
        b.metrics().tls_refused >= 1 && a.metrics().tls_refused_by_peer >= 1
    })
    .await;
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!((ma.frames_in, mb.frames_in), (0, 0), "nothing got through");
    assert_eq!((ma.connections_open, mb.connections_open), (0, 0));
}

#[tokio::test]
async fn node_without_certificate_is_refused() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (secure, _s_in) = bind(config(&ca, "secure")).await;
    let (open, _o_in) = bind(QuicConfig::insecure_dev_mode_no_authentication(
        any_port(),
        CLUSTER,
    ))
    .await;

    // No client certificate: the server refuses; with TLS 1.3 the dialer
    // learns only after its connect returned, and still counts it.
    open.send(secure.local_addr(), Bytes::from_static(b"let me in"))
        .expect("queued");
    wait_for("refusal counted on both sides", || {
        secure.metrics().tls_refused >= 1 && open.metrics().tls_refused_by_peer >= 1
    })
    .await;
    // The other way: the secure node refuses the self-signed server.
    secure
        .send(open.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    wait_for("secure refuses the unauthenticated server", || {
        secure.metrics().tls_refused >= 2 && open.metrics().tls_refused_by_peer >= 2
    })
    .await;
    assert_eq!(secure.metrics().frames_in + open.metrics().frames_in, 0);
    assert!(refusals(&secure.metrics()) >= 2);
}

#[tokio::test]
async fn insecure_dev_mode_nodes_talk() {
    let (a, _a_in) = bind(QuicConfig::insecure_dev_mode_no_authentication(
        any_port(),
        CLUSTER,
    ))
    .await;
    let (b, mut b_in) = bind(QuicConfig::insecure_dev_mode_no_authentication(
        any_port(),
        CLUSTER,
    ))
    .await;
    a.send(b.local_addr(), Bytes::from_static(b"hi"))
        .expect("queued");
    let r = within("a message", b_in.next()).await.expect("a message");
    assert_eq!((r.addr, r.bytes.as_ref()), (a.local_addr(), &b"hi"[..]));
    assert_eq!(r.peer, None, "nobody is authenticated in insecure mode");
}

/// A peer with a valid certificate that speaks no valid framing, driven
/// through a bare quinn endpoint.
struct RawPeer {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    server_name: String,
}

impl RawPeer {
    fn new(ca: &ClusterCa, name: &str) -> Self {
        let config = config(ca, name);
        let (_, client) = config.quinn_configs().expect("quinn configs");
        let endpoint = quinn::Endpoint::client(any_port()).expect("bind raw endpoint");
        RawPeer {
            endpoint,
            client,
            server_name: config.server_name,
        }
    }

    async fn connect(&self, to: SocketAddr) -> Result<quinn::Connection, quinn::ConnectionError> {
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), to, &self.server_name)
            .expect("connect starts");
        within("raw handshake", connecting).await
    }

    async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) {
        let Ok(mut stream) = conn.open_uni().await else {
            return;
        };
        let _ = stream.write_all(bytes).await;
        let _ = stream.finish();
    }
}

/// Bad input from `attack` cuts the raw peer off, counted, while a and b
/// keep talking; the raw peer's reconnect is refused during the penalty.
async fn cut_off_scenario(
    b_config: QuicConfig,
    ca: &ClusterCa,
    attack: impl AsyncFnOnce(&quinn::Connection),
    counted: fn(&QuicMetrics) -> u64,
) {
    let (a, mut a_in) = bind(config(ca, "a")).await;
    let (b, mut b_in) = bind(b_config).await;
    assert_eq!(
        deliver(&a, &mut b_in, b.local_addr(), b"before").await,
        a.local_addr()
    );

    let raw = RawPeer::new(ca, "mallory");
    let conn = raw
        .connect(b.local_addr())
        .await
        .expect("valid certificate: handshake succeeds");
    attack(&conn).await;
    let closed = within("the raw peer to be cut off", conn.closed()).await;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(3))
        }
        other => panic!("expected a protocol-violation close, got {other}"),
    }
    wait_for("cut-off counted", || {
        counted(&b.metrics()) == 1 && b.metrics().peers_cut_off == 1
    })
    .await;

    // Other peers are untouched: both directions still work.
    assert_eq!(
        deliver(&a, &mut b_in, b.local_addr(), b"after").await,
        a.local_addr()
    );
    assert_eq!(
        deliver(&b, &mut a_in, a.local_addr(), b"reply").await,
        b.local_addr()
    );
    assert_eq!(a.metrics().peers_cut_off + a.metrics().cut_off_by_peer, 0);

    // The offender is refused while its penalty lasts, by name: from
    // another port too (a fresh endpoint), its certificate gives it away.
    let again = RawPeer::new(ca, "mallory");
    assert_ne!(
        again.endpoint.local_addr().ok(),
        raw.endpoint.local_addr().ok()
    );
    if let Ok(conn) = again.connect(b.local_addr()).await {
        match within("the penalized peer to be refused", conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(4), "refused")
            }
            other => panic!("expected a refusal, got {other}"),
        }
    }
    wait_for("refusal counted", || b.metrics().connections_refused >= 1).await;
}

#[tokio::test]
async fn garbage_cuts_off_only_that_peer() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let attack =
        async |conn: &quinn::Connection| RawPeer::send_raw(conn, b"GET / HTTP/1.1\r\n\r\n").await;
    cut_off_scenario(config(&ca, "b"), &ca, attack, |m| m.garbage).await;
}

#[tokio::test]
async fn truncated_frame_is_garbage() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    // Tag, a header announcing 100 bytes, then only 3 of them.
    let attack = async |conn: &quinn::Connection| {
        RawPeer::send_raw(conn, &[0x67, 0, 0, 0, 100, 1, 2, 3]).await
    };
    cut_off_scenario(config(&ca, "b"), &ca, attack, |m| m.garbage).await;
}

#[tokio::test]
async fn oversized_frame_cuts_off_only_that_peer() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    // Announces 16 MiB; the body never needs to be sent to be refused.
    let attack = async |conn: &quinn::Connection| {
        RawPeer::send_raw(conn, &[0x67, 1, 0, 0, 0, 0xff, 0xff]).await
    };
    cut_off_scenario(config(&ca, "b"), &ca, attack, |m| m.oversized_frames).await;
}

#[tokio::test]
async fn stream_flood_cuts_off_only_that_peer() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let mut b_config = config(&ca, "b");
    b_config.max_streams_per_sec = 50;
    let attack = async |conn: &quinn::Connection| {
        // Each stream is well formed; there are just too many of them.
        for _ in 0..500 {
            if conn.close_reason().is_some() {
                break;
            }
            RawPeer::send_raw(conn, &[0x67, 0, 0, 0, 1, 0]).await;
        }
    };
    cut_off_scenario(b_config, &ca, attack, |m| m.stream_floods).await;
}

#[tokio::test]
async fn stream_held_open_cuts_off_only_that_peer() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let mut b_config = config(&ca, "b");
    b_config.stream_timeout = Duration::from_millis(300);
    let attack = async |conn: &quinn::Connection| {
        // A frame header, then silence: the stream is never finished.
        if let Ok(mut stream) = conn.open_uni().await {
            let _ = stream.write_all(&[0x67, 0, 0, 0, 10]).await;
            std::mem::forget(stream);
        }
    };
    cut_off_scenario(b_config, &ca, attack, |m| m.stream_timeouts).await;
}

#[tokio::test]
async fn simultaneous_dials_keep_one_connection() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    for round in 0..3 {
        let (a, mut a_in) = bind(config(&ca, "a")).await;
        let (b, mut b_in) = bind(config(&ca, "b")).await;
        let (ra, rb) = tokio::join!(a.connect(b.local_addr()), b.connect(a.local_addr()));
        ra.expect("a dials b");
        rb.expect("b dials a");
        // Each end also accepts the other's dial, then drops one of the two.
        wait_for("both ends deduplicated", || {
            a.metrics().duplicates_closed == 1 && b.metrics().duplicates_closed == 1
        })
        .await;
        let (ma, mb) = (a.metrics(), b.metrics());
        assert_eq!(
            (ma.connections_dialed, mb.connections_dialed),
            (1, 1),
            "round {round}: both dialed"
        );
        assert_eq!(
            (ma.connections_accepted, mb.connections_accepted),
            (1, 1),
            "round {round}: both accepted"
        );

        // Both ends keep the connection dialed by the lower address.
        let a_lower = a.local_addr() < b.local_addr();
        let (ca_, cb_) = (a.connections(), b.connections());
        assert_eq!(ca_.len(), 1);
        assert_eq!(cb_.len(), 1);
        assert_eq!(
            ca_[0].dialed, a_lower,
            "round {round}: a keeps the lower address's dial"
        );
        assert_eq!(
            cb_[0].dialed, !a_lower,
            "round {round}: b keeps the same connection"
        );

        // The loser closes after its linger; one connection remains, used both ways.
        wait_for("loser closed", || {
            a.metrics().connections_open == 1 && b.metrics().connections_open == 1
        })
        .await;
        assert_eq!(
            deliver(&a, &mut b_in, b.local_addr(), b"a->b").await,
            a.local_addr()
        );
        assert_eq!(
            deliver(&b, &mut a_in, a.local_addr(), b"b->a").await,
            b.local_addr()
        );
        assert_eq!(
            a.connections()[0].stable_id,
            ca_[0].stable_id,
            "the kept connection carried both ways"
        );
        assert_eq!(
            a.metrics().connections_dialed + b.metrics().connections_dialed,
            2,
            "no redial"
        );
    }
}

#[tokio::test]
async fn vanished_peer_costs_bounded_time_and_a_restart_is_reached_again() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let short = |mut c: QuicConfig| {
        c.idle_timeout = Duration::from_millis(800);
        c.keep_alive = Duration::from_millis(200);
        c.connect_timeout = Duration::from_millis(500);
        c.reconnect_min = Duration::from_millis(50);
        c.reconnect_max = Duration::from_millis(200);
        c
    };
    let (a, _a_in) = bind(short(config(&ca, "a"))).await;
    // b runs on a runtime of its own, so it can vanish like a killed
    // process: its tasks stop, nothing says goodbye.
    let b_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime for b");
    let b_config = short(config(&ca, "b"));
    let (b, mut b_in) = b_runtime.spawn(bind(b_config)).await.expect("bind b");
    let b_addr = b.local_addr();
    deliver(&a, &mut b_in, b_addr, b"hello").await;

    std::mem::forget(b); // no Drop: no CONNECTION_CLOSE
    b_runtime.shutdown_background();
    wait_for("a notices the silent peer", || {
        a.metrics().connections_open == 0
    })
    .await;
    assert!(a.metrics().connections_idle_closed >= 1);

    // Sends meanwhile are dropped and counted, never block.
    for _ in 0..10_000 {
        let _ = a.send(b_addr, Bytes::from_static(b"into the void"));
    }
    wait_for("drops counted", || {
        let m = a.metrics();
        m.dropped_queue_full + m.dropped_unsent > 0
    })
    .await;

    // A new node on a fresh port is reached as usual: nothing is stuck.
    let (c, mut c_in) = bind(short(config(&ca, "c"))).await;
    deliver(&a, &mut c_in, c.local_addr(), b"still works").await;
}

#[tokio::test]
async fn restarted_peer_on_same_port_is_reached_again() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (a, mut a_in) = bind(config(&ca, "a")).await;
    let (b, mut b_in) = bind(config(&ca, "b")).await;
    let b_addr = b.local_addr();
    deliver(&a, &mut b_in, b_addr, b"one").await;
    b.close().await;
    drop((b, b_in));

    // Rebind the same port (retry while the old socket drains).
    let start = tokio::time::Instant::now();
    let (b2, mut b2_in) = loop {
        let mut c = config(&ca, "b");
        c.listen = b_addr;
        match QuicTransport::bind(c).await {
            Ok(mut t) => {
                let i = t.incoming();
                break (t, i);
            }
            Err(e) => assert!(start.elapsed() < DEADLINE, "rebind failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Both directions: the restarted node dials a (replacing a's dead
    // connection) and a redials it.
    assert_eq!(
        deliver(&b2, &mut a_in, a.local_addr(), b"i am back").await,
        b_addr
    );
    assert_eq!(
        deliver(&a, &mut b2_in, b_addr, b"welcome").await,
        a.local_addr()
    );
}
