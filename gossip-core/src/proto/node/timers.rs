//! What runs on the node's own clock: stall detection, TTL expiry,
//! failure detection, forgetting and tombstone GC.

use super::*;

/// Members checked by the failure detector per round, at least.
const FD_SLICE: usize = 1024;

impl Node {
    /// If this node went silent for longer than `stall_threshold` (no timer,
    /// no message), it was stalled, not its peers: restart their clocks.
    pub(super) fn check_stall(&mut self, now: Instant) {
        if now.saturating_since(self.last_activity) > self.config.stall_threshold {
            self.metrics.stalls += 1;
            tracing::warn!(node = %self.me, stalled_ms = now.saturating_since(self.last_activity).as_millis() as u64, "node was stalled; restarting failure-detector clocks");
            for (_, m) in self.members.iter_mut() {
                m.detector.restart_clock(now);
            }
            self.detection.stalled(now);
        }
        self.last_activity = now;
    }

    pub(super) fn expire_ttls(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .get(&self.me.name)
            .and_then(Member::keyspace)
            .into_iter()
            .flat_map(|k| k.entries.iter())
            .filter(|(_, e)| e.value.is_some() && e.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            // Cannot fail: the key exists and we have not left (or the write is refused harmlessly).
            let _ = self.write(now, &key, None, None);
        }
    }

    /// Failure detection over a rotating slice of the membership (all of it
    /// up to `FD_SLICE` members), plus tombstone GC and forgetting.
    pub(super) fn check_failures(&mut self, now: Instant) {
        let n = self.members.len();
        let slice = FD_SLICE.max(n / 4);
        let grace = self.config.grace_period;
        let threshold = self.config.phi_threshold;
        let mut changes: Vec<(usize, Status, StatusReason)> = Vec::new();
        let mut forget: Vec<(Id, u64)> = Vec::new();
        let mut gc: Vec<Id> = Vec::new();
        let mut checks: Vec<Id> = Vec::new();
        for i in rotate(n, self.fd_cursor).take(slice.min(n)) {
            let (id, m) = self.members.at(i);
            if m.keys.as_ref().is_some_and(|ks| ks.has_tombstones()) {
                gc.push(id.clone());
            }
            if i == 0 {
                continue;
            }
            let silent = now.saturating_since(m.detector.last);
            if silent < self.config.acceptable_pause {
                continue;
            }
            match m.status {
                // With probing on, silence is a reason to probe, not to
                // suspect: at thousands of nodes a live member's heartbeats
                // can lag at some nodes for longer than phi tolerates.
                Status::Live | Status::Suspect if self.config.probe => {
                    if m.status == Status::Live
                        && m.detector.phi_above(silent, threshold, &self.phi).is_some()
                    {
                        checks.push(id.clone());
                    }
                }
                Status::Live => {
                    if let Some(phi) = m.detector.phi_above(silent, threshold, &self.phi) {
                        changes.push((
                            i,
                            Status::Suspect,
                            StatusReason::Silent {
                                silent_for: silent,
                                phi,
                            },
                        ));
                    }
                }
                Status::Suspect => {
                    let waited = silent.saturating_sub(self.config.suspect_timeout);
                    if m.detector.phi_above(waited, threshold, &self.phi).is_some() {
                        let now_phi = m.detector.phi_after(silent, &self.phi);
                        changes.push((
                            i,
                            Status::Dead,
                            StatusReason::Silent {
                                silent_for: silent,
                                phi: now_phi,
                            },
                        ));
                    }
                }
                Status::Dead | Status::Left => {
                    if silent >= grace {
                        forget.push((id.clone(), m.heartbeat));
                    }
                }
            }
        }
        self.fd_cursor = (self.fd_cursor + slice.min(n)) % n;
        for id in checks {
            self.detection.check(id);
        }
        // Slots are stable until the removals below.
        for (i, to, reason) in changes {
            let from = self.members.set_status_at(i, to);
            let id = self.members.at(i).0.clone();
            match to {
                Status::Suspect => self.metrics.suspicions += 1,
                Status::Dead => self.metrics.convictions += 1,
                _ => {}
            }
            tracing::debug!(node = %self.me, member = %id, ?from, ?to, ?reason, "member status changed");
            self.emit(Event::MemberStatus {
                id,
                from,
                to,
                reason,
            });
        }
        for (id, heartbeat) in forget {
            self.members.remove(&id.name);
            self.detection.forget(&id.name);
            self.rejoin
                .forgotten
                .insert(&id, heartbeat, self.config.max_nodes);
            self.hot.retain(|h| h.id.name != id.name);
            self.emit(Event::MemberForgotten { id });
        }
        for id in gc {
            if let Some(m) = self.members.get_mut(&id.name)
                && let Some(ks) = m.keys.as_mut()
            {
                ks.gc(now, grace);
            }
        }
    }
}
