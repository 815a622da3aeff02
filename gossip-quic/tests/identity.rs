//! A certificate is a node (issue 11), over QUIC on 127.0.0.1: the name in
//! the peer's certificate comes with each message and the core refuses
//! envelopes that claim another node or address; certificates of another
//! cluster, expired or denied are refused at the handshake; rotation
//! without restart; bounded resources (stalled frames, per-peer share of
//! the incoming queue, separate connection limits). No fixed sleeps.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use gossip_core::proto::{Config, Instant, Node, NodeId, RefuseReason};
use gossip_core::{Incoming, Received, Transport};
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicError, QuicTransport};

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

/// Sends `msg` from `a` until `b` receives it.
async fn deliver(a: &QuicTransport, b_in: &mut Incoming, to: SocketAddr, msg: Bytes) -> Received {
    let start = tokio::time::Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "message never arrived");
        let _ = a.send(to, msg.clone());
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(200), b_in.next()).await {
            if r.bytes == msg {
                return r;
            }
        }
    }
}

/// A protocol core named `name` that believes it is at `addr`.
fn core(name: &str, addr: SocketAddr, seeds: &[SocketAddr]) -> Node {
    Node::new(
        Config::default(),
        NodeId::new(name, addr, 1),
        seeds.to_vec(),
        7,
        Instant::ZERO,
    )
    .expect("valid config")
}

/// The first message a core sends (a join attempt to its seed), encoded.
fn first_message(node: &mut Node) -> Bytes {
    node.handle_timeout(Instant::ZERO);
    node.poll_transmit()
        .expect("a join attempt to the seed")
        .encode()
}

fn feed(node: &mut Node, r: &Received) -> Result<(), RefuseReason> {
    node.handle_authenticated(Instant::ZERO, r.addr, r.peer.as_deref(), &r.bytes)
}

#[tokio::test]
async fn a_node_holding_cs_certificate_cannot_speak_as_a() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (b, mut b_in) = bind(config(&ca, "b")).await;
    let (mallory, _m_in) = bind(config(&ca, "c")).await;
    let mut b_core = core("b", b.local_addr(), &[]);

    // c's transport, a core that claims to be a (at c's true address).
    let mut fake_a = core("a", mallory.local_addr(), &[b.local_addr()]);
    let r = deliver(
        &mallory,
        &mut b_in,
        b.local_addr(),
        first_message(&mut fake_a),
    )
    .await;
    assert_eq!(r.peer.as_deref(), Some("c"), "the certificate names c");
    assert_eq!(feed(&mut b_core, &r), Err(RefuseReason::IdentityMismatch));
    let refused = b_core.metrics().refused;
    assert_eq!((refused.identity_mismatch, refused.total()), (1, 1));
    assert!(b_core.poll_transmit().is_none(), "nothing answered");

    // The same connection speaking as itself is heard and answered.
    let mut honest = core("c", mallory.local_addr(), &[b.local_addr()]);
    let r = deliver(
        &mallory,
        &mut b_in,
        b.local_addr(),
        first_message(&mut honest),
    )
    .await;
    assert_eq!(feed(&mut b_core, &r), Ok(()));
    let reply = b_core.poll_transmit().expect("an answer");
    assert_eq!(reply.to, mallory.local_addr());
}

#[tokio::test]
async fn a_message_naming_another_address_is_refused() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (b, mut b_in) = bind(config(&ca, "b")).await;
    let (c, _c_in) = bind(config(&ca, "c")).await;
    let mut b_core = core("b", b.local_addr(), &[]);
    // c names itself, but claims replies should go to a victim's address.
    let victim: SocketAddr = "127.0.0.1:9".parse().expect("literal address");
    let mut liar = core("c", victim, &[b.local_addr()]);
    let r = deliver(&c, &mut b_in, b.local_addr(), first_message(&mut liar)).await;
    assert_eq!(r.addr, c.local_addr(), "the connection's address");
    assert_eq!(feed(&mut b_core, &r), Err(RefuseReason::IdentityMismatch));
    assert_eq!(b_core.metrics().refused.identity_mismatch, 1);
    assert!(
        b_core.poll_transmit().is_none(),
        "nothing sent to the victim"
    );
}

#[tokio::test]
async fn a_node_of_another_cluster_signed_by_the_same_ca_is_refused() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (a, _a_in) = bind(config(&ca, "a")).await;
    // The same CA key issues a certificate for another cluster.
    let staging = ClusterCa::from_pem("staging", ca.cert_pem(), ca.key_pem()).expect("same ca");
    let identity = NodeIdentity::issue(&staging, "x").expect("certificate");
    let (x, _x_in) = bind(QuicConfig::new(any_port(), "staging", identity)).await;

    a.send(x.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    x.send(a.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    // Each dialer refuses the other's server certificate: it carries the
    // other cluster's DNS name. (An acceptor refuses a client certificate
    // of another cluster by its `gossip://` URI: see the unit tests of
    // `tls::Policy`.)
    wait_for("each refuses the other's cluster", || {
        a.metrics().tls_refused >= 1
            && x.metrics().tls_refused >= 1
            && a.metrics().tls_refused_by_peer + x.metrics().tls_refused_by_peer >= 1
    })
    .await;
    let (ma, mx) = (a.metrics(), x.metrics());
    assert_eq!((ma.frames_in, mx.frames_in), (0, 0), "nothing got through");

    // A config whose cluster is not its certificate's is refused at bind.
    let identity = NodeIdentity::issue(&staging, "y").expect("certificate");
    assert!(matches!(
        QuicTransport::bind(QuicConfig::new(any_port(), CLUSTER, identity)).await,
        Err(QuicError::Config(_))
    ));
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (a, _a_in) = bind(config(&ca, "a")).await;
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let old = ca
        .issue_between("old", now - 2 * day, now - day)
        .expect("certificate");
    let identity =
        NodeIdentity::from_pem(ca.cert_pem(), &old.cert_pem, &old.key_pem).expect("identity");
    let (e, _e_in) = bind(QuicConfig::new(any_port(), CLUSTER, identity)).await;

    // As client (e dials) and as server (a dials), a refuses the certificate.
    e.send(a.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    a.send(e.local_addr(), Bytes::from_static(b"hello"))
        .expect("queued");
    wait_for("a refuses the expired certificate both ways", || {
        a.metrics().tls_refused >= 2
    })
    .await;
    assert_eq!(a.metrics().frames_in + e.metrics().frames_in, 0);
}

#[tokio::test]
async fn denied_nodes_are_refused_and_counted() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let (a, mut a_in) = bind(config(&ca, "a").with_denied("c")).await;
    let (b, _b_in) = bind(config(&ca, "b")).await;
    let (c, _c_in) = bind(config(&ca, "c")).await;

    assert!(
        c.connect(a.local_addr()).await.is_err() || {
            // With TLS 1.3 the dialer may learn of the refusal only later.
            wait_for("c learns it was refused", || {
                c.metrics().tls_refused_by_peer >= 1
            })
            .await;
            true
        }
    );
    wait_for("a refuses c", || a.metrics().denied >= 1).await;
    assert!(
        a.connect(c.local_addr()).await.is_err(),
        "nor does a dial c"
    );

    // Revocation at run time: b's connection is closed, b is refused after.
    let r = deliver(&b, &mut a_in, a.local_addr(), Bytes::from_static(b"hi")).await;
    assert_eq!(r.peer.as_deref(), Some("b"));
    let denied_before = a.metrics().denied;
    a.deny("b");
    wait_for("b's connection closed", || a.connections().is_empty()).await;
    assert!(a.metrics().denied > denied_before);
    assert!(a.connect(b.local_addr()).await.is_err());
    assert_eq!(a.metrics().frames_in, 1, "only b's message before the deny");
}

#[tokio::test]
async fn a_node_rotates_its_certificate_and_keeps_gossiping() {
    // The cluster moves from CA 1 to CA 2: every node trusts both; c
    // already has only CA 2, so it reaches a only after a's rotation.
    let ca1 = ClusterCa::generate(CLUSTER).expect("ca 1");
    let ca2 = ClusterCa::generate(CLUSTER).expect("ca 2");
    let both = format!("{}{}", ca1.cert_pem(), ca2.cert_pem());
    let identity = |ca: &ClusterCa, trust: &str, name: &str| {
        let cert = ca.issue(name).expect("certificate");
        NodeIdentity::from_pem(trust, &cert.cert_pem, &cert.key_pem).expect("identity")
    };
    let (a, mut a_in) = bind(QuicConfig::new(
        any_port(),
        CLUSTER,
        identity(&ca1, &both, "a"),
    ))
    .await;
    let (b, mut b_in) = bind(QuicConfig::new(
        any_port(),
        CLUSTER,
        identity(&ca1, &both, "b"),
    ))
    .await;
    let (c, _c_in) = bind(QuicConfig::new(
        any_port(),
        CLUSTER,
        identity(&ca2, ca2.cert_pem(), "c"),
    ))
    .await;
    deliver(&a, &mut b_in, b.local_addr(), Bytes::from_static(b"one")).await;
    assert!(
        c.connect(a.local_addr()).await.is_err(),
        "c does not trust a's old certificate"
    );

    a.reload_identity(identity(&ca2, &both, "a"))
        .expect("same node, same cluster");
    // New connections present the new certificate.
    c.connect(a.local_addr())
        .await
        .expect("c trusts a's new certificate");
    let r = deliver(&c, &mut a_in, a.local_addr(), Bytes::from_static(b"hi a")).await;
    assert_eq!(r.peer.as_deref(), Some("c"));
    // The existing connection to b goes on, both ways.
    deliver(&a, &mut b_in, b.local_addr(), Bytes::from_static(b"two")).await;
    deliver(&b, &mut a_in, a.local_addr(), Bytes::from_static(b"three")).await;

    // Only a certificate of the same node is accepted.
    assert!(matches!(
        a.reload_identity(identity(&ca2, &both, "b")),
        Err(QuicError::Cert(_))
    ));
}

/// A peer with a valid certificate driven through a bare quinn endpoint.
async fn raw_connect(ca: &ClusterCa, name: &str, to: SocketAddr) -> quinn::Connection {
    let config = config(ca, name);
    let (_, client) = config.quinn_configs().expect("quinn configs");
    let endpoint = quinn::Endpoint::client(any_port()).expect("bind raw endpoint");
    let connecting = endpoint
        .connect_with(client, to, &config.server_name)
        .expect("connect starts");
    within("raw handshake", connecting)
        .await
        .expect("valid certificate")
}

#[tokio::test]
async fn a_frame_claiming_64_kib_then_stalling_keeps_memory_small() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let mut b_config = config(&ca, "b");
    b_config.stream_timeout = Duration::from_millis(500);
    let (b, _b_in) = bind(b_config).await;
    let conn = raw_connect(&ca, "slow", b.local_addr()).await;
    let mut stream = conn.open_uni().await.expect("a stream");
    // Tag, a header announcing 65,536 bytes (the limit), 100 of them, stall.
    let mut head = vec![0x67, 0, 1, 0, 0];
    head.extend_from_slice(&[7u8; 100]);
    stream.write_all(&head).await.expect("written");
    wait_for("the partial frame is buffered", || {
        b.metrics().frame_bytes_buffered > 0
    })
    .await;
    let held = b.metrics().frame_bytes_buffered;
    assert!(held < 1024, "{held} bytes held for 100 received");
    // The stalled stream is cut off, and its buffer released.
    wait_for("stall cut off", || b.metrics().stream_timeouts == 1).await;
    wait_for("buffer released", || b.metrics().frame_bytes_buffered == 0).await;
    drop(stream);
}

#[tokio::test]
async fn one_peer_cannot_fill_the_incoming_queue() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let mut b_config = config(&ca, "b");
    b_config.incoming_per_peer = 10;
    let (b, mut b_in) = bind(b_config).await;
    let (a, _a_in) = bind(config(&ca, "a")).await;
    let (c, _c_in) = bind(config(&ca, "c")).await;
    // Nobody drains b while a floods it.
    for i in 0..50u32 {
        a.send(b.local_addr(), Bytes::from(i.to_be_bytes().to_vec()))
            .expect("queued");
    }
    wait_for("a's messages arrived", || b.metrics().frames_in >= 50).await;
    c.send(b.local_addr(), Bytes::from_static(b"c"))
        .expect("queued");
    wait_for("c's message arrived", || b.metrics().frames_in >= 51).await;
    assert_eq!(b.metrics().dropped_peer_share, 40);
    let mut from_a = 0;
    let mut from_c = 0;
    for _ in 0..11 {
        let r = within("a message", b_in.next()).await.expect("a message");
        match r.peer.as_deref() {
            Some("a") => from_a += 1,
            Some("c") => from_c += 1,
            other => panic!("unexpected sender {other:?}"),
        }
    }
    assert_eq!((from_a, from_c), (10, 1), "c got its message through");
    // Once drained, a has its share again.
    let r = deliver(&a, &mut b_in, b.local_addr(), Bytes::from_static(b"again")).await;
    assert_eq!(r.peer.as_deref(), Some("a"));
}

#[tokio::test]
async fn accepted_and_dialed_connections_have_separate_limits() {
    let ca = ClusterCa::generate(CLUSTER).expect("ca");
    let mut b_config = config(&ca, "b");
    b_config.max_accepted_connections = 1;
    b_config.max_dialed_connections = 1;
    let (b, _b_in) = bind(b_config).await;
    let (a, _a_in) = bind(config(&ca, "a")).await;
    let (c, _c_in) = bind(config(&ca, "c")).await;
    let (d, _d_in) = bind(config(&ca, "d")).await;

    a.connect(b.local_addr()).await.expect("first accepted");
    wait_for("b accepted a", || b.metrics().accepted_open == 1).await;
    assert!(
        c.connect(b.local_addr()).await.is_err(),
        "b accepts no second"
    );
    assert!(b.metrics().connections_refused >= 1);
    // The accepted connection does not use up b's room to dial.
    b.connect(c.local_addr())
        .await
        .expect("b may still dial once");
    assert!(matches!(
        b.connect(d.local_addr()).await,
        Err(QuicError::TooManyConnections)
    ));
    let m = b.metrics();
    assert_eq!((m.accepted_open, m.dialed_open, m.dials_refused), (1, 1, 1));
}
