//! The shell's cross-thread counting: the global connection count behind [`ConnSlot`] and each
//! worker's [`Published`] heartbeat and counters (written by that worker only; its [`WorkerSnapshot`] is what
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

use super::close::CloseReason;
use crate::proxy::io::Side;
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

/// What one worker shows other threads: its heartbeat, and its counters as of its last
/// publication. The worker counts into its own [`WorkerSnapshot`] (plain integers, no atomics) and
/// copies it here every [`PUBLISH_PERIOD`]; the scrape and the tests read the copy.
#[derive(Debug, Default)]
pub struct Published {
    /// Wall-clock milliseconds (UNIX) at the worker's last loop turn: `/healthz` fails for a worker
    /// that stopped turning. The loop turns at least every [`PUBLISH_PERIOD`] even when idle.
    pub heartbeat_unix_ms: AtomicU64,
    /// The worker's last published counters: the one lock the scrape and a worker share, taken by
    /// the worker twice a second, never on the per-message path.
    pub snapshot: Mutex<WorkerSnapshot>,
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
    /// Connections accepted (past the bounds, TLS not yet begun): `[internal, external]`.
    pub accepted: [u64; 2],
    /// Connections dialled (a socket connecting): `[internal, external]`.
    pub dialled: [u64; 2],
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

/// `[internal, external]` slot of a side.
pub(crate) fn side_slot(side: Side) -> usize {
    match side {
        Side::Internal => 0,
        Side::External => 1,
    }
}

/// The one place each shell event is counted (so a close is counted once, into the maps the
/// scrape exports).
impl WorkerSnapshot {
    pub(crate) fn accepted(&mut self, side: Side) {
        if let Some(n) = self.accepted.get_mut(side_slot(side)) {
            *n += 1;
        }
    }

    pub(crate) fn dialled(&mut self, side: Side) {
        if let Some(n) = self.dialled.get_mut(side_slot(side)) {
            *n += 1;
        }
    }

    pub(crate) fn handshake_ok(&mut self, side: Side) {
        if let Some(n) = self.handshakes_ok.get_mut(side_slot(side)) {
            *n += 1;
        }
    }

    /// An incoming connection refused by `limit` (`max_connections`, `per_ip`).
    pub(crate) fn refused(&mut self, side: Side, limit: &'static str) {
        *self.refused.entry((side.as_str(), limit)).or_default() += 1;
    }

    /// A stream framing error (whether the connection closes on it or the core answers first).
    pub(crate) fn framing_error(&mut self, side: Side, error: &sip_codec::FrameError) {
        *self
            .framing
            .entry((side.as_str(), framing_kind(error)))
            .or_default() += 1;
    }

    /// A connection ended: by reason, and as a handshake failure or a framing error when it is one.
    pub(crate) fn closed(&mut self, side: Side, reason: &CloseReason) {
        *self.closes.entry((side.as_str(), reason.as_str())).or_default() += 1;
        if let Some(bucket) = reason.handshake_bucket() {
            *self
                .handshake_failures
                .entry((side.as_str(), bucket))
                .or_default() += 1;
        }
        if let CloseReason::Framing(e) = reason {
            self.framing_error(side, e);
        }
    }

    /// Closes with reason `reason` (`CloseReason::as_str`), both sides.
    pub fn closes_with(&self, reason: &str) -> u64 {
        self.closes
            .iter()
            .filter(|((_, r), _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Default for WorkerSnapshot {
    fn default() -> Self {
        WorkerSnapshot {
            core: None,
            loop_turns: Histogram::new(&crate::proxy::stats::TURN_BOUNDS_MICROS),
            open_connections: [0; 2],
            accepted: [0; 2],
            dialled: [0; 2],
            handshakes_ok: [0; 2],
            closes: BTreeMap::new(),
            handshake_failures: BTreeMap::new(),
            refused: BTreeMap::new(),
            framing: BTreeMap::new(),
            dns: crate::dns::DnsStats::default(),
        }
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
    fn a_close_is_counted_once_in_each_map_it_belongs_to() {
        use super::super::close::TlsCause;
        use sip_codec::FrameError;
        let mut s = WorkerSnapshot::default();
        s.closed(Side::External, &CloseReason::PeerClosed);
        s.closed(
            Side::External,
            &CloseReason::Framing(FrameError::MissingContentLength),
        );
        s.closed(
            Side::Internal,
            &CloseReason::Tls(TlsCause::CertificateUntrusted, String::new()),
        );
        s.closed(Side::Internal, &CloseReason::CertificateMismatch(vec![]));
        s.framing_error(Side::External, &FrameError::Stalled(5));
        let sum = |m: &BTreeMap<(&'static str, &'static str), u64>| m.values().sum::<u64>();
        assert_eq!(sum(&s.closes), 4);
        assert_eq!(s.closes.get(&("external", "peer_closed")), Some(&1));
        assert_eq!(s.closes_with("framing_error"), 1);
        assert_eq!(s.closes_with("certificate_mismatch"), 1);
        assert_eq!(
            s.handshake_failures.keys().copied().collect::<Vec<_>>(),
            [
                ("internal", "certificate_mismatch"),
                ("internal", "certificate_untrusted")
            ]
        );
        assert_eq!(
            s.framing.keys().copied().collect::<Vec<_>>(),
            [
                ("external", "bad_content_length"),
                ("external", "message_timeout")
            ]
        );
        s.accepted(Side::External);
        s.dialled(Side::Internal);
        s.refused(Side::External, "per_ip");
        assert_eq!((s.accepted, s.dialled), ([0, 1], [1, 0]));
        assert_eq!(s.refused.get(&("external", "per_ip")), Some(&1));
    }
}
