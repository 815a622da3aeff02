//! The `GossipNode` actor: a thin shell that feeds a [`proto::Node`] with
//! time, received bytes and commands, and carries out what it asks for.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{
    ActorMetrics, Broadcast, Delete, Get, GetId, GetKeys, GetMember, GetMembers, GetMetrics,
    GetValues, Leave, LeaveOutcome, NodeMetrics, NodeSnapshot, Set, SetSeeds, Snapshot, Stop,
    Subscribe, Value,
};
use super::subscribe::{Current, KeyValue, Offer, Subscriber, UserEvent};
use crate::proto::broadcast;
use crate::proto::{self, Event, MemberInfo, Node, WriteError};
use crate::transport::{Incoming, Received, Transport, TransportError};

/// Converts the process clock into the core's time: microseconds since a
/// start instant captured once per node. The shell reads the clock; the
/// core never does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub(crate) fn start() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    /// The core's time now.
    pub(crate) fn now(&self) -> proto::Instant {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        proto::Instant::from_micros(micros)
    }
}

/// One gossip node as an actix actor.
///
/// It owns a pure [`proto::Node`] and a [`Transport`], and does only what
/// the core's calling order asks: feed every input (a received message, the
/// timer, a command) with the current time, then drain the core — send each
/// transmit through the transport (a refused send is counted and dropped:
/// gossip repairs loss), forward each event to subscribers — and re-arm its
/// single timer at the core's next deadline. All protocol logic stays in the
/// core.
///
/// Start one with [`NodeBuilder`](super::NodeBuilder); talk to it with the
/// messages of this module ([`Set`], [`Get`], [`Subscribe`], [`Leave`],
/// [`Stop`], ...).
///
/// Memory is bounded everywhere: the mailbox has actix's bounded capacity
/// (`send` waits when it is full), the transport bounds its own queues, the
/// core bounds its transmit and event queues, and each subscriber has a
/// bound on events in flight beyond which its events are dropped and
/// counted.
pub struct GossipNode {
    core: Node,
    transport: Arc<dyn Transport>,
    incoming: Option<Incoming>,
    clock: Clock,
    mailbox_capacity: usize,
    /// The one armed timer and the deadline it fires at.
    timer: Option<(SpawnHandle, proto::Instant)>,
    subscribers: Vec<Subscriber>,
    /// Sequence number of this node's next broadcast.
    next_broadcast: u64,
    /// Broadcasts delivered lately (delivered once, however often they
    /// arrive).
    seen: broadcast::Seen,
    leave_waiters: Vec<oneshot::Sender<LeaveOutcome>>,
    leave_announced: bool,
    stopping: bool,
    closed: bool,
    counters: ActorMetrics,
    #[cfg(feature = "metrics")]
    telemetry: super::telemetry::Telemetry,
}

impl GossipNode {
    /// Assembles the actor; [`NodeBuilder`](super::NodeBuilder) is the public way.
    pub(crate) fn new(
        core: Node,
        transport: Box<dyn Transport>,
        clock: Clock,
        mailbox_capacity: usize,
    ) -> Self {
        #[cfg(feature = "metrics")]
        let core_name = core.id().name.clone();
        let mut transport = transport;
        let incoming = transport.incoming();
        GossipNode {
            core,
            transport: Arc::from(transport),
            incoming: Some(incoming),
            clock,
            mailbox_capacity,
            timer: None,
            subscribers: Vec::new(),
            next_broadcast: 0,
            seen: broadcast::Seen::default(),
            leave_waiters: Vec::new(),
            leave_announced: false,
            stopping: false,
            closed: false,
            counters: ActorMetrics::default(),
            #[cfg(feature = "metrics")]
            telemetry: super::telemetry::Telemetry::new(&core_name),
        }
    }

    fn now(&self) -> proto::Instant {
        self.clock.now()
    }

    /// Every counter and gauge, the core's and the shell's.
    fn node_metrics(&self) -> NodeMetrics {
        let actor = ActorMetrics {
            subscribers: self.subscribers.iter().filter(|s| !s.is_closed()).count(),
            ..self.counters
        };
        NodeMetrics {
            proto: *self.core.metrics(),
            gauges: self.core.gauges(),
            actor,
        }
    }

    /// The state a new watch starts with: the members and live keys its
    /// filter is about.
    fn current(&self, s: &Subscriber) -> Current {
        let members: Vec<MemberInfo> = self
            .core
            .members()
            .into_iter()
            .filter(|m| s.wants_member(&m.id.name))
            .collect();
        let mut keys = Vec::new();
        for m in self.core.members() {
            for (key, value, version) in self.core.keys(&m.id.name) {
                if s.wants_key(&m.id.name, key) && !broadcast::is_broadcast(key) {
                    keys.push(KeyValue {
                        owner: m.id.clone(),
                        key: key.to_owned(),
                        value: Value {
                            value: value.clone(),
                            version,
                        },
                    });
                }
            }
        }
        Current { members, keys }
    }

    /// Carries out everything the core asked for after an input.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(tx) = self.core.poll_transmit() {
            self.transmit(tx);
        }
        while let Some(event) = self.core.poll_event() {
            self.on_event(event);
        }
        self.arm_timer(ctx);
    }

    fn transmit(&mut self, tx: proto::Transmit) {
        if self.closed {
            self.counters.send_errors.closed += 1;
            return;
        }
        let to = tx.to;
        match self.transport.send(to, tx.encode()) {
            Ok(()) => self.counters.sent += 1,
            Err(error) => {
                let e = &mut self.counters.send_errors;
                match error {
                    TransportError::Closed => e.closed += 1,
                    TransportError::QueueFull => e.queue_full += 1,
                    TransportError::TooLarge(_) => e.too_large += 1,
                    TransportError::Unreachable(_) => e.unreachable += 1,
                }
                tracing::trace!(node = %self.core.id(), %to, %error, "send dropped");
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        tracing::debug!(node = %self.core.id(), ?event, "gossip event");
        #[cfg(feature = "metrics")]
        self.telemetry.on_event(&event);
        if matches!(event, Event::LeaveAnnounced) {
            self.leave_announced = true;
            for w in self.leave_waiters.drain(..) {
                let _ = w.send(LeaveOutcome::Announced);
            }
        }
        self.forward(event);
    }

    /// Offers `event` to every subscriber (never waiting for one), and
    /// forgets those whose handle was dropped. Broadcast keys are offered
    /// as broadcasts; their expiry is not news.
    fn forward(&mut self, event: Event) {
        match &event {
            Event::KeyChanged {
                owner, key, value, ..
            } if broadcast::is_broadcast(key) => {
                if let Some((_, seq, topic)) = broadcast::parse(key)
                    && self.seen.first(&owner.name, key)
                {
                    let b = UserEvent {
                        sender: owner.clone(),
                        topic: topic.to_owned(),
                        payload: value.clone(),
                        seq,
                    };
                    self.forward_broadcast(&b);
                }
                return;
            }
            Event::KeyDeleted { key, .. } if broadcast::is_broadcast(key) => return,
            _ => {}
        }
        let me = &self.core.id().name;
        let counters = &mut self.counters;
        self.subscribers
            .retain_mut(|s| keep(counters, s.offer(me, &event)));
    }

    fn forward_broadcast(&mut self, b: &UserEvent) {
        let counters = &mut self.counters;
        self.subscribers
            .retain_mut(|s| keep(counters, s.offer_broadcast(b)));
    }

    /// Keeps exactly one timer armed, at the core's deadline.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let deadline = self.core.poll_timeout();
        if let Some((handle, at)) = self.timer {
            if at == deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = deadline.saturating_since(self.now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.on_timer(ctx);
        });
        self.timer = Some((handle, deadline));
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.counters.timer_fires += 1;
        let now = self.now();
        self.core.handle_timeout(now);
        self.drain(ctx);
        #[cfg(feature = "metrics")]
        if self.telemetry.due(now, self.core.config().gossip_interval) {
            let m = self.node_metrics();
            self.telemetry.publish(now, &m);
        }
    }

    fn close_transport(&mut self) -> impl Future<Output = ()> + 'static {
        let first = !self.closed;
        self.closed = true;
        let transport = self.transport.clone();
        async move {
            if first {
                transport.close().await;
            }
        }
    }
}

impl Actor for GossipNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        if let Some(incoming) = self.incoming.take() {
            ctx.add_stream(incoming);
        }
        tracing::info!(node = %self.core.id(), cluster = %self.core.config().cluster, "gossip node started");
        self.arm_timer(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for w in self.leave_waiters.drain(..) {
            let _ = w.send(LeaveOutcome::Stopped);
        }
        if !self.closed {
            // Stopped without `Stop` (its arbiter or system is going down):
            // close the transport if the runtime still runs tasks.
            actix::spawn(self.close_transport());
        }
        tracing::info!(node = %self.core.id(), "gossip node stopped");
    }
}

impl StreamHandler<Received> for GossipNode {
    fn handle(&mut self, msg: Received, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        self.counters.received += 1;
        let now = self.now();
        let Received { addr, peer, bytes } = msg;
        if let Err(reason) = self
            .core
            .handle_authenticated(now, addr, peer.as_deref(), &bytes)
        {
            self.counters.refused += 1;
            tracing::trace!(node = %self.core.id(), from = %addr, ?peer, %reason, len = bytes.len(), "message refused");
        }
        self.drain(ctx);
    }

    /// The transport's stream ended (it was closed). The node keeps running
    /// so that queries still answer; it just hears nothing more.
    fn finished(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(node = %self.core.id(), "transport stream ended");
    }
}

impl Handler<Set> for GossipNode {
    type Result = Result<u64, WriteError>;

    fn handle(&mut self, msg: Set, ctx: &mut Self::Context) -> Self::Result {
        if broadcast::is_broadcast(&msg.key) {
            return Err(WriteError::ReservedKey);
        }
        let now = self.now();
        let result = match msg.ttl {
            Some(ttl) => self.core.set_with_ttl(now, &msg.key, msg.value, ttl),
            None => self.core.set(now, &msg.key, msg.value),
        };
        match &result {
            Ok(version) => {
                tracing::debug!(node = %self.core.id(), key = %msg.key, version, "key set")
            }
            Err(error) => {
                tracing::debug!(node = %self.core.id(), key = %msg.key, %error, "write refused")
            }
        }
        self.drain(ctx);
        result
    }
}

impl Handler<Broadcast> for GossipNode {
    type Result = Result<u64, WriteError>;

    fn handle(&mut self, msg: Broadcast, ctx: &mut Self::Context) -> Self::Result {
        let now = self.now();
        let seq = self.next_broadcast;
        let key = broadcast::key(self.core.id().generation, seq, &msg.topic);
        self.core
            .set_with_ttl(now, &key, msg.payload.clone(), msg.ttl)?;
        self.next_broadcast += 1;
        tracing::debug!(node = %self.core.id(), topic = %msg.topic, seq, "broadcast sent");
        // The core reports no event for its own writes: deliver it here.
        let b = UserEvent {
            sender: self.core.id().clone(),
            topic: msg.topic,
            payload: msg.payload,
            seq,
        };
        self.forward_broadcast(&b);
        self.drain(ctx);
        Ok(seq)
    }
}

impl Handler<Delete> for GossipNode {
    type Result = Result<Option<u64>, WriteError>;

    fn handle(&mut self, msg: Delete, ctx: &mut Self::Context) -> Self::Result {
        if broadcast::is_broadcast(&msg.key) {
            return Err(WriteError::ReservedKey);
        }
        let now = self.now();
        let result = self.core.delete(now, &msg.key);
        match &result {
            Ok(version) => {
                tracing::debug!(node = %self.core.id(), key = %msg.key, ?version, "key deleted")
            }
            Err(error) => {
                tracing::debug!(node = %self.core.id(), key = %msg.key, %error, "delete refused")
            }
        }
        self.drain(ctx);
        result
    }
}

impl Handler<Get> for GossipNode {
    type Result = Option<Value>;

    fn handle(&mut self, msg: Get, _ctx: &mut Self::Context) -> Self::Result {
        if broadcast::is_broadcast(&msg.key) {
            // Broadcasts are events, not keys.
            return None;
        }
        self.core
            .get(&msg.owner, &msg.key)
            .map(|(value, version)| Value {
                value: value.clone(),
                version,
            })
    }
}

impl Handler<GetMember> for GossipNode {
    type Result = Option<MemberInfo>;

    fn handle(&mut self, msg: GetMember, _ctx: &mut Self::Context) -> Self::Result {
        self.core.member(&msg.name)
    }
}

impl Handler<GetId> for GossipNode {
    type Result = MessageResult<GetId>;

    fn handle(&mut self, _msg: GetId, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.core.id().clone())
    }
}

impl Handler<GetMembers> for GossipNode {
    type Result = MessageResult<GetMembers>;

    fn handle(&mut self, msg: GetMembers, _ctx: &mut Self::Context) -> Self::Result {
        let mut members = self.core.members();
        if let Some(status) = msg.status {
            members.retain(|m| m.status == status);
        }
        MessageResult(members)
    }
}

impl Handler<GetKeys> for GossipNode {
    type Result = MessageResult<GetKeys>;

    fn handle(&mut self, msg: GetKeys, _ctx: &mut Self::Context) -> Self::Result {
        if self.core.member(&msg.owner).is_none() {
            return MessageResult(None);
        }
        let keys = self
            .core
            .keys(&msg.owner)
            .filter(|(k, _, _)| !broadcast::is_broadcast(k))
            .map(|(k, v, version)| {
                let value = Value {
                    value: v.clone(),
                    version,
                };
                (k.to_owned(), value)
            })
            .collect();
        MessageResult(Some(keys))
    }
}

impl Handler<GetValues> for GossipNode {
    type Result = MessageResult<GetValues>;

    fn handle(&mut self, msg: GetValues, _ctx: &mut Self::Context) -> Self::Result {
        if broadcast::is_broadcast(&msg.key) {
            return MessageResult(Default::default());
        }
        let values = self
            .core
            .values_of(&msg.key)
            .map(|(owner, v, version)| {
                let value = Value {
                    value: v.clone(),
                    version,
                };
                (owner.name.clone(), value)
            })
            .collect();
        MessageResult(values)
    }
}

impl Handler<SetSeeds> for GossipNode {
    type Result = ();

    fn handle(&mut self, msg: SetSeeds, ctx: &mut Self::Context) {
        tracing::info!(node = %self.core.id(), seeds = ?msg.seeds, "seeds changed");
        self.core.set_seeds(msg.seeds);
        self.drain(ctx);
    }
}

impl Handler<Snapshot> for GossipNode {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _msg: Snapshot, _ctx: &mut Self::Context) -> Self::Result {
        let members: Vec<MemberInfo> = self.core.members();
        let mut keys = std::collections::BTreeMap::new();
        for m in &members {
            let owned: std::collections::BTreeMap<String, Value> = self
                .core
                .keys(&m.id.name)
                .filter(|(k, _, _)| !broadcast::is_broadcast(k))
                .map(|(k, v, version)| {
                    (
                        k.to_owned(),
                        Value {
                            value: v.clone(),
                            version,
                        },
                    )
                })
                .collect();
            if !owned.is_empty() {
                keys.insert(m.id.name.clone(), owned);
            }
        }
        MessageResult(NodeSnapshot {
            id: self.core.id().clone(),
            joined: self.core.is_joined(),
            members,
            keys,
        })
    }
}

impl Handler<Subscribe> for GossipNode {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        self.subscribers.retain(|s| !s.is_closed());
        let (mut subscriber, handle) = Subscriber::new(msg.filter, msg.capacity);
        if msg.watch {
            subscriber.send_current(self.current(&subscriber));
        }
        self.subscribers.push(subscriber);
        tracing::debug!(node = %self.core.id(), capacity = msg.capacity, watch = msg.watch, "subscribed");
        MessageResult(handle)
    }
}

impl Handler<Leave> for GossipNode {
    type Result = ResponseFuture<LeaveOutcome>;

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) -> Self::Result {
        if self.leave_announced {
            return Box::pin(async { LeaveOutcome::Announced });
        }
        if self.stopping {
            return Box::pin(async { LeaveOutcome::Stopped });
        }
        tracing::info!(node = %self.core.id(), timeout_ms = msg.timeout.as_millis() as u64, "leaving");
        let now = self.now();
        self.core.leave(now);
        let (tx, rx) = oneshot::channel();
        self.leave_waiters.retain(|w| !w.is_closed());
        self.leave_waiters.push(tx);
        self.drain(ctx);
        let timeout: Duration = msg.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => LeaveOutcome::Stopped,
                Err(_) => LeaveOutcome::TimedOut,
            }
        })
    }
}

impl Handler<Stop> for GossipNode {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) -> Self::Result {
        tracing::info!(node = %self.core.id(), "stopping");
        self.stopping = true;
        if let Some((handle, _)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        for w in self.leave_waiters.drain(..) {
            let _ = w.send(LeaveOutcome::Stopped);
        }
        Box::pin(
            self.close_transport()
                .into_actor(self)
                .map(|(), _act, ctx| ctx.stop()),
        )
    }
}

impl Handler<GetMetrics> for GossipNode {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> Self::Result {
        let m = self.node_metrics();
        #[cfg(feature = "metrics")]
        self.telemetry.publish(self.now(), &m);
        MessageResult(m)
    }
}

/// Counts what became of an offer to a subscriber; whether to keep it.
fn keep(counters: &mut ActorMetrics, offer: Offer) -> bool {
    match offer {
        Offer::Skipped => true,
        Offer::Queued => {
            counters.events_forwarded += 1;
            true
        }
        Offer::Missed => {
            counters.events_dropped += 1;
            true
        }
        Offer::Gone => false,
    }
}
