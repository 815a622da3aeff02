//! Subscribing without writing an actor.

use actix::{Actor, Context, Handler};

use crate::proto::Event;

/// An actor that hands every event it receives to a closure, so an
/// application can subscribe to a [`GossipNode`](super::GossipNode) without
/// defining an actor of its own:
///
/// ```no_run
/// use actix::Actor;
/// use gossip_core::actor::{EventFn, Subscribe};
/// # async fn demo(node: actix::Addr<gossip_core::actor::GossipNode>) {
/// let printer = EventFn(|event| println!("{event:?}")).start();
/// node.send(Subscribe::new(printer.recipient())).await.expect("node answers");
/// # }
/// ```
///
/// The closure runs on the sink's own Arbiter (start it with
/// `EventFn::start_in_arbiter` to pick one), one event at a time.
pub struct EventFn<F>(pub F);

impl<F: FnMut(Event) + Unpin + 'static> Actor for EventFn<F> {
    type Context = Context<Self>;
}

impl<F: FnMut(Event) + Unpin + 'static> Handler<Event> for EventFn<F> {
    type Result = ();

    fn handle(&mut self, event: Event, _ctx: &mut Self::Context) {
        (self.0)(event);
    }
}
