//! Reporting through the [`metrics`] facade (feature `metrics`): the
//! actor copies the core's counters and gauges and its own into whatever
//! recorder the application installed (Prometheus, StatsD, ...), and
//! records detection times from the core's status events. The pure core
//! knows nothing of it: it only counts.
//!
//! Every series carries a `node` label (the node's name), so many nodes of
//! one process stay apart. Counters are published as absolute values (the
//! core's counters are monotonic), at most once per gossip interval and at
//! every [`GetMetrics`](super::GetMetrics); series names:
//!
//! | series | kind | from |
//! |---|---|---|
//! | `gossip_messages_in_total`, `gossip_messages_out_total` | counter | accepted / queued messages |
//! | `gossip_bytes_in_total`, `gossip_bytes_out_total` | counter | their encoded bytes |
//! | `gossip_refused_total` | counter | whole messages refused (all reasons) |
//! | `gossip_refused_parts_total` | counter | updates and members refused by a limit |
//! | `gossip_updates_applied_total` | counter | key updates learned from peers |
//! | `gossip_suspicions_total`, `gossip_convictions_total` | counter | Live → Suspect, Suspect → Dead |
//! | `gossip_refutations_total`, `gossip_stalls_total` | counter | claims about us refuted, stalls noticed |
//! | `gossip_pushes_total`, `gossip_prunes_total`, `gossip_grafts_total` | counter | eager push |
//! | `gossip_transmits_dropped_total` | counter | core's send queue overflowed |
//! | `gossip_send_errors_total` | counter | sends the transport refused |
//! | `gossip_events_forwarded_total`, `gossip_events_dropped_total` | counter | to subscribers / lost to lag |
//! | `gossip_members{status}` | gauge | members by status (live, suspect, dead, left) |
//! | `gossip_keys`, `gossip_tombstones`, `gossip_state_bytes` | gauge | state held |
//! | `gossip_subscribers` | gauge | live subscriptions |
//! | `gossip_detection_seconds{to}` | histogram | silence (since its last new heartbeat here) before a member was marked `suspect` or `dead`, by probes or by the heartbeat detector |

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::messages::NodeMetrics;
use crate::proto::{Event, Status, StatusReason};

/// Publishes one node's metrics; holds its label and when it last did.
#[derive(Debug)]
pub(crate) struct Telemetry {
    node: String,
    last: Option<crate::proto::Instant>,
}

impl Telemetry {
    pub(crate) fn new(node: &str) -> Self {
        Telemetry {
            node: node.to_owned(),
            last: None,
        }
    }

    /// Whether a periodic publish is due at `now` (once per `every`).
    pub(crate) fn due(&self, now: crate::proto::Instant, every: Duration) -> bool {
        self.last
            .is_none_or(|last| now.saturating_since(last) >= every)
    }

    /// Copies every counter and gauge into the installed recorder.
    pub(crate) fn publish(&mut self, now: crate::proto::Instant, m: &NodeMetrics) {
        self.last = Some(now);
        let node = self.node.clone();
        let p = &m.proto;
        let counters: [(&'static str, u64); 19] = [
            ("gossip_messages_in_total", p.messages_in),
            ("gossip_messages_out_total", p.messages_out),
            ("gossip_bytes_in_total", p.bytes_in),
            ("gossip_bytes_out_total", p.bytes_out),
            ("gossip_refused_total", p.refused.total()),
            ("gossip_refused_parts_total", p.refused.parts()),
            ("gossip_updates_applied_total", p.updates_applied),
            ("gossip_deltas_skipped_total", p.deltas_skipped),
            ("gossip_suspicions_total", p.suspicions),
            ("gossip_convictions_total", p.convictions),
            ("gossip_refutations_total", p.refutations),
            ("gossip_stalls_total", p.stalls),
            ("gossip_pushes_total", p.pushes),
            ("gossip_prunes_total", p.prunes),
            ("gossip_grafts_total", p.grafts),
            ("gossip_transmits_dropped_total", p.transmits_dropped),
            ("gossip_send_errors_total", m.actor.send_errors.total()),
            ("gossip_events_forwarded_total", m.actor.events_forwarded),
            ("gossip_events_dropped_total", m.actor.events_dropped),
        ];
        for (name, value) in counters {
            counter!(name, "node" => node.clone()).absolute(value);
        }
        let g = &m.gauges;
        for (status, n) in [
            ("live", g.live),
            ("suspect", g.suspect),
            ("dead", g.dead),
            ("left", g.left),
        ] {
            gauge!("gossip_members", "node" => node.clone(), "status" => status).set(n as f64);
        }
        gauge!("gossip_keys", "node" => node.clone()).set(g.keys as f64);
        gauge!("gossip_tombstones", "node" => node.clone()).set(g.tombstones as f64);
        gauge!("gossip_state_bytes", "node" => node.clone()).set(g.state_bytes as f64);
        gauge!("gossip_subscribers", "node" => node).set(m.actor.subscribers as f64);
    }

    /// Records what an event tells about detection.
    pub(crate) fn on_event(&self, event: &Event) {
        if let Event::MemberStatus {
            to,
            reason:
                StatusReason::Silent { silent_for, .. } | StatusReason::Unanswered { silent_for, .. },
            ..
        } = event
        {
            let to = match to {
                Status::Suspect => "suspect",
                Status::Dead => "dead",
                _ => return,
            };
            histogram!("gossip_detection_seconds", "node" => self.node.clone(), "to" => to)
                .record(silent_for.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util_free_recorder::Captured;

    /// A minimal recorder capturing what was published, so the test needs
    /// no exporter crate.
    mod metrics_util_free_recorder {
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};

        use metrics::{
            Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
            Recorder, SharedString, Unit,
        };

        #[derive(Default, Clone)]
        pub struct Captured(pub Arc<Mutex<BTreeMap<String, f64>>>);

        struct Cell(String, Captured, AtomicU64);

        impl Cell {
            fn put(&self, v: f64) {
                self.1
                    .0
                    .lock()
                    .expect("capture lock")
                    .insert(self.0.clone(), v);
            }
        }

        impl CounterFn for Cell {
            fn increment(&self, value: u64) {
                let v = self.2.fetch_add(value, Ordering::Relaxed) + value;
                self.put(v as f64);
            }
            fn absolute(&self, value: u64) {
                self.2.store(value, Ordering::Relaxed);
                self.put(value as f64);
            }
        }

        impl GaugeFn for Cell {
            fn increment(&self, _: f64) {}
            fn decrement(&self, _: f64) {}
            fn set(&self, value: f64) {
                self.put(value);
            }
        }

        impl HistogramFn for Cell {
            fn record(&self, value: f64) {
                self.put(value);
            }
        }

        fn name(key: &Key) -> String {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            format!("{}{{{}}}", key.name(), labels.join(","))
        }

        impl Recorder for Captured {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                Counter::from_arc(Arc::new(Cell(name(key), self.clone(), AtomicU64::new(0))))
            }
            fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::from_arc(Arc::new(Cell(name(key), self.clone(), AtomicU64::new(0))))
            }
            fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::from_arc(Arc::new(Cell(name(key), self.clone(), AtomicU64::new(0))))
            }
        }
    }

    #[test]
    fn publishes_counters_gauges_and_detection_times_with_the_node_label() {
        let captured = Captured::default();
        let mut t = Telemetry::new("web-1");
        let mut m = NodeMetrics::default();
        m.proto.messages_out = 7;
        m.gauges.live = 3;
        m.actor.events_dropped = 2;
        let id = std::sync::Arc::new(crate::proto::NodeId::new(
            "b",
            "127.0.0.1:1".parse().expect("addr"),
            1,
        ));
        metrics::with_local_recorder(&captured, || {
            t.publish(crate::proto::Instant::ZERO, &m);
            t.on_event(&Event::MemberStatus {
                id: id.clone(),
                from: Status::Suspect,
                to: Status::Dead,
                reason: StatusReason::Silent {
                    silent_for: Duration::from_millis(1500),
                    phi: 9.0,
                },
            });
            t.on_event(&Event::MemberStatus {
                id,
                from: Status::Live,
                to: Status::Suspect,
                reason: StatusReason::Unanswered {
                    accusers: 1,
                    silent_for: Duration::from_millis(1250),
                },
            });
        });
        let seen = captured.0.lock().expect("capture lock");
        assert_eq!(
            seen.get("gossip_messages_out_total{node=web-1}"),
            Some(&7.0)
        );
        assert_eq!(
            seen.get("gossip_members{node=web-1,status=live}"),
            Some(&3.0)
        );
        assert_eq!(
            seen.get("gossip_events_dropped_total{node=web-1}"),
            Some(&2.0)
        );
        assert_eq!(
            seen.get("gossip_detection_seconds{node=web-1,to=dead}"),
            Some(&1.5)
        );
        assert_eq!(
            seen.get("gossip_detection_seconds{node=web-1,to=suspect}"),
            Some(&1.25),
            "probe verdicts are recorded too"
        );
        assert!(!t.due(crate::proto::Instant::ZERO, Duration::from_secs(1)));
        assert!(t.due(
            crate::proto::Instant::from_micros(1_000_000),
            Duration::from_secs(1)
        ));
    }
}
