//! The shell's cross-thread counting: the global connection count behind [`ConnSlot`] and each
//! worker's [`ShellCounters`] (written by that worker only; its published [`WorkerSnapshot`] is what
//! the scrape reads). Connections, pool, timers and the core are owned by one worker (`worker.rs`);
//! what else the workers share (the DNS cache, the TLS configs of a `Runtime`, the core's
//! `EdgeShared`) is listed in docs/architecture.md, Threads.
//!
//! Why a shared count: `max_connections` bounds file descriptors for the whole process, and with
//! SO_REUSEPORT the kernel, not us, decides which worker accepts. A per-worker share would refuse
//! connections while other workers have room. One relaxed atomic add on accept or dial and one
//! subtract on close never blocks and orders nothing else, so it costs the loops nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::proxy::stats::{CoreStats, Histogram};

/// The process-wide connection count and its cap (a reload may change the cap: connections over a
/// lowered cap stay, new ones wait for room).
#[derive(Debug)]
pub(crate) struct ConnCount {
    open: AtomicUsize,
    max: AtomicUsize,
}

impl ConnCount {
    pub fn new(max: usize) -> Arc<ConnCount> {
        Arc::new(ConnCount {
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        })
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One counted connection: taken before a connection is set up, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot(Arc<ConnCount>);

impl ConnSlot {
    /// `None` when the cap is reached.
    pub fn acquire(count: &Arc<ConnCount>) -> Option<ConnSlot> {
        let before = count.open.fetch_add(1, Ordering::Relaxed);
        if before >= count.max.load(Ordering::Relaxed) {
            count.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnSlot(Arc::clone(count)))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Events of one worker, bumped with relaxed atomics by the owning worker only: the heartbeat and
/// the published snapshot are what the scrape reads; the event counters serve the shell's tests
/// (the exported figures come from the snapshot's maps).
#[derive(Debug, Default)]
pub struct ShellCounters {
    pub accepted: AtomicU64,
    pub dialled: AtomicU64,
    pub rejected_max_connections: AtomicU64,
    pub rejected_per_ip: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub certificate_mismatches: AtomicU64,
    pub connect_failures: AtomicU64,
    pub framing_errors: AtomicU64,
    /// Connections closed at their first bytes: what arrived can never begin a SIP message.
    pub hostile_closes: AtomicU64,
    /// Messages that started and did not complete within `message_timeout`.
    pub message_timeouts: AtomicU64,
    pub write_overflows: AtomicU64,
    pub keepalive_failures: AtomicU64,
    pub idle_closes: AtomicU64,
    /// Wall-clock milliseconds (UNIX) at the worker's last loop turn: `/healthz` fails for a worker
    /// that stopped turning. The loop turns at least every [`PUBLISH_PERIOD`] even when idle.
    pub heartbeat_unix_ms: AtomicU64,
    /// The worker's last published counters (every [`PUBLISH_PERIOD`]): the one lock the scrape and
    /// a worker share, taken by the worker twice a second, never on the per-message path.
    pub published: Mutex<WorkerSnapshot>,
}

/// How often a worker publishes its counters (and, at the latest, turns its loop).
pub const PUBLISH_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// A copy of one worker's counters, as of its last publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The proxy core's counters (`None` for a core that keeps none).
    pub core: Option<CoreStats>,
    /// Time each loop turn took (events handled, effects run, timers fired; not the sleep).
    pub loop_turns: Histogram,
    /// Connections open on this worker now: `[internal, external]`.
    pub open_connections: [u64; 2],
    /// TLS handshakes completed: `[internal, external]`.
    pub handshakes_ok: [u64; 2],
    /// Connections ended, by (side, close reason) — reasons are `CloseReason::as_str` values.
    pub closes: BTreeMap<(&'static str, &'static str), u64>,
    /// TLS handshakes that failed, by (side, bucket): `timeout`, `peer_closed`,
    /// `certificate_untrusted`, `certificate_expired`, `certificate_mismatch`, `protocol_error`.
    pub handshake_failures: BTreeMap<(&'static str, &'static str), u64>,
    /// Incoming connections refused, by (side, limit): `max_connections`, `per_ip`.
    pub refused: BTreeMap<(&'static str, &'static str), u64>,
    /// Stream framing errors, by (side, kind): `message_too_large`, `header_too_large`,
    /// `bad_content_length`, `bad_start_line` (not SIP), `message_timeout`.
    pub framing: BTreeMap<(&'static str, &'static str), u64>,
    /// The worker's DNS client.
    pub dns: crate::dns::DnsStats,
}

/// The framing-error kind of a [`sip_codec::FrameError`] (a bounded metric label).
pub fn framing_kind(e: &sip_codec::FrameError) -> &'static str {
    use sip_codec::FrameError::*;
    match e {
        BodyTooLarge(_) => "message_too_large",
        HeadTooLarge(_) | TooManyHeaders(_) => "header_too_large",
        MissingContentLength | BadContentLength | ConflictingContentLength => "bad_content_length",
        NotSip(_) => "bad_start_line",
        Stalled(_) => "message_timeout",
    }
}

impl Default for WorkerSnapshot {
    fn default() -> Self {
        WorkerSnapshot {
            core: None,
            loop_turns: Histogram::new(&crate::proxy::stats::TURN_BOUNDS_MICROS),
            open_connections: [0; 2],
            handshakes_ok: [0; 2],
            closes: BTreeMap::new(),
            handshake_failures: BTreeMap::new(),
            refused: BTreeMap::new(),
            framing: BTreeMap::new(),
            dns: crate::dns::DnsStats::default(),
        }
    }
}

/// A copy of the counters, summed over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub accepted: u64,
    pub dialled: u64,
    pub rejected_max_connections: u64,
    pub rejected_per_ip: u64,
    pub handshake_failures: u64,
    pub certificate_mismatches: u64,
    pub connect_failures: u64,
    pub framing_errors: u64,
    pub hostile_closes: u64,
    pub message_timeouts: u64,
    pub write_overflows: u64,
    pub keepalive_failures: u64,
    pub idle_closes: u64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl CounterSnapshot {
    /// Adds one worker's counters.
    pub fn add(&mut self, c: &ShellCounters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.accepted += get(&c.accepted);
        self.dialled += get(&c.dialled);
        self.rejected_max_connections += get(&c.rejected_max_connections);
        self.rejected_per_ip += get(&c.rejected_per_ip);
        self.handshake_failures += get(&c.handshake_failures);
        self.certificate_mismatches += get(&c.certificate_mismatches);
        self.connect_failures += get(&c.connect_failures);
        self.framing_errors += get(&c.framing_errors);
        self.hostile_closes += get(&c.hostile_closes);
        self.message_timeouts += get(&c.message_timeouts);
        self.write_overflows += get(&c.write_overflows);
        self.keepalive_failures += get(&c.keepalive_failures);
        self.idle_closes += get(&c.idle_closes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let count = ConnCount::new(2);
        let a = ConnSlot::acquire(&count).unwrap();
        let b = ConnSlot::acquire(&count).unwrap();
        assert!(ConnSlot::acquire(&count).is_none());
        assert_eq!(count.open(), 2);
        drop(a);
        let c = ConnSlot::acquire(&count).unwrap();
        drop((b, c));
        assert_eq!(count.open(), 0);
    }

    #[test]
    fn snapshots_sum_workers() {
        let w1 = ShellCounters::default();
        let w2 = ShellCounters::default();
        bump(&w1.framing_errors);
        bump(&w2.framing_errors);
        bump(&w2.accepted);
        let mut s = CounterSnapshot::default();
        s.add(&w1);
        s.add(&w2);
        assert_eq!((s.framing_errors, s.accepted, s.dialled), (2, 1, 0));
    }
}
