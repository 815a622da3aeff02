//! Reading a subscription without writing an actor.

use actix::{Actor, Context, StreamHandler};

use super::subscribe::Update;

/// An actor that hands every [`Update`] of a
/// [`Subscription`](super::Subscription) to a closure, so an application
/// can consume one without defining an actor of its own. It stops when the
/// subscription ends (the node stopped).
///
/// ```no_run
/// use gossip_core::actor::{EventFn, Subscribe};
/// # async fn demo(node: actix::Addr<gossip_core::actor::GossipNode>) {
/// let sub = node.send(Subscribe::all()).await.expect("node answers");
/// EventFn::spawn(sub, |update| println!("{update:?}"));
/// # }
/// ```
///
/// The closure runs on the sink's own Arbiter, one update at a time; to
/// pick the Arbiter, start it there with `EventFn::start_in_arbiter` and
/// `ctx.add_stream(subscription)`.
pub struct EventFn<F>(pub F);

impl<F: FnMut(Update) + Unpin + 'static> EventFn<F> {
    /// Starts a sink on the current Arbiter that feeds `subscription` to `f`.
    pub fn spawn(subscription: super::Subscription, f: F) -> actix::Addr<Self> {
        EventFn::create(move |ctx| {
            <Self as StreamHandler<Update>>::add_stream(subscription, ctx);
            EventFn(f)
        })
    }
}

impl<F: FnMut(Update) + Unpin + 'static> Actor for EventFn<F> {
    type Context = Context<Self>;
}

impl<F: FnMut(Update) + Unpin + 'static> StreamHandler<Update> for EventFn<F> {
    fn handle(&mut self, update: Update, _ctx: &mut Self::Context) {
        (self.0)(update);
    }
}
